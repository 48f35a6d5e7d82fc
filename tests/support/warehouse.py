"""Reading a built warehouse in a test."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl


def q(warehouse: Path, sql: str) -> pl.DataFrame:
    """The rows of ``sql`` over the DuckDB warehouse at ``warehouse``, read-only."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()
