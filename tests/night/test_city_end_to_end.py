"""Issue #30, part 5: a city on another clock and calendar runs end to end from its configuration
alone (city.yaml: no code, no dbt_project.yml edit)."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from citylake.core.calendar_fr import day_info
from citylake.core.settings import Settings, warehouse_path
from citylake.night.steps import night_after, run_night
from devtools import SAMPLE_NETWORK
from devtools.evaluate import evaluate
from devtools.simulator.run import SimulationConfig, simulate
from tests.conftest import PSEUDONYM_KEY

FIRST, LAST = date(2026, 5, 21), date(2026, 5, 22)  # a Thursday, then Martinique's abolition day


@pytest.mark.slow
def test_a_city_in_martinique_gets_its_clock_holidays_and_figures(tmp_path, monkeypatch) -> None:
    """Fort-de-France: two simulated days (the second, 22 May, a public holiday there and a working
    Friday in Paris) through one night. The day types are Martinique's, and the load profile's
    time bands are its local hours: against the simulator's truth the profile's cells are as
    accurate as a Paris city's, and read on Paris time (six hours off) they are not."""
    city = tmp_path / "city"
    city.mkdir()
    (city / "city.yaml").write_text(
        "name: Fort-de-France (test)\ninsee_code: '97209'\ntimezone: America/Martinique\n"
        "school_zone: C\nholidays: martinique\n",
        encoding="utf-8",
    )
    for name, value in {
        "CITYLAKE_CONFIG_DIR": str(city),
        "CITYLAKE_LAKE_URI": (tmp_path / "lake").as_uri(),
        "CITYLAKE_DROP_ROOT": (tmp_path / "drop").as_uri(),
        "CITYLAKE_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "CITYLAKE_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "CITYLAKE_REPORT_PDF": "never",
        "CITYLAKE_DOCS_SITE": "false",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    place = settings.city
    assert place.timezone == "America/Martinique"
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=FIRST,
            days=2,
            out=tmp_path / "drop",
            seed=5,
            volume=0.5,
            tz=place.timezone,
            school_zone=place.school_zone,
            holidays=place.holidays,
            progress=False,
        )
    )
    night = run_night(settings, as_of=night_after(LAST, place.timezone))
    assert night.ok, (night.gate.refused_groups if night.gate else None, night.ingest.lines())
    warehouse = warehouse_path(settings)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        day_types = dict(
            con.sql(
                f"select service_date, day_type from dim_calendar where service_date in ('{FIRST}', '{LAST}')"
            ).fetchall()
        )
        profiled = {r[0] for r in con.sql("select distinct day_type from mart_bus_load_profile").fetchall()}
    finally:
        con.close()
    assert day_types == {d: day_info(d, "C", "martinique").label for d in (FIRST, LAST)}
    assert day_types[LAST] == "sunday_holiday" and day_info(LAST, "C").label == "weekday"
    assert profiled == {"weekday", "sunday_holiday"}  # the holiday's loads profiled as a Sunday's
    right = evaluate(tmp_path / "drop", warehouse)  # the simulated city's clock (simulation.json)
    wrong = evaluate(tmp_path / "drop", warehouse, tz="Europe/Paris")
    assert right["load_profile_wape"] < 0.25, right
    assert wrong["load_profile_wape"] > 2 * right["load_profile_wape"], (right, wrong)
