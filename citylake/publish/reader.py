"""The one reader of what is published: the pointer, the registry, as-of, DuckDB views.

``published/CURRENT.json`` says, per publication group, which publication is in force and where
its marts are; ``published/registry/<id>.json`` records every publication with the pointer as it
was after it. Consumers (API, reports, open data, catalog, ``citylake query``) read marts only
through these functions, never from the warehouse.
"""

from __future__ import annotations

from datetime import date

import duckdb

from citylake.core.errors import CitylakeError, LakeObjectNotFound
from citylake.core.storage import LakeStorage

CURRENT = "published/CURRENT.json"


def current(storage: LakeStorage) -> dict:
    """Return the pointer consumers read: group -> publication (empty before the first one)."""
    try:
        return storage.get_json(CURRENT)
    except LakeObjectNotFound:
        return {"groups": {}}


def registry(storage: LakeStorage) -> list[dict]:
    """Return every publication record, oldest first."""
    records = [storage.get_json(i.key) for i in storage.list("published/registry/") if i.key.endswith(".json")]
    return sorted(records, key=lambda r: r["created_at"])


def pointer_as_of(storage: LakeStorage, as_of: str | None) -> dict:
    """Return the CURRENT pointer as it was: now, after a publication id, or at the end of a date."""
    if not as_of:
        return current(storage)
    records = registry(storage)
    for r in records:
        if r["publication_id"] == as_of:
            return r["current_after"]
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise CitylakeError(f"no publication {as_of!r} (give a publication id or a date YYYY-MM-DD)") from None
    eligible = [r for r in records if r["created_at"][:10] <= day.isoformat()]
    if not eligible:
        raise CitylakeError(f"nothing was published on or before {day}")
    return eligible[-1]["current_after"]


def published_views(con: duckdb.DuckDBPyConnection, storage: LakeStorage, pointer: dict) -> list[str]:
    """Create one view per published mart (as the pointer says) in a DuckDB connection."""
    names = []
    for entry in pointer.get("groups", {}).values():
        for mart, k in entry.get("marts", {}).items():
            con.execute(f"create or replace view {mart} as select * from read_parquet('{storage.url(k)}')")
            names.append(mart)
    return sorted(names)
