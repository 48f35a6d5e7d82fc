"""The quality suites check what a night publishes: its service dates, not the whole history."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb

from citylake.build.groups import load_manifest, mart_groups
from quality.suites import build_suites, run_suites


def test_row_checks_run_on_the_nights_dates_only(lake_after_nights, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(lake_after_nights.warehouse, warehouse)
    con = duckdb.connect(str(warehouse))
    # an impossible load on the first day only
    con.execute("update fct_stop_visit_loads set load_estimated = -5 where service_date = date '2026-03-30'")
    con.close()
    groups = mart_groups(load_manifest())

    def blocking(dates: list[date]) -> set[str]:
        run = run_suites(warehouse, build_suites(dates), groups)
        return {f"{r.suite}:{r.column}" for r in run.blocking_failures()}

    assert "fct_stop_visit_loads:load_estimated" in blocking([date(2026, 3, 30)])
    # the night of the 31st publishes the 31st: the 30th passed when it was published
    assert "fct_stop_visit_loads:load_estimated" not in blocking([date(2026, 3, 31)])
    # the frames hold the night's rows only
    frame_sql = build_suites([date(2026, 3, 31)])[0].sql
    con = duckdb.connect(str(warehouse), read_only=True)
    dates = con.sql(f"select distinct service_date from ({frame_sql})").fetchall()
    con.close()
    assert dates == [(date(2026, 3, 31),)]
    # monthly marts: the months of the night's dates
    profile = next(s for s in build_suites([date(2026, 3, 31)]) if s.name == "mart_bus_load_profile")
    assert "month in (date '2026-03-01')" in profile.sql


def test_a_drifting_apc_counter_is_flagged_naming_its_vehicle(lake_after_nights, tmp_path) -> None:
    """One vehicle's counter losing half its boardings: its validations / APC ratio doubles
    against its fleet's; the quality report names it (a warning: the night still publishes)."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(lake_after_nights.warehouse, warehouse)
    groups = mart_groups(load_manifest())
    suite = [s for s in build_suites([date(2026, 3, 31)]) if s.name == "apc_counter_drift"]
    assert not run_suites(warehouse, suite, groups).warnings()  # the simulated counters agree
    con = duckdb.connect(str(warehouse))
    vehicle = con.sql(
        "select vehicle_id from fct_stop_visit_loads where has_apc group by 1 order by sum(apc_boardings) desc limit 1"
    ).fetchone()[0]
    con.execute(f"update fct_stop_visit_loads set apc_boardings = apc_boardings // 2 where vehicle_id = '{vehicle}'")
    con.close()
    run = run_suites(warehouse, suite, groups)
    [warning] = run.warnings()
    assert warning.examples and warning.examples[0].startswith(f"{vehicle} (")
    assert not run.blocking_failures()
