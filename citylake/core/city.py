"""The city: every fact that makes an agglomeration *this* one, said once, typed, and read by
everything that needs it (issue #30).

Its time zone, school-holiday zone and public-holiday calendar decide local times, time bands,
peak hours, day types and the night's service date; they come from ``CITYLAKE_CONFIG_DIR/city.yaml``
(and ``CITYLAKE_TIMEZONE``, which must agree with it), are validated when the city is built, with
messages that name the key, and are passed from here to dbt on every call (:meth:`City.dbt_vars`),
to the DAGs and to the simulator. A city on Paris time in school zone C needs no file at all.

The facts about its operators (feeds, groups, deadlines, personal columns) are the registry's and
the extract contracts' (``ingestion.registry``: ``deadlines``, ``feeds``, ``personal_feeds``); a
deadline is parsed here, once (:class:`Deadline`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from citylake.core.errors import ConfigError

CITY_FILE = "city.yaml"

#: The public-holiday calendars of French cities: metropolitan France, Alsace-Moselle (Good
#: Friday and 26 December, Code du travail L3134-13), and each overseas department's own
#: (abolition of slavery days, décret 83-1003): the ``holidays`` package's subdivisions.
HOLIDAY_CALENDARS: dict[str, str | None] = {
    "metropole": None,
    "alsace_moselle": "57",
    "guadeloupe": "971",
    "martinique": "972",
    "guyane": "973",
    "reunion": "974",
    "mayotte": "976",
}


#: 'D+1 06:00', optionally followed by the zone it is in (which must be the city's)
DEADLINE = re.compile(r"^D\+(\d+) (\d\d):(\d\d)(?: (\S+))?$")


class Deadline(BaseModel):
    """When a day's delivery is due: ``D+<days> HH:MM``, in the city's time."""

    model_config = ConfigDict(frozen=True)

    days: int = Field(ge=0, le=31)
    at: time

    @classmethod
    def parse(cls, text: str, tz: str, where: str = "deadline") -> Deadline:
        """Parse 'D+1 06:00' (a zone after it must be the city's: the city's clock decides)."""
        m = DEADLINE.match(str(text).strip())
        if not m:
            raise ConfigError(f"{where}: {text!r} is not a deadline like 'D+1 06:00'")
        if m.group(4) and m.group(4) != tz:
            raise ConfigError(
                f"{where}: {text!r} names {m.group(4)}, the city's time zone is {tz} (city.yaml timezone)"
            )
        hour, minute = int(m.group(2)), int(m.group(3))
        if hour > 23 or minute > 59:
            raise ConfigError(f"{where}: {text!r} is not a time of day")
        return cls(days=int(m.group(1)), at=time(hour, minute))

    def due(self, day: date, tz: str) -> datetime:
        """The instant (UTC) a delivery for service date ``day`` is due."""
        d = day + timedelta(days=self.days)
        return datetime.combine(d, self.at, ZoneInfo(tz)).astimezone(UTC)

    def __str__(self) -> str:
        return f"D+{self.days} {self.at:%H:%M}"


class City(BaseModel):
    """The city's own facts (``city.yaml``); defaults are the demonstration agglomeration's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("Agglomération de démonstration", min_length=1)
    insee_code: str | None = Field(
        None, description="INSEE code of the EPCI (SIREN, 9 digits) or of its central commune (5 characters)"
    )
    timezone: str = "Europe/Paris"
    school_zone: Literal["A", "B", "C"] = Field(
        "C", description="The académie's school-holiday zone (the Ministry's calendar, vacances-scolaires-france)"
    )
    holidays: Literal[tuple(HOLIDAY_CALENDARS)] = Field(  # type: ignore[valid-type]
        "metropole", description="Public-holiday calendar: " + ", ".join(HOLIDAY_CALENDARS)
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris, America/Martinique)") from None
        return value

    @field_validator("insee_code")
    @classmethod
    def _insee(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{9}|\d{5}|2[AB]\d{3}", value):
            raise ValueError(f"{value!r} is neither an EPCI's SIREN (9 digits) nor a commune's INSEE code")
        return value

    def dbt_vars(self) -> dict[str, str]:
        """The dbt vars the city sets, passed on every dbt call (never read from dbt_project.yml)."""
        return {"timezone": self.timezone, "school_zone": self.school_zone, "holiday_calendar": self.holidays}


def load_city(folder: Path | None, timezone: str | None = None) -> City:
    """Return the city of ``folder/city.yaml`` (defaults without one); ConfigError naming the key.

    ``timezone`` is ``CITYLAKE_TIMEZONE`` when set: without a city file it is the city's; with one
    it must say the same (two clocks for one city would give wrong figures with no error)."""
    raw: dict = {}
    path = folder / CITY_FILE if folder else None
    if path is not None and path.is_file():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a mapping of keys (name, timezone, school_zone, holidays, …) is expected")
        if timezone and raw.get("timezone") and raw["timezone"] != timezone:
            raise ConfigError(
                f"{path}: timezone {raw['timezone']!r} but CITYLAKE_TIMEZONE is {timezone!r}: say it once"
            )
    if timezone and "timezone" not in raw:
        raw = {**raw, "timezone": timezone}
    try:
        return City(**raw)
    except ValidationError as exc:
        where = path or "the city's settings"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'city'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
