"""The steps the Airflow DAGs call, one function each, returning what the next step needs.

DAG files only wire these; everything also runs from the CLI (``citylake run`` chains the same
steps in-process). Errors keep their two kinds: a :class:`~citylake.errors.TransientError` is
worth Airflow's retries; anything else (bad configuration, a refused publication) is raised as a
failure that retrying would not fix (:func:`no_retry` turns it into Airflow's fail exception).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

from citylake.errors import CitylakeError, TransientError

log = logging.getLogger("citylake.orchestration")


def no_retry(fn: Callable) -> Callable:
    """Re-raise non-transient citylake errors as AirflowFailException (fail now, no retry)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TransientError:
            raise
        except CitylakeError as exc:
            from airflow.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    return wrapper


def service_date_of(logical_date: datetime, tz: str = "Europe/Paris") -> date:
    """Return the service date a night works on: the local day before its logical date."""
    return (logical_date.astimezone(ZoneInfo(tz)) - timedelta(days=1)).date()


def delivery_present(operator: str, feed: str, service_date: date) -> bool:
    """Return True when the feed's drop holds a file for the service date (sensor poke)."""
    from citylake.settings import Settings
    from ingestion.connectors import open_drop
    from ingestion.contracts import contract
    from ingestion.feeds import date_from_name
    from ingestion.run import load_config

    spec = load_config()[operator]
    c = contract(operator, feed)
    return any(date_from_name(c, f.name) == service_date for f in open_drop(Settings(), spec["drop"], feed).list())


def ingest_feed(operator: str, feed: str, service_date: date | None, as_of: datetime | None = None) -> dict[str, Any]:
    """Land, parse and stage one operator feed; return a summary (the feed's errors raise)."""
    from citylake.settings import Settings
    from ingestion.run import ingest

    report = ingest(Settings(), operator=operator, feed=feed, service_date=service_date, as_of=as_of)
    f = report.feeds[0]
    if f.errors:
        raise TransientError(f"{operator}/{feed}: " + "; ".join(f.errors))
    return {"operator": operator, "feed": feed, "landed": f.landed, "parsed": f.parsed, "staged": f.staged,
            "quarantined": f.quarantined, "rows_invalid": f.rows_invalid}


def ingest_all(as_of: datetime | None = None) -> dict[str, Any]:
    """Ingest every operator feed (idempotent); return the changed service dates and the errors."""
    from citylake.nightly import changed_dates
    from citylake.settings import Settings
    from ingestion.run import ingest

    report = ingest(Settings(), as_of=as_of)
    return {
        "changed_dates": sorted(d.isoformat() for d in changed_dates(report)),
        "errors": [f"{f.operator}/{f.feed}: {e}" for f in report.feeds for e in f.errors],
        "lines": report.lines(),
    }


def build_marts(dates: list[str], publication_id: str, full_refresh: bool = False) -> dict[str, Any]:
    """dbt build of the changed dates (every staged date on a first build); return the node results."""
    from citylake.build import build, staged_dates, warehouse_path
    from citylake.settings import Settings
    from citylake.storage import open_storage

    settings = Settings()
    storage = open_storage(settings)
    first = not warehouse_path(settings).exists()
    wanted = [] if (full_refresh or first) else sorted(date.fromisoformat(d) for d in dates)
    result = build(settings, service_dates=wanted, full_refresh=full_refresh, storage=storage,
                   extra_vars={"publication_id": publication_id})
    built = [d.isoformat() for d in (wanted or staged_dates(storage))]
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    # the gate needs what failed or warned; the rest is counted
    notable = [r for r in result.results if r["status"] not in ("success", "pass")]
    return {"success": result.success, "warehouse": str(result.warehouse), "service_dates": built,
            "counts": counts, "results": notable}


def audit_and_publish(run_id: str, build: dict[str, Any]) -> dict[str, Any]:
    """Run the gate on the candidate warehouse; publish every group that passes.

    Holds the lake's ``nightly`` lock, as ``citylake run`` does: two publications never interleave
    (a held lock is transient: Airflow retries the task with backoff)."""
    from pathlib import Path

    from citylake.lock import lake_lock
    from citylake.nightly import month_to_date_reports, staged_inputs
    from citylake.settings import Settings
    from citylake.storage import open_storage
    from quality.gate import run_gate

    settings = Settings()
    storage = open_storage(settings)
    dates = [date.fromisoformat(d) for d in build["service_dates"]]
    with lake_lock(storage, "nightly", owner=run_id):
        gate = run_gate(storage, Path(build["warehouse"]), run_id, dates, build["results"], inputs=staged_inputs(storage))
        reports, report_error = month_to_date_reports(settings, storage, gate.published_groups, dates)
    return {"run_id": run_id, "publication_id": gate.publication_id, "published": gate.published_groups,
            "refused": gate.refused_groups, "warnings": gate.warnings,
            "report": storage.url(gate.report_key) if gate.report_key else None,
            "contract_reports": [storage.url(k) for k in reports], "contract_report_error": report_error}


def notify_outcome(ingested: dict[str, Any], published: dict[str, Any]) -> list[str]:
    """Notify when a feed failed or a group was refused; return the channels used (nothing when all is well)."""
    from quality.notify import notify

    if not ingested.get("errors") and not published.get("refused") and not published.get("contract_report_error"):
        return []
    return notify("citylake night with failures", {"ingest_errors": ingested.get("errors"), **published})


def failure_callback(context: dict) -> None:
    """Airflow on_failure_callback: a task failed after its retries."""
    from quality.notify import notify

    ti = context.get("task_instance")
    notify("citylake task failed", {
        "dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id"), "exception": str(context.get("exception")),
    })
