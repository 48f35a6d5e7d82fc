"""NeTEx France offer (a zip of XML files, or one XML) → the GTFS tables the offer path stages.

Every French network must publish its offer in NeTEx (profil France); not all publish GTFS. This
reader turns the offer into an in-memory GTFS feed (:class:`ingestion.gtfs.Feed`, text columns)
that ingestion stages exactly as a GTFS zip, so every mart works for a network without GTFS.

Read (``standards_fr.md`` §2): ``Quay`` and ``StopPlace`` (WGS84 ``Longitude``/``Latitude``, or a
``gml:pos`` with its ``srsName`` reprojected), ``Line`` (``PublicCode``, ``TransportMode``),
``Route`` (``DirectionType``), ``ServiceJourneyPattern`` (stop points in order),
``PassengerStopAssignment`` (scheduled stop point → quay), ``ServiceJourney`` with its
``TimetabledPassingTime`` (local times with day offsets; matched to the pattern's points by
``StopPointInJourneyPatternRef`` when given, else by position, as the real sample needs),
``DayType`` / ``DayTypeAssignment`` (a ``Date``, an ``OperatingDay``, or an ``OperatingPeriod`` with
the day type's days of week; ``isAvailable=false`` removes a date), ``Operator``, and the
``TimeZone`` of ``FrameDefaults``. Files are streamed (lxml ``iterparse``), references resolved
across files after all are read, ids kept as opaque strings (the profile forbids parsing them).
Not read: fares, accessibility, interchanges, flexible services, notices.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import polars as pl

from ingestion.gtfs import Feed
from ingestion.parsing import Refused
from ingestion.standards import geo
from ingestion.standards.containers import members, xml_elements

NETEX_NS = "http://www.netex.org.uk/netex"
GML_NS = "http://www.opengis.net/gml/3.2"
ROUTE_TYPES = {  # NeTEx TransportMode → GTFS route_type
    "tram": "0",
    "metro": "1",
    "rail": "2",
    "bus": "3",
    "coach": "3",
    "trolleyBus": "11",
    "water": "4",
    "ferry": "4",
    "cableway": "6",
    "funicular": "7",
    "air": "1100",
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
RECORDS = {
    "StopPlace",
    "Quay",
    "Line",
    "Route",
    "ServiceJourneyPattern",
    "JourneyPattern",
    "ScheduledStopPoint",
    "PassengerStopAssignment",
    "ServiceJourney",
    "DayType",
    "DayTypeAssignment",
    "OperatingPeriod",
    "UicOperatingPeriod",
    "OperatingDay",
    "Operator",
}


def _local(el) -> str:
    from lxml import etree

    return etree.QName(el).localname


def _child(el, name: str):
    for c in el:
        if isinstance(c.tag, str) and _local(c) == name:
            return c
    return None


def _text(el, *path: str) -> str | None:
    for name in path:
        el = _child(el, name) if el is not None else None
    return (el.text or "").strip() or None if el is not None else None


def _ref(el, name: str) -> str | None:
    node = _child(el, name)
    return node.get("ref") if node is not None else None


def _point(el) -> tuple[str | None, str | None]:
    """(lon, lat) as text of the first Location under ``el``: WGS84, else a reprojected gml:pos."""
    for loc in el.iter("{*}Location"):
        lon, lat = _text(loc, "Longitude"), _text(loc, "Latitude")
        if lon and lat:
            return lon, lat
        pos = next(loc.iter(f"{{{GML_NS}}}pos"), None)
        if pos is not None and pos.text and pos.get("srsName"):
            x, y = (float(v) for v in pos.text.split()[:2])
            lon_f, lat_f = geo.to_wgs84(x, y, pos.get("srsName"))
            return f"{lon_f:.7f}", f"{lat_f:.7f}"
    return None, None


def _hms(time: str | None, offset: str | None) -> str | None:
    if not time:
        return None
    h, m, s = (int(float(x)) for x in (time.split(":") + ["0", "0"])[:3])
    h += 24 * int(offset or 0)
    return f"{h:02d}:{m:02d}:{s:02d}"


class _Collected:
    def __init__(self) -> None:
        self.timezone: str | None = None
        self.version: str | None = None
        self.stops: dict[str, dict] = {}
        self.lines: dict[str, dict] = {}
        self.routes: dict[str, dict] = {}
        self.patterns: dict[str, dict] = {}
        self.ssp: dict[str, dict] = {}
        self.assignment: dict[str, str] = {}
        self.journeys: list[dict] = []
        self.day_types: dict[str, set[int]] = {}
        self.day_dates: dict[str, set[date]] = defaultdict(set)
        self.day_removed: dict[str, set[date]] = defaultdict(set)
        self.periods: dict[str, tuple[date, date]] = {}
        self.operating_days: dict[str, date] = {}
        self.period_assignments: list[tuple[str, str]] = []
        self.operators: dict[str, str] = {}

    def add(self, kind: str, el) -> None:  # noqa: C901 (one branch per NeTEx element read)
        ident = el.get("id")
        if kind == "StopPlace":
            lon, lat = _point(_child(el, "Centroid") if _child(el, "Centroid") is not None else el)
            self.stops.setdefault(ident, {}).update(
                {
                    "stop_id": ident,
                    "stop_name": _text(el, "Name"),
                    "stop_lon": lon,
                    "stop_lat": lat,
                    "location_type": "1",
                }
            )
            quays = _child(el, "quays")
            for q in quays if quays is not None else []:
                if not isinstance(q.tag, str):
                    continue
                qid = q.get("ref") if _local(q) == "QuayRef" else q.get("id")
                if qid:
                    self.stops.setdefault(qid, {"stop_id": qid})["parent_station"] = ident
                if _local(q) == "Quay":
                    self.add("Quay", q)
        elif kind == "Quay":
            lon, lat = _point(el)
            entry = self.stops.setdefault(ident, {"stop_id": ident})
            entry.update({"stop_name": _text(el, "Name") or entry.get("stop_name"), "stop_lon": lon, "stop_lat": lat})
            entry["location_type"] = "0"
        elif kind == "Line":
            mode = _text(el, "TransportMode") or "bus"
            self.lines[ident] = {
                "route_id": ident,
                "agency_id": _ref(el, "OperatorRef"),
                "route_short_name": _text(el, "PublicCode") or _text(el, "ShortName") or _text(el, "Name"),
                "route_long_name": _text(el, "Name"),
                "route_type": ROUTE_TYPES.get(mode, "3"),
                "route_color": _text(el, "Presentation", "Colour"),
            }
        elif kind == "Route":
            direction = (_text(el, "DirectionType") or "").lower()
            self.routes[ident] = {
                "line": _ref(el, "LineRef"),
                "direction_id": {"outbound": "0", "inbound": "1"}.get(direction),
            }
        elif kind in ("ServiceJourneyPattern", "JourneyPattern"):
            points = []
            seq = _child(el, "pointsInSequence")
            for p in seq if seq is not None else []:
                if isinstance(p.tag, str) and _local(p) == "StopPointInJourneyPattern":
                    points.append(
                        (int(p.get("order") or len(points) + 1), p.get("id"), _ref(p, "ScheduledStopPointRef"))
                    )
            self.patterns[ident] = {
                "route": _ref(el, "RouteRef"),
                "points": sorted(points),
                "headsign": _text(el, "Name"),
            }
        elif kind == "ScheduledStopPoint":
            lon, lat = _point(el)
            self.ssp[ident] = {"name": _text(el, "Name"), "lon": lon, "lat": lat}
        elif kind == "PassengerStopAssignment":
            ssp, quay = _ref(el, "ScheduledStopPointRef"), _ref(el, "QuayRef") or _ref(el, "StopPlaceRef")
            if ssp and quay:
                self.assignment[ssp] = quay
        elif kind == "ServiceJourney":
            days = _child(el, "dayTypes")
            times = []
            passing = _child(el, "passingTimes")
            for t in passing if passing is not None else []:
                if isinstance(t.tag, str) and _local(t) == "TimetabledPassingTime":
                    times.append(
                        {
                            "point": _ref(t, "StopPointInJourneyPatternRef"),
                            "arrival": _hms(_text(t, "ArrivalTime"), _text(t, "ArrivalDayOffset")),
                            "departure": _hms(_text(t, "DepartureTime"), _text(t, "DepartureDayOffset")),
                        }
                    )
            self.journeys.append(
                {
                    "id": ident,
                    "pattern": _ref(el, "ServiceJourneyPatternRef") or _ref(el, "JourneyPatternRef"),
                    "line": _ref(el, "LineRef"),
                    "days": [d.get("ref") for d in (days if days is not None else []) if isinstance(d.tag, str)],
                    "times": times,
                }
            )
        elif kind == "DayType":
            days: set[int] = set()
            for dow in el.iter("{*}DaysOfWeek"):
                for word in (dow.text or "").split():
                    if word in WEEKDAYS:
                        days.add(WEEKDAYS.index(word))
                    elif word == "Weekdays":
                        days |= {0, 1, 2, 3, 4}
                    elif word == "Weekend":
                        days |= {5, 6}
                    elif word == "Everyday":
                        days |= set(range(7))
            self.day_types[ident] = days or set(range(7))
        elif kind == "DayTypeAssignment":
            day_type = _ref(el, "DayTypeRef")
            available = (_text(el, "isAvailable") or "true").lower() != "false"
            if _text(el, "Date"):
                (self.day_dates if available else self.day_removed)[day_type].add(
                    date.fromisoformat(_text(el, "Date")[:10])
                )
            elif _ref(el, "OperatingDayRef"):
                self.period_assignments.append((day_type, "day:" + _ref(el, "OperatingDayRef")))
            elif _ref(el, "OperatingPeriodRef"):
                self.period_assignments.append((day_type, "period:" + _ref(el, "OperatingPeriodRef")))
        elif kind in ("OperatingPeriod", "UicOperatingPeriod"):
            start, end = _text(el, "FromDate"), _text(el, "ToDate")
            if start and end:
                self.periods[ident] = (date.fromisoformat(start[:10]), date.fromisoformat(end[:10]))
        elif kind == "OperatingDay":
            if _text(el, "CalendarDate"):
                self.operating_days[ident] = date.fromisoformat(_text(el, "CalendarDate")[:10])
        elif kind == "Operator":
            self.operators[ident] = _text(el, "Name") or ident

    def service_dates(self) -> dict[str, set[date]]:
        out: dict[str, set[date]] = defaultdict(set)
        for day_type, dates in self.day_dates.items():
            out[day_type] |= dates
        for day_type, target in self.period_assignments:
            if target.startswith("day:") and target[4:] in self.operating_days:
                out[day_type].add(self.operating_days[target[4:]])
            elif target.startswith("period:") and target[7:] in self.periods:
                start, end = self.periods[target[7:]]
                weekdays = self.day_types.get(day_type, set(range(7)))
                d = start
                while d <= end:
                    if d.weekday() in weekdays:
                        out[day_type].add(d)
                    d += timedelta(days=1)
        for day_type, removed in self.day_removed.items():
            out[day_type] -= removed
        return out


def read(data: bytes, name: str, ids: dict | None = None) -> Feed:
    """The GTFS feed a NeTEx offer describes, its ids mapped to the network's as the operator's
    contract says (``file.ids``, :mod:`.ids`); Refused when it describes none."""
    got = _Collected()

    def netex_root(ns: str | None, local_name: str) -> str | None:
        ok = ns == NETEX_NS and local_name == "PublicationDelivery"
        return None if ok else f"is not a NeTEx PublicationDelivery ({NETEX_NS})"

    for member, payload in members(data, name, (".xml",)):
        for event, el, ns, local in xml_elements(payload, member, netex_root):
            if event == "start":
                if local == "PublicationDelivery":
                    got.version = got.version or el.get("version")
                continue
            if ns != NETEX_NS:
                continue
            if local == "TimeZone" and got.timezone is None:
                got.timezone = (el.text or "").strip() or None
            elif local in RECORDS and el.get("id") and _parent_is_collection(el):
                got.add(local, el)
                if local != "Quay":  # a quay is read again with its stop place
                    el.clear()
    if not got.journeys:
        raise Refused(f"{name}: no ServiceJourney: not a NeTEx offer (timetable frame missing)")
    feed = _feed(got, name)
    if ids:
        from ingestion.standards.ids import apply

        feed = Feed({t: apply(frame, ids) for t, frame in feed.tables.items()}, source=name, problems=feed.problems)
    return feed


def _parent_is_collection(el) -> bool:
    """Definitions sit in a frame's collection (``members``, ``stopPlaces``, ``lines``…); the same
    names inside another element are references or nested parts (a Quay in a StopPlace is read
    with its StopPlace)."""
    parent = el.getparent()
    return parent is not None and _local(parent) not in RECORDS


def _feed(got: _Collected, name: str) -> Feed:
    dates = got.service_dates()
    trips, stop_times, problems = [], [], []
    services: dict[tuple[str, ...], str] = {}
    for j in got.journeys:
        pattern = got.patterns.get(j["pattern"] or "")
        if pattern is None:
            problems.append(f"ServiceJourney {j['id']}: journey pattern {j['pattern']!r} not found")
            continue
        route = got.routes.get(pattern["route"] or "", {})
        line = j["line"] or route.get("line")
        if line not in got.lines:
            problems.append(f"ServiceJourney {j['id']}: line {line!r} not found")
            continue
        key = tuple(sorted(d for d in j["days"] if d))
        service = services.setdefault(key, "+".join(key) if len(key) > 1 else (key[0] if key else "none"))
        trips.append(
            {
                "route_id": line,
                "service_id": service,
                "trip_id": j["id"],
                "trip_headsign": pattern["headsign"],
                "direction_id": route.get("direction_id"),
            }
        )
        points = pattern["points"]
        by_id = {pid: (order, ssp) for order, pid, ssp in points}
        for i, t in enumerate(j["times"]):
            if t["point"] and t["point"] in by_id:
                order, ssp = by_id[t["point"]]
            elif i < len(points):
                order, _, ssp = points[i]
            else:
                problems.append(f"ServiceJourney {j['id']}: passing time {i + 1} beyond its pattern's points")
                continue
            stop = got.assignment.get(ssp, ssp)
            if stop not in got.stops:  # a scheduled stop point assigned to no quay stands for itself
                info = got.ssp.get(ssp, {})
                got.stops[stop] = {
                    "stop_id": stop,
                    "stop_name": info.get("name"),
                    "stop_lon": info.get("lon"),
                    "stop_lat": info.get("lat"),
                    "location_type": "0",
                }
            stop_times.append(
                {
                    "trip_id": j["id"],
                    "arrival_time": t["arrival"] or t["departure"],
                    "departure_time": t["departure"] or t["arrival"],
                    "stop_id": stop,
                    "stop_sequence": str(order),
                }
            )
    if not trips:
        raise Refused(f"{name}: no ServiceJourney could be placed ({'; '.join(problems[:3])})")
    calendar_dates = [
        {"service_id": service, "date": f"{d:%Y%m%d}", "exception_type": "1"}
        for key, service in services.items()
        for d in sorted(set().union(*(dates.get(k, set()) for k in key)) if key else set())
    ]
    all_dates = sorted({r["date"] for r in calendar_dates})
    tz = got.timezone or "Europe/Paris"
    agencies = {line["agency_id"] for line in got.lines.values()}
    feed = Feed(
        {
            "agency": pl.DataFrame(
                [
                    {
                        "agency_id": a,
                        "agency_name": got.operators.get(a or "", a or "NeTEx"),
                        "agency_url": "",
                        "agency_timezone": tz,
                    }
                    for a in sorted(agencies, key=str)
                ],
                schema=dict.fromkeys(["agency_id", "agency_name", "agency_url", "agency_timezone"], pl.Utf8),
            ),
            "stops": pl.DataFrame(
                [
                    {
                        k: s.get(k)
                        for k in ("stop_id", "stop_name", "stop_lat", "stop_lon", "location_type", "parent_station")
                    }
                    for s in got.stops.values()
                ],
                schema=dict.fromkeys(
                    ["stop_id", "stop_name", "stop_lat", "stop_lon", "location_type", "parent_station"], pl.Utf8
                ),
            ),
            "routes": pl.DataFrame(
                list(got.lines.values()),
                schema=dict.fromkeys(
                    ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type", "route_color"],
                    pl.Utf8,
                ),
            ),
            "trips": pl.DataFrame(
                trips,
                schema=dict.fromkeys(["route_id", "service_id", "trip_id", "trip_headsign", "direction_id"], pl.Utf8),
            ),
            "stop_times": pl.DataFrame(
                stop_times,
                schema=dict.fromkeys(
                    ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"], pl.Utf8
                ),
            ),
            "calendar_dates": pl.DataFrame(
                calendar_dates, schema=dict.fromkeys(["service_id", "date", "exception_type"], pl.Utf8)
            ),
            "feed_info": pl.DataFrame(
                [
                    {
                        "feed_publisher_name": "NeTEx",
                        "feed_publisher_url": "",
                        "feed_lang": "fr",
                        "feed_start_date": all_dates[0] if all_dates else None,
                        "feed_end_date": all_dates[-1] if all_dates else None,
                        "feed_version": None,
                    }
                ],
                schema=dict.fromkeys(
                    [
                        "feed_publisher_name",
                        "feed_publisher_url",
                        "feed_lang",
                        "feed_start_date",
                        "feed_end_date",
                        "feed_version",
                    ],
                    pl.Utf8,
                ),
            ),
        },
        source=name,
    )
    feed.problems = problems
    return feed
