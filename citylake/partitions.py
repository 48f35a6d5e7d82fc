"""The nightly refresh's heavy work, cut into partitions that any Airflow worker can run.

Ingestion is partitioned by (service date × operator × dependency group): every partition lands,
parses and stages the feeds of one operator that feed one group (transit, parking, maintenance),
for one service date. Partitions touch disjoint files and manifest records, so they run side by
side on as many workers as the executor has. Reference feeds (GTFS, fleet register, car-park
register) are ingested first, one partition per (operator × group), because dated feeds are
checked against them, exactly as a single ``citylake ingest`` does. A final *sweep* runs the
plain, idempotent ingestion over everything: it finds nothing to do unless a partition failed
(it then retries that work once and reports what still fails), so the partitioned night stages
exactly what the single-process night stages.

The dbt build is partitioned by dependency group: each group's dbt nodes (its marts, their
upstream models and seeds, and the tests whose parents are all built by then) are computed from
dbt's manifest, so the four invocations together run every node exactly once. They share one
DuckDB warehouse file, and DuckDB admits one writer: the group builds are separate tasks that
any worker can run, one at a time (``max_active_tis_per_dagrun=1``), with the three independent
groups first and ``contract`` last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

#: The dependency group each feed feeds (quality.suites.GROUPS without ``contract``).
FEED_GROUP = {
    "gtfs": "transit", "ticketing": "transit", "avl": "transit", "trips": "transit", "apc": "transit",
    "fleet": "maintenance", "maintenance": "maintenance",
    "facilities": "parking", "occupancy": "parking",
}
#: Feeds other feeds are checked against: ingested before any dated partition.
REFERENCE_FEEDS = ("gtfs", "fleet", "facilities")
#: Build order of the dbt groups; the last one depends on the others.
BUILD_GROUPS = ("transit", "parking", "maintenance", "contract")


@dataclass(frozen=True)
class IngestPartition:
    operator: str
    group: str
    service_date: str | None  # None: references, or files that cover several dates
    feeds: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "group": self.group, "service_date": self.service_date, "feeds": list(self.feeds)}


def plan_ingest(as_of: datetime | None = None, config: dict | None = None) -> dict[str, list]:
    """Return the night's ingestion partitions: ``references`` first, then ``dated``, and ``dates``.

    Only files not yet landed make a partition; ``dates`` are the service dates they carry."""
    import polars as pl

    from citylake.settings import Settings
    from citylake.storage import open_storage
    from ingestion import manifest
    from ingestion.connectors import open_drop
    from ingestion.contracts import contract
    from ingestion.feeds import date_from_name
    from ingestion.run import load_config

    settings = Settings()
    storage = open_storage(settings)
    config = config or load_config()
    deliveries = manifest.load(storage, "deliveries")
    references: dict[tuple[str, str], set[str]] = {}
    dated: dict[tuple[str, str, str | None], set[str]] = {}
    dates: set[str] = set()
    for operator, spec in config.items():
        for feed in spec["feeds"]:
            c = contract(operator, feed)
            group = FEED_GROUP[feed]
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
                if feed in REFERENCE_FEEDS:
                    references.setdefault((operator, group), set()).add(feed)
                else:
                    dated.setdefault((operator, group, day.isoformat() if day else None), set()).add(feed)
                if day:
                    dates.add(day.isoformat())
    order = {f: i for i, f in enumerate(REFERENCE_FEEDS)}
    refs = [IngestPartition(o, g, None, tuple(sorted(fs, key=order.__getitem__))).as_dict()
            for (o, g), fs in sorted(references.items())]
    parts = [IngestPartition(o, g, d, tuple(sorted(fs))).as_dict()
             for (o, g, d), fs in sorted(dated.items(), key=lambda kv: (kv[0][2] or "", kv[0][0], kv[0][1]))]
    return {"references": refs, "dated": parts, "dates": sorted(dates)}


def ingest_partition(partition: dict[str, Any], as_of: datetime | None = None) -> dict[str, Any]:
    """Ingest one partition; a feed's error raises (transient: worth a retry, the sweep runs anyway)."""
    from citylake.errors import TransientError
    from citylake.nightly import changed_dates
    from citylake.settings import Settings
    from ingestion.run import ingest

    day = date.fromisoformat(partition["service_date"]) if partition["service_date"] else None
    settings = Settings()
    staged: set[date] = set()
    errors: list[str] = []
    for feed in partition["feeds"]:
        report = ingest(settings, operator=partition["operator"], feed=feed, service_date=day, as_of=as_of)
        staged |= changed_dates(report)
        errors += [f"{f.operator}/{f.feed}: {e}" for f in report.feeds for e in f.errors]
    if errors:
        raise TransientError("; ".join(errors))
    return {**partition, "changed_dates": sorted(d.isoformat() for d in staged)}


def sweep_ingest(as_of: datetime | None = None) -> dict[str, Any]:
    """The plain ingestion over every feed: stages what the partitions left (nothing when all went well)."""
    from citylake.orchestration import ingest_all

    return ingest_all(as_of=as_of)


# -- dbt -------------------------------------------------------------------------------------

def _manifest() -> dict:
    from citylake.build import DBT_PROJECT, run_dbt
    from citylake.settings import Settings

    path = DBT_PROJECT / "target" / "manifest.json"
    run_dbt(["parse"], Settings())
    return json.loads(path.read_text())


def build_selections(manifest: dict | None = None) -> dict[str, list[str]]:
    """Return, per dbt group, the names to ``--select`` so that the groups together build every node once.

    A group owns its marts (quality.suites.GROUP_MARTS) and every upstream node no earlier group
    owns; a test or unit test belongs to the latest group among its parents; what no mart needs
    goes to the last group."""
    from quality.suites import GROUP_MARTS

    manifest = manifest or _manifest()
    nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}
    parents = {uid: [p for p in (n.get("depends_on") or {}).get("nodes", []) if p in nodes] for uid, n in nodes.items()}
    by_name = {n["name"]: uid for uid, n in nodes.items() if n["resource_type"] in ("model", "seed", "snapshot")}
    owner: dict[str, str] = {}

    def claim(uid: str, group: str) -> None:
        stack = [uid]
        while stack:
            u = stack.pop()
            if u in owner:
                continue
            owner[u] = group
            stack += parents[u]

    for group in BUILD_GROUPS:
        for mart in GROUP_MARTS[group]:
            if mart not in by_name:
                raise ValueError(f"quality.suites.GROUP_MARTS names {mart!r}, which dbt does not know")
            claim(by_name[mart], group)
    rank = {g: i for i, g in enumerate(BUILD_GROUPS)}
    for uid, n in nodes.items():
        if n["resource_type"] in ("test", "unit_test"):
            groups = [owner.get(p, BUILD_GROUPS[-1]) for p in parents[uid]] or [BUILD_GROUPS[-1]]
            owner[uid] = max(groups, key=rank.__getitem__)
        elif uid not in owner:
            owner[uid] = BUILD_GROUPS[-1]
    out: dict[str, list[str]] = {g: [] for g in BUILD_GROUPS}
    for uid in sorted(owner):
        n = nodes[uid]
        out[owner[uid]].append(f"unit_test:{n['name']}" if n["resource_type"] == "unit_test" else n["name"])
    return out


def plan_build(dates: list[str], warehouse: Path | None = None) -> dict[str, Any]:
    """Decide once, before any group builds, whether the night is a first (full) build, and what to select."""
    from citylake.build import warehouse_path
    from citylake.settings import Settings

    first = not (warehouse or warehouse_path(Settings())).exists()
    return {"first_build": first, "dates": sorted(set(dates)), "selections": build_selections()}


def build_group(plan: dict[str, Any], group: str, publication_id: str = "set-by-the-gate") -> dict[str, Any]:
    """dbt build of one group's nodes for the planned dates (every staged date on a first build)."""
    from citylake.build import build, staged_dates
    from citylake.settings import Settings
    from citylake.storage import open_storage

    settings = Settings()
    storage = open_storage(settings)
    wanted = [] if plan["first_build"] else [date.fromisoformat(d) for d in plan["dates"]]
    result = build(settings, service_dates=wanted, select=" ".join(plan["selections"][group]), storage=storage,
                   extra_vars={"publication_id": publication_id}, indirect_selection="empty")
    built = [d.isoformat() for d in (wanted or staged_dates(storage))]
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    notable = [r for r in result.results if r["status"] not in ("success", "pass")]
    return {"group": group, "success": result.success, "warehouse": str(result.warehouse), "service_dates": built,
            "counts": counts, "results": notable, "nodes": len(result.results)}


def merge_builds(builds: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the group builds into what the gate takes (the shape of a single build)."""
    builds = [b for b in builds if b]
    if not builds:
        raise ValueError("no group build to audit")
    counts: dict[str, int] = {}
    for b in builds:
        for k, v in b["counts"].items():
            counts[k] = counts.get(k, 0) + v
    return {"success": all(b["success"] for b in builds), "warehouse": builds[0]["warehouse"],
            "service_dates": sorted({d for b in builds for d in b["service_dates"]}), "counts": counts,
            "results": [r for b in builds for r in b["results"]], "groups": [b["group"] for b in builds]}
