"""The night's ingestion cut into partitions that any Airflow worker can run.

Every partition lands, parses and stages the feeds of one operator that feed one publication
group, for one service date. Partitions touch disjoint files and manifest records, so they run side
by side on as many workers as the executor has. Reference feeds (the registers: GTFS, fleet,
car parks; ``reference: true`` in their extract contracts) are ingested first, one partition per
(operator × group), because dated feeds are checked against them, exactly as a single
``citylake ingest`` does. The *sweep* (:func:`citylake.night.steps.ingest_all`) then runs the
plain, idempotent ingestion: it finds nothing to do unless a partition failed.

The dbt build is partitioned by group too: :func:`citylake.build.groups.build_selections`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from ingestion import manifest, registry
from ingestion.connectors import open_drop
from ingestion.contracts import contract
from ingestion.feeds import date_from_name


@dataclass(frozen=True)
class IngestPartition:
    operator: str
    group: str
    service_date: str | None  # None: references, or files that cover several dates
    feeds: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "group": self.group,
            "service_date": self.service_date,
            "feeds": list(self.feeds),
        }


def plan_partitions(
    settings: Settings, storage: LakeStorage, as_of: datetime | None = None, config: dict | None = None
) -> dict[str, list]:
    """Return the partitions of files not yet landed: ``references``, ``dated``, and the ``dates`` they carry."""
    config = config or registry.operators()
    deliveries = manifest.load(storage, "deliveries")
    references: dict[tuple[str, str], list[str]] = {}
    dated: dict[tuple[str, str, str | None], set[str]] = {}
    dates: set[str] = set()
    for operator, spec in config.items():
        for feed in spec["feeds"]:
            c = contract(operator, feed)
            mine = deliveries.filter((pl.col("operator") == operator) & (pl.col("feed") == feed))
            seen = {(n, d, s) for n, d, s in mine.select("original_name", "delivered_at", "size_bytes").iter_rows()}
            try:
                files = open_drop(settings, spec["drop"], feed).list()
            except Exception:  # noqa: BLE001 - an unreadable drop is the sweep's to report, with the feed named
                continue
            for f in files:
                if as_of is not None and f.delivered_at > as_of:
                    continue
                if (f.name, f.delivered_at.replace(microsecond=0), f.size) in seen:
                    continue
                day = date_from_name(c, f.name)
                if c.reference:
                    feeds = references.setdefault((operator, c.group), [])
                    if feed not in feeds:
                        feeds.append(feed)  # in the configuration's order
                else:
                    dated.setdefault((operator, c.group, day.isoformat() if day else None), set()).add(feed)
                if day:
                    dates.add(day.isoformat())
    refs = [IngestPartition(o, g, None, tuple(fs)).as_dict() for (o, g), fs in sorted(references.items())]
    parts = [
        IngestPartition(o, g, d, tuple(sorted(fs))).as_dict()
        for (o, g, d), fs in sorted(dated.items(), key=lambda kv: (kv[0][2] or "", kv[0][0], kv[0][1]))
    ]
    return {"references": refs, "dated": parts, "dates": sorted(dates)}
