"""How long a publication stays reproducible, and the vacuum that honours it.

A publication is kept (every table version its pointer names stays readable) when it is

* younger than ``Settings.publication_retention_days`` (default 15 years: a 10-year contract
  plus the 5-year limitation period of a contractual claim, Code civil art. 2224), or
* named by a contract report (``reports/contract/…/<publication_id>.html``): a figure behind a
  bonus or a penalty is reproducible for as long as the report exists, or
* the one in force (``CURRENT.json``).

``citylake vacuum`` deletes, table by table, the data files that no kept version reads (Delta
``vacuum`` with ``keep_versions``); commit logs are never deleted, so the registry stays complete.
Versions no publication names (a night killed between its commits and the pointer switch) go
first. Each vacuum leaves a record, ``control/vacuum/<run_id>.json``. It runs under the nightly
lock: never while a night publishes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citylake.core.lock import lake_lock
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from citylake.publish.gate import crash_point
from citylake.publish.reader import current, mart_entries, registry
from citylake.publish.tables import vacuum_table

LOCK = "nightly"


def kept_publications(storage: LakeStorage, settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """Return publication id -> why it is kept."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=settings.publication_retention_days)).isoformat()
    reported = {
        i.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for i in storage.list("reports/contract/")
        if i.key.endswith((".html", ".pdf"))
    }
    kept = {}
    for record in registry(storage):
        pid = record["publication_id"]
        if record["created_at"] >= cutoff:
            kept[pid] = f"younger than {settings.publication_retention_days} days"
        elif pid in reported:
            kept[pid] = "named by a contract report"
    return kept


def vacuum_published(
    settings: Settings, storage: LakeStorage, *, dry_run: bool, owner: str, now: datetime | None = None
) -> dict:
    """Delete the files of published tables that no kept publication reads; return what went."""
    with lake_lock(storage, LOCK, owner=owner):
        kept = kept_publications(storage, settings, now)
        records = registry(storage)
        tables = sorted(
            {e["table"] for r in records for e in mart_entries(r["current_after"]).values() if isinstance(e, dict)}
        )
        versions: dict[str, set[int]] = {t: set() for t in tables}
        pointers = [r["current_after"] for r in records if r["publication_id"] in kept]
        for pointer in [*pointers, current(storage)]:
            for entry in mart_entries(pointer).values():
                if isinstance(entry, dict):
                    versions[entry["table"]].add(int(entry["version"]))
        removed: dict[str, list[str]] = {}
        for i, table in enumerate(tables):
            removed[table] = vacuum_table(settings, storage, table, sorted(versions[table]), dry_run=dry_run)
            if i == 0 and not dry_run:
                crash_point("vacuum")
        done = {"kept_publications": kept, "tables": len(tables), "removed": removed, "dry_run": dry_run}
        if not dry_run:  # what went, and why the rest stayed: a record per vacuum
            storage.put_json(f"control/vacuum/{owner}.json", done)
        return done
