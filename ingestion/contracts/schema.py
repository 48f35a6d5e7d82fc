"""The extract contract as a typed document: every key, its type and the rules between keys.

A contract is checked when it is read, before any file: an unknown key, an unknown column type
or ``records``, a builder that does not build the dataset named, an id rule that cannot work, or
a column the builder needs and the contract does not give is a :class:`ContractError` naming the
file, the key and the fix. ``docs/contract.schema.json`` is this model as JSON Schema (written by
``python -m ingestion.contracts.schema``, kept equal by a test).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Column types, each with how a delivered value is read (ingestion.parsing._typed).
COLUMN_TYPES = {
    "string": "text as delivered (spaces around it taken off)",
    "integer": "a whole number ('12', '12.0')",
    "decimal": "a number; file.decimal_separator says '.' or ','",
    "boolean": "one of two values: values: [true-text, false-text]",
    "enum": "one of values: [...]",
    "date": "a date in format (default %Y-%m-%d)",
    "date_excel": "an Excel date cell",
    "datetime_local": "local wall-clock time in format (the city's time zone; DST resolved by file order)",
    "datetime_excel": "an Excel date-time cell, local time",
    "datetime_offset": "ISO 8601 with its UTC offset (2026-03-29T08:00:00+02:00)",
    "datetime_utc": "UTC time in format (default %Y-%m-%dT%H:%M:%SZ)",
    "seconds_after_midnight": "seconds after the service day's start (noon - 12 h), past 86400 for night trips",
    "minutes_after_midnight": "minutes after the service day's start",
}
TABULAR = ("csv", "jsonl", "xlsx")
OFFER = ("gtfs", "netex")
#: what ``file.records`` (``file.table`` for TIDES) selects in each standard format
STANDARD_RECORDS = {
    "gtfs_rt": ("passages", "positions"),
    "siri": ("passages", "positions"),
    "datex2": ("parking_status", "parking_table"),
    "tides": ("vehicle_locations", "stop_visits", "trips_performed", "passenger_events", "fare_transactions"),
}
#: the builders a standard format's records go through
STANDARD_BUILDERS = {
    ("gtfs_rt", "passages"): "stop_visits_observed",
    ("gtfs_rt", "positions"): "vehicle_locations",
    ("siri", "passages"): "stop_visits_observed",
    ("siri", "positions"): "vehicle_locations",
    ("datex2", "parking_status"): "parking_occupancy_status",
    ("datex2", "parking_table"): "parking_facilities",
    ("tides", "vehicle_locations"): "vehicle_locations",
    ("tides", "stop_visits"): "stop_visits",
    ("tides", "trips_performed"): "trips_performed",
    ("tides", "passenger_events"): "passenger_events",
    ("tides", "fare_transactions"): "fare_transactions_tides",
}


class Requirement(BaseModel):
    """What a builder reads: its staged dataset and partition, the canonical columns a
    tabular contract must give, and those it may leave out (staged as empty)."""

    dataset: str
    partition: Literal["service_date", "as_of_date", "feed_version"]
    needs: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these
    #: how a row's own date is read, for the row-date rule (ingestion.feeds.row_dates)
    row_date: str | None = None


#: The builders of ingestion.feeds and what each needs (docs/onboarding.md lists them).
BUILDER_REQUIREMENTS: dict[str, Requirement] = {
    "fare_transactions": Requirement(
        dataset="fare_transactions",
        partition="service_date",
        needs=("validated_at", "card_serial", "route_short_name"),
        optional=(
            "medium_type",
            "fare_product",
            "validation_type",
            "amount_eur",
            "direction",
            "stop_id",
            "vehicle_id",
            "validator_id",
        ),
        row_date="event_timestamp",
    ),
    "fare_transactions_tides": Requirement(dataset="fare_transactions", partition="service_date"),
    "stop_visits": Requirement(
        dataset="stop_visits",
        partition="service_date",
        needs=("service_date", "trip_id", "stop_sequence", "stop_id", "actual_arrival_at", "actual_departure_at"),
        optional=(
            "route_short_name",
            "direction_id",
            "vehicle_id",
            "scheduled_arrival_at",
            "scheduled_departure_at",
            "odometer_km",
        ),
        row_date="declared_service_date",
    ),
    "stop_visits_observed": Requirement(dataset="stop_visits", partition="service_date"),
    "trips_performed": Requirement(
        dataset="trips_performed",
        partition="service_date",
        needs=("service_date", "trip_id", "trip_status"),
        optional=(
            "route_short_name",
            "direction_id",
            "vehicle_id",
            "scheduled_start_at",
            "scheduled_end_at",
            "cancel_cause",
            "cancel_cause_class",
            "scheduled_km",
        ),
        row_date="declared_service_date",
    ),
    "passenger_events": Requirement(
        dataset="passenger_events",
        partition="service_date",
        needs=("actual_arrival_at", "trip_id", "stop_sequence", "boardings", "alightings"),
        optional=("stop_id", "vehicle_id"),
        row_date="event_timestamp",
    ),
    "manual_counts": Requirement(
        dataset="manual_counts",
        partition="service_date",
        needs=("service_date", "trip_id", "stop_sequence", "boardings", "alightings"),
        optional=("route_short_name", "stop_id", "surveyor_id"),
        row_date="declared_service_date",
    ),
    "vehicles": Requirement(
        dataset="vehicles",
        partition="as_of_date",
        needs=("vehicle_id", "seated_capacity", "standing_capacity"),
        optional=("model", "commissioned_on", "odometer_km", "apc_equipped"),
    ),
    "work_orders": Requirement(
        dataset="work_orders",
        partition="service_date",
        needs=("work_order_id", "vehicle_id", "work_order_type", "opened_at", "closed_at", "status"),
        optional=(
            "component",
            "odometer_km",
            "due_km",
            "due_date",
            "labour_hours",
            "parts_cost_eur",
            "is_immobilising",
        ),
    ),
    "parking_occupancy": Requirement(
        dataset="parking_occupancy",
        partition="service_date",
        needs=("facility_id", "observed_at"),
        optional=("facility_name", "capacity", "occupied", "free", "entries", "exits", "occupancy_rate_pct"),
        one_of=("occupied", "free"),
        row_date="observed_at",
    ),
    "parking_occupancy_named": Requirement(
        dataset="parking_occupancy",
        partition="service_date",
        needs=("local_date", "local_time", "facility_name", "free", "capacity"),
        optional=("facility_type",),
        row_date="service_date",
    ),
    "parking_occupancy_status": Requirement(dataset="parking_occupancy", partition="service_date"),
    "parking_facilities": Requirement(
        dataset="parking_facilities",
        partition="as_of_date",
        needs=("facility_id", "facility_name", "capacity"),
        optional=(
            "insee",
            "address",
            "user_type",
            "is_free",
            "park_and_ride_places",
            "disabled_places",
            "max_height",
            "operator_siret",
            "lon",
            "lat",
            "structure_type",
        ),
    ),
    "vehicle_locations": Requirement(dataset="vehicle_locations", partition="service_date"),
    # the operator's monthly report (rapport mensuel d'exploitation): a file per month, named by
    # its month, staged under the month's last day; one row per (month, line or network, figure)
    "declared_figures": Requirement(
        dataset="declared_figures",
        partition="service_date",
        needs=("month", "figure_code", "value", "unit"),
        optional=("route_short_name",),
    ),
    "gtfs": Requirement(dataset="gtfs_feed_versions", partition="feed_version"),
}


def _regular_expression(v: str | None) -> str | None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnSpec(_Strict):
    name: str = Field(description="the vendor's header (or JSON key)")
    canonical: str = Field(description="the staged column it maps to; the builder's vocabulary")
    type: Literal[tuple(COLUMN_TYPES)] = Field(description="how the value is read (see COLUMN_TYPES)")  # type: ignore[valid-type]
    required: bool = Field(True, description="a row needs a value here, else it is invalid")
    optional: bool = Field(False, description="the file may lack the column: staged as empty, with a warning")
    format: str | None = Field(None, description="strptime format of a date or time")
    values: list[str] | None = Field(None, description="allowed values (enum), or [true, false] texts (boolean)")
    description: str = ""
    personal: bool = Field(False, description="personal data (pseudonymised at parse time)")
    min: float | None = Field(None, description="smallest valid value")
    pattern: str | None = Field(None, description="regular expression a valid value matches")
    digits: int = Field(2, ge=0, description="decimals shown in reports")
    recode: dict[str, str] | None = Field(None, description="delivered value -> staged value, applied first")
    strip_prefix: str | None = None
    offset: int | None = Field(None, description="an integer added to a numeric id (e.g. -20000)")
    add_prefix: str | None = None
    scale: float | None = Field(None, description="multiplier (metres -> km: 0.001; centimes -> euros: 0.01)")

    @field_validator("recode", mode="before")
    @classmethod
    def _recode_text(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("values", mode="before")
    @classmethod
    def _values_text(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, v: str | None) -> str | None:
        return _regular_expression(v)

    @model_validator(mode="after")
    def _type_needs(self) -> ColumnSpec:
        if self.type == "enum" and not self.values:
            raise ValueError(f"column {self.name!r}: type enum needs values: [...]")
        if self.type == "boolean" and (not self.values or len(self.values) != 2):
            raise ValueError(f"column {self.name!r}: type boolean needs values: [true-text, false-text]")
        if self.type == "datetime_local" and not self.format:
            raise ValueError(f"column {self.name!r}: type datetime_local needs format (e.g. '%d/%m/%Y %H:%M:%S')")
        if self.scale is not None and self.type not in ("integer", "decimal"):
            raise ValueError(f"column {self.name!r}: scale applies to integer and decimal columns, not {self.type}")
        return self


class WideSpec(_Strict):
    key: str = Field(description="the column (name) the wide headers become, e.g. the car park")
    value: str = Field(description="the column (name) the cells become")
    blank: Literal["no_reading", "unchanged"] = "no_reading"


class IdRule(_Strict):
    pattern: str | None = None
    offset: int | None = None
    add_prefix: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, v: str | None) -> str | None:
        return _regular_expression(v)


IdKind = Literal["stop", "trip", "line", "vehicle", "service", "agency"]


class FileSpec(_Strict):
    format: Literal["csv", "jsonl", "xlsx", "gtfs", "netex", "gtfs_rt", "siri", "datex2", "tides"]
    file_name: str = Field(
        description=(
            "the delivered name; {service_date:%Y%m%d} or {service_date:%Y-%m-%d} dates it, "
            "{service_date:%Y-%m} or {service_date:%Y%m} names a month (staged under its last day)"
        )
    )
    encoding: str = "utf-8"
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    line_terminator: Literal["\n", "\r\n", "\r"] | None = Field(None, description="informative: any line end is read")
    decimal_separator: Literal[".", ","] = "."
    header: bool = True
    skip_rows: int = Field(0, ge=0, description="lines (sheet rows) before the header")
    sheet: str | None = None
    layout: Literal["long", "wide"] = "long"
    wide: WideSpec | None = None
    partition_from: Literal["name", "delivered", "rows"] = "name"
    order_key: str | None = None
    covers: str | None = None
    deadline: str | None = Field(
        None,
        description=(
            "'D+1 06:00': a dated file is due N days after its service date at this time, in the city's "
            "time zone (a zone written after it must be the city's); words for a register delivered when it changes"
        ),
    )
    records: str | None = None
    table: str | None = None
    ids: dict[IdKind, IdRule] | None = None
    recode: dict[str, dict[str, str]] | None = None
    stale_after_min: float | None = Field(None, gt=0)

    @field_validator("deadline")
    @classmethod
    def _deadline_form(cls, value: str | None) -> str | None:
        from citylake.core.city import DEADLINE

        if value is not None and value.strip().startswith("D+") and not DEADLINE.match(value.strip()):
            raise ValueError(f"{value!r} is not a deadline like 'D+1 06:00' (days after the service date, HH:MM)")
        return value

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"{v!r} is not a codec Python knows (utf-8, cp1252, iso-8859-15, mac_roman…)") from None
        return v

    @field_validator("file_name")
    @classmethod
    def _dated_name(cls, v: str) -> str:
        for m in re.finditer(r"\{([^}]*)\}", v):
            if m.group(1).startswith("service_date") and m.group(1) not in (
                "service_date:%Y%m%d",
                "service_date:%Y-%m-%d",
                "service_date:%Y-%m",
                "service_date:%Y%m",
            ):
                raise ValueError(
                    f"{{{m.group(1)}}}: a name is dated by {{service_date:%Y%m%d}} or {{service_date:%Y-%m-%d}}, "
                    "or names a month by {service_date:%Y-%m} or {service_date:%Y%m}"
                )
        return v

    @field_validator("recode", mode="before")
    @classmethod
    def _recode_text(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {c: {str(k): str(x) for k, x in t.items()} if isinstance(t, dict) else t for c, t in v.items()}
        return v

    @model_validator(mode="after")
    def _format_needs(self) -> FileSpec:
        if self.format == "csv" and not self.delimiter:
            raise ValueError("format csv needs file.delimiter (';', ',', '|' or a tab)")
        if self.format == "xlsx" and not self.sheet:
            raise ValueError("format xlsx needs file.sheet (the sheet's name)")
        if self.layout == "wide" and self.wide is None:
            raise ValueError("layout wide needs wide: {key: …, value: …, blank: no_reading | unchanged}")
        if self.format in STANDARD_RECORDS:
            what = "table" if self.format == "tides" else "records"
            chosen = self.table if self.format == "tides" else self.records
            if chosen not in STANDARD_RECORDS[self.format]:
                raise ValueError(
                    f"format {self.format} needs file.{what} in {list(STANDARD_RECORDS[self.format])}, not {chosen!r}"
                )
        return self


class StagedSpec(_Strict):
    dataset: str
    partition: Literal["service_date", "as_of_date", "feed_version"]
    builder: Literal[tuple(BUILDER_REQUIREMENTS)] = Field(description="the ingestion.feeds builder")  # type: ignore[valid-type]


class ContractSpec(_Strict):
    operator: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    feed: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    version: int = Field(ge=1)
    title: str
    personal_data: bool = False
    group: str = Field(description="the publication group (operators.yaml groups)")
    reference: bool = Field(False, description="a register other feeds are checked against: ingested first")
    staged: StagedSpec
    file: FileSpec
    columns: list[ColumnSpec] = Field(default_factory=list)
    notes: str | None = None

    @model_validator(mode="after")
    def _coherent(self) -> ContractSpec:
        need = BUILDER_REQUIREMENTS[self.staged.builder]
        fmt = self.file.format
        personal = [c.name for c in self.columns if c.personal]
        if personal and not self.personal_data:
            raise ValueError(
                f"columns {personal} are personal: the contract must say personal_data: true (its raw files "
                "purged on schedule, its messages withheld, its personal columns pseudonymised)"
            )
        if (self.staged.dataset, self.staged.partition) != (need.dataset, need.partition):
            raise ValueError(
                f"staged: builder {self.staged.builder} builds dataset {need.dataset} partitioned by "
                f"{need.partition}, not {self.staged.dataset} by {self.staged.partition}"
            )
        if fmt in OFFER:
            if self.staged.builder != "gtfs":
                raise ValueError(f"staged.builder: format {fmt} is the network's offer, staged by builder gtfs")
            return self
        if self.staged.builder == "gtfs":
            raise ValueError(f"staged.builder gtfs reads a GTFS or NeTEx offer, not format {fmt}")
        if fmt in STANDARD_RECORDS:
            chosen = self.file.table if fmt == "tides" else self.file.records
            builder = STANDARD_BUILDERS[(fmt, chosen)]
            if self.staged.builder != builder:
                raise ValueError(
                    f"staged.builder: {fmt} {chosen} rows are built by {builder}, not {self.staged.builder}"
                )
            return self
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"columns: the header(s) {dup} appear more than once")
        canon = [c.canonical for c in self.columns]
        dup = sorted({n for n in canon if canon.count(n) > 1})
        if dup:
            raise ValueError(f"columns: the canonical name(s) {dup} appear more than once")
        given = set(canon)
        if self.file.layout == "wide" and self.file.wide is not None:
            for header in (self.file.wide.key, self.file.wide.value):
                if header not in names:
                    raise ValueError(
                        f"file.wide: {header!r} is not a column's name (wide.key and wide.value name columns)"
                    )
        missing = [c for c in need.needs if c not in given]
        if missing:
            raise ValueError(
                f"columns: builder {self.staged.builder} needs canonical column(s) {missing}; add a column "
                f"with canonical: {missing[0]} (its optional ones: {list(need.optional)})"
            )
        if need.one_of and not given & set(need.one_of):
            raise ValueError(f"columns: builder {self.staged.builder} needs at least one of {list(need.one_of)}")
        unknown = sorted(given - set(need.needs) - set(need.optional) - set(need.one_of) - _AUXILIARY)
        if unknown:
            raise ValueError(
                f"columns: canonical name(s) {unknown} are not read by builder {self.staged.builder} "
                f"(it reads {list(need.needs)} and optionally {list(need.optional)})"
            )
        if self.file.order_key and self.file.order_key not in names:
            raise ValueError(f"file.order_key {self.file.order_key!r} is not a column's name")
        return self


#: canonical columns a contract may give that only the parser reads (a date for times after
#: midnight, handled in ingestion.parsing.type_rows)
_AUXILIARY = {"service_date"}


class ContractError(ValueError):
    """A contract that cannot be used: the message names the file, the key and the fix."""


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[", "constrained-")):
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict) -> str:
    where = _where(err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key (a typo? docs/onboarding.md lists the keys)"
    if kind == "missing":
        return f"{where}: required key missing"
    if kind == "literal_error":
        return f"{where}: {err.get('input')!r} is not allowed; {msg.replace('Input should be', 'use')}"
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}"


def validate(raw: Any, source: str) -> ContractSpec:
    """The contract document checked; ContractError with one line per problem."""
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: not an extract contract (a YAML mapping of operator, feed, file, columns…)")
    try:
        return ContractSpec.model_validate(raw)
    except ValidationError as exc:
        lines = [_message(e) for e in exc.errors()]
        raise ContractError(f"{source}: " + "; ".join(lines)) from None


def json_schema() -> dict:
    return ContractSpec.model_json_schema()


if __name__ == "__main__":
    import json
    from pathlib import Path

    out = Path(__file__).resolve().parents[2] / "docs" / "contract.schema.json"
    out.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
