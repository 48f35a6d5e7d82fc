"""The publication gate: write, audit, publish — on both lake backends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from citylake.core import duck
from citylake.core.errors import CitylakeError
from citylake.core.lock import LockHeld, lake_lock
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.night.steps import NightResult, run_night
from citylake.publish import gate as gate_mod
from citylake.publish.gate import STEPS, run_gate
from citylake.publish.reader import (
    CURRENT,
    current,
    mart_entries,
    pointer_as_of,
    published_views,
    registry,
)
from citylake.publish.tables import table_version
from tests.conftest import built_once

ROOT = Path(__file__).resolve().parents[2]
KEY = "gate-test-pseudonym-key-0123456789"


@pytest.fixture(scope="session")
def drops(simulated_days) -> dict:
    """The session's two simulated days; each test copies the days it delivers (day_drop)."""
    return {"two_days": simulated_days}


@pytest.fixture(scope="session")
def first_night(drops, tmp_path_factory) -> tuple[Path, NightResult]:
    """The night of 30 March on a fresh lake folder (drop, lake, warehouse under the returned base),
    run once per test run: the tests whose subject is a later night start from a copy of it."""

    def build(base: Path) -> tuple[Path, NightResult]:
        mp = pytest.MonkeyPatch()
        try:
            drop = day_drop(drops["two_days"], base / "drop", "2026-03-30")
            mp.setenv("CITYLAKE_LAKE_URI", (base / "lake").as_uri())
            night = run_night(night_env(mp, None, base, drop))
            assert night.ok, night.gate.refused_groups if night.gate else night.ingest.lines()
            return base, night
        finally:
            mp.undo()

    return built_once(tmp_path_factory, "gate_first_night", build)


def after_first_night(first_night, tmp_path: Path, monkeypatch) -> tuple[Settings, NightResult]:
    """This test's lake (either backend) as the first night left it: the night's drop (files keep
    their times, so the next night sees them as already landed), its lake, its warehouse."""
    base, night = first_night
    shutil.copytree(base / "drop", tmp_path / "drop")  # copy2: modification times kept
    settings = night_env(monkeypatch, None, tmp_path, tmp_path / "drop")
    shutil.copyfile(base / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    source = open_storage(Settings.model_construct(lake_uri=(base / "lake").as_uri()))
    target = open_storage(settings)
    for obj in source.list(""):
        target.put_file(obj.key, source.url(obj.key), metadata=obj.metadata)
    return settings, night


def night_env(monkeypatch, lake_settings: Settings | None, tmp_path: Path, drop: Path) -> Settings:
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    return Settings()


def day_drop(src: Path, dst: Path, day: str) -> Path:
    """A drop holding only the files of one service date (plus the registers)."""
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_file() and rel.parts[0] in ("bus", "parking"):
            stamp = day.replace("-", "")
            if rel.parts[1] in ("gtfs", "fleet", "facilities") or stamp in path.name or day in path.name:
                target = dst / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return dst


def query(storage, settings, sql: str, as_of: str | None = None):

    con = duck.connect(settings, storage)
    published_views(con, storage, pointer_as_of(storage, as_of))
    return con.sql(sql).fetchall()


# On S3 only, the production backend (MinIO): the file backend runs the same night in the DAG
# test (tests/night/test_dags.py) and is killed at each of its writes in tests/reliability.
@pytest.mark.parametrize("lake_settings", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_good_night_publishes_then_a_parking_failure_keeps_the_last_good(
    drops, lake_settings, lake, tmp_path, monkeypatch, reliability
) -> None:
    drop = tmp_path / "drop"
    day_drop(drops["two_days"], drop, "2026-03-30")
    settings = night_env(monkeypatch, lake_settings, tmp_path, drop)
    first = run_night(settings)
    assert first.ok, (first.gate.refused_groups, [r for r in first.gate.checks.results if not r.success])
    assert set(first.gate.published_groups) == {"transit", "parking", "maintenance", "contract"}
    ptr = current(lake)
    assert {g["publication_id"] for g in ptr["groups"].values()} == {first.run_id}
    before = query(lake, settings, "select count(*), round(sum(boardings_estimated), 3) from fct_stop_visit_loads")
    parking_before = query(lake, settings, "select count(*) from mart_parking_occupancy_daily")

    # night 2: day 2 arrives, and the parking operator's readings are all above capacity
    day_drop(drops["two_days"], drop, "2026-03-31")
    occ = drop / "parking" / "occupancy" / "occupation_parcs_20260331.csv"
    lines = occ.read_bytes().decode("cp1252").split("\r\n")
    header, rows = lines[0], [ln for ln in lines[1:] if ln]
    broken = []
    for ln in rows:
        f = ln.split(";")
        f[4] = str(int(f[3]) + 10)  # occupied above capacity
        broken.append(";".join(f))
    occ.write_bytes(("\r\n".join([header, *broken]) + "\r\n").encode("cp1252"))
    kpis_before = query(lake, settings, "select * from mart_contract_kpis_daily where operator <> 'bus' order by all")
    second = run_night(settings)
    assert "parking" in second.gate.refused_groups
    # issue #29: the parking operator's failing data holds back its own KPIs, never the bus operator's
    assert {"transit", "maintenance", "contract"} <= set(second.gate.published_groups)
    assert second.gate.held_back == {"contract": ["montpellier", "parking"]}
    assert any("garde(nt) leur dernière publication" in w for w in second.gate.warnings)
    ptr = current(lake)
    assert ptr["groups"]["transit"]["publication_id"] == second.run_id
    assert ptr["groups"]["parking"]["publication_id"] == first.run_id  # the last good stays
    assert ptr["groups"]["contract"]["publication_id"] == second.run_id
    assert ptr["groups"]["contract"]["held_back"] == {"operators": ["montpellier", "parking"], "because": ["parking"]}
    bus_days = query(
        lake, settings, "select distinct service_date from mart_contract_kpis_daily where operator = 'bus' order by 1"
    )
    assert [d for (d,) in bus_days][-1] == date(2026, 3, 31)  # the bus operator's KPIs moved on with day 2
    assert (
        query(lake, settings, "select * from mart_contract_kpis_daily where operator <> 'bus' order by all")
        == kpis_before
    )  # the parking operator's as last published
    reliability(
        "operator_isolation",
        2,
        2,
        0,
        "the parking operator's readings refused: the bus operator's contract KPIs published, the parking "
        "operator's kept as last published (held_back in the pointer); the bus operator's fleet refused: the "
        "parking operator's published (test_a_failing_test_on_dim_vehicles…); a register typo only warns",
    )
    assert query(lake, settings, "select count(*) from mart_parking_occupancy_daily") == parking_before
    after = query(lake, settings, "select count(*) from fct_stop_visit_loads")
    assert after[0][0] > before[0][0]  # transit moved on with day 2
    # the failed candidate is kept for inspection, and the report says why
    assert lake.list(f"candidate/{second.run_id}/parking/")
    page = lake.get_bytes(second.gate.report_key).decode()
    assert "refusé" in page and "parking" in page
    # as of the first publication, the old figures come back
    assert (
        query(
            lake,
            settings,
            "select count(*), round(sum(boardings_estimated), 3) from fct_stop_visit_loads",
            as_of=first.run_id,
        )
        == before
    )
    records = registry(lake)
    assert [r["publication_id"] for r in records] == [first.run_id, second.run_id]
    assert records[1]["groups_refused"]["parking"] and records[1]["inputs"]


# On S3 only (the production backend): the rule is the gate's, the same on both backends, and the
# file backend's publication runs in every night of the suite
@pytest.mark.parametrize("lake_settings", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_warning_only_failures_publish_with_the_report(drops, lake_settings, tmp_path, monkeypatch) -> None:
    """A warning-only rule publishes with the report; and (issue #29) a typo in one car park's id
    in the parking operator's register is a warning, never a refusal of parking, nor through it of
    every operator's contract KPIs."""
    drop = day_drop(drops["two_days"], tmp_path / "drop", "2026-03-30")
    register = next((drop / "parking" / "facilities").glob("*.csv"))
    lines = register.read_text(encoding="utf-8").splitlines(keepends=True)
    typo = lines[1].split(",", 1)
    lines[1] = typo[0].replace("-P-", "-P_") + "," + typo[1]  # not the national pattern: no usable id
    register.write_text("".join(lines), encoding="utf-8")
    settings = night_env(monkeypatch, lake_settings, tmp_path, drop)
    import great_expectations as gx

    from quality.suites import Check, Suite, build_suites

    strict = Suite(
        "always_warns",
        "fct_stop_visit_loads",
        "select 1 as x",
        (
            Check(
                gx.expectations.ExpectColumnValuesToBeBetween(column="x", min_value=5),
                "warning",
                "a rule that fails as a warning",
            ),
        ),
    )
    original = gate_mod.build_suites
    monkeypatch.setattr(gate_mod, "build_suites", lambda dates: [*original(dates), strict])
    night = run_night(settings)
    assert night.ok and "transit" in night.gate.published_groups, (night.gate.refused_groups, night.ingest.lines())
    assert {"parking", "contract"} <= set(night.gate.published_groups), night.gate.refused_groups
    parks = query(open_storage(settings), settings, "select count(*) from dim_car_parks")[0][0]
    assert parks == len(lines) - 2  # the header and the row without a usable id left out
    assert any("always_warns" in w for w in night.gate.warnings)
    storage = open_storage(settings)
    result = json.loads(storage.get_bytes(night.gate.report_key.replace("index.html", "result.json")))
    assert any(r["suite"] == "always_warns" and not r["success"] for r in result["results"])
    assert build_suites  # the real suites still ran


# A process that imports the publication code once (Great Expectations alone takes 6-7 s to import
# here), then forks one child per crash: each child is a separate process that publishes the built
# warehouse (citylake publish) and is killed at its step, as a fresh interpreter would be.
_FORKER = r"""
import os, sys, traceback
from citylake.night.steps import publish_only
from citylake.core.settings import Settings
from quality.suites import _gx
_gx()
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.environ["CITYLAKE_GATE_CRASH_AT"] = line.strip()
        try:
            code = 0 if publish_only(Settings()).all_published else 1
        except BaseException:
            traceback.print_exc()
            code = 2
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@contextmanager
def crash_runner(env: dict, log: Path) -> Iterator[Callable[[str], int]]:
    """Yield run(step): publish in a new process killed at that step; return its exit code."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _FORKER],
            env={**os.environ, **env},
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready", log.read_text()[-3000:]

            def run(step: str) -> int:
                proc.stdin.write(step + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline().strip()
                assert answer, log.read_text()[-3000:]
                return int(answer)

            yield run
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)


# On S3 only, the production backend (MinIO): the file backend runs the same night in the DAG
# test (tests/night/test_dags.py) and is killed at each of its writes in tests/reliability.
@pytest.mark.parametrize("lake_settings", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_a_crash_at_any_step_never_exposes_a_mix(drops, first_night, lake_settings, tmp_path, monkeypatch) -> None:
    settings, first = after_first_night(first_night, tmp_path, monkeypatch)
    storage = open_storage(settings)
    good = current(storage)
    day_drop(drops["two_days"], tmp_path / "drop", "2026-03-31")
    # the second night's data is ingested and built once; each crash is in its publication
    from citylake.night.steps import build_marts, ingest_all, plan_build

    assert ingest_all(settings)["changed_dates"] == ["2026-03-31"]
    assert build_marts(settings, plan_build(settings, ["2026-03-31"], selections=False))["success"]
    env = {k: v for k, v in os.environ.items() if k.startswith("CITYLAKE_")}
    seen = []
    with crash_runner(env, tmp_path / "crashes.log") as crash:
        # the table commits, the registry and the pointer (before them the gate writes single small
        # objects, whose put is atomic; every write of the gate is a kill point in tests/reliability)
        assert settings.lake_uri.startswith("s3://")
        steps = ("promoting", "registered", "published")
        for step in steps:
            rc = crash(step)
            assert rc == 137, f"the run was not killed at {step}: exit code {rc}, {tmp_path / 'crashes.log'}"
            ptr = current(storage)
            ids = {g["publication_id"] for g in ptr["groups"].values()}
            assert len(ids) == 1, f"a mix of versions after a crash at {step}: {ids}"
            con = duck.connect(settings, storage)  # everything the pointer names reads, at its version
            published_views(con, storage, ptr)
            for mart, entry in mart_entries(ptr).items():
                assert entry["version"] <= table_version(settings, storage, entry["table"])
                con.sql(f"select count(*) from {mart}").fetchone()
            con.close()
            seen.append(ids.pop())
            # the lock of the killed run is left behind: a later run takes it over once expired
            storage.delete("control/locks/nightly.json")
    before_registry = [s for s in steps if STEPS.index(s) < STEPS.index("registered")]
    assert seen[: len(before_registry)] == [first.run_id] * len(before_registry)  # nothing new visible
    assert seen[-1] != first.run_id  # a crash after the switch: the new version, complete
    rerun = run_night(settings)
    assert rerun.ok and current(storage) != good


def test_second_run_at_once_is_refused_by_the_lock(file_settings, tmp_path) -> None:
    storage = open_storage(file_settings)
    with lake_lock(storage, "nightly", owner="run-a"):
        with pytest.raises(LockHeld, match="run-a"):
            with lake_lock(storage, "nightly", owner="run-b"):
                pass
    with lake_lock(storage, "nightly", owner="run-c"):  # released: the next run goes
        assert storage.get_json("control/locks/nightly.json")["owner"] == "run-c"


def test_as_of_needs_a_publication(file_settings) -> None:
    storage = open_storage(file_settings)
    assert pointer_as_of(storage, None) == {"groups": {}}
    with pytest.raises(CitylakeError, match="nothing was published"):
        pointer_as_of(storage, "2020-01-01")
    assert not storage.exists(CURRENT)


def test_notifications_reach_a_local_webhook_and_mail_server(monkeypatch) -> None:
    from aiosmtpd.controller import Controller

    from citylake.night.notify import notify

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    http = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    class Mailbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port on 127.0.0.1 for the mail server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv("CITYLAKE_NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{http.server_port}/hook")
        monkeypatch.setenv("CITYLAKE_NOTIFY_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("CITYLAKE_NOTIFY_SMTP_PORT", str(port))
        monkeypatch.setenv("CITYLAKE_NOTIFY_EMAIL_TO", "exploitation@agglo.example")
        from citylake.core.settings import Settings

        channels = notify(Settings(), "citylake night with failures", {"refused": {"parking": ["a reason"]}})
        assert channels == ["log", "webhook", "email"]
        assert received[0]["refused"] == {"parking": ["a reason"]}
        assert b"a reason" in box.messages[0].content and "exploitation@agglo.example" in box.messages[0].rcpt_tos
    finally:
        smtp.stop()
        http.shutdown()


def test_groups_come_from_dbt_meta_not_paths() -> None:
    """Every mart declares its group in dbt; a test on a mart refuses that mart's group only."""
    from citylake.build.groups import group_marts, load_manifest, node_groups

    manifest = load_manifest()
    marts = group_marts(manifest)
    assert "dim_vehicles" in marts["maintenance"] and "dim_vehicles" not in marts["transit"]
    affected = node_groups(manifest)
    tests_on_vehicles = [
        uid
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] == "test" and n.get("attached_node") == "model.citylake.dim_vehicles"
    ]
    assert tests_on_vehicles
    # maintenance, and contract, whose KPI values read the maintenance marts; never transit
    assert all(affected[uid] == {"maintenance", "contract"} for uid in tests_on_vehicles)
    # an upstream model refuses every group with a mart below it: the calendar feeds the transit
    # marts and the contract's data-delivery KPI
    # the loads feed the transit marts, and the validations the reconciliation of the operator's
    # declared figures reads (mart_line_ridership_daily)
    assert affected["model.citylake.fct_stop_visit_loads"] == {"transit", "contract"}
    assert affected["model.citylake.mart_commercial_speed"] == {"transit"}
    assert affected["model.citylake.int_calendar_days"] == {"transit", "contract"}
    assert affected["seed.citylake.fr_public_holidays"] == {"transit", "contract"}


def test_a_failing_test_on_dim_vehicles_refuses_maintenance_and_publishes_transit(
    first_night, lake_settings, lake, tmp_path, monkeypatch
) -> None:
    """The bug of issue #16: dim_vehicles sits with the fleet, so its failure must stop maintenance."""
    from citylake.build.groups import load_manifest
    from citylake.core.settings import warehouse_path

    settings, first = after_first_night(first_night, tmp_path, monkeypatch)
    manifest = load_manifest()
    node = next(
        uid
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] == "test" and n.get("attached_node") == "model.citylake.dim_vehicles"
    )
    failed = {
        "node": node,
        "path": "models/marts/maintenance/_maintenance.yml",
        "depends_on": ["model.citylake.dim_vehicles"],
        "status": "fail",
        "message": "Got 2 results, configured to fail if != 0",
        "failures": 2,
    }
    gate = run_gate(
        lake, warehouse_path(settings), "20260331T000000Z-vehicles", [date(2026, 3, 30)], [failed], manifest=manifest
    )
    assert "maintenance" in gate.refused_groups
    assert any(node in reason for reason in gate.refused_groups["maintenance"])
    assert {"transit", "parking"} <= set(gate.published_groups)
    # issue #29, the other direction: the bus operator's fleet fails, the parking operator's KPIs publish
    assert "contract" in gate.published_groups and gate.held_back == {"contract": ["bus"]}
    ptr = current(lake)
    assert ptr["groups"]["transit"]["publication_id"] == "20260331T000000Z-vehicles"
    assert ptr["groups"]["maintenance"]["publication_id"] == first.run_id  # the last good stays
