"""Quality suites and the publication gate (write-audit-publish). See lake_layout.md section 5."""
