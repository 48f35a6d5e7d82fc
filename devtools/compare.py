"""Compare two publications mart by mart, row by row (scale-out check, partitioned vs single run).

Rows are compared after sorting on every column (exact columns first); floating-point values may
differ in their last bits between two runs (DuckDB sums in parallel), so they are compared with a
relative tolerance. Columns that name the run itself (``publication_id``) are left out.
"""

from __future__ import annotations

import math

from citylake.core.storage import LakeStorage
from citylake.publish.reader import mart_entries, mart_source

RUN_COLUMNS = ("publication_id",)


def _rows(con, source: str) -> tuple[list[str], list[tuple]]:
    rel = con.sql(f"select * from {source}")
    cols = [c for c in rel.columns if c not in RUN_COLUMNS]
    types = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    exact = [c for c in cols if types[c] not in ("DOUBLE", "FLOAT", "REAL")]
    order = ", ".join(f'"{c}"' for c in exact + [c for c in cols if c not in exact]) or "1"
    rows = con.sql(f"select {', '.join(chr(34) + c + chr(34) for c in cols)} from {source} order by {order}").fetchall()
    return cols, rows


def _same(a, b, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)
    return a == b


def compare_publications(
    left: tuple[LakeStorage, dict], right: tuple[LakeStorage, dict], rel_tol: float = 1e-9
) -> tuple[dict[str, int], list[str]]:
    """Compare the marts of two pointers (storage, CURRENT.json); return rows per mart and the differences."""
    import duckdb

    from citylake.core import duck
    from citylake.core.settings import Settings

    (sa, pa), (sb, pb) = left, right
    marts_a, marts_b = mart_entries(pa), mart_entries(pb)
    diffs = [f"{m}: published on one side only" for m in sorted(set(marts_a) ^ set(marts_b))]
    counts: dict[str, int] = {}
    con = duck.connect(Settings(), sa) if sa.url("x").startswith("s3") else duckdb.connect()
    duck.load_extension(con, "delta")
    for mart in sorted(set(marts_a) & set(marts_b)):
        cols_a, rows_a = _rows(con, mart_source(sa, marts_a[mart]))
        cols_b, rows_b = _rows(con, mart_source(sb, marts_b[mart]))
        counts[mart] = len(rows_a)
        if cols_a != cols_b:
            diffs.append(f"{mart}: columns differ: {cols_a} vs {cols_b}")
            continue
        if len(rows_a) != len(rows_b):
            diffs.append(f"{mart}: {len(rows_a)} rows vs {len(rows_b)}")
            continue
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=True)):
            bad = [c for c, x, y in zip(cols_a, ra, rb, strict=True) if not _same(x, y, rel_tol)]
            if bad:
                diffs.append(f"{mart}: row {i} differs in {bad}: {ra} vs {rb}")
                break
    con.close()
    return counts, diffs
