"""Backfills and rebuilds in batches (issue #32): the plan, the budget, kill and resume, rebuild.

A range of days, backfilled, publishes what the nights, one by one, published."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citylake import cli
from citylake.core.errors import ConfigError
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.night import batches, steps
from citylake.night.steps import backfill
from citylake.publish import gate
from citylake.publish.reader import current, registry
from devtools.compare import compare_publications
from quality.suites import CheckResult
from tests.night.conftest import history_load_env

START = date(2026, 1, 1)


@given(
    rows=st.lists(st.integers(min_value=0, max_value=1_000), min_size=0, max_size=40),
    max_rows=st.integers(min_value=1, max_value=3_000),
)
def test_batches_cover_the_dates_in_order_under_the_bound(rows: list[int], max_rows: int) -> None:
    """Every date once, in order, consecutive dates per batch; a batch passes the bound only as a
    single date that alone passes it; and no batch could have taken the next batch's first date."""
    dates = [START + timedelta(days=i) for i in range(len(rows))]
    per_date = dict(zip(dates, rows, strict=True))
    planned = batches.plan_batches(reversed(dates), per_date, max_rows)
    assert [d for b in planned for d in b] == dates
    for i, b in enumerate(planned):
        held = sum(per_date[d] for d in b)
        assert held <= max_rows or len(b) == 1
        if i + 1 < len(planned):
            assert held + per_date[planned[i + 1][0]] > max_rows


@given(
    n=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(["", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB", "kib", "gb"]),
    space=st.sampled_from(["", " "]),
)
def test_any_size_written_with_a_unit_reads_as_its_bytes(n: int, unit: str, space: str) -> None:
    factor = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    assert batches.parse_size(f" {n}{space}{unit} ") == n * factor[unit.upper()]


def test_the_rules_version_changes_with_the_citys_rules_only(tmp_path) -> None:
    """The fingerprint a publication records moves with the city's folder, not with the run."""
    from citylake.build.dbt import rules_version

    (tmp_path / "city.yaml").write_text("school_zone: A\n", encoding="utf-8")
    first = rules_version(Settings(config_dir=str(tmp_path)))
    assert rules_version(Settings(config_dir=str(tmp_path))) == first
    (tmp_path / "city.yaml").write_text("school_zone: B\n", encoding="utf-8")
    assert rules_version(Settings(config_dir=str(tmp_path))) != first


def test_batch_budget_reads_sizes_as_people_write_them() -> None:
    assert batches.parse_size("6GiB") == 6 * 1024**3
    assert batches.parse_size("500 MB") == 500 * 10**6
    assert batches.parse_size("1073741824") == 1024**3
    with pytest.raises(ConfigError, match="CITYLAKE_BATCH_MEMORY='lots': not a size"):
        batches.parse_size("lots")
    # a budget below what a build costs before its first row still builds a date at a time
    assert batches.rows_per_batch(1) == 1
    assert batches.rows_per_batch(batches.FIXED_BYTES + 10 * batches.BYTES_PER_ROW) == 10


class Killed(Exception):
    """Stands for the process dying between two lake writes."""


def test_backfill_killed_after_a_batch_resumes_and_equals_the_nights(
    lake_after_nights, tmp_path, monkeypatch, capsys, reliability
) -> None:
    """A backfill in one-date batches (a budget too small for two) is killed inside its second
    batch, the first built, committed to the tables and recorded; nothing is published.
    ``--resume`` builds the second batch again and publishes once: the marts equal the nights run
    one by one. From the day before the first: the nights also saw the hostile files dated that
    day (tests/support/hostile.py), quarantined, which the contract KPIs' lineage names. Then a
    rebuild of the range from what is staged, whose second batch is refused, publishes the first
    and stops; resumed, it publishes the same marts as the nights, with records saying what
    each run was."""
    history_load_env(monkeypatch, tmp_path, lake_after_nights.drop, "1MB")  # a date a batch
    storage = open_storage(Settings())

    # the first batch built and recorded, then the process dies inside the second: its upstream
    # models written, the rest not
    build_marts = steps.build_marts

    def die_inside_the_second_batch(settings, plan, group=None, publication_id="x"):
        if plan["dates"] == ["2026-03-30"]:
            return build_marts(settings, plan, group=group, publication_id=publication_id)
        half = {**plan, "selections": {"half": ["+int_journey_stages_chained"]}}
        assert build_marts(settings, half, group="half", publication_id=publication_id)["success"]
        raise Killed

    monkeypatch.setattr(steps, "build_marts", die_inside_the_second_batch)
    with pytest.raises(Killed):
        cli.main(["backfill", "--from", "2026-03-29", "--to", "2026-03-31"])
    state = batches.read_state(storage)
    assert state["kind"] == "backfill" and not state["finished"]
    assert state["batches"] == [["2026-03-30"], ["2026-03-31"]] and state["built"] == [0]
    # the first batch audited and committed to the tables, nothing published before the last batch
    assert state["stage"]["dates"] == ["2026-03-30"] and state["stage"]["promoted"]["transit"] == ["2026-03-30"]
    assert registry(storage) == [] and current(storage).get("groups") == {}
    # meanwhile a night publishes nothing (nobody sees half a history load): its dates wait
    held = steps.publish_only(Settings(), date(2026, 3, 30))
    assert held.publication_id is None and "`citylake backfill --resume`" in held.refused_groups["transit"][0]
    assert registry(storage) == [] and gate.read_pending(storage)["transit"] == ["2026-03-30"]

    with pytest.raises(ConfigError, match="was interrupted .1 of 2 batches built.*citylake backfill --resume"):
        backfill(Settings(), date(2026, 3, 30), date(2026, 3, 31))

    monkeypatch.setattr(steps, "build_marts", build_marts)
    assert cli.main(["backfill", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "built service dates: 2 from 2026-03-29 to 2026-03-31 (dbt ok)" in out, out
    assert batches.read_state(storage)["finished"]
    records = registry(storage)
    assert len(records) == 1 and records[0]["kind"] == "backfill" and records[0]["batches"] == 2
    assert records[0]["planned_by"] == state["run_id"] != records[0]["publication_id"]
    assert records[0]["service_dates"] == ["2026-03-30", "2026-03-31"]
    nights = open_storage(lake_after_nights.settings())
    counts, diffs = compare_publications((storage, current(storage)), (nights, current(nights)))
    assert diffs == [] and counts["fct_stop_visit_loads"] > 10_000 and counts["mart_contract_kpis"] > 0
    reliability(
        "kill_backfill",
        1,
        1,
        0,
        "killed inside a batch (its upstream models built), the batch before it recorded: nothing "
        "published; `citylake backfill --resume` builds the batches not recorded and publishes "
        "once: the marts equal the nights run one by one, row by row",
    )
    with pytest.raises(ConfigError, match="nothing to resume"):
        backfill(Settings(), resume=True)
    with pytest.raises(ConfigError, match="the first date is after the last"):
        backfill(Settings(), date(2026, 3, 31), date(2026, 3, 30))

    # a rebuild of the range from what is staged, in one-date batches, whose second batch the
    # audit refuses for parking: the run publishes what passed (parking through the first date,
    # the other groups through both) and stops there; its resume publishes the rest
    run_suites = gate.run_suites

    def refuse_parking_on_the_31st(warehouse, suites, groups):
        run = run_suites(warehouse, suites, groups)
        if any("2026-03-31" in s.sql for s in suites):
            run.results.append(CheckResult("injected", "parking", "ExpectRefusal", None, "error", False, "refused"))
        return run

    monkeypatch.setattr(gate, "run_suites", refuse_parking_on_the_31st)
    assert cli.main(["rebuild", "--from", "2026-03-30", "--to", "2026-03-31", "--group", "parking"]) == 1
    out = capsys.readouterr().out
    assert "refused group parking (published up to 2026-03-30" in out and "citylake rebuild --resume" in out, out
    stopped = registry(storage)[-1]
    assert stopped["kind"] == "rebuild" and stopped["group"] == "parking"
    # a rebuild of parking audits and publishes parking and what depends on it (contract), no other
    assert stopped["published_through"] == {"parking": "2026-03-30", "contract": "2026-03-31"}
    assert list(stopped["groups_refused"]) == ["parking"] and stopped["groups_published"] == ["parking", "contract"]
    assert gate.read_pending(storage)["parking"] == ["2026-03-31"] and gate.read_pending(storage)["transit"] == []
    state = batches.read_state(storage)
    assert state["kind"] == "rebuild" and state["built"] == [0] and not state["finished"] and state["stage"] is None

    monkeypatch.setattr(gate, "run_suites", run_suites)
    assert cli.main(["rebuild", "--resume"]) == 0
    assert "built service dates: 1 from 2026-03-30 to 2026-03-31 (rebuilt)" in capsys.readouterr().out
    records = registry(storage)
    assert len(records) == 3
    rebuilt = records[-1]
    assert rebuilt["kind"] == "rebuild" and rebuilt["range"] == ["2026-03-30", "2026-03-31"]
    assert rebuilt["group"] == "parking" and rebuilt["planned_by"] == state["run_id"]
    assert rebuilt["code_version"] and rebuilt["rules_version"] == records[0]["rules_version"]
    assert gate.read_pending(storage)["parking"] == []
    counts, diffs = compare_publications((storage, current(storage)), (nights, current(nights)))
    assert diffs == []
    assert batches.read_state(storage)["finished"]

    # the month's contract report as recomputed now, beside the figures as the backfill published them
    then = records[0]["publication_id"]
    assert cli.main(["report", "--operator", "bus", "--month", "2026-03", "--compare-as-of", then]) == 0
    page = storage.get_bytes(
        f"reports/contract/operator=bus/month=2026-03/{rebuilt['publication_id']}__vs__{then}.html"
    ).decode()
    assert "Tel que publié alors, tel que recalculé maintenant" in page and then in page
    assert page.count("data-changed='false'") >= 3 and "data-changed='true'" not in page  # same data, code, rules
    assert cli.main(["rebuild", "--from", "2026-03-30", "--to", "2026-03-31", "--group", "nowhere"]) == 1
    assert "no such publication group" in capsys.readouterr().err
    assert cli.main(["rebuild", "--resume", "--from", "2026-03-30"]) == 1
    assert "give no --from/--to with it" in capsys.readouterr().err


def test_a_night_after_missed_nights_goes_in_batches_through_the_dags_steps(file_settings, tmp_path, monkeypatch):
    """The nightly DAG's steps after missed nights, as its tasks call them: ``plan_build`` cuts the
    dates into batches under the budget, each group's ``build_marts`` builds the batches in order
    (dbt stands in, recording its dates), ``audit_and_publish`` audits and commits batch by batch
    on one stage and publishes with the last (the gate stands in; the real one, batch by batch,
    is the backfill's test above)."""
    from citylake.publish.gate import GateResult

    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    (tmp_path / "warehouse.duckdb").write_bytes(b"")  # not a first build
    monkeypatch.setenv("CITYLAKE_BATCH_MEMORY", "1MB")  # a date a batch
    days = ["2026-03-28", "2026-03-29", "2026-03-30"]
    monkeypatch.setattr(batches, "staged_rows", lambda storage, dates=None: {date.fromisoformat(d): 10 for d in days})
    plan = steps.plan_build(Settings(), days, selections=False)
    assert plan["batches"] == [[d] for d in days]

    built: list[tuple[str | None, list[str]]] = []

    class Build:
        success, results, warehouse = True, [], tmp_path / "warehouse.duckdb"

    def dbt(settings, service_dates, select=None, **kwargs):
        built.append((select, [d.isoformat() for d in service_dates]))
        assert kwargs["extra_vars"]["batch_dates_only"] and not kwargs["extra_vars"]["several_dates"]
        return Build()

    monkeypatch.setattr(steps, "build", dbt)
    plan["selections"] = {"transit": ["a"], "parking": ["b"]}
    builds = [steps.build_marts(Settings(), plan, g) for g in plan["selections"]]
    assert built == [("a", [d]) for d in days] + [("b", [d]) for d in days]  # each group, batch after batch
    assert all(b["service_dates"] == days and b["batches"] == plan["batches"] for b in builds)

    gates: list[tuple[list[str], bool, int]] = []

    def gate_of(settings, storage, run_id, one, record_extra=None, *, stage=None, publish=True, inputs=None):
        gates.append((one["service_dates"], publish, id(stage)))
        return GateResult(run_id, run_id if publish else None), [], None, None

    monkeypatch.setattr(steps, "_audit_and_publish", gate_of)
    steps.audit_and_publish(Settings(), "20261206T000000Z-00000001", steps.merge_builds(builds))
    assert [(g[0], g[1]) for g in gates] == [([d], d == days[-1]) for d in days]
    assert len({g[2] for g in gates}) == 1  # one stage: each batch commits on the ones before


def test_a_night_in_process_after_missed_nights_builds_and_commits_batch_by_batch(
    file_settings, tmp_path, monkeypatch
) -> None:
    """``citylake run`` that finds several dates to build (here the dates a refused night left
    pending) builds each batch alone, then the gate commits it on the batches before, and only
    the last publishes (dbt and the gate stand in, recording what they are given)."""
    from citylake.publish.gate import PENDING, GateResult

    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    (tmp_path / "warehouse.duckdb").write_bytes(b"")  # not a first build
    monkeypatch.setenv("CITYLAKE_BATCH_MEMORY", "1MB")  # a date a batch
    storage = open_storage(Settings())
    storage.put_json(PENDING, {"transit": ["2026-03-28", "2026-03-29"]}, overwrite=True)
    monkeypatch.setattr(batches, "staged_rows", lambda storage, dates=None: dict.fromkeys(dates or [], 10))
    monkeypatch.setattr(steps, "staged_inputs", lambda storage, dates=None: [])
    events: list[tuple] = []

    class Build:
        success, results, warehouse = True, [], tmp_path / "warehouse.duckdb"

    def dbt(settings, service_dates, **kwargs):
        events.append(("build", [d.isoformat() for d in service_dates]))
        return Build()

    def gate_of(settings, storage, run_id, one, record_extra=None, *, stage=None, publish=True, **kwargs):
        events.append(("gate", one["service_dates"], publish, id(stage)))
        result = GateResult(run_id, run_id if publish else None)
        result.record = {"service_dates": one["service_dates"]} if publish else {}
        return result, [], None, None

    monkeypatch.setattr(steps, "build", dbt)
    monkeypatch.setattr(steps, "_audit_and_publish", gate_of)
    night = steps.run_night(Settings(), service_date=date(2026, 3, 30), skip_ingest=True)
    assert [e[:3] if e[0] == "gate" else e for e in events] == [
        ("build", ["2026-03-28"]),
        ("gate", ["2026-03-28"], False),
        ("build", ["2026-03-29"]),
        ("gate", ["2026-03-29"], False),
        ("build", ["2026-03-30"]),
        ("gate", ["2026-03-30"], True),
    ]
    assert len({e[3] for e in events if e[0] == "gate"}) == 1 and night.build_ok
