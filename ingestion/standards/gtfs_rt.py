"""GTFS-Realtime → observed stop passages (TripUpdates) and vehicle positions (VehiclePositions).

A delivery is one snapshot (``.pb``), a gzip'd one, or a zip of snapshots (the archiver's hourly
batch, one member per poll). Decoding is gtfs-realtime-bindings' (protobuf), never ours.

What the specification says and real feeds do (``shared/reference/standards_fr.md`` §4):

* every time is POSIX seconds, UTC; ``start_date`` is the *local* service day (YYYYMMDD) and
  ``start_time`` may pass 24:00:00;
* a StopTimeEvent carries an absolute ``time``, a ``delay``, or both; a delay alone needs the
  schedule, so such a passage is resolved only when the GTFS schedule is given;
* ``stop_sequence`` and ``stop_id`` are each optional; ``SKIPPED`` stops were not served;
* ``FULL_DATASET`` is the norm, ``DIFFERENTIAL`` is unspecified by the spec and refused;
* a feed drops the stops a vehicle has passed. So a passage is **recorded** when a snapshot
  gives its time at or before the snapshot's own time (the event is past), and it is the **last
  prediction** when a later snapshot still carries the trip but no longer the stop (the vehicle
  went by: the last time announced is the best estimate). A stop only ever announced in the
  future is a **prediction**, not a passage: its row is invalid and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from ingestion.parsing import Refused
from ingestion.standards.containers import members
from ingestion.standards.passages import Call, PassageLog, day_of, positions

SUPPORTED_VERSIONS = ("1.0", "2.0")
CURRENT_STATUS = {0: "Incoming at", 1: "Stopped at", 2: "In transit to"}  # TIDES vehicle_locations


@dataclass(frozen=True)
class Snapshot:
    member: str  # the file, or "file:member" inside a batch
    at: datetime  # FeedHeader.timestamp (UTC)
    feed: object  # transit_realtime.FeedMessage


def snapshots(data: bytes, name: str) -> list[Snapshot]:
    """Return the snapshots of a delivery in time order, or raise Refused naming what is wrong."""
    from google.protobuf.message import DecodeError
    from google.transit import gtfs_realtime_pb2

    out = []
    for member, payload in members(data, name, (".pb", ".bin", ".pbf")):
        feed = gtfs_realtime_pb2.FeedMessage()
        try:
            feed.ParseFromString(payload)
        except DecodeError:
            raise Refused(
                f"{member}: not a GTFS-Realtime FeedMessage ({len(payload):,} bytes: truncated or not protobuf)"
            ) from None
        version = feed.header.gtfs_realtime_version
        if version not in SUPPORTED_VERSIONS:
            raise Refused(f"{member}: gtfs_realtime_version {version!r} is not one of {list(SUPPORTED_VERSIONS)}")
        if feed.header.incrementality == gtfs_realtime_pb2.FeedHeader.DIFFERENTIAL:
            raise Refused(f"{member}: DIFFERENTIAL incrementality is unspecified by GTFS-RT; only FULL_DATASET")
        if not feed.header.HasField("timestamp"):
            raise Refused(f"{member}: the feed header has no timestamp, so nothing in it can be dated")
        out.append(Snapshot(member, datetime.fromtimestamp(feed.header.timestamp, UTC), feed))
    return sorted(out, key=lambda s: (s.at, s.member))


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(hms: str) -> int | None:
    try:
        h, m, s = (int(x) for x in hms.split(":"))
    except ValueError:
        return None
    return h * 3600 + m * 60 + s


def service_date(start_date: str, start_time: str, seen_at: datetime, tz: str) -> date:
    """The local service day of a trip: its start_date, else from its start_time and an instant of
    it (noon of the service day is start + 12 h - start_time: true to within 12 hours), else the
    local date of the instant with the service day cut at 04:00 (passages.day_of)."""
    if start_date:
        try:
            return datetime.strptime(start_date, "%Y%m%d").date()
        except ValueError:
            pass
    local = seen_at.astimezone(ZoneInfo(tz))
    secs = _seconds(start_time) if start_time else None
    if secs is not None:
        return (local - timedelta(seconds=secs) + timedelta(hours=12)).date()
    return day_of(seen_at, tz)


def _event(stu, which: str) -> tuple[datetime | None, int | None]:
    if not stu.HasField(which):
        return None, None
    ev = getattr(stu, which)
    return (_utc(ev.time) if ev.HasField("time") else None), (ev.delay if ev.HasField("delay") else None)


def observed_passages(snaps: list[Snapshot], tz: str) -> pl.DataFrame:
    """One row per (service date, trip, stop) the TripUpdates of ``snaps`` mention, with the
    passage times and how they are known (``observation``, :mod:`.passages`); predictions and
    skipped stops are kept as invalid rows that say why, so nothing is silently dropped."""
    from google.transit import gtfs_realtime_pb2

    status = {
        gtfs_realtime_pb2.TripUpdate.StopTimeUpdate.SKIPPED: "skipped",
        gtfs_realtime_pb2.TripUpdate.StopTimeUpdate.NO_DATA: "no_data",
    }
    canceled = gtfs_realtime_pb2.TripDescriptor.CANCELED
    log = PassageLog()
    for snap in snaps:
        for entity in snap.feed.entity:
            if not entity.HasField("trip_update"):
                continue
            tu = entity.trip_update
            td = tu.trip
            events = [(_event(s, "arrival"), _event(s, "departure")) for s in tu.stop_time_update]
            first = next((t for (a, _), (d, _) in events for t in (a, d) if t is not None), snap.at)
            day = service_date(td.start_date, td.start_time, first, tz)
            if not td.trip_id:
                log.add(
                    snap.at,
                    Call(day, None, route_id=td.route_id or None, reason=f"TripUpdate {entity.id!r} names no trip_id"),
                )
                continue
            log.journey_seen(day, td.trip_id, snap.at)
            if td.schedule_relationship == canceled:
                continue
            vehicle = tu.vehicle if tu.HasField("vehicle") else None
            for stu, ((arr, arr_delay), (dep, dep_delay)) in zip(tu.stop_time_update, events, strict=True):
                log.add(
                    snap.at,
                    Call(
                        day,
                        td.trip_id,
                        stop_sequence=stu.stop_sequence if stu.HasField("stop_sequence") else None,
                        stop_id=stu.stop_id or None,
                        route_id=td.route_id or None,
                        direction_id=td.direction_id if td.HasField("direction_id") else None,
                        vehicle_id=(vehicle.id or None) if vehicle else None,
                        vehicle_label=(vehicle.label or None) if vehicle else None,
                        arrival_at=arr,
                        departure_at=dep,
                        arrival_delay_s=arr_delay,
                        departure_delay_s=dep_delay,
                        status=status.get(stu.schedule_relationship),
                    ),
                )
    return log.frame()


def vehicle_positions(snaps: list[Snapshot], tz: str) -> pl.DataFrame:
    """One row per vehicle and position time (a position repeated by later polls counts once),
    in the TIDES ``vehicle_locations`` vocabulary; ``age_s`` is how old the position was in the
    snapshot that first carried it."""
    seen: dict[tuple[str, datetime], dict] = {}
    for snap in snaps:
        for entity in snap.feed.entity:
            if not entity.HasField("vehicle"):
                continue
            vp = entity.vehicle
            at = _utc(vp.timestamp) if vp.HasField("timestamp") else snap.at
            vehicle_id = (vp.vehicle.id if vp.HasField("vehicle") else "") or entity.id
            if (vehicle_id, at) in seen:
                continue
            td = vp.trip if vp.HasField("trip") else None
            pos = vp.position if vp.HasField("position") else None
            lat = pos.latitude if pos is not None else None
            lon = pos.longitude if pos is not None else None
            reason = None
            if pos is None:
                reason = "no position"
            elif not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
                reason = f"position ({lat}, {lon}) is not a place on Earth's transit networks"
            seen[(vehicle_id, at)] = {
                "location_ping_id": f"{vehicle_id}@{at:%Y%m%dT%H%M%SZ}",
                "service_date": service_date(td.start_date, td.start_time, at, tz)
                if td
                else service_date("", "", at, tz),
                "event_timestamp": at,
                "trip_id": (td.trip_id or None) if td else None,
                "route_id": (td.route_id or None) if td else None,
                "direction_id": td.direction_id if td is not None and td.HasField("direction_id") else None,
                "vehicle_id": vehicle_id,
                "vehicle_label": (vp.vehicle.label or None) if vp.HasField("vehicle") else None,
                "stop_id": vp.stop_id or None,
                "current_status": CURRENT_STATUS.get(vp.current_status) if vp.HasField("current_status") else None,
                "latitude": lat,
                "longitude": lon,
                "heading": pos.bearing if pos is not None and pos.HasField("bearing") else None,
                "speed": pos.speed if pos is not None and pos.HasField("speed") else None,
                "odometer": pos.odometer if pos is not None and pos.HasField("odometer") else None,
                "age_s": int((snap.at - at).total_seconds()),
                "is_valid": reason is None,
                "invalid_reason": reason,
            }
    return positions(seen)
