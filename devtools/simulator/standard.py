"""The simulated operators' deliveries in the standard formats (``simulate --formats standard``).

The same truth as the vendor files, written as real producers write the standards:

* the offer in **NeTEx profil France** (:func:`netex_offer`): a zip of two XML files (lines and
  stop points; calendars and timetables), ids ``FR:SIM:<type>:<network id>:``;
* AVL as **GTFS-RT TripUpdates** (:func:`gtfs_rt_polls`): the day's polls every five minutes, each
  a FULL_DATASET FeedMessage carrying the trips under way (passed stops with their actual times,
  coming stops predicted with the current delay, detour stops SKIPPED, cancelled trips CANCELED),
  batched in one zip per service day, as ``citylake archive`` batches a public feed;
* or as **SIRI ET** 2.1 (:func:`siri_et_day`): one EstimatedTimetable response after the day's
  last journey, RecordedCalls with aimed and actual times, refs as NeTEx ids;
* ticketing as **TIDES fare_transactions** (:func:`tides_fare_transactions`).

The extract contracts that read them are in ``standard_city/``; the simulator writes them, with
the shipped operators, to ``OUT/config`` (a city configuration folder, ``CITYLAKE_CONFIG_DIR``).
Odometers are not written: neither TripUpdates nor SIRI ET carries one.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from ingestion import gtfs

NETEX_NS = "http://www.netex.org.uk/netex"
SIRI_NS = "http://www.siri.org.uk/siri"
CODESPACE = "FR:SIM"
POLL_S = 300  # GTFS-RT polling interval of the archive
BEFORE_S, AFTER_S = 600, POLL_S  # a trip is in the feed from 10 min before its start to a poll after its end
CITY = Path(__file__).parent / "standard_city"
ROUTE_MODES = {"0": "tram", "1": "metro", "2": "rail", "3": "bus", "4": "water", "6": "cableway", "7": "funicular"}


def nid(kind: str, local: str) -> str:
    """A NeTEx France id of the simulated producer: ``FR:SIM:<type>:<local id>:``."""
    return f"{CODESPACE}:{kind}:{local}:"


def write_city_config(folder: Path, avl_format: str, shipped_operators: Path) -> Path:
    """The city's configuration folder for standard deliveries: the shipped operators, and the
    contracts of the feeds delivered in a standard (offer, ticketing, AVL in ``avl_format``)."""
    contracts = folder / "contracts"
    contracts.mkdir(parents=True, exist_ok=True)
    (folder / "operators.yaml").write_text(shipped_operators.read_text(encoding="utf-8"), encoding="utf-8")
    for name in ("bus__gtfs.v1.yaml", "bus__ticketing.v1.yaml"):
        (contracts / name).write_text((CITY / name).read_text(encoding="utf-8"), encoding="utf-8")
    avl = (CITY / f"avl_{avl_format}.yaml").read_text(encoding="utf-8")
    (contracts / "bus__avl.v1.yaml").write_text(avl, encoding="utf-8")
    return folder


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


# -- NeTEx ------------------------------------------------------------------------------------
def _passing(hms: str) -> tuple[str, int]:
    h, m, s = (int(x) for x in hms.strip().split(":"))
    return f"{h % 24:02d}:{m:02d}:{s:02d}", h // 24


def netex_offer(feed: gtfs.Feed, published_at: datetime, tz: str = "Europe/Paris") -> bytes:
    """The GTFS feed's offer as a NeTEx profil France zip (stops without a parent station are
    scheduled stop points with their own location; stations are not written)."""
    from lxml import etree
    from lxml.builder import ElementMaker

    E = ElementMaker(namespace=NETEX_NS, nsmap={None: NETEX_NS})

    def delivery(frames: list) -> bytes:
        root = E.PublicationDelivery(
            E.PublicationTimestamp(published_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            E.ParticipantRef("citylake-simulator"),
            E.dataObjects(
                E.CompositeFrame(
                    E.FrameDefaults(E.DefaultLocale(E.TimeZone(tz))),
                    E.frames(*frames),
                    id=nid("CompositeFrame", "offre"),
                    version="any",
                )
            ),
            version="1.1:FR-NETEX-2.1-1.0",
        )
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    agency = feed["agency"]
    agency_id = agency["agency_id"][0] if "agency_id" in agency.columns and agency["agency_id"][0] else "1"
    operator = E.Operator(E.Name(agency["agency_name"][0] or "Opérateur"), id=nid("Operator", agency_id), version="any")
    routes = feed["routes"]
    lines = []
    for r in routes.iter_rows(named=True):
        parts = [E.Name(r.get("route_long_name") or r.get("route_short_name") or r["route_id"])]
        parts.append(E.TransportMode(ROUTE_MODES.get(str(r.get("route_type") or "3"), "bus")))
        parts.append(E.PublicCode(r.get("route_short_name") or ""))
        parts.append(E.OperatorRef(ref=nid("Operator", r.get("agency_id") or agency_id)))
        if r.get("route_color"):
            parts.append(E.Presentation(E.Colour(r["route_color"])))
        lines.append(E.Line(*parts, id=nid("Line", r["route_id"]), version="any"))

    stops = feed["stops"]
    if "location_type" in stops.columns:
        stops = stops.filter(pl.col("location_type").fill_null("").is_in(["", "0"]))
    points = [
        E.ScheduledStopPoint(
            E.Name(s.get("stop_name") or s["stop_id"]),
            E.Location(E.Longitude(s["stop_lon"]), E.Latitude(s["stop_lat"])),
            id=nid("ScheduledStopPoint", s["stop_id"]),
            version="any",
        )
        for s in stops.iter_rows(named=True)
    ]

    trips = feed["trips"]
    headsign = "trip_headsign" in trips.columns
    times = (
        feed["stop_times"]
        .with_columns(pl.col("stop_sequence").cast(pl.Int64))
        .sort("trip_id", "stop_sequence")
        .group_by("trip_id", maintain_order=True)
        .agg("stop_id", "arrival_time", "departure_time")
    )
    trips = trips.join(times, on="trip_id", how="inner")
    route_elements, patterns, journeys = {}, {}, []
    for t in trips.iter_rows(named=True):
        direction = t.get("direction_id") or ""
        route_key = f"{t['route_id']}-{direction or 'x'}"
        if route_key not in route_elements:
            parts = [E.Name(route_key), E.LineRef(ref=nid("Line", t["route_id"]))]
            if direction in ("0", "1"):
                parts.append(E.DirectionType("outbound" if direction == "0" else "inbound"))
            route_elements[route_key] = E.Route(*parts, id=nid("Route", route_key), version="any")
        pattern_key = (route_key, tuple(t["stop_id"]), (t.get("trip_headsign") or "") if headsign else "")
        if pattern_key not in patterns:
            n = len(patterns) + 1
            patterns[pattern_key] = (
                n,
                E.ServiceJourneyPattern(
                    E.Name(pattern_key[2] or route_key),
                    E.RouteRef(ref=nid("Route", route_key)),
                    E.pointsInSequence(
                        *(
                            E.StopPointInJourneyPattern(
                                E.ScheduledStopPointRef(ref=nid("ScheduledStopPoint", stop)),
                                id=nid("StopPointInJourneyPattern", f"{n}-{order}"),
                                order=str(order),
                                version="any",
                            )
                            for order, stop in enumerate(t["stop_id"], start=1)
                        )
                    ),
                    id=nid("ServiceJourneyPattern", str(n)),
                    version="any",
                ),
            )
        n = patterns[pattern_key][0]
        passing = []
        for order, (arr, dep) in enumerate(zip(t["arrival_time"], t["departure_time"], strict=True), start=1):
            parts = [E.StopPointInJourneyPatternRef(ref=nid("StopPointInJourneyPattern", f"{n}-{order}"))]
            for tag, value in (("Arrival", arr or dep), ("Departure", dep or arr)):
                if not value:  # a stop without a time in the GTFS (interpolated) has none here either
                    continue
                clock, offset = _passing(value)
                parts.append(E(f"{tag}Time", clock))
                if offset:
                    parts.append(E(f"{tag}DayOffset", str(offset)))
            passing.append(E.TimetabledPassingTime(*parts, version="any"))
        journeys.append(
            E.ServiceJourney(
                E.dayTypes(E.DayTypeRef(ref=nid("DayType", t["service_id"]))),
                E.ServiceJourneyPatternRef(ref=nid("ServiceJourneyPattern", str(n))),
                E.LineRef(ref=nid("Line", t["route_id"])),
                E.passingTimes(*passing),
                id=nid("ServiceJourney", t["trip_id"]),
                version="any",
            )
        )

    calendar = feed["calendar_dates"].filter(pl.col("exception_type") == "1").sort("service_id", "date")
    day_types = [
        E.DayType(id=nid("DayType", s), version="any") for s in calendar["service_id"].unique(maintain_order=True)
    ]
    assignments = [
        E.DayTypeAssignment(
            E.Date(f"{d[:4]}-{d[4:6]}-{d[6:]}"),
            E.DayTypeRef(ref=nid("DayType", s)),
            id=nid("DayTypeAssignment", f"{s}-{d}"),
            order=str(i),
            version="any",
        )
        for i, (s, d) in enumerate(calendar.select("service_id", "date").iter_rows(), start=1)
    ]
    network = delivery(
        [
            E.ResourceFrame(E.organisations(operator), id=nid("ResourceFrame", "1"), version="any"),
            E.ServiceFrame(
                E.routes(*route_elements.values()),
                E.lines(*lines),
                E.scheduledStopPoints(*points),
                E.journeyPatterns(*(p for _, p in patterns.values())),
                id=nid("ServiceFrame", "1"),
                version="any",
            ),
        ]
    )
    timetable = delivery(
        [
            E.ServiceCalendarFrame(
                E.dayTypes(*day_types),
                E.dayTypeAssignments(*assignments),
                id=nid("ServiceCalendarFrame", "1"),
                version="any",
            ),
            E.TimetableFrame(E.vehicleJourneys(*journeys), id=nid("TimetableFrame", "1"), version="any"),
        ]
    )
    return _zip([("lignes_arrets.xml", network), ("calendriers_horaires.xml", timetable)])


# -- real time --------------------------------------------------------------------------------
def _epoch(column: pl.Series) -> np.ndarray:
    return column.dt.epoch("s").to_numpy()


def gtfs_rt_polls(day: date, visits: pl.DataFrame, cancelled: pl.DataFrame) -> bytes:
    """The day's GTFS-RT TripUpdates polls (one FeedMessage every POLL_S seconds) as a zip.

    ``visits``: one row per stop of each trip that ran (trip_id, route_id, direction_id,
    vehicle_id, stop_id, stop_sequence, is_served, scheduled_arrival_at, scheduled_departure_at,
    actual_arrival_at, actual_departure_at; UTC), in trip and stop order; ``cancelled``: trip_id,
    route_id, scheduled_start_at, scheduled_end_at of the trips not run."""
    from google.transit import gtfs_realtime_pb2 as rt

    start_date = day.strftime("%Y%m%d")
    trips = []
    for (trip,), rows in visits.partition_by("trip_id", as_dict=True, maintain_order=True).items():
        served = rows["is_served"].to_numpy()
        arr, dep = _epoch(rows["actual_arrival_at"]), _epoch(rows["actual_departure_at"])
        s_arr, s_dep = _epoch(rows["scheduled_arrival_at"]), _epoch(rows["scheduled_departure_at"])
        begin = int(min(s_dep[0], arr[served].min() if served.any() else s_dep[0])) - BEFORE_S
        end = int(dep[served].max() if served.any() else s_arr[-1]) + AFTER_S
        trips.append((begin, end, trip, rows.row(0, named=True), rows, served, arr, dep, s_arr, s_dep))
    gone = [
        (int(s) - BEFORE_S, int(e) + AFTER_S, t, r)
        for t, r, s, e in zip(
            cancelled["trip_id"],
            cancelled["route_id"],
            _epoch(cancelled["scheduled_start_at"]),
            _epoch(cancelled["scheduled_end_at"]),
            strict=True,
        )
    ]
    if not trips and not gone:
        return _zip([])
    first = min(b for b, *_ in trips + gone) // POLL_S * POLL_S
    last = max(e for _, e, *_ in trips + gone)
    members = []
    for at in range(first, last + POLL_S, POLL_S):
        msg = rt.FeedMessage()
        msg.header.gtfs_realtime_version = "2.0"
        msg.header.incrementality = rt.FeedHeader.FULL_DATASET
        msg.header.timestamp = at
        for begin, end, trip, head, rows, served, arr, dep, s_arr, s_dep in trips:
            if not begin <= at <= end:
                continue
            entity = msg.entity.add(id=f"{start_date}-{trip}")
            tu = entity.trip_update
            tu.trip.trip_id, tu.trip.start_date = trip, start_date
            tu.trip.route_id = head["route_id"]
            if head["direction_id"] is not None:
                tu.trip.direction_id = int(head["direction_id"])
            if head["vehicle_id"]:
                tu.vehicle.id = head["vehicle_id"]
            passed = served & (dep <= at)
            delay = int(dep[passed][-1] - s_dep[passed][-1]) if passed.any() else 0
            for i, (stop, seq) in enumerate(zip(rows["stop_id"], rows["stop_sequence"], strict=True)):
                stu = tu.stop_time_update.add(stop_sequence=int(seq), stop_id=stop)
                if not served[i]:
                    stu.schedule_relationship = rt.TripUpdate.StopTimeUpdate.SKIPPED
                    continue
                stu.arrival.time = int(arr[i]) if arr[i] <= at else int(s_arr[i]) + delay
                stu.departure.time = int(dep[i]) if dep[i] <= at else int(s_dep[i]) + delay
            tu.timestamp = at
        for begin, end, trip, route in gone:
            if begin <= at <= end:
                tu = msg.entity.add(id=f"{start_date}-{trip}").trip_update
                tu.trip.trip_id, tu.trip.start_date, tu.trip.route_id = trip, start_date, route
                tu.trip.schedule_relationship = rt.TripDescriptor.CANCELED
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")
        members.append((f"tripupdates_{stamp}.pb", msg.SerializeToString()))
    return _zip(members)


def siri_et_day(day: date, visits: pl.DataFrame, cancelled: pl.DataFrame, at: datetime, tz: str) -> bytes:
    """The day's journeys as one SIRI 2.1 EstimatedTimetable response (profil France refs)."""
    from lxml import etree
    from lxml.builder import ElementMaker

    S = ElementMaker(namespace=SIRI_NS, nsmap={None: SIRI_NS})

    def iso(column: pl.Series) -> list[str]:
        return column.dt.convert_time_zone(tz).dt.strftime("%Y-%m-%dT%H:%M:%S%:z").to_list()

    journeys = []
    for (trip,), rows in visits.partition_by("trip_id", as_dict=True, maintain_order=True).items():
        head = rows.row(0, named=True)
        columns = {
            c: iso(rows[c])
            for c in ("scheduled_arrival_at", "scheduled_departure_at", "actual_arrival_at", "actual_departure_at")
        }
        calls = []
        for i, (stop, seq, served) in enumerate(
            zip(rows["stop_id"], rows["stop_sequence"], rows["is_served"], strict=True)
        ):
            parts = [
                S.StopPointRef(nid("ScheduledStopPoint", stop)),
                S.Order(str(seq)),
                S.AimedArrivalTime(columns["scheduled_arrival_at"][i]),
            ]
            if served:
                parts.append(S.ActualArrivalTime(columns["actual_arrival_at"][i]))
            parts.append(S.AimedDepartureTime(columns["scheduled_departure_at"][i]))
            if served:
                parts.append(S.ActualDepartureTime(columns["actual_departure_at"][i]))
            else:
                parts.append(S.Cancellation("true"))
            calls.append(S.RecordedCall(*parts))
        journeys.append(
            S.EstimatedVehicleJourney(
                S.LineRef(nid("Line", head["route_id"])),
                S.DirectionRef("Aller" if head["direction_id"] == 0 else "Retour"),
                S.FramedVehicleJourneyRef(
                    S.DataFrameRef(day.isoformat()), S.DatedVehicleJourneyRef(nid("ServiceJourney", trip))
                ),
                *([S.VehicleRef(nid("VehicleRef", head["vehicle_id"]))] if head["vehicle_id"] else []),
                S.RecordedCalls(*calls),
            )
        )
    for trip, route in zip(cancelled["trip_id"], cancelled["route_id"], strict=True):
        journeys.append(
            S.EstimatedVehicleJourney(
                S.LineRef(nid("Line", route)),
                S.FramedVehicleJourneyRef(
                    S.DataFrameRef(day.isoformat()), S.DatedVehicleJourneyRef(nid("ServiceJourney", trip))
                ),
                S.Cancellation("true"),
            )
        )
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    root = S.Siri(
        S.ServiceDelivery(
            S.ResponseTimestamp(stamp),
            S.ProducerRef("SIM"),
            S.EstimatedTimetableDelivery(
                S.ResponseTimestamp(stamp),
                S.EstimatedJourneyVersionFrame(S.RecordedAtTime(stamp), *journeys),
                version="2.1",
            ),
        ),
        version="2.1",
    )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- ticketing --------------------------------------------------------------------------------
def tides_fare_transactions(day: date, validations: pl.DataFrame, tz: str) -> bytes:
    """Validations (the vendor frame's canonical columns plus ``trip_id``) as a TIDES 1.0
    ``fare_transactions`` CSV."""
    frame = validations.with_row_index("n", offset=1).select(
        pl.format("{}-{}", pl.lit(day.strftime("%Y%m%d")), pl.col("n")).alias("transaction_id"),
        pl.lit(day.isoformat()).alias("service_date"),
        pl.col("validated_at").dt.convert_time_zone(tz).dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("event_timestamp"),
        pl.col("amount_eur").round(2).alias("amount"),
        pl.lit("EUR").alias("currency_type"),
        pl.when(pl.col("validation_type") == "Correspondance")
        .then(pl.lit("Transfer entrance"))
        .otherwise(pl.lit("Enter"))
        .alias("fare_action"),
        pl.col("fare_product").alias("fare_product_id"),
        pl.when(pl.col("medium_type") == "Ticket papier")
        .then(pl.lit("Paper ticket"))
        .otherwise(pl.lit("Smart card"))
        .alias("fare_media_id"),
        pl.col("card_serial").alias("token_id"),
        pl.col("trip_id").alias("trip_id_performed"),
        "stop_id",
        "vehicle_id",
        pl.col("validator_id").alias("device_id"),
    )
    return frame.write_csv().encode("utf-8")
