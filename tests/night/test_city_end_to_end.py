"""Issue #30, part 5: a city on another clock and calendar runs end to end from its configuration
alone (city.yaml: no code, no dbt_project.yml edit), through the nightly DAG."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from citylake.core.calendar_fr import day_info
from citylake.core.settings import Settings, warehouse_path
from citylake.night.steps import night_after, run_night
from devtools import SAMPLE_NETWORK
from devtools.evaluate import evaluate
from devtools.simulator.run import SimulationConfig, simulate
from tests.conftest import PSEUDONYM_KEY
from tests.support.warehouse import q

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Place:
    city_yaml: str
    day: date
    wrong: dict  # the same figures read with what a Paris / zone-C city would assume
    day_type: str  # the day's type in the city's calendar
    paris_day_type: str  # and in a zone-C Paris city's


MARTINIQUE = Place(  # 22 May: abolition day there, a working Friday in Paris; six hours behind it
    "name: Fort-de-France (test)\ninsee_code: '97209'\ntimezone: America/Martinique\n"
    "school_zone: C\nholidays: martinique\n",
    date(2026, 5, 22),
    {"tz": "Europe/Paris"},
    "sunday_holiday",
    "weekday",
)
LYON = Place(  # 10 February: zone A's winter holidays have begun, B's and C's have not
    "name: Lyon (test)\ninsee_code: '69123'\ntimezone: Europe/Paris\nschool_zone: A\nholidays: metropole\n",
    date(2026, 2, 10),
    {"school_zone": "C"},
    "weekday_school_holiday",
    "weekday",
)


def _nightly_dag():
    spec = importlib.util.spec_from_file_location("citylake_nightly_city", ROOT / "dags" / "citylake_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.nightly_refresh()


@pytest.mark.slow
@pytest.mark.parametrize("place", [MARTINIQUE, LYON], ids=["martinique", "zone_a"])
def test_a_city_gets_its_clock_calendar_and_figures_through_the_dag(place, tmp_path, monkeypatch, airflow_env):
    """One simulated day of the sample network as the city, one night on the city's clock: through
    the nightly DAG for a city on another clock, in one process (the DAG's steps) for a calendar
    alone. The day type is the city's; the load profile's time bands, the parking day, the
    fleet's peak hour and the delivery deadlines are read on its clock and calendar: against the
    simulator's truth they are right, and read as a Paris zone-C city would they are not."""
    city = tmp_path / "city"
    city.mkdir()
    (city / "city.yaml").write_text(place.city_yaml, encoding="utf-8")
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
    town = settings.city
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=place.day,
            days=1,
            out=tmp_path / "drop",
            seed=5,
            volume=0.5,
            tz=town.timezone,
            school_zone=town.school_zone,
            holidays=town.holidays,
            progress=False,
        )
    )
    if town.timezone != "Europe/Paris":  # the DAG on the city's clock (Paris's is the nightly test's)
        dag = _nightly_dag()
        assert str(dag.timezone) in (town.timezone, f"Timezone('{town.timezone}')")
        run = dag.test(logical_date=night_after(place.day, town.timezone))
        assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    else:  # a calendar alone: the same steps in one process (citylake run)
        assert run_night(settings, as_of=night_after(place.day, town.timezone)).ok

    warehouse = warehouse_path(settings)
    # the day's type: the city's calendar, not Paris zone C's
    assert day_info(place.day, town.school_zone, town.holidays).label == place.day_type
    assert day_info(place.day, "C").label == place.paris_day_type != place.day_type
    calendar = q(warehouse, f"select day_type from dim_calendar where service_date = '{place.day}'")
    assert calendar["day_type"].to_list() == [place.day_type]
    profiled = q(warehouse, "select distinct day_type from mart_bus_load_profile")["day_type"].to_list()
    assert profiled == [place.day_type]

    # the load profile against the simulator's truth, on the city's clock and calendar, and not
    right = evaluate(tmp_path / "drop", warehouse)
    wrong = evaluate(tmp_path / "drop", warehouse, **place.wrong)
    # (one day at half volume: sparse cells, so the error is higher than over a month; read on
    # Paris's clock or zone C's calendar the cells are another hour's or another day type's)
    assert right["load_profile_wape"] < 0.4, right
    assert wrong["load_profile_wape"] > 3 * right["load_profile_wape"], (right, wrong)

    # the parking day is the city's local day: every reading of the truth's day, in that day only
    truth = pl.read_parquet(tmp_path / "drop" / "truth" / "parking_occupancy" / "**" / "*.parquet")
    local_days = truth["observed_at"].dt.convert_time_zone(town.timezone).dt.date().unique().to_list()
    assert local_days == [place.day]
    daily = q(warehouse, "select facility_id, service_date, entries from mart_parking_occupancy_daily")
    assert daily["service_date"].unique().to_list() == [place.day]
    expected = truth.group_by("facility_id").agg(pl.col("entries").sum()).sort("facility_id")
    assert daily.select("facility_id", "entries").sort("facility_id").to_dicts() == expected.to_dicts()

    # the fleet's peak hour (08:00 local): vehicles immobilised then, as the simulator had them
    fleet_truth = pl.read_parquet(tmp_path / "drop" / "truth" / "vehicle_days" / "**" / "*.parquet")
    fleet = q(warehouse, "select service_date, fleet_size, immobilised_at_peak from mart_fleet_availability_daily")
    assert fleet.to_dicts() == [
        {
            "service_date": place.day,
            "fleet_size": fleet_truth.height,
            "immobilised_at_peak": int(fleet_truth["is_immobilised_at_peak"].sum()),
        }
    ]

    # the contract: every daily delivery came before its deadline on the city's clock (on Paris's,
    # a file delivered at 05:00 in Fort-de-France is six hours late)
    status = q(warehouse, "select distinct delivery_status from int_delivery_compliance_daily")
    assert status["delivery_status"].to_list() == ["on_time"]
    kpi = q(warehouse, "select value from mart_contract_kpis where operator = 'bus' and kpi_code = 'DATA_DELIVERY'")
    assert kpi["value"].to_list() == [1.0]
