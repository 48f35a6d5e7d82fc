"""Create the lake and prove it works: a write, a read and a DuckDB Parquet round trip."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from citylake.core import duck
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import S3Storage, open_storage

LAYOUT_VERSION = 1


def init_lake(settings: Settings) -> Iterator[str]:
    """Create the lake if needed, check it, and yield one line per thing done."""
    storage = open_storage(settings)
    if isinstance(storage, S3Storage) and storage.ensure_bucket():
        yield f"created bucket {storage.bucket} at {storage.endpoint}"
    marker = key(Zone.CONTROL, filename="lake.json")
    if not storage.exists(marker):
        storage.put_json(marker, {"layout_version": LAYOUT_VERSION, "created_at": datetime.now(UTC)})
        yield f"initialised lake {storage.root_uri} (layout v{LAYOUT_VERSION})"
    else:
        yield f"lake {storage.root_uri} already initialised"

    probe = key(Zone.CONTROL, "healthcheck", filename="probe.parquet")
    con = duck.connect(settings, storage)
    info = duck.copy_to_lake(
        con, "select range as n, range * range as n2 from range(100)", storage, probe, overwrite=True
    )
    total = con.sql(f"select sum(n2) from read_parquet('{storage.url(probe)}')").fetchone()[0]
    expected = sum(n * n for n in range(100))
    if total != expected:
        raise RuntimeError(f"lake probe read back {total}, expected {expected}")
    yield f"DuckDB wrote and read {storage.url(probe)} ({info.size} bytes): lake healthy"
