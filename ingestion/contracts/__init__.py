"""Extract contracts: the documented, versioned format of every operator delivery.

Each ``<operator>__<feed>.v<N>.yaml`` beside this file is a data dictionary: the file's
format (encoding, delimiter, decimal separator, name pattern, deadline) and its columns, each
with the vendor's header, the canonical name it maps to in the staged zone, its type and rules.
The simulator writes deliveries from these contracts; ingestion parses deliveries against them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Column:
    name: str
    canonical: str
    type: str
    required: bool = True  # a row needs a value here (else it is invalid)
    optional: bool = False  # the file may lack this column altogether: staged as empty, with a warning
    format: str | None = None
    values: tuple[str, ...] | None = None
    description: str = ""
    personal: bool = False
    min: float | None = None
    pattern: str | None = None
    digits: int = 2
    # identifier mapping to the network's ids, applied to the text in this order (``recode``: a
    # mapping table as pairs; ``strip_prefix``; ``offset``, an integer added, e.g. -20000;
    # ``add_prefix``): an operator's own codes become GTFS ids without code
    recode: tuple[tuple[str, str], ...] | None = None
    strip_prefix: str | None = None
    offset: int | None = None
    add_prefix: str | None = None
    # units and scale: a number the delivered value is multiplied by (metres -> km: 0.001;
    # centimes -> euros: 0.01), for integer and decimal columns
    scale: float | None = None


@dataclass(frozen=True)
class Contract:
    operator: str
    feed: str
    version: int
    title: str
    personal_data: bool
    file: dict[str, Any]
    group: str = ""  # the publication group the feed's data goes into
    reference: bool = False  # a register other feeds are checked against (ingested first)
    staged: dict[str, str] = field(default_factory=dict)  # {dataset, partition, builder}
    columns: tuple[Column, ...] = field(default_factory=tuple)
    notes: str = ""

    @property
    def key(self) -> str:
        return f"{self.operator}/{self.feed}"

    @property
    def format(self) -> str:
        return self.file["format"]

    def file_name(self, service_date: date | None = None, **values: Any) -> str:
        """Return the delivered file's name for a service date (or other fields of the pattern)."""
        return self.file["file_name"].format(service_date=service_date, **values)

    def column(self, canonical: str) -> Column:
        for col in self.columns:
            if col.canonical == canonical:
                return col
        raise KeyError(f"{self.key} v{self.version} has no column {canonical!r}")

    @property
    def headers(self) -> list[str]:
        return [c.name for c in self.columns]


def _parse(path: Path) -> Contract:
    from ingestion.contracts.schema import validate

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate(raw, str(path))
    columns = tuple(
        Column(
            **{
                **c,
                "values": tuple(c["values"]) if c.get("values") else None,
                "recode": tuple((str(k), str(v)) for k, v in c["recode"].items()) if c.get("recode") else None,
            }
        )
        for c in raw.get("columns", [])
    )
    return Contract(
        operator=raw["operator"],
        feed=raw["feed"],
        version=int(raw["version"]),
        title=raw["title"],
        personal_data=bool(raw.get("personal_data", False)),
        file=raw["file"],
        group=raw["group"],
        reference=bool(raw.get("reference", False)),
        staged=dict(raw["staged"]),
        columns=columns,
        notes=(raw.get("notes") or "").strip(),
    )


CONFIG_DIR_ENV = "CITYLAKE_CONFIG_DIR"


def city_folder() -> Path | None:
    """The city's own configuration folder (``CITYLAKE_CONFIG_DIR``), if one is set: its
    ``operators.yaml`` and ``contracts/*.yaml`` onboard operators without touching the code."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    return Path(folder) if folder else None


def load_file(path: Path) -> Contract:
    """Return the contract in a YAML file; ValueError saying what is wrong with it."""
    from ingestion.contracts.schema import ContractError

    try:
        return _parse(path)
    except ContractError:
        raise
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot be read as YAML: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not an extract contract ({type(exc).__name__}: {exc})") from None


def all_contracts() -> tuple[Contract, ...]:
    """Return every contract, sorted by operator, feed and version: those shipped, and the city's
    (``CITYLAKE_CONFIG_DIR/contracts``), a city contract replacing a shipped one of the same
    operator, feed and version."""
    folder = city_folder()
    return _contracts((folder / "contracts") if folder else None)[0]


@cache
def _contracts(extra: Path | None) -> tuple[tuple[Contract, ...], dict[str, str]]:
    """The contracts that can be used, and the city's that cannot: {file name: why}. A city
    contract that cannot be used fails its own feed only (``contract`` raises its reason)."""
    found = {(c.operator, c.feed, c.version): c for c in (_parse(p) for p in sorted(HERE.glob("*.yaml")))}
    broken: dict[str, str] = {}
    if extra is not None and extra.is_dir():
        for p in sorted(extra.glob("*.yaml")):
            try:
                c = load_file(p)
            except ValueError as exc:
                broken[p.name] = str(exc)
                continue
            found[(c.operator, c.feed, c.version)] = c
    return tuple(sorted(found.values(), key=lambda c: (c.operator, c.feed, c.version))), broken


def broken_contracts() -> dict[str, str]:
    """The city's contract files that cannot be used: {file name: what is wrong and the fix}."""
    folder = city_folder()
    return _contracts((folder / "contracts") if folder else None)[1]


def contract(operator: str, feed: str, version: int | None = None) -> Contract:
    """Return the contract of an operator's feed (the latest version unless one is named); a
    ContractError when the city's file for it cannot be used, KeyError when there is none."""
    from ingestion.contracts.schema import ContractError

    matches = [c for c in all_contracts() if c.operator == operator and c.feed == feed]
    if version is not None:
        matches = [c for c in matches if c.version == version]
    broken = [why for name, why in broken_contracts().items() if name.startswith(f"{operator}__{feed}.")]
    if broken:  # a city file for this feed is wrong: never fall back on another version silently
        raise ContractError("; ".join(broken))
    if not matches:
        raise KeyError(f"no extract contract for {operator}/{feed}" + (f" v{version}" if version else ""))
    return matches[-1]
