"""The one reader of what is published: the pointer, the registry, as-of, DuckDB views.

``published/CURRENT.json`` says, per publication group, which publication is in force and where
its marts are; ``published/registry/<id>.json`` records every publication with the pointer as it
was after it. Consumers (API, reports, open data, catalog, ``citylake query``) read marts only
through these functions, never from the warehouse.
"""

from __future__ import annotations

import re
from datetime import date

import duckdb

from citylake.core.duck import load_extension
from citylake.core.errors import CitylakeError, LakeObjectNotFound
from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage

CURRENT = key(Zone.PUBLISHED, filename="CURRENT.json")
REGISTRY = key(Zone.PUBLISHED, "registry")


def current(storage: LakeStorage) -> dict:
    """Return the pointer consumers read: group -> publication (empty before the first one)."""
    try:
        return storage.get_json(CURRENT)
    except LakeObjectNotFound:
        return {"groups": {}}


def registry(storage: LakeStorage) -> list[dict]:
    """Return every publication record, oldest first."""
    records = [storage.get_json(i.key) for i in storage.list(REGISTRY) if i.key.endswith(".json")]
    return sorted(records, key=lambda r: r["created_at"])


def pointer_as_of(storage: LakeStorage, as_of: str | None) -> dict:
    """Return the CURRENT pointer as it was: now, after a publication id, or at the end of a date.

    Reads one or two registry records, never the whole registry (a year of nights is hundreds):
    an id is its record's key; a date is found among the keys' names (a publication id starts
    with its UTC creation time), its record read to confirm."""
    if not as_of:
        return current(storage)
    if "/" not in as_of and not as_of.startswith("."):
        try:
            return storage.get_json(key(Zone.PUBLISHED, "registry", filename=f"{as_of}.json"))["current_after"]
        except (LakeObjectNotFound, ValueError):
            pass
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise CitylakeError(f"no publication {as_of!r} (give a publication id or a date YYYY-MM-DD)") from None
    ids = sorted(
        i.key.rsplit("/", 1)[-1].removesuffix(".json") for i in storage.list(REGISTRY) if i.key.endswith(".json")
    )
    # a publication created on the day has an id of that day or earlier (ids are taken before the
    # gate writes created_at): read back from the last id not after the day until one was created on it
    if not all(_STAMPED.match(i) for i in ids):  # ids not named by their time (hand-made): read them all
        eligible = [r for r in registry(storage) if r["created_at"][:10] <= day.isoformat()]
        if not eligible:
            raise CitylakeError(f"nothing was published on or before {day}")
        return eligible[-1]["current_after"]
    limit = f"{day:%Y%m%d}T999999Z"
    for publication_id in reversed([i for i in ids if i <= limit]):
        record = storage.get_json(key(Zone.PUBLISHED, "registry", filename=f"{publication_id}.json"))
        if record["created_at"][:10] <= day.isoformat():
            return record["current_after"]
    raise CitylakeError(f"nothing was published on or before {day}")


_STAMPED = re.compile(r"^\d{8}T\d{6}Z")


def mart_entries(pointer: dict) -> dict[str, dict | str]:
    """Return mart -> where it is published, for every group of a pointer."""
    return {
        mart: entry for group in pointer.get("groups", {}).values() for mart, entry in group.get("marts", {}).items()
    }


def mart_source(storage: LakeStorage, entry: dict | str) -> str:
    """The DuckDB table expression that reads one published mart exactly as the pointer names it.

    A Delta table at its recorded version (``delta_scan(url, version => n)``); a publication written
    before the tables (a Parquet file per publication, ``published/versions/``) by its file."""
    if isinstance(entry, str):
        return f"read_parquet('{storage.url(entry)}')"
    return f"delta_scan('{storage.url(entry['table'])}', version => {int(entry['version'])})"


def published_views(
    con: duckdb.DuckDBPyConnection, storage: LakeStorage, pointer: dict, *, geometry: bool = False
) -> list[str]:
    """Create one view per published mart (as the pointer says) in a DuckDB connection.

    A mart's ``geometry`` column is published as WKB (WGS84); with ``geometry`` the views read it
    as DuckDB's GEOMETRY (the spatial extension loaded), for analysts and GIS tools."""
    entries = mart_entries(pointer)
    if any(not isinstance(e, str) for e in entries.values()):
        load_extension(con, "delta")
    if geometry:
        load_extension(con, "spatial")
    for mart, entry in entries.items():
        source = mart_source(storage, entry)
        con.execute(f"create or replace view {mart} as select * from {source}")
        if geometry and "geometry" in {row[0] for row in con.execute(f"describe {mart}").fetchall()}:
            con.execute(
                f"create or replace view {mart} as "
                f"select * replace (st_geomfromwkb(geometry) as geometry) from {source}"
            )
    return sorted(entries)
