"""The night, once: ingest what operators delivered, build the marts, audit, publish, report, notify.

Every caller runs these same functions: ``citylake run`` and ``citylake publish`` (in-process,
:func:`run_night`), the Airflow DAGs (one task per step, with ingestion and the dbt build cut into
partitions any worker can run), the demo and the benchmarks.

1. :func:`plan_ingest` lists the files not yet landed, as partitions of
   (service date × operator × publication group), references first;
   :func:`ingest_partition` lands, parses and stages one; :func:`ingest_all` is the plain,
   idempotent ingestion of everything (the DAG's *sweep*, and the whole of it in-process);
2. :func:`plan_build` decides, once, whether the night is a first (full) build and what each
   group selects; :func:`build_marts` runs dbt for one group, or for all at once;
3. :func:`audit_and_publish` runs the quality suites and the gate under the lake's lock, then
   writes the month-to-date contract reports;
4. :func:`notify_outcome` tells people when a feed failed or a group was refused.

Errors keep their type: a feed's transient fault raises :class:`TransientError` (retried), a
configuration fault :class:`ConfigError` (fails at once, saying what to fix).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from citylake.build.dbt import build, staged_dates, warehouse_path
from citylake.core.errors import ConfigError, TransientError
from citylake.core.lock import lake_lock, renew_lock
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, open_storage
from citylake.night import batches
from citylake.night.notify import notify
from citylake.publish.gate import GateResult, read_pending, run_gate
from ingestion import manifest, registry
from ingestion.run import IngestReport, ingest, new_run_id

log = logging.getLogger("citylake.night")
LOCK = "nightly"
#: Told each step of an in-process night as it starts (``citylake run``'s progress display).
Progress = Callable[[str], None]


def _silent(step: str) -> None:
    log.info("step: %s", step)


# -- 1. ingestion -----------------------------------------------------------------------------


def changed_dates(report: IngestReport) -> set[date]:
    """Return the service dates whose staged partitions this ingestion rewrote."""
    out = set()
    for f in report.feeds:
        for k in f.staged:
            for part in k.split("/"):
                if part.startswith("service_date="):
                    out.add(date.fromisoformat(part.split("=", 1)[1]))
    return out


def raise_for_feeds(report: IngestReport) -> None:
    """Raise the feeds' errors with their kind: configuration and internal ones first (never
    retried: a contract or a file no rule foresaw does not mend itself), else transient."""
    if config := report.errors("config") + report.errors("internal"):
        raise ConfigError("; ".join(config))
    if errors := report.errors():
        raise TransientError("; ".join(errors))


def plan_ingest(settings: Settings, as_of: datetime | None = None) -> dict[str, list]:
    """Return the night's ingestion partitions: ``references`` first, then ``dated``, and ``dates``."""
    from citylake.night.partitions import plan_partitions

    return plan_partitions(settings, open_storage(settings), as_of)


def ingest_partition(settings: Settings, partition: dict[str, Any], as_of: datetime | None = None) -> dict[str, Any]:
    """Ingest one partition; a feed's error raises with its kind (the sweep runs anyway)."""
    day = date.fromisoformat(partition["service_date"]) if partition["service_date"] else None
    staged: set[date] = set()
    quarantined: list[str] = []
    for feed in partition["feeds"]:
        report = ingest(settings, operator=partition["operator"], feed=feed, service_date=day, as_of=as_of)
        staged |= changed_dates(report)
        quarantined += [f"{f.operator}/{f.feed}: {q}" for f in report.feeds for q in f.quarantined]
        raise_for_feeds(report)
    return {**partition, "changed_dates": sorted(d.isoformat() for d in staged), "quarantined": quarantined}


def ingest_feed(
    settings: Settings, operator: str, feed: str, service_date: date | None, as_of: datetime | None = None
) -> dict[str, Any]:
    """Land, parse and stage one operator feed; return a summary (the feed's errors raise)."""
    report = ingest(settings, operator=operator, feed=feed, service_date=service_date, as_of=as_of)
    raise_for_feeds(report)
    f = report.feeds[0]
    return {
        "operator": operator,
        "feed": feed,
        "landed": f.landed,
        "parsed": f.parsed,
        "staged": f.staged,
        "quarantined": f.quarantined,
        "rows_invalid": f.rows_invalid,
    }


def ingest_all(settings: Settings, as_of: datetime | None = None) -> dict[str, Any]:
    """Ingest every operator feed (idempotent); return the changed service dates and the errors.

    A feed's failure never stops the others: its errors are returned (and notified), not raised,
    so the rest of the night goes on."""
    report = ingest(settings, as_of=as_of)
    return {
        "changed_dates": sorted(d.isoformat() for d in changed_dates(report)),
        "errors": report.errors(),
        "quarantined": [f"{f.operator}/{f.feed}: {q}" for f in report.feeds for q in f.quarantined],
        "lines": report.lines(),
        "report": report,
    }


def delivery_present(settings: Settings, operator: str, feed: str, service_date: date) -> bool:
    """Return True when the feed's drop holds a file for the service date (sensor poke)."""
    from ingestion.connectors import open_drop
    from ingestion.contracts import contract
    from ingestion.feeds import date_from_name

    spec = registry.operators()[operator]
    c = contract(operator, feed)
    return any(date_from_name(c, f.name) == service_date for f in open_drop(settings, spec["drop"], feed).list())


def staged_inputs(storage: LakeStorage, dates: list[date] | None = None) -> list[str]:
    """Return the sha256 of the deliveries staged for these service dates (every date: None).

    A publication records the inputs of the dates it rebuilt; the inputs of other dates are in the
    records of the publications that rebuilt them, so a record stays the size of its night."""
    import polars as pl

    steps = manifest.load(storage, "steps")
    staged = steps.filter(pl.col("step") == "staged")
    if dates is not None:
        staged = staged.filter(pl.col("partition_date").is_in(dates) | pl.col("partition_date").is_null())
    return sorted(set(staged["sha256"].drop_nulls().to_list()))


# -- 2. build ---------------------------------------------------------------------------------


def plan_build(
    settings: Settings,
    dates: list[str],
    *,
    full_refresh: bool = False,
    warehouse: Path | None = None,
    selections: bool = True,
) -> dict[str, Any]:
    """Decide once, before anything builds, whether the night is a full build, and what each group selects.

    A first build (no warehouse yet) or a full refresh covers every staged date."""
    from citylake.build.groups import build_selections, load_manifest

    storage = open_storage(settings)
    first = not (warehouse or warehouse_path(settings)).exists()
    # a refused or crashed night's dates are rebuilt with this night's, and published with them
    pending = {d for group_dates in read_pending(storage).values() for d in group_dates}
    every = sorted(set(dates) | pending)
    plan = {
        "first_build": first or full_refresh,
        "full_refresh": full_refresh,
        "dates": every,
        "selections": build_selections(load_manifest(settings)) if selections else {},
    }
    if not plan["first_build"] and len(every) > 1:  # after missed nights: batches, as a backfill's
        plan["batches"] = _plan_batches(settings, storage, [date.fromisoformat(d) for d in every])
    return plan


def build_marts(
    settings: Settings, plan: dict[str, Any], group: str | None = None, publication_id: str = "set-by-the-gate"
) -> dict[str, Any]:
    """dbt build of one group's nodes (every node when ``group`` is None) for the planned dates;
    in the plan's batches when it has several (:func:`plan_build`), in order, stopping at the first
    that fails."""
    if len(plan.get("batches") or []) > 1:
        builds = []
        for batch in plan["batches"]:
            one = {**plan, "dates": batch, "batches": None, "batch_dates_only": True}
            builds.append(build_marts(settings, one, group, publication_id))
            if not builds[-1]["success"]:
                break
        merged = merge_builds(builds)
        return {**merged, "group": group or "all", "service_dates": plan["dates"], "batches": plan["batches"]}
    storage = open_storage(settings)
    wanted = [] if plan["first_build"] else [date.fromisoformat(d) for d in plan["dates"]]
    select = " ".join(plan["selections"][group]) if group else None
    result = build(
        settings,
        service_dates=wanted,
        full_refresh=plan.get("full_refresh", False),
        select=select,
        storage=storage,
        # rows are sorted by period only when several dates are written (see in_period_order);
        # a batch of a backfill builds its dates only, even into an empty warehouse (batches.py)
        extra_vars={
            "publication_id": publication_id,
            "several_dates": len(plan["dates"]) != 1,
            "batch_dates_only": plan.get("batch_dates_only", False),
            "first_build": plan["first_build"],
        },
        indirect_selection="empty" if group else None,
    )
    built = [d.isoformat() for d in (wanted or staged_dates(storage))]
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    notable = [r for r in result.results if r["status"] not in ("success", "pass")]  # what the gate needs
    return {
        "group": group or "all",
        "success": result.success,
        "warehouse": str(result.warehouse),
        "service_dates": built,
        "counts": counts,
        "results": notable,
        "nodes": len(result.results),
        "batches": plan.get("batches"),
    }


def merge_builds(builds: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine group builds into what the gate takes (the shape of a single build)."""
    builds = [b for b in builds if b]
    if not builds:
        raise ValueError("no group build to audit")
    counts: dict[str, int] = {}
    for b in builds:
        for k, v in b["counts"].items():
            counts[k] = counts.get(k, 0) + v
    return {
        "success": all(b["success"] for b in builds),
        "warehouse": builds[0]["warehouse"],
        "service_dates": sorted({d for b in builds for d in b["service_dates"]}),
        "counts": counts,
        "results": [r for b in builds for r in b["results"]],
        "groups": [b["group"] for b in builds],
        "batches": builds[0].get("batches"),
    }


# -- 3. audit and publish -----------------------------------------------------------------------


def month_to_date_reports(
    settings: Settings, storage: LakeStorage, published: list[str], service_dates: list[date]
) -> tuple[list[str], str | None]:
    """Write the month-to-date contract reports; a failure is returned, never raised (the publication stands)."""
    from citylake.consumers.contract_report import write_month_to_date

    try:
        return write_month_to_date(settings, storage, published, service_dates), None
    except Exception as exc:  # noqa: BLE001 - reported and notified, the night's publication is already final
        log.exception("contract reports not written")
        return [], f"contract reports not written: {type(exc).__name__}: {exc}"


def _audit_and_publish(
    settings: Settings,
    storage: LakeStorage,
    run_id: str,
    built: dict[str, Any],
    record_extra: dict | None = None,
    *,
    stage: dict | None = None,
    publish: bool = True,
    inputs: list[str] | None = None,
    scope: list[str] | None = None,
) -> tuple[GateResult, list[str], str | None, str | None]:
    """Gate, then what a publication writes besides its marts: the month-to-date contract reports
    and the docs site. Return the gate, the reports' keys, their errors (one text) and the site's key.

    ``stage``, ``publish``: one batch of several (:func:`citylake.publish.gate.run_gate`); only the
    batch that publishes writes the reports and the site."""
    dates = [date.fromisoformat(d) for d in built["service_dates"]]
    gate = run_gate(
        storage,
        Path(built["warehouse"]),
        run_id,
        dates,
        built["results"],
        inputs=staged_inputs(storage, dates) if inputs is None else inputs,
        settings=settings,
        record_extra=record_extra,
        stage=stage,
        publish=publish,
        scope=scope,
    )
    if not gate.record:  # a batch committed, not published: nothing to report yet
        return gate, [], None, None
    published_dates = [date.fromisoformat(d) for d in gate.record["service_dates"]]
    reports, error = month_to_date_reports(settings, storage, gate.published_groups, published_dates)
    docs, docs_error = docs_site(settings, storage, gate, Path(built["warehouse"]))
    return gate, reports, "; ".join(e for e in (error, docs_error) if e) or None, docs


def docs_site(
    settings: Settings, storage: LakeStorage, gate: GateResult, warehouse: Path
) -> tuple[str | None, str | None]:
    """Write the publication's documentation of the marts (dbt's docs site); a failure is
    returned, never raised (the publication stands). Nothing published: nothing written."""
    if not gate.publication_id or not settings.docs_site:
        return None, None
    from citylake.build.dbt import generate_docs
    from citylake.build.groups import group_marts, load_manifest
    from citylake.publish.docs_site import write_docs_site

    try:
        target = generate_docs(settings, storage, warehouse)
        marts = group_marts(load_manifest(settings))
        return write_docs_site(storage, target, gate.record, marts), None
    except Exception as exc:  # noqa: BLE001 - reported and notified, the night's publication is already final
        log.exception("docs site not written")
        return None, f"docs site not written: {type(exc).__name__}: {exc}"


def outcome(
    storage: LakeStorage, gate: GateResult, reports: list[str], report_error: str | None, docs: str | None = None
) -> dict[str, Any]:
    """Return what a publication did, as the DAG passes it on and notifications send it."""
    return {
        "run_id": gate.run_id,
        "publication_id": gate.publication_id,
        "published": gate.published_groups,
        "refused": gate.refused_groups,
        "warnings": gate.warnings,
        "report": storage.url(gate.report_key) if gate.report_key else None,
        "contract_reports": [storage.url(k) for k in reports],
        "contract_report_error": report_error,
        "docs_site": storage.url(docs) if docs else None,
    }


def audit_and_publish(settings: Settings, run_id: str, built: dict[str, Any]) -> dict[str, Any]:
    """Run the gate on the candidate warehouse and publish every group that passes.

    Holds the lake's lock, as :func:`run_night` does: two publications never interleave (a held
    lock is transient: Airflow retries the task with backoff)."""
    storage = open_storage(settings)
    with lake_lock(storage, LOCK, owner=run_id):
        gate, reports, error, docs = _audit_and_publish_batches(settings, storage, run_id, built)
    return outcome(storage, gate, reports, error, docs)


def _audit_and_publish_batches(
    settings: Settings, storage: LakeStorage, run_id: str, built: dict[str, Any]
) -> tuple[GateResult, list[str], str | None, str | None]:
    """The gate of builds done in batches (the DAG's night after missed nights): each batch's dates
    audited and committed in turn, published once after the last (a refused batch stops there,
    publishing what passed), as a backfill's; a build of one batch: the plain gate."""
    planned = built.get("batches") or []
    if len(planned) <= 1:
        return _audit_and_publish(settings, storage, run_id, built)
    from citylake.publish.gate import new_stage
    from citylake.publish.reader import current

    stage = new_stage(current(storage), owner=run_id)
    inputs = staged_inputs(storage, [date.fromisoformat(d) for d in built["service_dates"]])
    for i, batch in enumerate(planned):
        one = {**built, "service_dates": batch}
        done = _audit_and_publish(
            settings, storage, run_id, one, stage=stage, publish=i == len(planned) - 1, inputs=inputs
        )
        if done[0].stopped:
            break
    return done


# -- 4. notify ----------------------------------------------------------------------------------


def notify_outcome(settings: Settings, ingested: dict[str, Any], published: dict[str, Any]) -> list[str]:
    """Notify when a feed failed, a delivery was quarantined, the build or a group was refused, or a
    report failed; return the channels. The message names each feed and file."""
    failed = (
        ingested.get("errors")
        or ingested.get("quarantined")
        or published.get("refused")
        or published.get("contract_report_error")
        or published.get("build_ok") is False
    )
    if not failed:
        return []
    event = {"ingest_errors": ingested.get("errors"), "quarantined": ingested.get("quarantined"), **published}
    return notify(settings, "citylake night with failures", event)


# -- the night in one process -------------------------------------------------------------------


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
    docs_site: str | None = None  # the key of the publication's docs page
    range: tuple[date, date] | None = None  # a backfill's or a rebuild's first and last dates

    @property
    def ok(self) -> bool:
        return bool(
            self.gate
            and self.gate.all_published
            and self.build_ok
            and not self.report_error
            and (self.ingest is None or self.ingest.ok)
        )


def run_night(
    settings: Settings,
    *,
    service_date: date | None = None,
    as_of: datetime | None = None,
    full_refresh: bool = False,
    skip_ingest: bool = False,
    progress: Progress | None = None,
) -> NightResult:
    """Run the whole night in-process, under the lake's lock; publish every group that passes.

    ``progress`` is told each step as it starts (the CLI's progress display)."""
    storage = open_storage(settings)
    run_id = new_run_id()
    result = NightResult(run_id)
    progress = progress or _silent
    with lake_lock(storage, LOCK, owner=run_id):
        dates: set[str] = set()
        if not skip_ingest:
            progress("ingest: what operators delivered")
            ingested = ingest_all(settings, as_of=as_of)
            result.ingest = ingested.pop("report")
            dates |= set(ingested["changed_dates"])
        if service_date:
            dates.add(service_date.isoformat())
        _build_publish_notify(settings, storage, result, sorted(dates), full_refresh=full_refresh, progress=progress)
    return result


def _build_publish_notify(
    settings: Settings,
    storage: LakeStorage,
    result: NightResult,
    dates: list[str],
    *,
    full_refresh: bool = False,
    progress: Progress | None = None,
) -> None:
    """The in-process tail of a night: the dbt build, the gate, the reports, and a notification
    when anything failed; fills ``result``. A night that finds several days delivered (after
    missed nights) builds them in batches under the memory budget, as a backfill does
    (:mod:`citylake.night.batches`), and publishes once."""
    progress = progress or _silent
    plan = plan_build(settings, dates, full_refresh=full_refresh, selections=False)
    if plan["first_build"] or len(plan["dates"]) == 1:
        scope = "every staged date" if plan["first_build"] else "1 date"
        progress(f"build: dbt, {scope}")
        built = build_marts(settings, plan, publication_id=result.run_id)
    else:
        _build_commit_publish(settings, storage, result, plan, plan["batches"], progress)
        _notify_if_failed(settings, storage, result)
        return
    result.build_ok = built["success"]
    result.service_dates = [date.fromisoformat(d) for d in built["service_dates"]]
    progress("audit, publish, reports and docs")
    result.gate, result.contract_reports, result.report_error, result.docs_site = _audit_and_publish(
        settings, storage, result.run_id, built
    )
    _notify_if_failed(settings, storage, result)


def _notify_if_failed(settings: Settings, storage: LakeStorage, result: NightResult) -> None:
    """Tell people when a night, a backfill or a rebuild did not publish everything."""
    if not result.ok:
        published = outcome(storage, result.gate, result.contract_reports, result.report_error, result.docs_site)
        ingest_errors = result.ingest.errors() if result.ingest else []
        result.notified = notify_outcome(
            settings, {"errors": ingest_errors}, {**published, "build_ok": result.build_ok}
        )


def _plan_batches(
    settings: Settings, storage: LakeStorage, dates: list[date], *, staged_only: bool = False
) -> list[list[str]]:
    """The dates cut into batches of staged rows under the memory budget (:mod:`batches`), as ISO
    dates; ``staged_only``: leave out the dates with nothing staged."""
    rows = batches.staged_rows(storage, sorted(dates))
    if staged_only:
        dates = [d for d in dates if rows.get(d, 0) > 0]
    planned = batches.plan_batches(dates, rows, batches.rows_per_batch(batches.memory_budget(settings)))
    return [[d.isoformat() for d in b] for b in planned]


def _build_commit_publish(
    settings: Settings,
    storage: LakeStorage,
    result: NightResult,
    plan: dict[str, Any],
    planned: list[list[str]],
    progress: Progress,
    *,
    group: str | None = None,
    state: dict[str, Any] | None = None,
    after_batch: Callable[[int, dict | None], None] | None = None,
    record_extra: dict | None = None,
    publish_at_end: bool = True,
) -> None:
    """Build each planned batch not yet built (``state["built"]``), in order, with ``plan``'s other
    keys; after each, the gate audits the batch's dates and commits their periods to the Delta
    tables on top of the batches before (the stage, :func:`citylake.publish.gate.run_gate`), so
    memory follows the batch, never the range. The last batch publishes every batch at once: one
    registry record, one pointer switch, then the reports and the docs site. A batch whose build
    fails or whose audit refuses a group stops the run there: what passed so far is published,
    the refused group keeps its pointer of the batch before. ``after_batch(i, stage)`` is told
    when batch ``i`` is committed and the run goes on. ``publish_at_end`` false: the last batch
    commits too, and :func:`publish_backfill` publishes (the backfill DAG's last task)."""
    from citylake.publish.gate import new_stage
    from citylake.publish.reader import current

    # a rebuild of one group audits and publishes it and the groups that depend on it, no other
    scope = None
    if group:
        scope = [group] + [g for g, deps in registry.group_depends().items() if group in deps]
    built = set(state["built"]) if state else set()
    stage = (state or {}).get("stage") or new_stage(current(storage), owner=state["run_id"] if state else result.run_id)
    todo = [i for i in range(len(planned)) if i not in built]
    if not todo:
        raise ConfigError(f"every batch of the run is built ({batches.STATE}): nothing to resume")
    every_date = sorted({d for b in planned for d in b})
    inputs = staged_inputs(storage, [date.fromisoformat(d) for d in every_date])
    result.build_ok = True
    for i in todo:
        batch = planned[i]
        progress(f"build: batch {i + 1}/{len(planned)}, {batch[0]} to {batch[-1]} ({len(batch)} date(s))")
        one = {**plan, "dates": batch, "batches": None}  # this batch alone
        b = build_marts(settings, one, group=group, publication_id=result.run_id)
        result.build_ok = result.build_ok and b["success"]
        last = (publish_at_end and i == todo[-1]) or not b["success"]
        progress("audit, publish, reports and docs" if last else f"audit and commit batch {i + 1}/{len(planned)}")
        gate, reports, error, docs = _audit_and_publish(
            settings, storage, result.run_id, b, record_extra, stage=stage, publish=last, inputs=inputs, scope=scope
        )
        result.gate, result.contract_reports, result.report_error, result.docs_site = gate, reports, error, docs
        if last or gate.stopped:
            break
        if after_batch:
            after_batch(i, stage)
    result.service_dates = [date.fromisoformat(d) for d in (result.gate.record or {}).get("service_dates", [])]


def night_after(service_date: date, tz: str) -> datetime:
    """Return when the night that sees a service date's deliveries runs: the next day, half an
    hour after the contracts' latest D+1 deadline, in the city's time (``registry.night_time``)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from ingestion import registry

    return datetime.combine(service_date + timedelta(days=1), registry.night_time(tz), ZoneInfo(tz))


def range_dates(first: date, last: date) -> list[date]:
    """The service dates of a backfill, in order; a ConfigError when the first is after the last."""
    from datetime import timedelta

    if last < first:
        raise ConfigError(f"backfill from {first} to {last}: the first date is after the last")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def backfill(
    settings: Settings,
    first: date | None = None,
    last: date | None = None,
    progress: Progress | None = None,
    *,
    resume: bool = False,
) -> NightResult:
    """Ingest, build and publish a range of service dates, as delivered by the night after the
    last one: one ingestion per date (registers always), the dbt build in batches of dates sized
    by the rows they hold under the memory budget (:mod:`citylake.night.batches`), one audit and
    one publication when every batch is built. Its published marts equal those of the nights run
    one by one. ``resume``: go on with the backfill that was interrupted, from its first batch not
    built (its ingestion was done before its plan was recorded)."""
    storage = open_storage(settings)
    if not resume:
        batches.refuse_if_interrupted(storage)
    state = batches.unfinished(storage, "backfill") if resume else None
    if state:
        first, last = date.fromisoformat(state["first"]), date.fromisoformat(state["last"])
    if first is None or last is None:
        raise ConfigError("backfill: give --from and --to, or --resume")
    days = range_dates(first, last)
    run_id = new_run_id()  # a resumed run publishes under its own id (the record names the first)
    result = NightResult(run_id, range=(first, last))
    as_of = night_after(last, settings.timezone)
    progress = progress or _silent
    with lake_lock(storage, LOCK, owner=run_id) as held:
        if state is None:
            # a plan is recorded only once every date is ingested: a resumed run goes straight to
            # its batches (a run killed while ingesting has no plan, and is run again from the start)
            reports = []
            for i, day in enumerate(days, 1):
                progress(f"ingest: {day} ({i}/{len(days)})")
                reports.append(ingest(settings, service_date=day, as_of=as_of))
            result.ingest = IngestReport(run_id, [f for r in reports for f in r.feeds])
            changed = set().union(*(changed_dates(r) for r in reports))
            pending = {date.fromisoformat(d) for ds in read_pending(storage).values() for d in ds}
            state = _plan_state(settings, storage, "backfill", first, last, changed | set(days) | pending, run_id)
        _build_batches_and_publish(settings, storage, result, state, held, progress=progress)
    return result


def rebuild(
    settings: Settings,
    first: date | None = None,
    last: date | None = None,
    *,
    group: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> NightResult:
    """Recompute the marts of a past range from what is staged, without ingesting: after a change
    of method, of contract rule or of reference data. The same batches as a backfill, one
    publication at the end, whose registry record says it is a rebuild of that range, under which
    code and rules (``code_version``, ``rules_version``). ``group``: only that publication group's
    models. Later dates keep what they were built with: rebuild up to the last date for a change
    that reaches them (a look-back window: card history, calibration)."""
    from citylake.build.groups import build_selections, load_manifest

    storage = open_storage(settings)
    if not resume:
        batches.refuse_if_interrupted(storage)
    state = batches.unfinished(storage, "rebuild") if resume else None
    if state:
        first, last, group = date.fromisoformat(state["first"]), date.fromisoformat(state["last"]), state["group"]
    if first is None or last is None:
        raise ConfigError("rebuild: give --from and --to, or --resume")
    if last < first:
        raise ConfigError(f"rebuild from {first} to {last}: the first date is after the last")
    if not warehouse_path(settings).exists():
        raise ConfigError(
            f"rebuild: no warehouse at {warehouse_path(settings)} to rebuild into; "
            "build the history first (`citylake backfill` or `citylake build`)"
        )
    if group is not None:
        groups = build_selections(load_manifest(settings))
        if group not in groups:
            known = ", ".join(sorted(groups))
            raise ConfigError(f"rebuild --group {group}: no such publication group (groups: {known})")
    run_id = new_run_id()  # a resumed run publishes under its own id (the record names the first)
    result = NightResult(run_id, range=(first, last))
    progress = progress or _silent
    with lake_lock(storage, LOCK, owner=run_id) as held:
        if state is None:
            dates = {d for d in batches.staged_rows(storage) if first <= d <= last}
            if not dates:
                raise ConfigError(f"rebuild: nothing staged from {first} to {last}")
            state = _plan_state(settings, storage, "rebuild", first, last, dates, run_id, group=group)
        _build_batches_and_publish(settings, storage, result, state, held, progress=progress)
    return result


# -- the backfill as Airflow tasks (dags/citylake_backfill.py) ------------------------------------


def plan_backfill_ingest(settings: Settings, first: str, last: str) -> dict[str, list]:
    """A backfill's files not yet landed, as the night after its last date sees them, cut as the
    nightly DAG cuts them (:mod:`citylake.night.partitions`): the registers first (every dated
    row is checked against them, so a date's checks never depend on which worker ran first), then
    one partition per (date of the range × operator × group)."""
    from citylake.night.partitions import plan_partitions

    range_dates(date.fromisoformat(first), date.fromisoformat(last))  # a range the wrong way round: refused
    plan = plan_partitions(settings, open_storage(settings), night_after(date.fromisoformat(last), settings.timezone))
    plan["dated"] = [p for p in plan["dated"] if p["service_date"] is None or first <= p["service_date"] <= last]
    return plan


def ingest_backfill_partition(settings: Settings, partition: dict[str, Any], last: str) -> dict[str, Any]:
    """Ingest one partition of a backfill, as the night after its last date (``last``) sees the
    deliveries; a feed's error raises with its kind (the other partitions go on)."""
    return ingest_partition(settings, partition, as_of=night_after(date.fromisoformat(last), settings.timezone))


def plan_backfill(settings: Settings, first: str, last: str, ingested: list[dict[str, Any]]) -> dict[str, Any]:
    """Cut an ingested backfill's dates into batches under the memory budget and record the plan
    (:data:`batches.STATE`); refused while another backfill or rebuild is interrupted. Returns
    the plan: its run id and batches."""
    storage = open_storage(settings)
    run_id = new_run_id()
    with lake_lock(storage, LOCK, owner=run_id):
        batches.refuse_if_interrupted(storage)
        d1, d2 = date.fromisoformat(first), date.fromisoformat(last)
        changed = {date.fromisoformat(d) for i in ingested if i for d in i["changed_dates"]}
        pending = {date.fromisoformat(d) for ds in read_pending(storage).values() for d in ds}
        dates = changed | set(range_dates(d1, d2)) | pending
        state = _plan_state(settings, storage, "backfill", d1, d2, dates, run_id)
    return {"run_id": run_id, "batches": state["batches"]}


def build_backfill(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """Build and commit every batch of the planned backfill not yet built, in date order (the look-back
    windows — card history, calibration, rates — chain each batch to the ones before), recording
    each; publish nothing (:func:`publish_backfill` does). A retried task goes on from the first
    batch not recorded. A batch refused or failed publishes what passed and raises."""
    from citylake.core.errors import PublicationRefused

    storage = open_storage(settings)
    state = batches.unfinished(storage, "backfill")
    result = NightResult(new_run_id(), range=(date.fromisoformat(state["first"]), date.fromisoformat(state["last"])))
    with lake_lock(storage, LOCK, owner=result.run_id) as held:
        if set(state["built"]) == set(range(len(state["batches"]))):  # a retried task after its last batch
            return {"built": len(state["built"]), "batches": len(state["batches"])}
        _run_planned_batches(settings, storage, result, state, held, progress or _silent, publish_at_end=False)
        if result.gate.record:  # a batch refused or failed: what passed is published, the run stops there
            batches.write_state(storage, {**state, "stage": None})
            raise PublicationRefused(
                result.gate.refused_groups or {"build": ["a batch's dbt build failed"]}, result.gate.published_groups
            )
    return {"built": len(state["built"]), "batches": len(state["batches"])}


def publish_backfill(settings: Settings) -> dict[str, Any]:
    """Publish every batch the backfill committed, at once (registry record, pointer switch),
    then its month-to-date contract reports and docs site; mark the backfill finished."""
    from citylake.publish.gate import publish_stage

    storage = open_storage(settings)
    state = batches.unfinished(storage, "backfill")
    if set(state["built"]) != set(range(len(state["batches"]))) or not state.get("stage"):
        raise ConfigError(f"the backfill's batches are not all built ({batches.STATE}): run build_batches first")
    run_id = new_run_id()
    extra = _record_extra(state, run_id)
    with lake_lock(storage, LOCK, owner=run_id):
        dates = [date.fromisoformat(d) for b in state["batches"] for d in b]
        gate = publish_stage(
            storage, settings, run_id, state["stage"], inputs=staged_inputs(storage, dates), record_extra=extra
        )
        reports, error = month_to_date_reports(settings, storage, gate.published_groups, dates)
        docs, docs_error = docs_site(settings, storage, gate, warehouse_path(settings))
        batches.write_state(storage, {**state, "finished": True, "publication_id": gate.publication_id})
    return outcome(storage, gate, reports, "; ".join(e for e in (error, docs_error) if e) or None, docs)


def _plan_state(
    settings: Settings,
    storage: LakeStorage,
    kind: str,
    first: date,
    last: date,
    dates: set[date],
    run_id: str,
    **extra: Any,
) -> dict[str, Any]:
    """Cut the dates into batches under the memory budget and record the plan in the lake."""
    # a date with nothing staged has nothing to build (a range may start before the data)
    planned = _plan_batches(settings, storage, sorted(dates), staged_only=True)
    if not planned:
        raise ConfigError(f"{kind} from {first} to {last}: nothing is staged for these dates")
    budget = batches.memory_budget(settings)
    state = batches.new_state(kind, first, last, planned, run_id=run_id, budget_bytes=budget, **extra)
    batches.write_state(storage, state)
    log.info("%s of %d date(s) in %d batch(es) under %d MiB", kind, len(dates), len(planned), budget // 2**20)
    return state


def _record_extra(state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """What a backfill's or a rebuild's registry record says of it: its kind, range, batches,
    group, and the run that planned the batches when another run publishes them."""
    extra = {"kind": state["kind"], "range": [state["first"], state["last"]], "batches": len(state["batches"])}
    if state.get("group"):
        extra["group"] = state["group"]
    if state["run_id"] != run_id:
        extra["planned_by"] = state["run_id"]  # a resumed run, or the DAG's tasks, publish under their own id
    return extra


def _run_planned_batches(
    settings: Settings,
    storage: LakeStorage,
    result: NightResult,
    state: dict[str, Any],
    held: dict,
    progress: Progress,
    *,
    publish_at_end: bool = True,
) -> None:
    """Build and commit the recorded plan's batches not yet built (:func:`_build_commit_publish`),
    recording each with what the batches committed (the stage) and renewing the lock."""
    group = state.get("group")
    selections = {}
    if group:
        from citylake.build.groups import build_selections, load_manifest

        selections = build_selections(load_manifest(settings))

    def record(i: int, stage: dict | None) -> None:
        state["built"] = sorted({*state["built"], i})
        state["stage"] = stage
        batches.write_state(storage, state)
        renew_lock(storage, LOCK, held)

    _build_commit_publish(
        settings,
        storage,
        result,
        {"first_build": False, "selections": selections, "batch_dates_only": True},
        state["batches"],
        progress,
        group=group,
        state=state,
        after_batch=record,
        record_extra=_record_extra(state, result.run_id),
        publish_at_end=publish_at_end,
    )


def _build_batches_and_publish(
    settings: Settings,
    storage: LakeStorage,
    result: NightResult,
    state: dict[str, Any],
    held: dict,
    progress: Progress,
) -> None:
    """Build and commit each batch not yet built, recording it with what the batches committed
    (the stage), then publish every batch at once (:func:`_build_commit_publish`).

    A batch whose build fails or whose audit refuses a group stops the run: what passed so far is
    published, and the state stays unfinished, for ``--resume`` from that batch."""
    _run_planned_batches(settings, storage, result, state, held, progress)
    if result.build_ok and not result.gate.stopped:
        batches.write_state(storage, {**state, "finished": True, "publication_id": result.gate.publication_id})
    else:  # what passed so far is published: a resumed run starts from the pointer, at the batch that stopped
        batches.write_state(storage, {**state, "stage": None})
    _notify_if_failed(settings, storage, result)


def publish_only(settings: Settings, service_date: date | None = None) -> GateResult:
    """Audit the warehouse as it is and publish the groups that pass (no ingest, no build)."""
    storage = open_storage(settings)
    dates = [service_date] if service_date else staged_dates(storage)
    run_id = new_run_id()
    with lake_lock(storage, LOCK, owner=run_id):  # never two publications at once
        return run_gate(
            storage, warehouse_path(settings), run_id, dates, inputs=staged_inputs(storage, dates), settings=settings
        )
