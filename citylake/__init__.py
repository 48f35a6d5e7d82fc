"""citylake: the city's data platform core (settings, lake storage, DuckDB access, CLI)."""

__version__ = "0.1.0"
