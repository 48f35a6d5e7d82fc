"""Published marts as Delta tables: one table per mart, a night writes only the periods it changed.

``published/marts/<group>/<mart>/`` is a Delta table (delta-rs) partitioned by the mart's period
(``service_date`` or ``month``, the ``unique_key`` of its incremental dbt model); a dimension is
not partitioned. A publication overwrites, in one commit per mart, the partitions of the periods
the night rebuilt (``mode="overwrite"`` with a predicate, Spark's ``replaceWhere``); files of the
other periods are shared by every version. ``CURRENT.json`` and the registry name each mart's
table version, so a publication is still one pointer switch and "as published on date X" reads
each table at the version recorded then.

Traps (``lake_layout.md`` section 5): delta-rs deletes commit logs older than 30 days at each
write unless ``delta.enableExpiredLogCleanup`` is false, which would make old versions
unreadable; tables are created with cleanup off and 100-year retentions, and only ``vacuum``
with the versions the registry still names ever removes a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from citylake.build.groups import PERIODS
from citylake.core.duck import polars_storage_options
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage

TABLE_PROPERTIES = {
    "delta.enableExpiredLogCleanup": "false",
    "delta.logRetentionDuration": "interval 36500 days",
    "delta.deletedFileRetentionDuration": "interval 36500 days",
}


def table_key(group: str, mart: str) -> str:
    return key(Zone.PUBLISHED, f"marts/{group}", filename=mart)


def storage_options(settings: Settings, storage: LakeStorage) -> dict[str, str] | None:
    """delta-rs options for the lake: the lake's object-store options (as Polars takes them), and
    commits as conditional PUTs (``If-None-Match``): no locking provider, never an unsafe rename."""
    options = polars_storage_options(settings, storage)
    return None if options is None else {**options, "aws_conditional_put": "etag"}


def period_values(period: str, dates: Iterable[date]) -> list[date]:
    """The values of a mart's period column that the given service dates fall in."""
    if period == "service_date":
        return sorted(set(dates))
    if period == "month":
        return sorted({d.replace(day=1) for d in dates})
    raise ValueError(f"unknown period {period!r} (one of {PERIODS})")


def _predicate(period: str, values: list[date]) -> str:
    return f"{period} IN ({', '.join(repr(v.isoformat()) for v in values)})"


def _columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """Column names and types, a timestamp's zone aside (Delta stores instants as UTC)."""
    out = []
    for f in schema:
        t = f.type
        out.append((f.name, f"timestamp[{t.unit}, tz]" if pa.types.is_timestamp(t) and t.tz else str(t)))
    return out


def write_mart(
    settings: Settings,
    storage: LakeStorage,
    key: str,
    rows: Callable[[list[date] | None], pa.RecordBatchReader],
    *,
    period: str | None,
    values: list[date] | None,
    publication_id: str,
    only: tuple[str, list[str]] | None = None,
) -> int:
    """Commit a mart's rows to its Delta table and return the new version.

    ``rows(values)`` streams the mart's rows of those period values (all rows for None). With
    ``values`` None, no table yet, or columns that changed with the code, the whole table is
    replaced; otherwise only the partitions of those values (a value without rows empties its
    partition). ``only`` = (column, values): the rows streamed are those values' alone, and only
    their rows in the table are replaced (an operator held back keeps its rows as published) —
    unless the columns changed with the code, when the table is rewritten with them alone."""
    uri = storage.url(key)
    options = storage_options(settings, storage)
    common = {
        "storage_options": options,
        "writer_properties": WriterProperties(compression="ZSTD"),
        "commit_properties": CommitProperties(custom_metadata={"publication_id": publication_id}),
    }
    try:
        current = DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        current = None
    if current is None:
        write_deltalake(
            uri,
            rows(None),
            mode="overwrite",
            partition_by=[period] if period else None,
            configuration=TABLE_PROPERTIES,
            **common,
        )
    else:
        kept = f"{only[0]} IN ({', '.join(repr(v) for v in only[1])})" if only else None
        if (period and values is not None) or kept:
            partial = period and values is not None
            batch = rows(values if partial else None)
            if _columns(pa.schema(current.schema().to_arrow())) == _columns(batch.schema):
                predicate = " AND ".join(p for p in (_predicate(period, values) if partial else None, kept) if p)
                write_deltalake(uri, batch, mode="overwrite", predicate=predicate, **common)
                return DeltaTable(uri, storage_options=options).version()
            batch.close()  # the mart's columns changed with the code: rewrite it whole
        write_deltalake(uri, rows(None), mode="overwrite", schema_mode="overwrite", **common)
    return DeltaTable(uri, storage_options=options).version()


def table_version(settings: Settings, storage: LakeStorage, key: str) -> int | None:
    """The latest version of a published table, None when it does not exist yet."""
    try:
        return DeltaTable(storage.url(key), storage_options=storage_options(settings, storage)).version()
    except TableNotFoundError:
        return None


def vacuum_table(
    settings: Settings, storage: LakeStorage, key: str, keep_versions: list[int], *, dry_run: bool
) -> list[str]:
    """Delete the files no kept version reads (never the log: old kept versions stay readable).

    ``full`` also removes files no version ever named: those of a commit killed before its log entry."""
    table = DeltaTable(storage.url(key), storage_options=storage_options(settings, storage))
    latest = table.version()
    return table.vacuum(
        retention_hours=0,
        dry_run=dry_run,
        enforce_retention_duration=False,
        full=True,
        keep_versions=sorted(set(keep_versions) | {latest}),
    )
