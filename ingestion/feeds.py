"""From a parsed delivery to staged rows in the canonical vocabulary.

Staged datasets use the TIDES names where they fit (``fare_transactions``, ``stop_visits``,
``trips_performed``, ``passenger_events``, ``vehicles``) and the same style for ours
(``work_orders``, ``parking_occupancy``, ``parking_facilities``). Every staged row carries
``operator``, ``service_date`` (or ``as_of_date`` for registers), ``source_sha256``,
``source_row``, ``is_valid`` and ``invalid_reason``. Business rules that need references
(stop in the GTFS version in force, vehicle in the fleet register) are applied here too, so a
row's validity is decided once, where its file is known.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from citylake.core.calendar_fr import service_day_start
from ingestion.contracts import Contract
from ingestion.masking import card_numbers_elsewhere, invalid_rows_withheld, shown
from ingestion.pseudonym import Pseudonymiser


@dataclass
class Refs:
    """Reference ids a row may point to (None: not known yet, not checked)."""

    stops: set[str] | None = None
    gtfs_version: str | None = None
    vehicles: set[str] | None = None
    facilities_by_name: dict[str, str] | None = None  # normalised register name -> facility id
    capacities: dict[str, int] | None = None  # facility id -> places, from the register
    #: the GTFS in force, read on first use: one row per (trip_id, stop_sequence) with stop_id,
    #: route_short_name, direction_id and arrival/departure seconds after the service day start
    schedule_loader: Callable[[], pl.DataFrame] | None = None
    _schedule: pl.DataFrame | None = None

    def schedule(self) -> pl.DataFrame | None:
        if self._schedule is None and self.schedule_loader is not None:
            self._schedule = self.schedule_loader()
        return self._schedule


@dataclass
class Context:
    operator: str
    sha256: str
    partition: date  # service date, or the register's as-of date
    tz: str
    refs: Refs
    pseudonymiser: Pseudonymiser | None = None
    aliases: dict[str, str] | None = None  # operator's name aliases (series name -> register name)
    partition_from: str = "name"  # the contract's file.partition_from: name | delivered | rows

    @property
    def personal(self) -> bool:
        """A personal-data feed (its card ids are pseudonymised): messages never show a value."""
        return self.pseudonymiser is not None


@dataclass(frozen=True)
class Dataset:
    name: str
    partition: str  # service_date | as_of_date
    build: Callable[[pl.DataFrame, Context], pl.DataFrame]
    personal: bool = False
    builder: str = ""
    #: canonical names of the columns the contract marks ``personal: true``
    personal_columns: tuple[str, ...] = ()


def date_from_name(contract: Contract, name: str) -> date | None:
    """Return the date a file name carries per its contract pattern (suffixes like '_v2' allowed)."""
    pattern = contract.file["file_name"]
    m = re.search(r"\{service_date:([^}]*)\}", pattern)
    if not m:
        return None
    fmt = m.group(1)
    digits = {"%Y%m%d": r"\d{8}", "%Y-%m-%d": r"\d{4}-\d{2}-\d{2}", "%Y-%m": r"\d{4}-\d{2}", "%Y%m": r"\d{6}"}[fmt]
    before, after = pattern[: m.start()], pattern[m.end() :]
    stem, dot, ext = after.rpartition(".")
    regex = (
        "^" + re.escape(before) + f"(?P<d>{digits})" + re.escape(stem) + r"(?P<suffix>.*)" + re.escape(dot + ext) + "$"
    )
    hit = re.match(regex, name)
    if not hit:
        return None
    try:
        day = datetime.strptime(hit.group("d"), fmt).date()
    except ValueError:  # digits that are no date (month 13): not this feed's name
        return None
    if fmt in MONTH_NAMES:  # a month's file: staged under the month's last day
        day = month_end(day)
    return day


#: the name formats that name a month, not a day
MONTH_NAMES = ("%Y-%m", "%Y%m")


def month_end(day: date) -> date:
    """The last day of ``day``'s month."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _invalid(frame: pl.DataFrame, condition: pl.Expr, reason: pl.Expr | str) -> pl.DataFrame:
    """Mark rows invalid where ``condition`` holds, keeping an earlier reason first."""
    reason = pl.lit(reason) if isinstance(reason, str) else reason
    return frame.with_columns(
        pl.when(pl.col("is_valid") & condition.fill_null(False))
        .then(reason)
        .otherwise(pl.col("invalid_reason"))
        .alias("invalid_reason")
    ).with_columns(pl.col("invalid_reason").is_null().alias("is_valid"))


def _lineage(frame: pl.DataFrame, ctx: Context, partition: str) -> pl.DataFrame:
    """Add operator, partition (unless the rows carry their own) and source hash."""
    columns = [pl.lit(ctx.operator).alias("operator"), pl.lit(ctx.sha256).alias("source_sha256")]
    if partition not in frame.columns:
        columns.append(pl.lit(ctx.partition).alias(partition))
    return frame.with_columns(columns)


def normalise_name(name: str) -> str:
    """Return a car-park name without accents, case, spaces or punctuation, to match names."""
    import unicodedata

    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", ascii_)


def _check_stop(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    if ctx.refs.stops is None:
        return frame
    known = pl.Series(sorted(ctx.refs.stops), dtype=pl.Utf8)
    return _invalid(
        frame,
        pl.col("stop_id").is_not_null() & ~pl.col("stop_id").is_in(known.implode()),
        pl.format(
            f"stop_id '{{}}' is not in GTFS version {ctx.refs.gtfs_version}", shown(pl.col("stop_id"), ctx.personal)
        ),
    )


def _check_vehicle(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    if ctx.refs.vehicles is None:
        return frame
    known = pl.Series(sorted(ctx.refs.vehicles), dtype=pl.Utf8)
    return _invalid(
        frame,
        pl.col("vehicle_id").is_not_null() & ~pl.col("vehicle_id").is_in(known.implode()),
        pl.format("vehicle_id '{}' is not in the fleet register", shown(pl.col("vehicle_id"), ctx.personal)),
    )


def _in_service_day(frame: pl.DataFrame, column: str, ctx: Context) -> pl.DataFrame:
    start = service_day_start(ctx.partition, ctx.tz).astimezone(UTC)
    lo, hi = start + timedelta(hours=2), start + timedelta(hours=30)
    return _invalid(
        frame,
        (pl.col(column) < lo) | (pl.col(column) > hi),
        pl.format(f"{column} {{}} is outside service day {ctx.partition} (02:00 to 30:00 local)", pl.col(column)),
    )


def fare_transactions(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    assert ctx.pseudonymiser is not None
    out = p.select(
        "source_row",
        pl.col("validated_at").alias("event_timestamp"),
        pl.col("card_serial"),
        pl.col("medium_type").alias("fare_media_type"),
        pl.col("fare_product").alias("fare_product_id"),
        pl.when(pl.col("validation_type") == "Correspondance")
        .then(pl.lit("transfer"))
        .otherwise(pl.lit("tap_on"))
        .alias("fare_action"),
        pl.col("amount_eur").alias("amount"),
        pl.lit("EUR").alias("currency_type"),
        "route_short_name",
        pl.col("direction")
        .replace_strict({"Aller": 0, "Retour": 1}, default=None, return_dtype=pl.Int8)
        .alias("direction_id"),
        "stop_id",
        "vehicle_id",
        pl.col("validator_id").alias("device_id"),
        "is_valid",
        "invalid_reason",
    )
    out = card_numbers_elsewhere(out, "card_serial")
    out = out.with_columns(ctx.pseudonymiser.series(out["card_serial"], ctx.partition).alias("fare_media_id")).drop(
        "card_serial"
    )
    return _check_vehicle(_check_stop(out, ctx), ctx)


def fare_transactions_tides(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Validations delivered as a TIDES ``fare_transactions`` table (:mod:`ingestion.standards.tides`).

    TIDES names the card ``token_id`` (pseudonymised here, at parse time, like a vendor's serial)
    and its kind ``fare_media_id``; ``fare_action`` and ``fare_media_id`` values become the staged
    vocabulary through the contract's ``file.recode``. A validation names its trip rather than its
    line: the line and direction come from the GTFS in force, by ``trip_id``."""
    assert ctx.pseudonymiser is not None
    out = p.select(
        "source_row",
        pl.col("service_date").alias("declared_service_date"),
        "event_timestamp",
        pl.col("token_id").alias("card_serial"),
        pl.col("fare_media_id").alias("fare_media_type"),
        "fare_product_id",
        "fare_action",
        "amount",
        pl.col("currency_type").fill_null("EUR"),
        "trip_id",
        "stop_id",
        "vehicle_id",
        "device_id",
        "is_valid",
        "invalid_reason",
    )
    schedule = ctx.refs.schedule()
    if schedule is not None:
        lines = schedule.group_by("trip_id").agg(pl.col("route_short_name").first(), pl.col("direction_id").first())
        out = out.join(lines, on="trip_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.Utf8).alias("route_short_name"), pl.lit(None).alias("direction_id"))
    out = out.with_columns(pl.col("direction_id").cast(pl.Int8))
    out = _invalid(
        out,
        pl.col("declared_service_date").is_not_null() & (pl.col("declared_service_date") != ctx.partition),
        pl.format(
            f"service_date {{}} is not the file's service date {ctx.partition}",
            shown(pl.col("declared_service_date"), ctx.personal),
        ),
    )
    if schedule is not None:
        out = _invalid(
            out,
            pl.col("trip_id").is_not_null() & pl.col("route_short_name").is_null(),
            pl.format(
                f"trip_id '{{}}' is not in GTFS version {ctx.refs.gtfs_version}",
                shown(pl.col("trip_id"), ctx.personal),
            ),
        )
    out = card_numbers_elsewhere(out, "card_serial")
    out = out.with_columns(ctx.pseudonymiser.series(out["card_serial"], ctx.partition).alias("fare_media_id"))
    out = out.select(
        "source_row",
        "event_timestamp",
        "fare_media_type",
        "fare_product_id",
        "fare_action",
        "amount",
        "currency_type",
        "route_short_name",
        "direction_id",
        "stop_id",
        "vehicle_id",
        "device_id",
        "is_valid",
        "invalid_reason",
        "fare_media_id",
    )
    out = _in_service_day(out, "event_timestamp", ctx)
    return _check_vehicle(_check_stop(out, ctx), ctx)


def stop_visits(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    out = p.select(
        "source_row",
        pl.col("service_date").alias("declared_service_date"),
        "trip_id",
        "route_short_name",
        "direction_id",
        pl.col("stop_sequence").alias("trip_stop_sequence"),
        "stop_id",
        "vehicle_id",
        pl.col("scheduled_arrival_at").alias("schedule_arrival_time"),
        pl.col("scheduled_departure_at").alias("schedule_departure_time"),
        pl.col("actual_arrival_at").alias("actual_arrival_time"),
        pl.col("actual_departure_at").alias("actual_departure_time"),
        "odometer_km",
        "is_valid",
        "invalid_reason",
    )
    out = _invalid(
        out, pl.col("actual_departure_time") < pl.col("actual_arrival_time"), "actual departure before actual arrival"
    )
    return _check_vehicle(_check_stop(out, ctx), ctx)


def trips_performed(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    out = p.select(
        "source_row",
        pl.col("service_date").alias("declared_service_date"),
        "trip_id",
        "route_short_name",
        "direction_id",
        "vehicle_id",
        pl.col("scheduled_start_at").alias("schedule_trip_start"),
        pl.col("scheduled_end_at").alias("schedule_trip_end"),
        "trip_status",
        "cancel_cause",
        "cancel_cause_class",
        "scheduled_km",
        "is_valid",
        "invalid_reason",
    )
    out = _invalid(
        out,
        (pl.col("trip_status") == "NON_REALISEE") & pl.col("cancel_cause").is_null(),
        "trip not run without a cause",
    )
    return _check_vehicle(out, ctx)


def passenger_events(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    base = p.select(
        "source_row",
        pl.col("actual_arrival_at").alias("event_timestamp"),
        "trip_id",
        pl.col("stop_sequence").alias("trip_stop_sequence"),
        "stop_id",
        "vehicle_id",
        "boardings",
        "alightings",
        "is_valid",
        "invalid_reason",
    )
    long = pl.concat(
        [
            base.select(
                pl.exclude("boardings", "alightings"),
                pl.lit("boarding").alias("event_type"),
                pl.col("boardings").alias("event_count"),
            ),
            base.select(
                pl.exclude("boardings", "alightings"),
                pl.lit("alighting").alias("event_type"),
                pl.col("alightings").alias("event_count"),
            ),
        ]
    ).sort("source_row", "event_type", descending=[False, True])
    return _check_vehicle(_check_stop(long, ctx), ctx)


def manual_counts(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Boardings and alightings counted by surveyors at each stop of the trips surveyed."""
    out = p.select(
        "source_row",
        pl.col("service_date").alias("declared_service_date"),
        "trip_id",
        "route_short_name",
        pl.col("stop_sequence").alias("trip_stop_sequence"),
        "stop_id",
        "boardings",
        "alightings",
        "surveyor_id",
        "is_valid",
        "invalid_reason",
    )
    return _check_stop(out, ctx)


def stop_visits_observed(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Passages read from real-time feeds (GTFS-RT, SIRI: ingestion.standards) as stop_visits rows.

    Each row keeps its own service date (a batch of snapshots spans midnight). The line,
    direction, stop and scheduled times a feed does not carry come from the GTFS in force, by
    (trip_id, stop_sequence); a trip the GTFS does not know is invalid and says so. Arrival and
    departure stand for each other when a feed gives only one (dwell unknown, taken as zero)."""
    out = p.select(
        "source_row",
        "service_date",
        "trip_id",
        pl.col("route_id").alias("route_short_name"),
        "direction_id",
        pl.col("stop_sequence").alias("trip_stop_sequence"),
        "stop_id",
        "vehicle_id",
        pl.col("scheduled_arrival_at").alias("schedule_arrival_time"),
        pl.col("scheduled_departure_at").alias("schedule_departure_time"),
        pl.coalesce("actual_arrival_at", "actual_departure_at").alias("actual_arrival_time"),
        pl.coalesce("actual_departure_at", "actual_arrival_at").alias("actual_departure_time"),
        pl.lit(None, pl.Float64).alias("odometer_km"),
        "observation",
        "is_valid",
        "invalid_reason",
    )
    schedule = ctx.refs.schedule()
    if schedule is not None:
        starts = pl.DataFrame(
            {"service_date": sorted(set(out["service_date"].drop_nulls().to_list()))}, schema={"service_date": pl.Date}
        ).with_columns(
            pl.col("service_date")
            .map_elements(lambda d: service_day_start(d, ctx.tz).astimezone(UTC), return_dtype=pl.Datetime("us", "UTC"))
            .alias("_day_start")
        )
        known = set(schedule["trip_id"].unique().to_list())
        out = (
            out.join(starts, on="service_date", how="left")
            .join(
                schedule.rename({"stop_sequence": "trip_stop_sequence"}),
                on=["trip_id", "trip_stop_sequence"],
                how="left",
                suffix="_gtfs",
            )
            .with_columns(
                pl.coalesce("route_short_name_gtfs", "route_short_name").alias("route_short_name"),
                pl.coalesce("direction_id", "direction_id_gtfs").alias("direction_id"),
                pl.coalesce("stop_id", "stop_id_gtfs").alias("stop_id"),
                pl.coalesce(
                    "schedule_arrival_time", pl.col("_day_start") + pl.duration(seconds=pl.col("arrival_secs"))
                ).alias("schedule_arrival_time"),
                pl.coalesce(
                    "schedule_departure_time", pl.col("_day_start") + pl.duration(seconds=pl.col("departure_secs"))
                ).alias("schedule_departure_time"),
            )
            .select(out.columns)
        )
        out = _invalid(
            out,
            ~pl.col("trip_id").is_in(pl.Series(sorted(known), dtype=pl.Utf8).implode()),
            pl.format(f"trip_id '{{}}' is not in GTFS version {ctx.refs.gtfs_version}", pl.col("trip_id")),
        )
    return _check_vehicle(_check_stop(out, ctx), ctx)


def vehicle_locations(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Vehicle positions (GTFS-RT VehiclePositions, SIRI VM, TIDES) in the TIDES vocabulary."""
    columns = [
        "source_row",
        "location_ping_id",
        "service_date",
        "event_timestamp",
        "trip_id",
        "vehicle_id",
        "stop_id",
        "current_status",
        "latitude",
        "longitude",
        "heading",
        "speed",
        "odometer",
        "is_valid",
        "invalid_reason",
    ]
    return p.select([c if c in p.columns else pl.lit(None).alias(c) for c in columns])


def parking_occupancy_status(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Car-park readings of a status publication (DATEX II): each reading dated by its own local
    day (a snapshot batch spans midnight), checked as the vendor readings are; the register's
    name joins from the facility id at build time."""
    local_day = pl.col("observed_at").dt.convert_time_zone(ctx.tz).dt.date()
    out = p.with_columns(local_day.alias("service_date"))
    return _places_add_up(out.select("source_row", "service_date", *PARKING_READING))


def vehicles(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return p.select(
        "source_row",
        "vehicle_id",
        "model",
        "seated_capacity",
        "standing_capacity",
        (pl.col("seated_capacity") + pl.col("standing_capacity")).alias("capacity"),
        "commissioned_on",
        "odometer_km",
        "apc_equipped",
        "is_valid",
        "invalid_reason",
    )


def work_orders(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    out = p.select(
        "source_row",
        "work_order_id",
        "vehicle_id",
        "work_order_type",
        "component",
        "opened_at",
        "closed_at",
        "odometer_km",
        "due_km",
        "due_date",
        "labour_hours",
        "parts_cost_eur",
        "is_immobilising",
        "status",
        "is_valid",
        "invalid_reason",
    )
    out = _invalid(
        out, (pl.col("status") == "Clôturé") & pl.col("closed_at").is_null(), "closed work order without a closing date"
    )
    out = _invalid(out, pl.col("closed_at") < pl.col("opened_at"), "work order closed before it was opened")
    return _check_vehicle(out, ctx)


def declared_figures(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """The operator's monthly report, a row per (month, line or the network, figure): the month
    is the report's (its file names it), the unit the figure's (a percentage becomes a ratio;
    another unit is refused, naming the one expected), the value possible (not negative, a
    rate at most 1); a figure given twice for the same month and line is refused both times (the
    city cannot tell which the operator meant)."""
    from ingestion.declared import FIGURES, unit_rule

    report_month = ctx.partition.strftime("%Y-%m")
    # whatever types the contract gave: the month as YYYY-MM, the texts as text, the value a number
    month = pl.col("month")
    month = month.dt.strftime("%Y-%m") if p.schema["month"] in (pl.Date, pl.Datetime) else month.cast(pl.Utf8)
    out = p.select(
        "source_row",
        month.alias("month"),
        pl.col("route_short_name").cast(pl.Utf8).replace("", None),
        pl.col("figure_code").cast(pl.Utf8),
        pl.col("value").cast(pl.Float64, strict=False),
        pl.col("value").cast(pl.Utf8).alias("_value_text"),
        pl.col("unit").cast(pl.Utf8),
        "is_valid",
        "invalid_reason",
    )
    out = _invalid(
        out,
        pl.col("value").is_null() & pl.col("_value_text").is_not_null(),
        pl.format("value '{}' is not a number", pl.col("_value_text")),
    ).drop("_value_text")
    out = _invalid(
        out,
        pl.col("month") != report_month,
        pl.format("month {} in the report of {}", pl.col("month"), pl.lit(report_month)),
    )
    # the unit rule of each (figure, unit) the report uses, joined back to its rows
    pairs = out.select("figure_code", "unit").unique().drop_nulls("figure_code")
    rules = pl.DataFrame(
        [(code, unit, *unit_rule(code, unit or "")) for code, unit in pairs.iter_rows()],
        schema={"figure_code": pl.Utf8, "unit": pl.Utf8, "_factor": pl.Float64, "_unit_reason": pl.Utf8},
        orient="row",
    )
    out = out.join(rules, on=["figure_code", "unit"], how="left", nulls_equal=True, maintain_order="left")
    out = _invalid(out, pl.col("_unit_reason").is_not_null(), pl.col("_unit_reason"))
    staged_unit = {code: f.unit for code, f in FIGURES.items()}
    maximum = {code: f.maximum for code, f in FIGURES.items() if f.maximum is not None}
    out = out.with_columns(
        (pl.col("value") * pl.col("_factor")).alias("value"),
        pl.col("figure_code").replace_strict(staged_unit, default=None, return_dtype=pl.Utf8).alias("unit"),
        pl.col("unit").alias("unit_delivered"),
    ).drop("_factor", "_unit_reason")
    out = _invalid(out, pl.col("value") < 0, "a negative figure")
    top = pl.col("figure_code").replace_strict(maximum, default=None, return_dtype=pl.Float64)
    out = _invalid(
        out, pl.col("value") > top + 1e-9, pl.format("{} above {}, its largest possible value", pl.col("value"), top)
    )
    twice = pl.col("is_valid") & (
        pl.col("source_row").count().over("month", pl.col("route_short_name").fill_null(""), "figure_code", "is_valid")
        > 1
    )
    rows = (
        pl.col("source_row")
        .cast(pl.Utf8)
        .str.join(", ")
        .over("month", pl.col("route_short_name").fill_null(""), "figure_code", "is_valid", mapping_strategy="join")
    )
    return _invalid(
        out,
        twice,
        pl.format("{} declared twice or more for the same month and line (rows {})", pl.col("figure_code"), rows),
    )


PARKING_READING = (
    "facility_id",
    "facility_name",
    "observed_at",
    "capacity",
    "occupied",
    "free",
    "entries",
    "exits",
    "occupancy_rate_pct",
    "is_valid",
    "invalid_reason",
)


def _places_add_up(out: pl.DataFrame) -> pl.DataFrame:
    """A reading's counts are possible: no more cars than places, no negative count."""
    out = _invalid(
        out,
        pl.col("occupied") > pl.col("capacity"),
        pl.format("occupied {} above capacity {}", pl.col("occupied"), pl.col("capacity")),
    )
    return _invalid(out, (pl.col("occupied") < 0) | (pl.col("free") < 0), "negative count of places")


def _complete_reading(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """A reading that carries only some counts (a wide file: occupied places per car park) is
    completed: capacity from the register, free = capacity - occupied, the rate; what no one
    gives (name, entries, exits) stays empty."""
    capacities = ctx.refs.capacities or {}
    if "capacity" not in p.columns:
        p = p.with_columns(
            pl.col("facility_id").replace_strict(capacities, default=None, return_dtype=pl.Int64).alias("capacity")
        )
    if "free" not in p.columns:
        p = p.with_columns((pl.col("capacity") - pl.col("occupied")).alias("free"))
    if "occupied" not in p.columns:
        p = p.with_columns((pl.col("capacity") - pl.col("free")).alias("occupied"))
    if "occupancy_rate_pct" not in p.columns:
        p = p.with_columns((pl.col("occupied") / pl.col("capacity") * 100).alias("occupancy_rate_pct"))
    types = {"facility_name": pl.Utf8, "entries": pl.Int64, "exits": pl.Int64}
    return p.with_columns(pl.lit(None, t).alias(c) for c, t in types.items() if c not in p.columns)


def staging_warnings(dataset: Dataset, staged: pl.DataFrame, ctx: Context) -> list[str]:
    """What a staged delivery lacks that no row rule says: readings whose capacity had to come
    from a register that does not know the car park (none delivered yet for that date, or a new
    car park), staged without capacity, free places or rate."""
    if dataset.builder != "parking_occupancy" or "capacity" not in staged.columns:
        return []
    missing = staged.filter(pl.col("capacity").is_null() & pl.col("facility_id").is_not_null())
    if not missing.height:
        return []
    parks = sorted(missing["facility_id"].unique().to_list())
    shown = ", ".join(parks[:5]) + (f" and {len(parks) - 5} more" if len(parks) > 5 else "")
    return [
        f"{missing.height:,} readings of {len(parks)} car park(s) in no register as of {ctx.partition} ({shown}): "
        "staged without capacity, free places or rate (deliver the register first)"
    ]


def parking_occupancy(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    out = _places_add_up(_complete_reading(p, ctx).select("source_row", *PARKING_READING))
    out = _invalid(
        out,
        pl.col("occupied") + pl.col("free") != pl.col("capacity"),
        pl.format("occupied {} + free {} != capacity {}", pl.col("occupied"), pl.col("free"), pl.col("capacity")),
    )
    return out


def parking_occupancy_named(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Free-place readings identified by name (Montpellier's open data) as parking_occupancy rows.

    Each reading's service_date is its local date (one file covers many days). The id comes
    from the register by normalised name, through the operator's aliases.
    """
    from ingestion.parsing import local_to_utc

    aliases = {normalise_name(k): normalise_name(v) for k, v in (ctx.aliases or {}).items()}
    register = ctx.refs.facilities_by_name or {}
    names = p["facility_name"].fill_null("")
    keys = [aliases.get(normalise_name(n), normalise_name(n)) for n in names.to_list()]
    ids = pl.Series("facility_id", [register.get(k) for k in keys], dtype=pl.Utf8)
    naive = (pl.col("local_date").cast(pl.Utf8) + " " + pl.col("local_time")).str.strptime(
        pl.Datetime("us"), "%Y-%m-%d %H:%M", strict=False
    )
    observed, nonexistent = local_to_utc(naive, ctx.tz, "facility_name")
    out = p.with_columns(ids).select(
        "source_row",
        "facility_id",
        "facility_name",
        observed.alias("observed_at"),
        "capacity",
        (pl.col("capacity") - pl.col("free")).alias("occupied"),
        "free",
        pl.lit(None, pl.Int64).alias("entries"),
        pl.lit(None, pl.Int64).alias("exits"),
        ((pl.col("capacity") - pl.col("free")) / pl.col("capacity") * 100).alias("occupancy_rate_pct"),
        pl.col("local_date").alias("service_date"),
        "facility_type",
        nonexistent.alias("_gap"),
        "is_valid",
        "invalid_reason",
    )
    out = _invalid(
        out, pl.col("facility_type") == "Velo", "out of scope: bike-share station (Type 'Velo'), not a car park"
    )
    out = _invalid(out, pl.col("_gap"), "reading time does not exist (DST gap)")
    out = _invalid(
        out,
        pl.col("facility_id").is_null(),
        pl.format("car park '{}' is not in the register (name not matched)", pl.col("facility_name")),
    )
    out = _invalid(
        out,
        pl.col("free") > pl.col("capacity"),
        pl.format("free {} above capacity {}", pl.col("free"), pl.col("capacity")),
    )
    out = _invalid(out, pl.col("free") < 0, "negative count of places")
    return out.drop("facility_type", "_gap")


def parking_facilities(p: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return p.select(
        "source_row",
        "facility_id",
        "facility_name",
        "insee",
        "address",
        "user_type",
        "is_free",
        "capacity",
        "park_and_ride_places",
        "disabled_places",
        "max_height",
        "operator_siret",
        "lon",
        "lat",
        "structure_type",
        "is_valid",
        "invalid_reason",
    )


#: The functions that turn a parsed delivery into staged rows, by the name extract contracts give
#: in ``staged.builder``: an operator whose format maps onto an existing builder needs no code.
BUILDERS: dict[str, Callable[[pl.DataFrame, Context], pl.DataFrame]] = {
    "fare_transactions": fare_transactions,
    "fare_transactions_tides": fare_transactions_tides,
    "stop_visits": stop_visits,
    "trips_performed": trips_performed,
    "passenger_events": passenger_events,
    "manual_counts": manual_counts,
    "vehicles": vehicles,
    "work_orders": work_orders,
    "parking_occupancy": parking_occupancy,
    "parking_occupancy_named": parking_occupancy_named,
    "parking_facilities": parking_facilities,
    "stop_visits_observed": stop_visits_observed,
    "vehicle_locations": vehicle_locations,
    "parking_occupancy_status": parking_occupancy_status,
    "declared_figures": declared_figures,
}


def dataset_of(contract: Contract) -> Dataset:
    """Return the staged dataset an extract contract's deliveries go to (its ``staged:`` entry)."""
    staged = contract.staged
    builder = BUILDERS.get(staged.get("builder", ""))
    if builder is None:
        raise KeyError(
            f"extract contract {contract.key} v{contract.version}: staged.builder "
            f"{staged.get('builder')!r} is not one of {sorted(BUILDERS)}"
        )
    return Dataset(
        staged["dataset"],
        staged["partition"],
        builder,
        personal=contract.personal_data,
        builder=staged["builder"],
        personal_columns=tuple(c.canonical for c in contract.columns if c.personal),
    )


#: The type a canonical column has when the contract gives it, for those a builder reads as
#: optional that are not text: an optional column the contract leaves out is staged as empty of
#: that type, so every partition of a dataset keeps one schema.
OPTIONAL_TYPES: dict[str, pl.DataType] = {
    "amount_eur": pl.Decimal(12, 2),
    "parts_cost_eur": pl.Decimal(12, 2),
    "direction_id": pl.Int64(),
    "scheduled_arrival_at": pl.Datetime("us", "UTC"),
    "scheduled_departure_at": pl.Datetime("us", "UTC"),
    "scheduled_start_at": pl.Datetime("us", "UTC"),
    "scheduled_end_at": pl.Datetime("us", "UTC"),
    "odometer_km": pl.Float64(),
    "scheduled_km": pl.Float64(),
    "labour_hours": pl.Float64(),
    "due_km": pl.Int64(),
    "due_date": pl.Date(),
    "commissioned_on": pl.Date(),
    "apc_equipped": pl.Boolean(),
    "is_immobilising": pl.Boolean(),
    "is_free": pl.Boolean(),
    "capacity": pl.Int64(),
    "park_and_ride_places": pl.Int64(),
    "disabled_places": pl.Int64(),
    "lon": pl.Float64(),
    "lat": pl.Float64(),
}
#: builders that complete a reading themselves from what it carries (capacity from the register…)
_SELF_COMPLETING = {"parking_occupancy"}


def with_optional_columns(builder: str, parsed: pl.DataFrame) -> pl.DataFrame:
    """The parsed rows with the optional canonical columns the contract left out, empty."""
    from ingestion.contracts.schema import BUILDER_REQUIREMENTS

    need = BUILDER_REQUIREMENTS.get(builder)
    if need is None or builder in _SELF_COMPLETING:
        return parsed
    absent = [c for c in need.optional if c not in parsed.columns]
    return parsed.with_columns(pl.lit(None, OPTIONAL_TYPES.get(c, pl.Utf8())).alias(c) for c in absent)


def to_staged(dataset: Dataset, parsed: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Return the staged rows of one delivery, lineage columns first.

    Every column the contract marks ``personal: true`` is pseudonymised here, whatever its name
    (keyed HMAC, the card pseudonyms' key and period), before any builder sees it; the card
    serial is the exception the fare builders pseudonymise themselves (into ``fare_media_id``,
    after looking for card numbers in the file's other columns). A builder that would stage a
    personal column in clear fails the delivery alone (quarantined, kind ``internal``)."""
    declared = [c for c in dataset.personal_columns if c in parsed.columns]
    here = [c for c in declared if c not in BUILDER_PSEUDONYMISES]
    if here:
        if ctx.pseudonymiser is None:
            raise RuntimeError(f"personal columns {here} and no pseudonymiser: the contract must say personal_data")
        parsed = parsed.with_columns(
            ctx.pseudonymiser.series(parsed[c].cast(pl.Utf8), ctx.partition).alias(c) for c in here
        )
    body = dataset.build(with_optional_columns(dataset.builder, parsed), ctx)
    clear = [c for c in declared if c in BUILDER_PSEUDONYMISES and c in body.columns]
    if clear:
        raise RuntimeError(f"builder {dataset.builder} would stage personal column(s) {clear} in clear")
    out = row_dates(_lineage(body, ctx, dataset.partition), dataset, ctx)
    if ctx.personal:
        out = invalid_rows_withheld(out, PSEUDONYMISED | set(here))
    first = ["operator", dataset.partition, "source_sha256", "source_row"]
    last = ["is_valid", "invalid_reason"]
    middle = [c for c in out.columns if c not in first + last]
    return out.select(first + middle + last)


#: staged columns that hold pseudonyms, never a delivered value
PSEUDONYMISED = {"fare_media_id"}
#: personal columns a builder pseudonymises itself (and drops): the card serial, into fare_media_id
BUILDER_PSEUDONYMISES = {"card_serial"}

#: A service day runs from 02:00 to 30:00 local (06:00 the next morning): a timestamp in that
#: window belongs to it. Filed by its own date (``partition_from: rows``), a timestamp belongs to
#: the local date four hours earlier (a validation at 01:30 to the day before).
SERVICE_DAY_OPENS_H, SERVICE_DAY_CLOSES_H, SERVICE_DAY_CHANGE_H = 2, 30, 4


def _row_date(column: str, kind: str, tz: str) -> pl.Expr:
    """The service date a row carries, read from ``column`` as ``kind`` says."""
    if kind == "event_timestamp":
        return (pl.col(column).dt.convert_time_zone(tz) - pl.duration(hours=SERVICE_DAY_CHANGE_H)).dt.date()
    if kind == "observed_at":
        return pl.col(column).dt.convert_time_zone(tz).dt.date()
    return pl.col(column).cast(pl.Date)


def row_dates(staged: pl.DataFrame, dataset: Dataset, ctx: Context) -> pl.DataFrame:
    """The one rule on a row's own date, for every builder of dated rows.

    A row's date is what it carries: a service date column, or the service day of its timestamp
    (a reading's local date). Filed by its own date (``partition_from: rows``), each row goes under
    that date; a row without one stays under the delivery's date, invalid. In a dated file (by
    name or delivery), a row of another date is invalid, and the message gives both dates."""
    from ingestion.contracts.schema import BUILDER_REQUIREMENTS

    need = BUILDER_REQUIREMENTS.get(dataset.builder)
    if dataset.partition != "service_date" or need is None or need.row_date is None:
        return staged
    kind = need.row_date
    column = {"event_timestamp": "event_timestamp", "observed_at": "observed_at"}.get(kind, kind)
    if column not in staged.columns:
        return staged
    own = _row_date(column, kind, ctx.tz)
    if column == "service_date" and ctx.partition_from != "rows":  # the builder dated the rows itself
        return _invalid(
            staged,
            own != ctx.partition,
            pl.format(f"the row's date {{}} is not the file's date {ctx.partition}", own),
        ).with_columns(pl.lit(ctx.partition).alias("service_date"))
    label = "date_exploitation" if column == "declared_service_date" else column
    if ctx.partition_from == "rows":
        out = _invalid(
            staged.with_columns(pl.coalesce(own, pl.lit(ctx.partition)).alias("service_date")),
            own.is_null(),
            f"the row has no date of its own ({label} empty or unreadable): kept under the delivery's date "
            f"{ctx.partition}",
        )
    elif kind == "event_timestamp":
        start = service_day_start(ctx.partition, ctx.tz).astimezone(UTC)
        lo, hi = start + timedelta(hours=SERVICE_DAY_OPENS_H), start + timedelta(hours=SERVICE_DAY_CLOSES_H)
        local = pl.col(column).dt.convert_time_zone(ctx.tz).dt.strftime("%Y-%m-%d %H:%M:%S")
        out = _invalid(
            staged,
            (pl.col(column) < lo) | (pl.col(column) > hi),
            pl.format(
                f"{label} {{}} local ({{}} UTC) is on service day {{}}, not the file's {ctx.partition} "
                f"(a service day runs 02:00 to 30:00 local)",
                shown(local, ctx.personal),
                shown(pl.col(column).dt.strftime("%Y-%m-%d %H:%M:%S"), ctx.personal),
                own,
            ),
        )
    elif kind == "observed_at":
        local = pl.col(column).dt.convert_time_zone(ctx.tz).dt.strftime("%Y-%m-%d %H:%M:%S")
        out = _invalid(
            staged,
            own != ctx.partition,
            pl.format(
                f"{label} {{}} local ({{}} UTC) is on {{}}, not the file's date {ctx.partition}",
                local,
                pl.col(column).dt.strftime("%Y-%m-%d %H:%M:%S"),
                own,
            ),
        )
    else:
        out = _invalid(
            staged,
            own != ctx.partition,
            pl.format(f"{label} {{}} is not the file's service date {ctx.partition}", shown(own, ctx.personal)),
        )
    return out.drop("declared_service_date") if "declared_service_date" in out.columns else out
