"""Airflow DAGs: they import, they are wired as documented, and the nightly refresh works for real."""

from __future__ import annotations

import importlib.util
import os
import shutil
from datetime import date
from pathlib import Path

import pendulum
import pytest

from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.publish.reader import current, published_views, registry

ROOT = Path(__file__).resolve().parents[2]
KEY = "dag-test-pseudonym-key-0123456789"


@pytest.fixture(autouse=True)
def _airflow_env(airflow_env):
    """Every test here runs in the throwaway Airflow home (tests/night/conftest.py)."""


def test_every_dag_imports_and_is_wired(airflow_home) -> None:
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    ids = set(bag.dag_ids)
    assert "nightly_refresh" in ids
    expected_feeds = {"bus": 9, "parking": 3, "montpellier": 2}  # the monthly reports too (declared)
    for op, n in expected_feeds.items():
        assert len([i for i in ids if i.startswith(f"ingest_{op}_")]) == n
    nightly = bag.get_dag("nightly_refresh")
    assert {t.task_id for t in nightly.tasks} == {
        "plan_references",
        "plan_dated",
        "ingest_references",
        "ingest_dated",
        "ingest_sweep",
        "plan_build",
        "build_transit",
        "build_parking",
        "build_maintenance",
        "build_contract",
        "audit_and_publish",
        "notify",
        "night_failed",
    }
    assert nightly.get_task("ingest_dated").upstream_task_ids == {"plan_dated", "ingest_references"}
    assert nightly.get_task("ingest_sweep").upstream_task_ids == {"ingest_references", "ingest_dated"}
    # one warehouse writer: the group builds run one after the other, in the registry's order (a
    # group may use nodes an earlier one built: maintenance uses the fleet staged for transit)
    order = ["plan_build", "build_transit", "build_parking", "build_maintenance", "build_contract"]
    for before, after in zip(order, order[1:], strict=False):
        assert nightly.get_task(after).upstream_task_ids >= {before}, after
    assert nightly.get_task("audit_and_publish").upstream_task_ids == set(order[1:])
    assert nightly.get_task("notify").trigger_rule == "all_done"
    backfill = bag.get_dag("backfill_range")  # triggered with its range, never scheduled
    assert type(backfill.timetable).__name__ == "NullTimetable"
    assert backfill.get_task("ingest_dated").upstream_task_ids == {"plan_dated", "ingest_references"}
    assert backfill.get_task("plan_batches").upstream_task_ids == {"ingest_references", "ingest_dated"}
    chain = ["plan_batches", "build_batches", "publish"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert backfill.get_task(after).upstream_task_ids == {before}, after
    assert backfill.get_task("backfill_failed").upstream_task_ids == {"ingest_references", "ingest_dated", "publish"}
    assert backfill.get_task("notify").trigger_rule == "all_done"
    assert backfill.get_task("backfill_failed").trigger_rule == "one_failed"
    ticketing = bag.get_dag("ingest_bus_ticketing")
    assert ticketing.get_task("land_and_parse").upstream_task_ids == {"wait_for_delivery"}
    assert [a.uri for a in ticketing.get_task("land_and_parse").outlets] == ["citylake://staged/fare_transactions"]
    assert {t.task_id for t in bag.get_dag("ingest_bus_gtfs").tasks} == {"land_and_parse"}
    # a monthly report has no D+N deadline to wait for: each run lands whatever report arrived
    assert {t.task_id for t in bag.get_dag("ingest_bus_declared").tasks} == {"land_and_parse"}
    for dag in bag.dags.values():  # policies: explicit catchup, tags, retries, timezone-aware start
        assert dag.catchup is False and "citylake" in dag.tags and dag.doc_md
        assert str(dag.timezone) in ("Europe/Paris", "Timezone('Europe/Paris')")
        for t in dag.tasks:
            if t.task_id not in ("notify", "night_failed", "backfill_failed"):  # they only report: no retry
                assert t.retries >= 3 and t.retry_exponential_backoff


def _nightly():
    spec = importlib.util.spec_from_file_location("citylake_nightly_under_test", ROOT / "dags" / "citylake_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.nightly_refresh()


@pytest.fixture(scope="session")
def two_days(simulated_days) -> Path:
    """The session's two simulated days (the test copies them before breaking one)."""
    return simulated_days


def test_nightly_refresh_publishes_night_after_night(two_days, tmp_path, monkeypatch, capfd, airflow_home) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(two_days, drop)
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    dag = _nightly()
    storage = open_storage(Settings())

    # night of 31 March 06:30: service date 30 March (the 31st's files are not delivered yet)
    run = dag.test(logical_date=pendulum.datetime(2026, 3, 31, 6, 30, tz="Europe/Paris"))
    assert run.state == "success"
    first = current(storage)
    assert set(first["groups"]) == {"transit", "parking", "maintenance", "contract"}
    pub = first["groups"]["contract"]["publication_id"]
    assert storage.exists(f"reports/contract/operator=bus/month=2026-03/{pub}.html")
    from citylake.core import duck

    def q(sql, pointer=None):
        con = duck.connect(Settings(), storage)
        published_views(con, storage, pointer or current(storage))
        return con.sql(sql).fetchall()

    assert q("select distinct service_date from fct_stop_visit_loads") == [(date(2026, 3, 30),)]
    ran = {ti.task_id for ti in run.get_task_instances()}
    assert {"ingest_references", "ingest_dated", "build_transit", "build_maintenance", "build_contract"} <= ran

    # the partitioned night publishes the marts a single-process night (citylake run) publishes, row by row
    from citylake.night.steps import run_night
    from devtools.compare import compare_publications

    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "single-lake").as_uri())
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "single.duckdb"))
    single = run_night(Settings(), as_of=pendulum.datetime(2026, 3, 31, 6, 30, tz="Europe/Paris"))
    assert single.ok
    single_storage = open_storage(Settings())
    counts, diffs = compare_publications((storage, first), (single_storage, current(single_storage)))
    assert diffs == [] and counts["fct_stop_visit_loads"] > 1000 and counts["mart_contract_kpis"] > 0
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))

    # night of 1 April, with a broken parking delivery: transit moves on, parking keeps its last good
    occ = drop / "parking" / "occupancy" / "occupation_parcs_20260331.csv"
    lines = occ.read_bytes().decode("cp1252").split("\r\n")
    broken = [lines[0]] + [
        ";".join(f[:4] + [str(int(f[3]) + 10)] + f[5:]) for f in (ln.split(";") for ln in lines[1:] if ln)
    ]
    mtime = occ.stat().st_mtime
    occ.write_bytes(("\r\n".join(broken) + "\r\n").encode("cp1252"))
    os.utime(occ, (mtime, mtime))
    run = dag.test(logical_date=pendulum.datetime(2026, 4, 1, 6, 30, tz="Europe/Paris"))
    # a refused group fails audit_and_publish with the reason (no retry); what passed is published,
    # and the notify task still reads the outcome
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["audit_and_publish"] == "failed" and states["notify"] == "success"
    assert states["night_failed"] == "failed"  # the watcher marks the run failed
    assert "parking" in registry(storage)[-1]["groups_refused"]
    second = current(storage)
    assert second["groups"]["transit"]["publication_id"] != first["groups"]["transit"]["publication_id"]
    assert second["groups"]["parking"] == first["groups"]["parking"]
    assert sorted(q("select distinct service_date from fct_stop_visit_loads")) == [
        (date(2026, 3, 30),),
        (date(2026, 3, 31),),
    ]
    assert len(registry(storage)) == 2

    # no secret in what the tasks printed or logged (the pseudonym key is this lake's only secret)
    out, err = capfd.readouterr()
    logs = "".join(p.read_text(errors="replace") for p in Path(airflow_home).rglob("*.log"))
    assert "ingest_dated" in out + err + logs  # the tasks' output was captured
    assert KEY not in out + err + logs


def test_dbt_groups_build_every_node_exactly_once(monkeypatch) -> None:
    """The nightly's four dbt builds, as dbt itself selects them, cover the project once, no more."""
    import json

    from citylake.build.dbt import DBT_PROJECT, with_city_vars
    from citylake.build.groups import build_selections, load_manifest
    from citylake.core.settings import Settings
    from ingestion import registry

    city = Settings().city  # dbt itself, called here without citylake: the city's vars, zone and temp budget given
    monkeypatch.setenv("CITYLAKE_TIMEZONE", city.timezone)
    monkeypatch.setenv("CITYLAKE_DUCKDB_MAX_TEMP", "1GB")

    manifest = load_manifest()
    selections = build_selections(manifest)
    everything = set(manifest["nodes"]) | set(manifest["unit_tests"])
    seen: set[str] = set()
    from dbt.cli.main import dbtRunner

    for group in registry.groups():
        res = dbtRunner().invoke(
            with_city_vars(["ls"], city)
            + [
                "--select",
                *selections[group],
                "--indirect-selection",
                "empty",
                "--resource-type",
                "all",
                "--output",
                "json",
                "--output-keys",
                "unique_id",
                "--quiet",
                "--project-dir",
                str(DBT_PROJECT),
                "--profiles-dir",
                str(DBT_PROJECT),
            ]
        )
        assert res.success, res.exception
        ids = {json.loads(line)["unique_id"] for line in res.result}
        assert len(ids) == len(selections[group]) and not ids & seen, group
        seen |= ids
    assert seen == everything
    assert "mart_contract_kpis" in selections["contract"] and "fct_stop_visit_loads" in selections["transit"]


def test_backfill_range_over_airflow_equals_the_nights(lake_after_nights, tmp_path, monkeypatch) -> None:
    """The backfill DAG (dags/citylake_backfill.py: the registers, then a task per date, operator
    and group ingested, the batches built and committed in order, one publication) publishes the
    marts of the nights run one by one, row by row."""
    from citylake.night import batches
    from devtools.compare import compare_publications
    from tests.night.conftest import history_load_env

    # one batch (several: the backfill's own test; two worker processes: test_workers.py; make scaleout-check on Celery)
    history_load_env(monkeypatch, tmp_path, lake_after_nights.drop, "8GiB")
    path = ROOT / "dags" / "citylake_backfill.py"
    spec = importlib.util.spec_from_file_location("citylake_backfill_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.backfill_range()
    run = dag.test(run_conf={"first": "2026-03-29", "last": "2026-03-31"})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    # the registers first, then a task per (date × operator × group): bus and parking, 29 to 31 March
    mapped = [(ti.task_id, ti.map_index) for ti in run.get_task_instances() if ti.task_id.startswith("ingest_")]
    assert len([t for t in mapped if t[0] == "ingest_references"]) >= 2
    assert len([t for t in mapped if t[0] == "ingest_dated"]) >= 6
    assert states["backfill_failed"] == "skipped"
    storage = open_storage(Settings())
    state = batches.read_state(storage)
    assert state["finished"] and state["batches"] == [["2026-03-30", "2026-03-31"]] and state["built"] == [0]
    records = registry(storage)
    assert len(records) == 1 and records[0]["kind"] == "backfill" and records[0]["planned_by"] == state["run_id"]
    nights = open_storage(lake_after_nights.settings())
    counts, diffs = compare_publications((storage, current(storage)), (nights, current(nights)))
    assert diffs == [] and counts["fct_stop_visit_loads"] > 10_000 and counts["mart_contract_kpis"] > 0
