"""Lake core: settings, errors, lake keys, storage (filesystem and S3/MinIO), the lock, DuckDB
access and the French calendar. Every other room builds on it; it imports none of them."""
