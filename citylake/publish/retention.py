"""How long a publication stays reproducible, and the vacuum that honours it.

A publication is kept (every table version its pointer names stays readable) when it is

* younger than ``Settings.publication_retention_days`` (default 15 years: a 10-year contract
  plus the 5-year limitation period of a contractual claim, Code civil art. 2224), or
* named by a contract report (``reports/contract/…/<publication_id>.html``, or either side of a
  comparison's ``<now>__vs__<then>.html``): a figure behind a
  bonus or a penalty is reproducible for as long as the report exists, or
* the one in force (``CURRENT.json``).

``citylake vacuum`` deletes, table by table, the data files that no kept version reads (Delta
``vacuum`` with ``keep_versions``); commit logs are never deleted, so the registry stays complete.
Versions no publication names (a night killed between its commits and the pointer switch) go
first. Each vacuum leaves a record, ``control/vacuum/<run_id>.json``. It runs under the nightly
lock: never while a night publishes.

The docs page of a publication (``reports/docs/<publication_id>/index.html``, dbt's docs site,
~2.7 MB, about 1 GB a year at a publication a night) describes the code, not the data: the same
vacuum deletes it once it is older than ``Settings.docs_retention_days`` (default 92), unless its
publication is in force for a group or is the newest publication of its code version, so the docs
of every code version that published stay, among them those of the code behind any contract
report. (Being named by a contract report does not keep a docs page: every night writes the
month-to-date reports, so every publication is named by one.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citylake.core.lake import Zone, key
from citylake.core.lock import lake_lock
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from citylake.publish.docs_site import DOCS_PREFIX
from citylake.publish.gate import crash_point
from citylake.publish.reader import current, mart_entries, registry
from citylake.publish.tables import vacuum_table

LOCK = "nightly"


def kept_publications(storage: LakeStorage, settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """Return publication id -> why it is kept."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=settings.publication_retention_days)).isoformat()
    reported = {  # a comparison's report (<now>__vs__<then>) names both publications
        pid
        for i in storage.list(key(Zone.REPORTS, "contract"))
        if i.key.endswith((".html", ".pdf"))
        for pid in i.key.rsplit("/", 1)[-1].rsplit(".", 1)[0].split("__vs__")
    }
    kept = {}
    for record in registry(storage):
        pid = record["publication_id"]
        if record["created_at"] >= cutoff:
            kept[pid] = f"younger than {settings.publication_retention_days} days"
        elif pid in reported:
            kept[pid] = "named by a contract report"
    return kept


def _docs_publication(page_key: str) -> str:
    return page_key.removeprefix(DOCS_PREFIX).split("/", 1)[0]


def kept_docs(storage: LakeStorage, settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """Return publication id -> why its docs page is kept (see the module's docstring)."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=settings.docs_retention_days)).isoformat()
    in_force = {g["publication_id"] for g in current(storage).get("groups", {}).values()}
    records = registry(storage)
    pages = {_docs_publication(i.key) for i in storage.list(DOCS_PREFIX)}  # one listing, not a HEAD per record
    newest_of_code: dict[str, str] = {}  # code version -> its newest publication that wrote a docs page
    for record in records:  # oldest first
        if record["publication_id"] in pages:
            newest_of_code[record.get("code_version", "")] = record["publication_id"]
    newest = set(newest_of_code.values())
    kept = {}
    for record in records:
        pid = record["publication_id"]
        if pid in in_force:
            kept[pid] = "in force"
        elif record["created_at"] >= cutoff:
            kept[pid] = f"younger than {settings.docs_retention_days} days"
        elif pid in newest:
            kept[pid] = f"the newest of code version {record.get('code_version')}"
    return kept


def _vacuum_docs(storage: LakeStorage, kept: dict[str, str], *, dry_run: bool) -> list[str]:
    """Delete the docs pages of the publications not kept; return their keys."""
    gone = []
    for item in storage.list(DOCS_PREFIX):
        if _docs_publication(item.key) not in kept:
            gone.append(item.key)
            if not dry_run:
                storage.delete(item.key)
    return sorted(gone)


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
        docs_kept = kept_docs(storage, settings, now)
        docs_removed = _vacuum_docs(storage, docs_kept, dry_run=dry_run)
        done = {
            "kept_publications": kept,
            "tables": len(tables),
            "removed": removed,
            "docs_kept": docs_kept,
            "docs_removed": docs_removed,
            "dry_run": dry_run,
        }
        if not dry_run:  # what went, and why the rest stayed: a record per vacuum
            storage.put_json(key(Zone.CONTROL, "vacuum", filename=f"{owner}.json"), done)
        return done
