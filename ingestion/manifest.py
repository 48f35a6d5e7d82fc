"""The ingestion manifest: what was delivered, when, and what became of it.

Three append-only tables in ``control/manifest/`` (one Parquet object per run and feed, never
rewritten), read by ingestion to know its state and by dbt as a source:

* ``deliveries``: one row per delivered file seen (name, size, sha256, delivered_at,
  received_at, raw key, contract version, declared date, deadline, late, duplicate of, and the
  time lateness was judged on with whose clock it is);
* ``steps``: one row per thing done to a delivery (landed, duplicate, parsed, quarantined,
  staged, superseded, error) with counts and the reason;
* ``invalid_reasons``: invalid rows per delivery and reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from citylake.core.errors import LakeObjectNotFound
from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage

DELIVERIES = {
    "run_id": pl.Utf8,
    "operator": pl.Utf8,
    "feed": pl.Utf8,
    "original_name": pl.Utf8,
    "raw_key": pl.Utf8,
    "size_bytes": pl.Int64,
    "sha256": pl.Utf8,
    "delivered_at": pl.Datetime("us", "UTC"),
    "received_at": pl.Datetime("us", "UTC"),
    "contract_version": pl.Int32,
    "declared_date": pl.Date,
    "deadline_at": pl.Datetime("us", "UTC"),
    "is_late": pl.Boolean,
    "duplicate_of": pl.Utf8,
    "judged_at": pl.Datetime("us", "UTC"),  # the time lateness was judged on
    "judged_on": pl.Utf8,  # whose clock that is (connectors.CLOCKS)
}
STEPS = {
    "run_id": pl.Utf8,
    "at": pl.Datetime("us", "UTC"),
    "operator": pl.Utf8,
    "feed": pl.Utf8,
    "sha256": pl.Utf8,
    "step": pl.Utf8,
    "outcome": pl.Utf8,
    "detail": pl.Utf8,
    "rows_total": pl.Int64,
    "rows_valid": pl.Int64,
    "rows_invalid": pl.Int64,
    "dataset": pl.Utf8,
    "partition_date": pl.Date,
    "staged_key": pl.Utf8,
}
INVALID = {
    "run_id": pl.Utf8,
    "operator": pl.Utf8,
    "feed": pl.Utf8,
    "sha256": pl.Utf8,
    "reason": pl.Utf8,
    "rows": pl.Int64,
}
TABLES = {"deliveries": DELIVERIES, "steps": STEPS, "invalid_reasons": INVALID}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class RunRecords:
    """What one run did to one operator feed, written as one object per table."""

    run_id: str
    operator: str
    feed: str
    deliveries: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)

    def step(
        self,
        sha256: str | None,
        step: str,
        outcome: str = "ok",
        detail: str = "",
        *,
        rows_total=None,
        rows_valid=None,
        dataset=None,
        partition_date: date | None = None,
        staged_key=None,
    ) -> dict:
        row = {
            "run_id": self.run_id,
            "at": now(),
            "operator": self.operator,
            "feed": self.feed,
            "sha256": sha256,
            "step": step,
            "outcome": outcome,
            "detail": detail,
            "rows_total": rows_total,
            "rows_valid": rows_valid,
            "rows_invalid": (rows_total - rows_valid) if rows_total is not None and rows_valid is not None else None,
            "dataset": dataset,
            "partition_date": partition_date,
            "staged_key": staged_key,
        }
        self.steps.append(row)
        return row

    def write(self, storage: LakeStorage) -> list[str]:
        """Write the non-empty tables; return their keys."""
        written = []
        received = now().date()
        for table, rows in (("deliveries", self.deliveries), ("steps", self.steps), ("invalid_reasons", self.invalid)):
            if not rows:
                continue
            frame = pl.DataFrame(rows, schema=TABLES[table], orient="row")
            k = key(
                Zone.CONTROL,
                f"manifest/{table}",
                {"received_date": received},
                f"{self.run_id}__{self.operator}__{self.feed}.parquet",
            )
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "m.parquet"
                frame.write_parquet(path)
                storage.put_file(k, path)
            written.append(k)
        return written


def snapshot_key(table: str) -> str:
    """Where the snapshot of a manifest table is (control/manifest_snapshot/<table>.parquet)."""
    return key(Zone.CONTROL, "manifest_snapshot", filename=f"{table}.parquet")


COMPACT_AFTER = 50  # manifest objects outside the snapshot before load() folds them in


def _read(storage: LakeStorage, key_: str, schema: dict) -> pl.DataFrame:
    import io

    frame = pl.read_parquet(io.BytesIO(storage.get_bytes(key_)))
    # an object written before a column existed reads it as empty
    frame = frame.with_columns(pl.lit(None, t).alias(c) for c, t in schema.items() if c not in frame.columns)
    return frame.select(list(schema)).cast(schema)


def _snapshot_and_fresh(storage: LakeStorage, table: str) -> tuple[pl.DataFrame, list[str]]:
    """The snapshot of a manifest table (empty with its schema if none) and the keys not in it."""
    schema = TABLES[table]
    try:
        snapshot = _read(storage, snapshot_key(table), {"_key": pl.Utf8, **schema})
    except LakeObjectNotFound:
        snapshot = pl.DataFrame(schema={"_key": pl.Utf8, **schema})
    known = set(snapshot["_key"].unique().to_list())
    fresh = [
        info.key
        for info in storage.list(key(Zone.CONTROL, f"manifest/{table}"))
        if info.key.endswith(".parquet") and info.key not in known
    ]
    return snapshot, fresh


def load(storage: LakeStorage, table: str) -> pl.DataFrame:
    """Return a whole manifest table (empty with its schema when nothing was written yet).

    The manifest is one object per run and feed: a year of nights is thousands of small objects.
    A snapshot (``control/manifest_snapshot/<table>.parquet``, each row with the key it came from)
    holds those already read; only objects missing from it are fetched, and once there are
    ``COMPACT_AFTER`` of them the snapshot is rewritten with them (one atomic put). A snapshot only
    ever holds whole, write-once objects, so a run writing while it is rewritten is simply read
    from its own object next time: a night reads a few objects, not the history."""
    snapshot, fresh = _snapshot_and_fresh(storage, table)
    frames = [snapshot] + [
        _read(storage, k, TABLES[table]).with_columns(_key=pl.lit(k)).select(snapshot.columns) for k in fresh
    ]
    whole = pl.concat(frames)
    if len(fresh) >= COMPACT_AFTER:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "snapshot.parquet"
            whole.write_parquet(path, compression="zstd")
            storage.put_file(snapshot_key(table), path, overwrite=True)
    return whole.drop("_key")


def object_keys(storage: LakeStorage, table: str) -> list[str]:
    """The objects that together hold a manifest table once each: its snapshot, if there is one,
    and the objects not folded into it yet. What a SQL reader (dbt's manifest source) reads instead
    of every object of the history; the snapshot's extra ``_key`` column is to be ignored."""
    snapshot, fresh = _snapshot_and_fresh(storage, table)
    return ([snapshot_key(table)] if snapshot.height else []) + fresh
