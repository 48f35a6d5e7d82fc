"""From real-time snapshots (GTFS-RT TripUpdates, SIRI ET / SM / VM) to observed stop passages.

Real-time feeds announce; they rarely record. A stop's passage is known when a snapshot gives its
time as already past (an actual time, or an expected time at or before the snapshot), or when a
later snapshot still carries the journey but no longer the stop: the vehicle went by and the last
time announced is the best estimate (``standards_fr.md`` §5: "take the last Expected time before
a call disappears"). A stop only ever announced in the future is a prediction, kept as an invalid
row that says so; a skipped stop was not served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

SCHEMA = {
    "source_row": pl.Int64,
    "service_date": pl.Date,
    "trip_id": pl.Utf8,
    "route_id": pl.Utf8,
    "direction_id": pl.Int64,
    "direction_ref": pl.Utf8,
    "stop_sequence": pl.Int64,
    "stop_id": pl.Utf8,
    "vehicle_id": pl.Utf8,
    "vehicle_label": pl.Utf8,
    "scheduled_arrival_at": pl.Datetime("us", "UTC"),
    "scheduled_departure_at": pl.Datetime("us", "UTC"),
    "actual_arrival_at": pl.Datetime("us", "UTC"),
    "actual_departure_at": pl.Datetime("us", "UTC"),
    "arrival_delay_s": pl.Int64,
    "departure_delay_s": pl.Int64,
    "observation": pl.Utf8,  # recorded | last_prediction | predicted | skipped | no_data | unplaced
    "observed_in": pl.Datetime("us", "UTC"),
    "is_valid": pl.Boolean,
    "invalid_reason": pl.Utf8,
}


#: The hour before which a local time belongs to the previous service day, for a journey that
#: carries no date of its own (GTFS service days run past midnight).
SERVICE_DAY_CUTOFF_HOUR = 4


def day_of(instant: datetime, tz: str) -> date:
    """The service day of an instant when nothing else dates it: local date, cut at 04:00."""
    return (instant.astimezone(ZoneInfo(tz)) - timedelta(hours=SERVICE_DAY_CUTOFF_HOUR)).date()


def numbered(rows: list[dict], schema: dict) -> pl.DataFrame:
    """The rows as a frame of ``schema``, each numbered ``source_row`` from 1 in the given order."""
    for i, row in enumerate(rows, start=1):
        row["source_row"] = i
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


POSITION_SCHEMA = {
    "source_row": pl.Int64,
    "location_ping_id": pl.Utf8,
    "service_date": pl.Date,
    "event_timestamp": pl.Datetime("us", "UTC"),
    "trip_id": pl.Utf8,
    "route_id": pl.Utf8,
    "direction_id": pl.Int64,
    "vehicle_id": pl.Utf8,
    "vehicle_label": pl.Utf8,
    "stop_id": pl.Utf8,
    "current_status": pl.Utf8,
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "heading": pl.Float64,
    "speed": pl.Float64,
    "odometer": pl.Float64,
    "age_s": pl.Int64,
    "is_valid": pl.Boolean,
    "invalid_reason": pl.Utf8,
}


def positions(seen: dict[tuple[str, datetime], dict]) -> pl.DataFrame:
    """Vehicle positions (one per vehicle and time) in time order, TIDES ``vehicle_locations`` names."""
    rows = sorted(seen.values(), key=lambda r: (r["event_timestamp"], r["vehicle_id"]))
    return numbered(rows, POSITION_SCHEMA)


@dataclass
class Call:
    """One stop of one journey as one snapshot tells it."""

    service_date: date
    trip_id: str | None
    stop_sequence: int | None = None
    stop_id: str | None = None
    route_id: str | None = None
    direction_id: int | None = None
    direction_ref: str | None = None
    vehicle_id: str | None = None
    vehicle_label: str | None = None
    scheduled_arrival_at: datetime | None = None
    scheduled_departure_at: datetime | None = None
    arrival_at: datetime | None = None
    departure_at: datetime | None = None
    arrival_delay_s: int | None = None
    departure_delay_s: int | None = None
    actual: bool = False  # the feed says these times are actual (SIRI Actual*, RecordedCall, arrived)
    #: a time already past when the snapshot was taken counts as actual (GTFS-RT's convention);
    #: SIRI states what is recorded, so its past expected times stay predictions
    past_is_actual: bool = True
    status: str | None = None  # skipped | no_data
    reason: str | None = None  # why the call cannot be placed at all


@dataclass
class PassageLog:
    """The latest word of the snapshots on each call, and when each journey was last seen."""

    calls: dict[tuple, tuple[datetime, Call]] = field(default_factory=dict)
    journeys: dict[tuple, datetime] = field(default_factory=dict)
    unplaced: list[tuple[datetime, Call]] = field(default_factory=list)

    def journey_seen(self, service_date: date, trip_id: str, at: datetime) -> None:
        key = (service_date, trip_id)
        self.journeys[key] = max(at, self.journeys.get(key, at))

    def add(self, at: datetime, call: Call) -> None:
        if call.trip_id is None or call.reason:
            self.unplaced.append((at, call))
            return
        self.journey_seen(call.service_date, call.trip_id, at)
        key = (call.service_date, call.trip_id, call.stop_sequence if call.stop_sequence is not None else -1)
        key += (call.stop_id or "",) if call.stop_sequence is None else ()
        previous = self.calls.get(key)
        if previous is not None and previous[0] > at:
            return  # an older snapshot read after a newer one says nothing new
        if previous is not None and previous[1].actual and not call.actual:
            return  # an actual time is never replaced by an estimate
        self.calls[key] = (at, call)

    def frame(self) -> pl.DataFrame:
        rows = []
        for (day, trip, *_), (at, c) in self.calls.items():
            latest = max((t for t in (c.arrival_at, c.departure_at) if t is not None), default=None)
            if c.status:
                observation = c.status
            elif c.actual or (c.past_is_actual and latest is not None and latest <= at):
                observation = "recorded"
            elif self.journeys[(day, trip)] > at:
                observation = "last_prediction"
            else:
                observation = "predicted"
            reason = {
                "skipped": "stop skipped: not served",
                "no_data": "no data for this stop in the feed",
                "predicted": f"only predicted (latest snapshot {at:%Y-%m-%dT%H:%M:%SZ}): not a passage",
            }.get(observation)
            if reason is None and latest is None:
                reason = "a delay without a time: needs the schedule to be dated"
            if reason is None and c.stop_sequence is None and c.stop_id is None:
                reason = "neither a stop order nor a stop id: the stop cannot be placed"
            rows.append(_row(c, at, observation, reason))
        rows.sort(key=lambda r: (r["service_date"], r["trip_id"], r["stop_sequence"] or -1, r["stop_id"] or ""))
        rows += [_row(c, at, "unplaced", c.reason or "names no journey") for at, c in self.unplaced]
        return numbered(rows, SCHEMA)


def _row(c: Call, at: datetime, observation: str, reason: str | None) -> dict:
    return {
        "source_row": 0,
        "service_date": c.service_date,
        "trip_id": c.trip_id,
        "route_id": c.route_id,
        "direction_id": c.direction_id,
        "direction_ref": c.direction_ref,
        "stop_sequence": c.stop_sequence,
        "stop_id": c.stop_id,
        "vehicle_id": c.vehicle_id,
        "vehicle_label": c.vehicle_label,
        "scheduled_arrival_at": c.scheduled_arrival_at,
        "scheduled_departure_at": c.scheduled_departure_at,
        "actual_arrival_at": c.arrival_at,
        "actual_departure_at": c.departure_at,
        "arrival_delay_s": c.arrival_delay_s,
        "departure_delay_s": c.departure_delay_s,
        "observation": observation,
        "observed_in": at,
        "is_valid": reason is None,
        "invalid_reason": reason,
    }
