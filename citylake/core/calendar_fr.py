"""The French calendar as transit planners use it: day types, public and school holidays.

Public holidays come from the ``holidays`` package (France, metropolitan), school holidays
from ``vacances-scolaires-france`` (the Ministry of Education's official dates per zone A/B/C).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

WEEKDAY, SATURDAY, SUNDAY_HOLIDAY = "weekday", "saturday", "sunday_holiday"


@lru_cache(maxsize=1)
def _school() -> object:
    from vacances_scolaires_france import SchoolHolidayDates

    return SchoolHolidayDates()


@lru_cache(maxsize=256)
def _public(year: int, calendar: str = "metropole") -> holidays.HolidayBase:
    """The public holidays of a year in one of the city calendars (citylake.core.city)."""
    from citylake.core.city import HOLIDAY_CALENDARS

    return holidays.France(years=year, subdiv=HOLIDAY_CALENDARS[calendar], language="fr")


@dataclass(frozen=True)
class DayInfo:
    """What kind of day a service date is."""

    day: date
    day_type: str  # weekday | saturday | sunday_holiday
    is_public_holiday: bool
    public_holiday_name: str | None
    is_school_holiday: bool
    school_holiday_name: str | None

    @property
    def label(self) -> str:
        """Return the planner's label, e.g. 'weekday_school_holiday'."""
        if self.day_type == WEEKDAY and self.is_school_holiday:
            return "weekday_school_holiday"
        return self.day_type


def day_info(day: date, school_zone: str = "C", calendar: str = "metropole") -> DayInfo:
    """Return the day type of ``day`` for the given school zone and public-holiday calendar."""
    public_name = _public(day.year, calendar).get(day)
    school = _school()
    try:
        is_school = school.is_holiday_for_zone(day, school_zone)
    except Exception:  # year outside the official data: treat as term time
        is_school = False
    school_name = school.data[day]["nom_vacances"] if is_school else None
    if public_name or day.weekday() == 6:
        day_type = SUNDAY_HOLIDAY
    elif day.weekday() == 5:
        day_type = SATURDAY
    else:
        day_type = WEEKDAY
    return DayInfo(day, day_type, bool(public_name), public_name, is_school, school_name)


def service_day_start(day: date, tz: str = "Europe/Paris") -> datetime:
    """Return the instant GTFS times of ``day`` count from: local noon minus 12 hours.

    On a DST change day this is not local midnight, exactly as the GTFS reference defines it.
    """
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
    return noon - timedelta(hours=12)


def dst_change_days(start: date, end: date, tz: str = "Europe/Paris") -> list[date]:
    """Return the days in [start, end] whose local length is not 24 hours."""
    out = []
    day = start
    zone = ZoneInfo(tz)
    while day <= end:
        a = datetime(day.year, day.month, day.day, tzinfo=zone)
        nxt = day + timedelta(days=1)
        b = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        if (b - a).total_seconds() != 86400 or a.utcoffset() != b.utcoffset():
            out.append(day)
        day = nxt
    return out


def write_seeds(folder, first_year: int = 2020, last_year: int = 2028) -> None:
    """Write dbt seeds: French public holidays of every city calendar (metropolitan France,
    Alsace-Moselle, each overseas department) and school holidays per zone, as CSV."""
    import csv
    from pathlib import Path

    from citylake.core.city import HOLIDAY_CALENDARS

    folder = Path(folder)
    with open(folder / "fr_public_holidays.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["calendar", "holiday_date", "holiday_name"])
        for calendar in HOLIDAY_CALENDARS:
            for year in range(first_year, last_year + 1):
                for day, name in sorted(_public(year, calendar).items()):
                    w.writerow([calendar, day.isoformat(), name])
    school = _school()
    with open(folder / "fr_school_holidays.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["holiday_date", "zone", "holiday_name"])
        for day in sorted(school.data):
            if first_year <= day.year <= last_year:
                for zone in ("A", "B", "C"):
                    if school.data[day][school.zone_key(zone)]:
                        w.writerow([day.isoformat(), zone, school.data[day]["nom_vacances"]])


if __name__ == "__main__":
    import sys

    write_seeds(sys.argv[1] if len(sys.argv) > 1 else "dbt_project/seeds")
