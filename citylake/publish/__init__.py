"""Publish: candidate → audit → promote → pointer (:mod:`.gate`), and the one reader of what is
published — the pointer, the registry, as-of, views (:mod:`.reader`) — plus the quality report."""
