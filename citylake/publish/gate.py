"""The publication gate: write, audit, publish. Consumers never see a failed or half-written mart.

1. **write**: the marts of each dependency group are exported from the candidate warehouse to
   ``candidate/<run_id>/<group>/<mart>.parquet``;
2. **audit**: the quality suites run on the candidate; dbt's failed tests and models count too;
3. **promote**: each group that passed is copied to ``published/versions/<id>/<group>/``
   (write-once) and the registry record ``published/registry/<id>.json`` is written (write-once);
4. **publish**: ``published/CURRENT.json`` is replaced in one atomic put. A group that failed
   keeps its previous pointer; ``contract`` publishes only if the groups it depends on passed.

A crash at any step leaves CURRENT.json naming complete versions only: new version files are
written before the registry record, and the record before the pointer. Set
``CITYLAKE_GATE_CRASH_AT=<step>`` (``Settings.gate_crash_at``) to kill the process at a step (tests do).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from citylake.build.groups import group_marts, load_manifest, mart_groups, node_groups
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from citylake.publish.reader import CURRENT, current
from ingestion import registry
from quality.suites import SuiteRun, build_suites, run_suites

log = logging.getLogger("citylake.gate")
STEPS = ("exported", "audited", "promoting", "promoted", "registered", "published")


def _crash_point(step: str) -> None:
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

    @property
    def all_published(self) -> bool:
        return not self.refused_groups


def export_candidate(
    storage: LakeStorage, warehouse: Path, run_id: str, publication_id: str, marts_by_group: dict[str, tuple[str, ...]]
) -> dict[str, list[str]]:
    """Write each group's marts from the warehouse to candidate/<run_id>/<group>/; return the keys."""
    con = duckdb.connect(str(warehouse), read_only=True)
    out: dict[str, list[str]] = {}
    try:
        tables = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
        for group, marts in marts_by_group.items():
            out[group] = []
            for mart in marts:
                if mart not in tables:
                    continue
                select = (
                    f"select * replace ('{publication_id}' as publication_id) from {mart}"
                    if mart == "mart_contract_kpis"
                    else f"select * from {mart}"
                )
                k = key(Zone.CANDIDATE, f"{run_id}/{group}", filename=f"{mart}.parquet")
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(tmp) / "m.parquet"
                    con.execute(f"copy ({select}) to '{local}' (format parquet, compression zstd)")
                    storage.put_file(k, local, overwrite=True)
                out[group].append(k)
    finally:
        con.close()
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
) -> GateResult:
    """Audit the candidate and publish every group that passed; return what happened.

    Which mart and which dbt node belong to which group is read from dbt's manifest."""
    publication_id = run_id
    manifest = manifest or load_manifest()
    groups = registry.groups()
    exported = export_candidate(storage, warehouse, run_id, publication_id, group_marts(manifest))
    _crash_point("exported")

    checks = run_suites(warehouse, suites if suites is not None else build_suites(service_dates), mart_groups(manifest))
    affected = node_groups(manifest)
    unassigned: list[str] = []
    reasons: dict[str, list[str]] = {g: [] for g in groups}
    for r in checks.blocking_failures():
        reasons[r.group].append(
            f"{r.suite}: {r.why} ({r.expectation}"
            + (f" on {r.column}" if r.column else "")
            + (f", {r.unexpected_count} unexpected" if r.unexpected_count else "")
            + (f", {r.error}" if r.error else "")
            + ")"
        )
    for res in dbt_results or []:
        if res["status"] in ("error", "fail", "runtime error"):
            text = f"dbt {res['status']}: {res['node']}: {(res.get('message') or '').strip()[:300]}"
            for g in sorted(affected.get(res["node"], set())):
                reasons[g].append(text)
            if not affected.get(res["node"]):
                unassigned.append(text + " (no published mart depends on it)")
    for g, marts in exported.items():
        if not marts and g in reasons:
            reasons[g].append(f"no mart of group {g} was built")
    for g, deps in registry.group_depends().items():
        failed = [d for d in deps if reasons[d]]
        if failed:
            reasons[g].append(f"depends on group(s) {failed} that failed their checks")
    passed = [g for g in groups if not reasons[g]]
    refused = {g: r for g, r in reasons.items() if r}
    _crash_point("audited")

    result = GateResult(
        run_id,
        publication_id if passed else None,
        passed,
        refused,
        [f"{w.suite}: {w.why} ({w.expectation}, {w.unexpected_count} unexpected)" for w in checks.warnings()]
        + unassigned,
        checks=checks,
    )
    # promote: copy audited candidate files to the write-once version folder
    promoted: dict[str, list[str]] = {}
    for i, g in enumerate(passed):
        promoted[g] = []
        for ck in exported[g]:
            mart = ck.rsplit("/", 1)[-1]
            dst = key(Zone.PUBLISHED, f"versions/{publication_id}/{g}", filename=mart)
            with tempfile.TemporaryDirectory() as tmp:
                storage.put_file(dst, storage.download(ck, Path(tmp) / "m.parquet"))
            promoted[g].append(dst)
        if i == 0:
            _crash_point("promoting")
    _crash_point("promoted")

    before = current(storage)
    now = datetime.now(UTC).replace(microsecond=0)
    after = {"groups": dict(before.get("groups", {})), "updated_at": now.isoformat()}
    for g in passed:
        after["groups"][g] = {
            "publication_id": publication_id,
            "published_at": now.isoformat(),
            "marts": {k.rsplit("/", 1)[-1].removesuffix(".parquet"): k for k in promoted[g]},
        }
    report_key = key(Zone.REPORTS, f"quality/{run_id}", filename="index.html")
    record = {
        "publication_id": publication_id,
        "run_id": run_id,
        "created_at": now.isoformat(),
        "service_dates": sorted(d.isoformat() for d in service_dates),
        "code_version": code_version(),
        "groups_published": passed,
        "groups_refused": refused,
        "warnings": result.warnings,
        "inputs": sorted(inputs or []),
        "checks": {
            "total": len(checks.results),
            "failed_blocking": len(checks.blocking_failures()),
            "failed_warning": len(checks.warnings()),
        },
        "report": report_key,
        "current_after": after,
        "current_before": before,
    }
    if passed:
        registry_key = key(Zone.PUBLISHED, "registry", filename=f"{publication_id}.json")
        storage.put_json(registry_key, record)
        result.registry_key = registry_key
        _crash_point("registered")
        storage.put_json(CURRENT, after, overwrite=True)  # the one atomic switch
        _crash_point("published")
        result.current = after
    else:
        result.current = before
    from citylake.publish.report import write_report

    result.report_key = write_report(storage, record, checks)
    return result


def to_json(result: GateResult) -> str:
    data = asdict(result)
    data.pop("checks", None)
    return json.dumps(data, indent=2, default=str)
