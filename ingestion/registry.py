"""The registry: operators, their feeds, publication groups — each fact said once.

Read from two places only: ``ingestion/operators.yaml`` (operators, their drops and feeds, the
publication groups and what each depends on) and the extract contracts
(``ingestion/contracts/*.yaml``: each feed's format, staged dataset, group, whether it is a
reference register, whether it carries personal data). Everything else asks here: ingestion, the
night's partitions, the gate, retention, the API, the ingestion DAGs.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path

import yaml

from citylake.core.city import Deadline
from citylake.core.errors import ConfigError
from ingestion.contracts import Contract, all_contracts, city_folder, contract

CONFIG = Path(__file__).with_name("operators.yaml")


def config_path() -> Path:
    """The registry file: the city's (``CITYLAKE_CONFIG_DIR/operators.yaml``) when it has one,
    else the one shipped (the demo's simulated operators)."""
    folder = city_folder()
    if folder is not None and (folder / "operators.yaml").is_file():
        return folder / "operators.yaml"
    return CONFIG


def load(path: Path | None = None) -> dict:
    """Return the registry file, checked: operators with drops and feeds that have contracts,
    groups whose dependencies exist, contracts whose group exists; else a :class:`ConfigError`
    saying what to fix."""
    return _load(path or config_path(), city_folder())


@cache
def _load(path: Path, _city: Path | None) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("operators"), dict)
        or not isinstance(raw.get("groups"), dict)
    ):
        raise ConfigError(f"{path}: needs an 'operators:' and a 'groups:' mapping")
    groups = raw["groups"]
    for name, spec in groups.items():
        unknown = [d for d in (spec or {}).get("depends_on", []) if d not in groups]
        if unknown:
            raise ConfigError(f"{path}: group {name!r} depends on unknown group(s) {unknown}")
    for op, spec in raw["operators"].items():
        for field in ("drop", "feeds"):
            if field not in (spec or {}):
                raise ConfigError(f"{path}: operator {op!r} has no {field!r} (see the comments at the top of the file)")
        for feed in spec["feeds"]:
            try:
                c = contract(op, feed)
            except KeyError:
                raise ConfigError(
                    f"{path}: operator {op!r} lists feed {feed!r}, but there is no extract contract "
                    f"{op}__{feed}.v1.yaml in ingestion/contracts/ or $CITYLAKE_CONFIG_DIR/contracts/"
                ) from None
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if c.group not in groups:
                raise ConfigError(
                    f"extract contract {c.key} v{c.version}: group {c.group!r} is not one of {list(groups)}"
                )
    return raw


def operators() -> dict[str, dict]:
    """Return operator id -> its configuration (name, drop, feeds, aliases)."""
    return load()["operators"]


def groups() -> tuple[str, ...]:
    """Return the publication groups, in the order they are declared (dependencies last)."""
    return tuple(load()["groups"])


def group_depends() -> dict[str, tuple[str, ...]]:
    """Return group -> the groups it needs to have passed before it may publish."""
    return {g: tuple((s or {}).get("depends_on", [])) for g, s in load()["groups"].items()}


def feeds() -> list[Contract]:
    """Return the latest contract of every configured (operator, feed), in configuration order."""
    return [contract(op, feed) for op, spec in operators().items() for feed in spec["feeds"]]


def deadline_of(c: Contract, tz: str) -> Deadline | None:
    """A dated feed's delivery deadline ('D+1 06:00', in the city's time), parsed; None for a
    register delivered when it changes (its deadline is words). ConfigError names the contract."""
    text = str(c.file.get("deadline") or "").strip()
    if not text.startswith("D+"):
        return None
    return Deadline.parse(text, tz, where=f"{c.key} v{c.version} file.deadline")


def deadlines(tz: str) -> dict[tuple[str, str], Deadline]:
    """Every configured dated feed's deadline: (operator, feed) -> Deadline."""
    out = {}
    for c in feeds():
        if (due := deadline_of(c, tz)) is not None:
            out[(c.operator, c.feed)] = due
    return out


#: the night starts this long after the last deadline of the day's deliveries
NIGHT_MARGIN = timedelta(minutes=30)


def night_time(tz: str) -> time:
    """When the nightly refresh runs, in the city's time: half an hour after the latest deadline
    of the day after a service date (D+1); 06:30 when no feed has one. A deadline moved in a
    contract moves the night with it (and the ingestion sensors' give-up time)."""
    due = [d.at for d in deadlines(tz).values() if d.days == 1]
    latest = max(due, default=time(6, 0))
    return (datetime.combine(date(2000, 1, 1), latest) + NIGHT_MARGIN).time()


__all__ = [
    "contract",
    "deadline_of",
    "deadlines",
    "night_time",
    "feed_group",
    "feeds",
    "group_depends",
    "groups",
    "is_reference",
    "operators",
    "operators_of_group",
    "personal_feeds",
]


def feed_group(operator: str, feed: str) -> str:
    """Return the publication group an operator's feed goes into."""
    return contract(operator, feed).group


def is_reference(operator: str, feed: str) -> bool:
    """True for registers (GTFS, fleet, car parks) that dated feeds are checked against."""
    return contract(operator, feed).reference


def personal_feeds() -> list[tuple[str, str]]:
    """Return the (operator, feed) pairs whose contracts say they carry personal data (any version)."""
    return sorted({(c.operator, c.feed) for c in all_contracts() if c.personal_data})


def operators_of_group(group: str) -> list[str]:
    """Return the operators that deliver at least one feed of a group."""
    return sorted({c.operator for c in feeds() if c.group == group})
