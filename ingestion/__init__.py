"""Ingestion: connectors, extract contracts, landing (raw) and parsing (staged). See lake_layout.md."""
