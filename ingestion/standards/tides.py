"""TIDES CSV tables (Transit ITS Data Exchange Specification, v1.0 and pre-1.0 names) → typed rows.

TIDES is a Frictionless data package, one CSV per table, dates and datetimes in ISO 8601
(``standards_fr.md`` §6). Real files use pre-1.0 names (the Metro Transit sample: ``date``,
``timestamp``, ``stop_sequence``), so each table accepts both; a datetime without an offset is
local time of the network. Read here: ``vehicle_locations``, ``stop_visits``, ``trips_performed``,
``passenger_events`` and ``fare_transactions``: the staged datasets already use their names,
except the trip, which is ``trip_id`` (the GTFS trip) from contract to mart (:func:`trip_id_once`).
"""

from __future__ import annotations

import io

import polars as pl

from ingestion.parsing import Refused

#: pre-1.0 name -> 1.0 name, per table (from the spec's CHANGELOG and the real sample)
ALIASES = {
    "date": "service_date",
    "timestamp": "event_timestamp",
    "stop_sequence": "trip_stop_sequence",
    "trip_id": "trip_id_performed",
}

DATE, DATETIME, INT, FLOAT, TEXT = "date", "datetime", "int", "float", "text"

TABLES: dict[str, dict[str, str]] = {
    "vehicle_locations": {
        "location_ping_id": TEXT,
        "service_date": DATE,
        "event_timestamp": DATETIME,
        "trip_id_performed": TEXT,
        "trip_id_scheduled": TEXT,
        "trip_stop_sequence": INT,
        "scheduled_stop_sequence": INT,
        "vehicle_id": TEXT,
        "device_id": TEXT,
        "pattern_id": TEXT,
        "stop_id": TEXT,
        "current_status": TEXT,
        "latitude": FLOAT,
        "longitude": FLOAT,
        "gps_quality": TEXT,
        "heading": FLOAT,
        "speed": FLOAT,
        "odometer": FLOAT,
        "schedule_deviation": INT,
        "headway_deviation": INT,
        "trip_type": TEXT,
        "schedule_relationship": TEXT,
    },
    "stop_visits": {
        "service_date": DATE,
        "trip_id_performed": TEXT,
        "trip_stop_sequence": INT,
        "scheduled_stop_sequence": INT,
        "pattern_id": TEXT,
        "vehicle_id": TEXT,
        "dwell": INT,
        "stop_id": TEXT,
        "timepoint": TEXT,
        "schedule_arrival_time": DATETIME,
        "schedule_departure_time": DATETIME,
        "actual_arrival_time": DATETIME,
        "actual_departure_time": DATETIME,
        "distance": FLOAT,
        "boarding_1": INT,
        "alighting_1": INT,
        "boarding_2": INT,
        "alighting_2": INT,
        "departure_load": INT,
        "schedule_relationship": TEXT,
    },
    "trips_performed": {
        "service_date": DATE,
        "trip_id_performed": TEXT,
        "vehicle_id": TEXT,
        "trip_id_scheduled": TEXT,
        "route_id": TEXT,
        "route_type": INT,
        "shape_id": TEXT,
        "pattern_id": TEXT,
        "direction_id": INT,
        "operator_id": TEXT,
        "block_id": TEXT,
        "trip_start_stop_id": TEXT,
        "trip_end_stop_id": TEXT,
        "schedule_trip_start": DATETIME,
        "schedule_trip_end": DATETIME,
        "actual_trip_start": DATETIME,
        "actual_trip_end": DATETIME,
        "trip_type": TEXT,
        "schedule_relationship": TEXT,
    },
    "passenger_events": {
        "passenger_event_id": TEXT,
        "service_date": DATE,
        "event_timestamp": DATETIME,
        "location_ping_id": TEXT,
        "trip_id_performed": TEXT,
        "trip_id_scheduled": TEXT,
        "trip_stop_sequence": INT,
        "scheduled_stop_sequence": INT,
        "event_type": TEXT,
        "vehicle_id": TEXT,
        "device_id": TEXT,
        "train_car_id": TEXT,
        "stop_id": TEXT,
        "pattern_id": TEXT,
        "event_count": INT,
    },
    "fare_transactions": {
        "transaction_id": TEXT,
        "service_date": DATE,
        "event_timestamp": DATETIME,
        "location_ping_id": TEXT,
        "amount": FLOAT,
        "currency_type": TEXT,
        "fare_action": TEXT,
        "fare_product_id": TEXT,
        "fare_media_id": TEXT,
        "fare_capped": TEXT,
        "rider_category": TEXT,
        "token_id": TEXT,
        "trip_id_performed": TEXT,
        "stop_id": TEXT,
        "vehicle_id": TEXT,
        "device_id": TEXT,
    },
}
REQUIRED = {
    "vehicle_locations": ("location_ping_id", "event_timestamp", "vehicle_id"),
    "stop_visits": ("service_date", "trip_id_performed", "trip_stop_sequence"),
    "trips_performed": ("service_date", "trip_id_performed", "vehicle_id"),
    "passenger_events": ("passenger_event_id", "service_date", "event_timestamp", "trip_stop_sequence", "event_type"),
    "fare_transactions": ("transaction_id", "event_timestamp", "amount", "fare_action"),
}


def _datetime(raw: pl.Expr, tz: str) -> pl.Expr:
    """ISO 8601 with an offset or Z → UTC; without one → local time of the network → UTC."""
    text = raw.str.replace(r"Z$", "+00:00").str.replace(" ", "T", literal=True)
    has_offset = text.str.contains(r"[+-]\d{2}:?\d{2}$")
    aware = text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    naive = text.str.to_datetime(strict=False, time_unit="us").dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    )
    return pl.when(has_offset).then(aware).otherwise(naive.dt.convert_time_zone("UTC"))


#: TIDES's two ids of a trip: the scheduled one (a GTFS ``trips.txt`` id) first
TRIP_COLUMNS = ("trip_id_scheduled", "trip_id_performed")


def trip_id_once(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its trip as the lake names it from contract to mart: ``trip_id``, the GTFS
    trip, at the place of the first TIDES trip column. TIDES gives it as ``trip_id_scheduled``
    and its own id of the trip run as ``trip_id_performed``; producers without a separate
    performed id (the pre-1.0 ``trip_id``, the real samples) give the GTFS one there. The
    scheduled id when given, else the performed; a ``trip_id`` already there wins where it has a
    value (a staged file migrated half-way). Unchanged without a TIDES trip column."""
    given = [c for c in TRIP_COLUMNS if c in frame.columns]
    if not given:
        return frame
    at = min(frame.columns.index(c) for c in given)
    trip = frame.select(pl.coalesce(given).alias("trip_id")).to_series()
    rest = frame.drop(given)
    if "trip_id" in rest.columns:
        trip = rest.select(pl.coalesce(pl.col("trip_id"), trip).alias("trip_id")).to_series()
        at = min(at, rest.columns.index("trip_id"))
        rest = rest.drop("trip_id")
    return rest.insert_column(min(at, rest.width), trip)


def read(table: str, data: bytes, name: str, tz: str) -> tuple[pl.DataFrame, list[str]]:
    """Typed rows of one TIDES table (source_row, the table's columns, is_valid, invalid_reason)
    and warnings (columns the table does not define are named, then ignored)."""
    if table not in TABLES:
        raise ValueError(f"TIDES table {table!r} is not one of {sorted(TABLES)}")
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.PolarsError as exc:
        raise Refused(f"{name}: not a CSV table ({exc})") from None
    frame = frame.rename({c: ALIASES.get(c.strip(), c.strip()) for c in frame.columns})
    spec = TABLES[table]
    missing = [c for c in REQUIRED[table] if c not in frame.columns]
    if missing:
        raise Refused(f"{name}: TIDES {table} without its required column(s) {missing} (header {frame.columns})")
    unknown = [c for c in frame.columns if c not in spec]
    typed, reasons = [], []
    for column, kind in spec.items():
        raw = pl.col(column).str.strip_chars() if column in frame.columns else pl.lit(None, pl.Utf8)
        empty = raw.is_null() | (raw == "")
        value = {
            DATE: raw.str.to_date("%Y-%m-%d", strict=False),
            DATETIME: _datetime(raw, tz),
            INT: raw.str.replace(r"\.0+$", "").cast(pl.Int64, strict=False),
            FLOAT: raw.cast(pl.Float64, strict=False),
            TEXT: raw,
        }[kind]
        typed.append(pl.when(empty).then(None).otherwise(value).alias(column))
        if column in frame.columns:
            reasons.append(
                pl.when(~empty & value.is_null()).then(pl.format(f"column '{column}': '{{}}' is not a {kind}", raw))
            )
        if column in REQUIRED[table]:
            reasons.append(pl.when(empty).then(pl.lit(f"column '{column}': required value missing")))
    out = frame.with_row_index("source_row", offset=1).select(
        pl.col("source_row").cast(pl.Int64), *typed, pl.coalesce(reasons).alias("invalid_reason")
    )
    if "service_date" in spec and "event_timestamp" in spec:  # a ping without its date takes its local date
        out = out.with_columns(
            pl.coalesce("service_date", pl.col("event_timestamp").dt.convert_time_zone(tz).dt.date()).alias(
                "service_date"
            )
        )
    out = out.with_columns(pl.col("invalid_reason").is_null().alias("is_valid"))
    return trip_id_once(out), (
        [f"{name}: columns not in TIDES {table} ignored: {', '.join(unknown)}"] if unknown else []
    )
