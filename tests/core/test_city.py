"""Issue #30: one city, one configuration. The city's facts (time zone, school zone, public-holiday
calendar, deadlines) are said once, typed, checked at start with the key named, and read by dbt,
the DAGs, the night's timing and the simulator from there."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from citylake.build.dbt import DBT_PROJECT, city_vars, with_city_vars
from citylake.core.calendar_fr import day_info
from citylake.core.city import HOLIDAY_CALENDARS, City, Deadline, load_city
from citylake.core.errors import ConfigError
from citylake.core.settings import Settings


def _city_folder(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "city"
    folder.mkdir(exist_ok=True)
    (folder / "city.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("timezone: Europe/Pariss\n", "timezone: Value error, 'Europe/Pariss' is not an IANA time zone"),
        ("school_zone: D\n", "school_zone: Input should be 'A', 'B' or 'C'"),
        ("holidays: corse\n", "holidays: Input should be 'metropole'"),
        ("insee_code: '123'\n", "insee_code: Value error, '123' is neither"),
        ("mayor: someone\n", "mayor: Extra inputs are not permitted"),
        ("- a list\n", "a mapping of keys"),
    ],
)
def test_a_wrong_city_file_is_refused_at_start_naming_the_key(tmp_path, monkeypatch, text, named) -> None:
    monkeypatch.setenv("CITYLAKE_CONFIG_DIR", str(_city_folder(tmp_path, text)))
    with pytest.raises(ConfigError, match="city.yaml: ") as refused:
        Settings()
    assert named in str(refused.value)


def test_the_city_file_sets_the_time_zone_and_the_environment_must_agree(tmp_path, monkeypatch) -> None:
    folder = _city_folder(
        tmp_path, "name: CA du Centre Martinique\ntimezone: America/Martinique\nholidays: martinique\n"
    )
    monkeypatch.setenv("CITYLAKE_CONFIG_DIR", str(folder))
    settings = Settings()
    assert settings.timezone == "America/Martinique" and settings.city.holidays == "martinique"
    assert settings.city.dbt_vars() == {
        "timezone": "America/Martinique",
        "school_zone": "C",
        "holiday_calendar": "martinique",
    }
    monkeypatch.setenv("CITYLAKE_TIMEZONE", "Europe/Paris")
    with pytest.raises(ConfigError, match="CITYLAKE_TIMEZONE is 'Europe/Paris': say it once"):
        Settings()
    monkeypatch.setenv("CITYLAKE_TIMEZONE", "America/Martinique")
    assert Settings().timezone == "America/Martinique"
    assert load_city(None, "Asia/Tokyo").timezone == "Asia/Tokyo"  # no city file: the environment's


def test_deadlines_are_parsed_once_in_the_citys_time() -> None:
    due = Deadline.parse("D+1 06:00", "America/Martinique")
    assert due.due(date(2026, 3, 30), "America/Martinique") == datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert Deadline.parse("D+2 23:59 Europe/Paris", "Europe/Paris") == Deadline(days=2, at=time(23, 59))
    with pytest.raises(ConfigError, match="names Europe/Paris, the city's time zone is America/Cayenne"):
        Deadline.parse("D+1 06:00 Europe/Paris", "America/Cayenne", where="bus/apc file.deadline")
    for wrong in ("D+1 6:00", "D+1 25:00", "J+1 06:00"):
        with pytest.raises(ConfigError):
            Deadline.parse(wrong, "Europe/Paris")


def test_every_dbt_call_gets_the_citys_vars_and_dbt_project_has_none() -> None:
    """A var the city sets has no value in dbt_project.yml (a call without it cannot fall back to
    Paris): the vars come from the City on every call, merged into any --vars given."""
    project = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text(encoding="utf-8"))
    city = City(timezone="Indian/Reunion", school_zone="B", holidays="reunion")
    assert not set(city_vars(city)) & set(project["vars"])
    assert set(city.dbt_vars()) < set(city_vars(city))  # and the freshness its contracts' deadlines give
    args = with_city_vars(["build", "--vars", json.dumps({"service_dates": ["2026-03-30"]})], city)
    assert json.loads(args[2]) == {"service_dates": ["2026-03-30"], **city_vars(city)}
    assert with_city_vars(["docs", "generate"], city)[-2:] == ["--vars", json.dumps(city_vars(city))]
    profile = (DBT_PROJECT / "profiles.yml").read_text(encoding="utf-8")
    assert "env_var('CITYLAKE_TIMEZONE')" in profile  # DuckDB's session zone: the city's, no default


def _calendar_model(calendar: str, zone: str, first: date) -> dict[date, str]:
    """Day types of ``int_calendar_days`` as dbt computes them, for one city calendar and zone:
    the model's SQL rendered with its vars (it calls only ref and var) over the shipped seeds."""
    import re

    import jinja2

    raw = (DBT_PROJECT / "models/intermediate/int_calendar_days.sql").read_text(encoding="utf-8")
    assert set(re.findall(r"\{\{\s*(\w+)\(", raw)) == {"ref", "var"}
    values = {"holiday_calendar": calendar, "school_zone": zone}
    sql = jinja2.Template(raw).render(ref=lambda name: name, var=lambda name: values[name])
    con = duckdb.connect()
    for seed in ("fr_public_holidays", "fr_school_holidays"):
        con.execute(
            f"create table {seed} as select * from read_csv('{DBT_PROJECT / 'seeds' / seed}.csv', all_varchar=true)"
        )
    con.execute(f"create table int_gtfs_version_by_date as select date '{first}' as service_date")
    return dict(con.sql(f"select service_date, day_type from ({sql})").fetchall())


@pytest.mark.parametrize("calendar", list(HOLIDAY_CALENDARS))
def test_day_types_follow_the_citys_calendar_and_zone_in_dbt_as_in_python(calendar) -> None:
    """Differential: for each public-holiday calendar and school zone, the dbt model's day type of
    every day of a year equals the Python calendar's (the simulator's truth); and the calendars
    differ where the law says (abolition days: 22 May in Martinique, 27 May in Guadeloupe, 10 June in
    Guyane, 27 April in Mayotte; 26 December in Alsace-Moselle)."""
    first = date(2026, 1, 1)
    for zone in ("A", "B", "C"):
        model = _calendar_model(calendar, zone, first)
        assert len(model) == 366
        python = {
            first + timedelta(days=i): day_info(first + timedelta(days=i), zone, calendar).label for i in range(366)
        }
        assert model == python, (calendar, zone, sorted(set(model.items()) ^ set(python.items()))[:5])
    special = {
        "martinique": date(2026, 5, 22),
        "guadeloupe": date(2026, 5, 27),
        "guyane": date(2026, 6, 10),
        "mayotte": date(2026, 4, 27),
        "alsace_moselle": date(2026, 12, 26),
    }
    if calendar in special:
        day = special[calendar]
        assert model[day] == "sunday_holiday" and day_info(day, "C").label != "sunday_holiday"


def test_the_night_and_the_sensors_follow_the_deadlines(tmp_path, monkeypatch) -> None:
    """A deadline moved to 08:00 in the city's contract moves the nightly refresh to 08:30 and the
    ingestion sensor's give-up time to 7 hours after its 01:00 run; the night's service date is
    the city's local yesterday."""
    from citylake.night.airflow import nightly_cron, sensor_timeout, service_date_of
    from citylake.night.steps import night_after
    from ingestion import registry
    from ingestion.contracts import HERE

    shipped = (HERE / "bus__apc.v1.yaml").read_text(encoding="utf-8")
    folder = _city_folder(tmp_path, "timezone: America/Martinique\nholidays: martinique\n")
    (folder / "contracts").mkdir()
    (folder / "contracts" / "bus__apc.v1.yaml").write_text(
        shipped.replace('deadline: "D+1 06:00"', 'deadline: "D+1 08:00"'), encoding="utf-8"
    )
    monkeypatch.setenv("CITYLAKE_CONFIG_DIR", str(folder))
    settings = Settings()
    tz = settings.timezone
    assert registry.deadlines(tz)[("bus", "apc")] == Deadline(days=1, at=time(8, 0))
    assert registry.night_time(tz) == time(8, 30) and nightly_cron(settings) == "30 8 * * *"
    assert night_after(date(2026, 3, 30), tz) == datetime(2026, 3, 31, 12, 30, tzinfo=UTC)
    assert sensor_timeout(registry.deadlines(tz)[("bus", "apc")], time(1, 0)) == timedelta(hours=7)
    logical = datetime(2026, 3, 31, 2, 0, tzinfo=UTC)  # 22:00 on the 30th in Martinique, 04:00 in Paris
    assert service_date_of(logical) == date(2026, 3, 29)
    assert service_date_of(logical, "Europe/Paris") == date(2026, 3, 30)
