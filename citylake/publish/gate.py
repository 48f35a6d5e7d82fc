"""The publication gate: write, audit, publish. Consumers never see a failed or half-written mart.

1. **write**: dbt builds the night's periods into the candidate warehouse (a DuckDB file consumers
   never read);
2. **audit**: the quality suites run on the candidate; dbt's failed tests and models count too.
   A refused group's rebuilt periods are exported to ``candidate/<run_id>/<group>/`` for inspection;
3. **promote**: for each group that passed, each mart's Delta table ``published/marts/<group>/<mart>/``
   gets one commit replacing the partitions of the periods rebuilt since the group's last
   publication (:mod:`.tables`); a dimension is rewritten only when its content changed. The
   registry record ``published/registry/<id>.json`` (write-once) names every table version;
4. **publish**: ``published/CURRENT.json`` is replaced in one atomic put. A group that failed
   keeps its previous pointer. A group that depends on others (``contract``) and whose marts all
   carry an ``operator`` column publishes, when one of its dependencies is refused, the rows of
   the operators whose own feeds all passed, and holds back the others (their rows stay as last
   published, ``held_back`` in the pointer, a warning in the report): one operator's failing data
   never holds back another operator's KPIs. Its dates stay pending until every operator passes.

A crash at any step leaves CURRENT.json naming complete versions only: table versions are
committed before the registry record, and the record before the pointer; the periods still to
publish (``control/publish/pending.json``) are only cleared after the switch, so a rerun rewrites
them. Set ``CITYLAKE_GATE_CRASH_AT=<step>`` (``Settings.gate_crash_at``) to kill the process at a
step (tests do).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from citylake.build.dbt import rules_version
from citylake.build.groups import group_marts, load_manifest, mart_groups, mart_periods, node_groups
from citylake.core.duck import copy_to_lake
from citylake.core.errors import LakeObjectNotFound
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from citylake.publish.reader import CURRENT, current
from citylake.publish.tables import period_values, table_key, write_mart
from ingestion import registry
from quality.suites import CheckResult, SuiteRun, build_suites, run_suites

log = logging.getLogger("citylake.gate")
STEPS = ("planned", "audited", "promoting", "promoted", "registered", "published")


def crash_point(step: str) -> None:
    """Kill the process here when ``Settings.gate_crash_at`` names this step (the crash tests)."""
    if Settings().gate_crash_at == step:
        log.error("CITYLAKE_GATE_CRASH_AT=%s: killing the process now", step)
        os._exit(137)


def code_version() -> str:
    """Return the git commit of the code (or the package version outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parents[2],
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parents[2],
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version

    return f"citylake-{version('citylake')}"


@dataclass
class GateResult:
    run_id: str
    publication_id: str | None
    published_groups: list[str] = field(default_factory=list)
    refused_groups: dict[str, list[str]] = field(default_factory=dict)  # group -> reasons
    warnings: list[str] = field(default_factory=list)
    report_key: str | None = None
    registry_key: str | None = None
    current: dict = field(default_factory=dict)
    checks: SuiteRun | None = None
    record: dict = field(default_factory=dict)  # what the registry and the quality report say
    #: group -> operators whose rows were held back (their data's group refused): they keep the
    #: rows last published, the group published the other operators' rows
    held_back: dict[str, list[str]] = field(default_factory=dict)
    #: a batch refused a group: the run published what passed so far and stopped there
    stopped: bool = False

    @property
    def all_published(self) -> bool:
        return not self.refused_groups


PENDING = key(Zone.CONTROL, "publish", filename="pending.json")


def read_pending(storage: LakeStorage) -> dict[str, list[str]]:
    """Service dates rebuilt but not yet published, per group (a refused or crashed night's)."""
    try:
        return storage.get_json(PENDING)
    except LakeObjectNotFound:
        return {}


def _mart_select(mart: str, publication_id: str) -> str:
    if mart == "mart_contract_kpis":  # each KPI figure names the publication it was computed in
        return f"select * replace ('{publication_id}' as publication_id) from {mart}"
    return f"select * from {mart}"


def _where(period: str | None, values: list[date] | None, operators: list[str] | None = None) -> str:
    conditions = []
    if period is not None and values is not None:
        listed = ", ".join(f"date '{v.isoformat()}'" for v in values)
        conditions.append(f"{period} in ({listed})" if values else "false")
    if operators is not None:
        conditions.append(f"operator in ({', '.join(repr(o) for o in operators)})" if operators else "false")
    return (" where " + " and ".join(conditions)) if conditions else ""


def fingerprint(con: duckdb.DuckDBPyConnection, mart: str) -> str:
    """A digest of a whole (small) table's content: a dimension is rewritten only when it changed."""
    n, h = con.sql(f"select count(*), coalesce(bit_xor(hash(t)), 0) from {mart} t").fetchone()
    return f"{n}:{h}"


def keep_for_inspection(
    con: duckdb.DuckDBPyConnection, storage: LakeStorage, run_id: str, group: str, plans: dict[str, dict]
) -> None:
    """Export a refused group's rebuilt periods to ``candidate/<run_id>/<group>/`` for inspection."""
    for mart, plan in plans.items():
        k = key(Zone.CANDIDATE, f"{run_id}/{group}", filename=f"{mart}.parquet")
        copy_to_lake(con, f"select * from {mart}{_where(plan['period'], plan['values'])}", storage, k, overwrite=True)


def plan_marts(
    con: duckdb.DuckDBPyConnection,
    marts: tuple[str, ...],
    periods: dict[str, str | None],
    dates: list[date],
    before: dict,
) -> dict[str, dict]:
    """Per mart built in the warehouse: its period and the period values to write (None: whole)."""
    tables = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
    plans: dict[str, dict] = {}
    for mart in marts:
        if mart not in tables:
            continue
        period = periods.get(mart)
        previous = (before.get("marts") or {}).get(mart)
        as_table = isinstance(previous, dict) and "table" in previous
        plan: dict = {"period": period, "values": None, "previous": previous if as_table else None}
        if period is None:
            plan["fingerprint"] = fingerprint(con, mart)
            if as_table and previous.get("fingerprint") == plan["fingerprint"]:
                plan["unchanged"] = True
        elif as_table:  # a table in force: only the periods rebuilt since
            plan["values"] = period_values(period, dates)
            if not plan["values"]:
                plan["unchanged"] = True
        plans[mart] = plan
    return plans


def promote(
    settings: Settings,
    storage: LakeStorage,
    con: duckdb.DuckDBPyConnection,
    group: str,
    plans: dict[str, dict],
    publication_id: str,
    crash_after_first: bool,
    operators: list[str] | None = None,
) -> dict[str, dict]:
    """Commit a passed group's marts to their Delta tables; return the pointer's mart entries.
    ``operators``: publish those operators' rows only (the others are held back and keep theirs)."""
    entries: dict[str, dict] = {}
    for mart, plan in plans.items():
        table = table_key(group, mart)
        if plan.get("unchanged") and operators is None:
            entries[mart] = plan["previous"]
            continue
        version = write_mart(
            settings,
            storage,
            table,
            lambda values, mart=mart, plan=plan: con.execute(
                _mart_select(mart, publication_id) + _where(plan["period"], values, operators)
            ).to_arrow_reader(200_000),
            period=plan["period"],
            values=plan["values"],
            publication_id=publication_id,
            only=("operator", operators) if operators is not None else None,
        )
        entries[mart] = {"table": table, "version": version, "period": plan["period"]}
        if "fingerprint" in plan:
            entries[mart]["fingerprint"] = plan["fingerprint"]
        if crash_after_first:
            crash_point("promoting")
            crash_after_first = False
    return entries


def refusals(
    checks: SuiteRun,
    dbt_results: list[dict] | None,
    manifest: dict,
    plans: dict[str, dict],
    groups: list[str],
    held_back: dict[str, dict] | None = None,
) -> tuple[dict[str, list[str]], list[str]]:
    """Why each group is refused (no reason: it passes), and dbt failures no published mart depends
    on. A group in ``held_back`` with operators to publish is not refused for its dependencies."""
    held_back = held_back or {}
    affected = node_groups(manifest)
    unassigned: list[str] = []
    reasons: dict[str, list[str]] = {g: [] for g in groups}
    for r in checks.blocking_failures():
        reasons[r.group].append(
            f"{r.suite}: {r.why} ({r.expectation}"
            + (f" sur {r.column}" if r.column else "")
            + (f", {r.unexpected_count} valeur(s) hors règle" if r.unexpected_count else "")
            + (f", {r.error}" if r.error else "")
            + ")"
        )
    for res in dbt_results or []:
        if res["status"] in ("error", "fail", "runtime error"):
            text = f"dbt {res['status']}: {res['node']}: {(res.get('message') or '').strip()[:300]}"
            hit = affected.get(res["node"], set())
            for g in sorted(hit):
                # a failure that also refuses a group this one holds operators back for is that
                # group's: the held-back operators' rows are not published, the others' do not read it
                if g in held_back and held_back[g]["publish"] and hit & set(held_back[g]["because"]):
                    continue
                reasons[g].append(text)
            if not affected.get(res["node"]):
                unassigned.append(text + " (aucun mart publié n'en dépend)")
    for g, marts in plans.items():
        if not marts and g in reasons:
            reasons[g].append(f"aucun mart du groupe {g} n'a été construit")
    for g, deps in registry.group_depends().items():
        failed = [d for d in deps if reasons[d]]
        if failed and not (g in held_back and held_back[g]["publish"]):
            reasons[g].append(f"dépend du ou des groupes {', '.join(failed)}, refusés par leurs contrôles")
    return reasons, unassigned


def per_operator_groups(con: duckdb.DuckDBPyConnection, marts: dict[str, tuple[str, ...]]) -> set[str]:
    """Groups whose every built mart has an ``operator`` column (their rows can be published per
    operator)."""
    with_operator = {
        r[0]
        for r in con.sql("select table_name from information_schema.columns where column_name = 'operator'").fetchall()
    }
    built = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
    out = set()
    for g, ms in marts.items():
        present = [m for m in ms if m in built]
        if present and all(m in with_operator for m in present):
            out.add(g)
    return out


def operators_held_back(reasons: dict[str, list[str]], per_operator: set[str]) -> dict[str, dict]:
    """For each group whose marts carry an ``operator`` column (contract KPIs) and depend on a
    refused group: the operators whose own feeds are in a refused group (held back: they keep
    their rows as last published) and those whose data all passed (published). One operator's
    failing data never holds back another's KPIs."""
    out: dict[str, dict] = {}
    for g, deps in registry.group_depends().items():
        failed = {d for d in deps if reasons.get(d)}
        if g not in per_operator or not failed:
            continue
        held = sorted({c.operator for c in registry.feeds() if c.group in failed})
        publish = sorted({c.operator for c in registry.feeds()} - set(held))
        out[g] = {"held": held, "publish": publish, "because": sorted(failed)}
    return out


def run_gate(
    storage: LakeStorage,
    warehouse: Path,
    run_id: str,
    service_dates: list[date],
    dbt_results: list[dict] | None = None,
    inputs: list[str] | None = None,
    suites: list | None = None,
    manifest: dict | None = None,
    settings: Settings | None = None,
    record_extra: dict | None = None,
    stage: dict | None = None,
    publish: bool = True,
    scope: list[str] | None = None,
) -> GateResult:
    """Audit the candidate and publish every group that passed; return what happened.

    ``record_extra`` goes into the registry record as is (a rebuild says what it rebuilt).

    ``stage`` (:func:`new_stage`): one batch of a backfill, a rebuild or a night of several days
    (issue #32). The gate audits the batch's dates only and commits their periods to the Delta
    tables on top of what the earlier batches committed (``stage["pointer"]``), so its memory is
    the batch's, not the range's; ``publish`` false (not the last batch) leaves the registry and
    the pointer alone: consumers see nothing until the last batch publishes every batch at once.
    A batch that refuses a group publishes what passed so far and stops the run
    (``GateResult.stopped``): the refused group keeps its pointer of the batch before.

    ``scope``: the groups a rebuild of one group recomputed (the group and those that depend on
    it); the others are neither audited nor published (default: every group).

    Which mart and which dbt node belong to which group is read from dbt's manifest."""
    publication_id = run_id
    settings = settings or Settings()
    manifest = manifest or load_manifest()
    groups = registry.groups()
    scope = [g for g in groups if scope is None or g in scope]
    before = current(storage)
    # the service dates each group must publish: the night's, and those a refused or crashed
    # night rebuilt without publishing (cleared only once the pointer names them)
    pending = read_pending(storage)
    night = sorted({d.isoformat() for d in service_dates})
    pending = {g: sorted(set(pending.get(g, [])) | (set(night) if g in scope else set())) for g in groups}
    storage.put_json(PENDING, pending, overwrite=True)
    batched = stage is not None
    stage = stage if batched else new_stage(before)
    holder = unpublished(storage)
    if holder and holder.get("owner") != stage.get("owner"):
        return _hold(storage, settings, run_id, holder, night, inputs)
    base = stage["pointer"].get("groups", {})  # what the promotes build on: the batches' commits so far
    # a batch commits its own dates; a night, every date pending for the group
    to_promote = {g: (night if batched else pending[g]) for g in groups}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        periods = mart_periods(manifest)
        plans = {
            g: plan_marts(con, marts, periods, [date.fromisoformat(d) for d in to_promote[g]], base.get(g, {}))
            for g, marts in group_marts(manifest).items()
            if g in scope
        }
        crash_point("planned")
        owner = mart_groups(manifest)
        suites = suites if suites is not None else build_suites(service_dates)
        checks = run_suites(warehouse, [s for s in suites if owner.get(s.mart) in scope], owner)
        reasons, unassigned = refusals(checks, dbt_results, manifest, plans, groups)
        held_back = operators_held_back(reasons, per_operator_groups(con, group_marts(manifest)))
        if held_back:  # judged again: a group refused for its dependencies alone publishes its passing operators
            reasons, unassigned = refusals(checks, dbt_results, manifest, plans, groups, held_back)
            held_back = {g: h for g, h in held_back.items() if not reasons[g]}
        passed = [g for g in scope if not reasons[g]]
        refused = {g: r for g, r in reasons.items() if r and g in scope}
        for g in refused:
            keep_for_inspection(con, storage, run_id, g, plans.get(g, {}))
        crash_point("audited")
        # promote: one Delta commit per changed mart of each group that passed
        now = datetime.now(UTC).replace(microsecond=0)
        after = {"groups": dict(base), "updated_at": now.isoformat()}
        for i, g in enumerate(passed):
            partial = held_back.get(g)
            after["groups"][g] = {
                "publication_id": publication_id,
                "published_at": now.isoformat(),
                "marts": promote(
                    settings,
                    storage,
                    con,
                    g,
                    plans[g],
                    publication_id,
                    crash_after_first=i == 0,
                    operators=partial["publish"] if partial else None,
                ),
            }
            if partial:
                after["groups"][g]["held_back"] = {"operators": partial["held"], "because": partial["because"]}
        crash_point("promoted")
    finally:
        con.close()

    warnings = (
        [f"{w.suite}: {w.why} ({w.expectation}, {w.unexpected_count} valeur(s) hors règle)" for w in checks.warnings()]
        + unassigned
        + [
            f"{g} : publié pour {', '.join(h['publish'])} ; {', '.join(h['held'])} garde(nt) leur dernière "
            f"publication (groupe(s) {', '.join(h['because'])} refusé(s))"
            for g, h in held_back.items()
        ]
    )
    label = f"{night[0]} – {night[-1]}" if batched and night else None
    stage["pointer"] = after
    stage["dates"] = sorted(set(stage["dates"]) | set(night))
    for g in passed:
        stage["promoted"][g] = sorted(set(stage["promoted"].get(g, [])) | set(to_promote[g]))
    stage["checks"] += [{**asdict(r), "dates": label} for r in checks.results]
    stage["warnings"] += [f"{label} : {w}" if label else w for w in warnings]
    stage["refused"] = {g: [f"{label} : {r}" if label else r for r in rs] for g, rs in refused.items()}
    stage["held_back"] = held_back
    if not (publish or refused):  # a batch committed: a run of several publishes after its last
        if (record_extra or {}).get("kind"):  # a backfill's or a rebuild's: the nights hold theirs meanwhile
            storage.put_json(
                UNPUBLISHED,
                {
                    "owner": stage.get("owner"),
                    "kind": record_extra["kind"],
                    "range": record_extra.get("range"),
                    "dates": stage["dates"],
                    "since": now.isoformat(),
                },
                overwrite=True,
            )
        return GateResult(run_id, None, passed, {}, warnings, current=before, checks=checks)
    result = publish_stage(storage, settings, run_id, stage, inputs=inputs, record_extra=record_extra)
    result.stopped = batched and bool(refused)  # a refused batch ends a batched run: what passed so far is published
    return result


def publish_stage(
    storage: LakeStorage,
    settings: Settings,
    publication_id: str,
    stage: dict,
    *,
    inputs: list[str] | None = None,
    record_extra: dict | None = None,
) -> GateResult:
    """Publish what a night or the batches of a run committed (``stage``): the registry record,
    then the one atomic switch of ``CURRENT.json``, then the pending dates cleared and the quality
    report written. Every group with committed dates is published; the groups the last batch
    refused keep the pointer of the batch before theirs (``published_through``)."""
    groups = registry.groups()
    before = current(storage)
    pending = read_pending(storage)
    held_back = stage.get("held_back") or {}
    batched = stage.get("owner") is not None
    now = datetime.now(UTC).replace(microsecond=0)
    after = {**stage["pointer"], "updated_at": now.isoformat()}
    after["groups"] = dict(after.get("groups", {}))
    published = [g for g in groups if g in stage["promoted"]]
    for g in published:  # every batch's commits of a group are this publication's (a resumed run's too)
        after["groups"][g] = {**after["groups"][g], "publication_id": publication_id, "published_at": now.isoformat()}
    all_checks = SuiteRun([CheckResult(**c) for c in stage["checks"]])
    result = GateResult(
        publication_id,
        publication_id if published else None,
        published,
        stage.get("refused") or {},
        stage["warnings"],
        checks=all_checks,
    )
    result.held_back = {g: h["held"] for g, h in held_back.items()}
    record = {
        **_record(publication_id, settings, now, stage["dates"], result, inputs),
        **(record_extra or {}),
        "current_after": after,
        "current_before": before,
    }
    if batched:  # each group's last date published: a refused group stops at the batch before
        record["published_through"] = {g: stage["promoted"][g][-1] for g in published if stage["promoted"][g]}
    if published:
        registry_key = key(Zone.PUBLISHED, "registry", filename=f"{publication_id}.json")
        storage.put_json(registry_key, record)
        result.registry_key = registry_key
        crash_point("registered")
        storage.put_json(CURRENT, after, overwrite=True)  # the one atomic switch
        crash_point("published")
        result.current = after
        # a group's dates stay pending until the pointer names them; a group published for some
        # operators only keeps them all: published again, for all, once they pass
        storage.put_json(
            PENDING,
            {
                g: (
                    pending.get(g, [])
                    if g in held_back
                    else sorted(set(pending.get(g, [])) - set(stage["promoted"].get(g, [])))
                )
                for g in groups
            },
            overwrite=True,
        )
    else:
        result.current = before
    if unpublished(storage):  # the run's commits are published (or it stopped): the nights go on
        storage.put_json(UNPUBLISHED, {}, overwrite=True)
    from citylake.publish.report import write_report

    result.report_key = write_report(storage, record, all_checks)
    result.record = record
    return result


#: A backfill's or a rebuild's batches committed to the tables and not yet published: while it
#: names one, another run's gate publishes nothing (consumers never see half a history load).
UNPUBLISHED = key(Zone.CONTROL, "publish", filename="unpublished.json")


def unpublished(storage: LakeStorage) -> dict:
    """The run whose committed batches are not published yet, or {}."""
    try:
        return storage.get_json(UNPUBLISHED)
    except LakeObjectNotFound:
        return {}


def _hold(
    storage: LakeStorage, settings: Settings, run_id: str, holder: dict, dates: list[str], inputs: list[str] | None
) -> GateResult:
    """Publish nothing while a backfill or a rebuild has committed batches it has not published:
    the night's dates stay pending (the next night publishes them), the report says why."""
    first, last = (holder.get("range") or ["?", "?"])[:2]
    why = (
        f"publication suspendue : le {holder.get('kind')} du {first} au {last} (exécution {holder.get('owner')}) a "
        f"validé {len(holder.get('dates', []))} date(s) qui ne sont pas encore publiées ; le reprendre "
        f"(`citylake {holder.get('kind')} --resume`) les publie, et les dates de cette exécution ensuite"
    )
    result = GateResult(run_id, None, [], {g: [why] for g in registry.groups()}, [], checks=SuiteRun())
    record = _record(run_id, settings, datetime.now(UTC).replace(microsecond=0), dates, result, inputs)
    from citylake.publish.report import write_report

    result.current = current(storage)
    result.report_key = write_report(storage, record, result.checks)
    result.record = record
    return result


def _record(
    run_id: str, settings: Settings, now: datetime, dates: list[str], result: GateResult, inputs: list[str] | None
) -> dict:
    """What the registry and the quality report say of a run: when, which dates, under which code
    and rules, what was published or refused and why, its inputs, its checks."""
    return {
        "publication_id": run_id,
        "run_id": run_id,
        "created_at": now.isoformat(),
        "service_dates": dates,
        "code_version": code_version(),
        "rules_version": rules_version(settings),
        "groups_published": result.published_groups,
        "groups_refused": result.refused_groups,
        "warnings": result.warnings,
        "inputs": sorted(inputs or []),
        "checks": {
            "total": len(result.checks.results),
            "failed_blocking": len(result.checks.blocking_failures()),
            "failed_warning": len(result.checks.warnings()),
        },
        "report": key(Zone.REPORTS, f"quality/{run_id}", filename="index.html"),
    }


def new_stage(pointer: dict, owner: str | None = None) -> dict:
    """What the batches of a run have committed and not yet published (JSON, kept with the
    batches' state for ``--resume``): the pointer they would leave, the dates each group
    committed, every batch's checks and warnings, and the run they belong to (``owner``, the
    first run of a resumed one; None: a night's single gate)."""
    return {"owner": owner, "pointer": pointer, "dates": [], "promoted": {}, "checks": [], "warnings": []}


def to_json(result: GateResult) -> str:
    data = asdict(result)
    data.pop("checks", None)
    data.pop("record", None)
    return json.dumps(data, indent=2, default=str)
