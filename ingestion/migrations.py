"""Changes of the staged schema, applied in place to a lake written by an earlier version.

The staged zone is re-derivable from ``raw/`` but re-parsing years of deliveries is a night's
work; a rename is not. Each migration rewrites only the staged files that still have the old
form (a file already migrated, or written by this version, is left byte for byte), one file at a
time and atomically (a reader sees the old file or the new one), so it can be stopped and run
again. ``citylake lake migrate`` runs them under the nightly lock.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow.parquet as pq

from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage
from ingestion.standards.tides import TRIP_COLUMNS, trip_id_once


@dataclass(frozen=True)
class Migrated:
    """What a migration did: files looked at, and files rewritten."""

    seen: int
    rewritten: tuple[str, ...]


def _staged_parquet(storage: LakeStorage) -> Iterator[str]:
    for info in storage.list(key(Zone.STAGED)):
        if info.key.endswith(".parquet"):
            yield info.key


def migrate_staged(storage: LakeStorage) -> Migrated:
    """2026-12: the trip is ``trip_id`` from contract to mart. Staged files written before name it
    ``trip_id_performed`` (and, beside it with the same value, ``trip_id_scheduled``): rename it
    in every file that still has them (:func:`~ingestion.standards.tides.trip_id_once`)."""
    seen, rewritten = 0, []
    for k in _staged_parquet(storage):
        seen += 1
        data = storage.get_bytes(k)
        names = pq.read_schema(io.BytesIO(data)).names
        if not any(c in names for c in TRIP_COLUMNS):
            continue
        migrated = io.BytesIO()
        trip_id_once(pl.read_parquet(io.BytesIO(data))).write_parquet(migrated, compression="zstd")
        storage.put_bytes(k, migrated.getvalue(), overwrite=True)  # atomic, as every lake write
        rewritten.append(k)
    return Migrated(seen=seen, rewritten=tuple(rewritten))
