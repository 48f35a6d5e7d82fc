"""The night in-process: ingest, build the changed dates, audit, publish, report, notify.

``citylake run`` calls :func:`run_night`; the Airflow DAG calls the same steps one task each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from citylake.build import build, staged_dates, warehouse_path
from citylake.lock import lake_lock
from citylake.settings import Settings
from citylake.storage import LakeStorage, open_storage
from ingestion import manifest
from ingestion.run import IngestReport, ingest, new_run_id
from quality.gate import GateResult, run_gate
from quality.notify import notify

log = logging.getLogger("citylake.night")


@dataclass
class NightResult:
    run_id: str
    service_dates: list[date] = field(default_factory=list)
    ingest: IngestReport | None = None
    build_ok: bool = False
    gate: GateResult | None = None
    notified: list[str] = field(default_factory=list)
    contract_reports: list[str] = field(default_factory=list)
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.gate and self.gate.all_published and self.build_ok and not self.report_error
                    and (self.ingest is None or self.ingest.ok))


def changed_dates(report: IngestReport) -> set[date]:
    """Return the service dates whose staged partitions this ingestion rewrote."""
    out = set()
    for f in report.feeds:
        for k in f.staged:
            for part in k.split("/"):
                if part.startswith("service_date="):
                    out.add(date.fromisoformat(part.split("=", 1)[1]))
    return out


def staged_inputs(storage: LakeStorage) -> list[str]:
    """Return the sha256 of every delivery currently staged (the publication's inputs)."""
    steps = manifest.load(storage, "steps")
    return sorted(set(steps.filter(steps["step"] == "staged")["sha256"].drop_nulls().to_list()))


def run_night(settings: Settings, *, service_date: date | None = None, as_of: datetime | None = None,
              full_refresh: bool = False, skip_ingest: bool = False) -> NightResult:
    """Run the whole night; publish every group that passes its checks."""
    storage = open_storage(settings)
    run_id = new_run_id()
    result = NightResult(run_id)
    with lake_lock(storage, "nightly", owner=run_id):
        dates: set[date] = set()
        if not skip_ingest:
            result.ingest = ingest(settings, as_of=as_of)
            dates |= changed_dates(result.ingest)
        if service_date:
            dates.add(service_date)
        # a first build, or a full refresh, covers every staged date
        first_build = not warehouse_path(settings).exists()
        all_dates = staged_dates(storage)
        build_dates = [] if (full_refresh or first_build) else sorted(dates)
        result.service_dates = sorted(dates) if build_dates else all_dates
        built = build(settings, service_dates=build_dates, full_refresh=full_refresh, storage=storage,
                      extra_vars={"publication_id": run_id})
        result.build_ok = built.success
        result.gate = run_gate(storage, built.warehouse, run_id, result.service_dates, built.results,
                               inputs=staged_inputs(storage))
        result.contract_reports, result.report_error = month_to_date_reports(
            settings, storage, result.gate.published_groups, result.service_dates)
        if not result.ok:
            event = {
                "run_id": run_id,
                "published": result.gate.published_groups,
                "refused": result.gate.refused_groups,
                "ingest_errors": [e for f in (result.ingest.feeds if result.ingest else []) for e in f.errors],
                "report": storage.url(result.gate.report_key) if result.gate.report_key else None,
                "contract_report_error": result.report_error,
            }
            result.notified = notify("citylake night with failures", event)
    return result


def month_to_date_reports(settings: Settings, storage: LakeStorage, published: list[str],
                          service_dates: list[date]) -> tuple[list[str], str | None]:
    """Write the month-to-date contract reports; a failure is returned, never raised (the publication stands)."""
    from citylake.report import write_month_to_date

    try:
        return write_month_to_date(settings, storage, published, service_dates), None
    except Exception as exc:  # noqa: BLE001 - reported and notified, the night's publication is already final
        log.exception("contract reports not written")
        return [], f"contract reports not written: {type(exc).__name__}: {exc}"
