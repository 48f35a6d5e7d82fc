"""SIRI (profil France, SIRI-Lite) → observed stop passages and vehicle positions.

Read: EstimatedTimetable (``EstimatedVehicleJourney`` with its recorded and estimated calls),
StopMonitoring (``MonitoredStopVisit``) and VehicleMonitoring (``VehicleActivity``), in the four
shapes real producers serve (``standards_fr.md`` §3.3): a bare ``Siri`` document, a SOAP envelope
(``Get*Response/Answer`` or ``Notify*/Notification``), SIRI-Lite XML, and SIRI-Lite JSON with or
without ``{"value": …}`` wrappers; versions 1.3 to 2.1 (one namespace URI across them); a single
response, a gzip'd one, or a zip of polls (the archiver's hourly batch).

Elements are matched by namespace URI (SIRI's, or none: real SOAP answers leave
``ServiceDeliveryInfo`` and ``Answer`` unqualified) and local name, never by prefix. Times are
ISO 8601 with an offset or ``Z`` and stored in UTC. Actual times are optional in the French
profile (ET001): without them a passage is the last estimate before the call left the feed, or
a prediction kept invalid (:mod:`.passages`). Positions in Lambert-93 / Lambert II étendu are
converted to WGS84 (:mod:`.geo`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import polars as pl

from ingestion.parsing import Refused
from ingestion.standards import geo
from ingestion.standards.containers import members, xml_elements
from ingestion.standards.passages import Call, PassageLog, day_of, positions

SIRI_NS = "http://www.siri.org.uk/siri"
SOAP_NS = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")
RECORDS = ("VehicleActivity", "EstimatedVehicleJourney", "MonitoredStopVisit")
SUPPORTED_MAJOR = ("1", "2")


@dataclass(frozen=True)
class Document:
    member: str
    at: datetime  # ResponseTimestamp (UTC)
    version: str | None
    records: list[tuple[str, dict]]  # (record kind, record as nested dict of local names)


# -- reading ------------------------------------------------------------------------------
def _unwrap(value):
    """SIRI-Lite JSON with {"value": x} wrappers and one-element lists → plain nested values."""
    if isinstance(value, dict):
        if set(value) == {"value"}:
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _todict(el) -> dict | str:
    from lxml import etree

    children = [c for c in el if isinstance(c.tag, str) and etree.QName(c).namespace in (SIRI_NS, None)]
    if not children:
        text = (el.text or "").strip()
        return {"@" + k: v for k, v in el.attrib.items()} | {"#text": text} if el.attrib else text
    out: dict = {"@" + k: v for k, v in el.attrib.items()}
    for c in children:
        key, value = etree.QName(c).localname, _todict(c)
        if key in out:
            out[key] = out[key] if isinstance(out[key], list) else [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    return out


def _xml(payload: bytes, member: str) -> tuple[str | None, str | None, list[tuple[str, dict]]]:
    timestamp = version = None
    records: list[tuple[str, dict]] = []

    def siri_root(ns: str | None, _local_name: str) -> str | None:
        return None if ns == SIRI_NS or ns in SOAP_NS else f"is neither SIRI ({SIRI_NS}) nor a SOAP envelope"

    for event, el, ns, local in xml_elements(payload, member, siri_root):
        if event == "start":
            if ns == SIRI_NS and version is None and el.get("version"):
                version = el.get("version")
            continue
        if local == "Fault" and ns in SOAP_NS:
            fault = " ".join(t.strip() for t in el.itertext() if t.strip())
            raise Refused(f"{member}: SOAP fault: {fault[:300]}")
        if ns not in (SIRI_NS, None):
            continue
        if local == "ResponseTimestamp" and timestamp is None:
            timestamp = (el.text or "").strip()
        elif local in RECORDS:
            records.append((local, _todict(el)))
            el.clear()
    return timestamp, version, records


def _find(value, keys: tuple[str, ...], out: list) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in keys:
                out.extend((k, x) for x in (v if isinstance(v, list) else [v]) if isinstance(x, dict))
            else:
                _find(v, keys, out)
    elif isinstance(value, list):
        for v in value:
            _find(v, keys, out)


def _json(payload: bytes, member: str) -> tuple[str | None, str | None, list[tuple[str, dict]]]:
    try:
        doc = _unwrap(json.loads(payload.decode("utf-8-sig")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(f"{member}: not JSON text ({exc})") from None
    siri = doc.get("Siri") if isinstance(doc, dict) else None
    if not isinstance(siri, dict):
        raise Refused(f"{member}: JSON without a top-level 'Siri' object: not SIRI-Lite")
    stamps: list = []
    _find(siri, ("ServiceDelivery",), stamps)
    delivery = stamps[0][1] if stamps else {}
    records: list[tuple[str, dict]] = []
    _find(siri, RECORDS, records)
    version = siri.get("version") or delivery.get("version")
    return delivery.get("ResponseTimestamp"), version, records


_UNICODE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _json_as_utf8(payload: bytes) -> bytes:
    """JSON in UTF-16 or UTF-32 (RFC 8259 allows neither, producers send both) as UTF-8; XML
    keeps its bytes, which its declaration describes."""
    for bom, codec in _UNICODE_BOMS:
        if payload.startswith(bom):
            try:
                text = payload[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                return payload
            return text.encode("utf-8") if text.lstrip()[:1] in ("{", "[") else payload
    return payload


def record_kinds(docs: list[Document]) -> dict[str, int]:
    """How many records of each kind the responses hold."""
    out: dict[str, int] = {}
    for doc in docs:
        for kind, _ in doc.records:
            out[kind] = out.get(kind, 0) + 1
    return out


def documents(data: bytes, name: str) -> list[Document]:
    """Return the SIRI responses of a delivery in time order, or raise Refused naming the rule."""
    out = []
    for member, payload in members(data, name, (".xml", ".json")):
        payload = _json_as_utf8(payload)
        head = payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        timestamp, version, records = (_json if head in (b"{", b"[") else _xml)(payload, member)
        if version and version.split(".")[0] not in SUPPORTED_MAJOR:
            raise Refused(f"{member}: SIRI version {version!r} is not 1.x or 2.x")
        at = _instant(timestamp)
        if at is None:
            raise Refused(f"{member}: no ResponseTimestamp with a time zone, so nothing in it can be dated")
        out.append(Document(member, at, version, records))
    return sorted(out, key=lambda d: (d.at, d.member))


# -- values -------------------------------------------------------------------------------
def _instant(raw) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo else None


def _get(d, *path):
    for key in path:
        if isinstance(d, list):
            d = d[0] if d else None
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    if isinstance(d, list):
        d = d[0] if d else None
    if isinstance(d, dict) and "#text" in d:
        d = d["#text"]
    return d if d not in ("", None) else None


def _text(d, *path) -> str | None:
    value = _get(d, *path)
    if isinstance(value, dict):
        return None
    return str(value) if value is not None else None


def _int(raw) -> int | None:
    try:
        return int(float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _float(raw) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _list(d, *path) -> list[dict]:
    for key in path[:-1]:
        d = d.get(key) if isinstance(d, dict) else None
        if isinstance(d, list):
            d = d[0] if d else None
    value = d.get(path[-1]) if isinstance(d, dict) else None
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]


def _service_date(journey: dict, first: datetime | None, at: datetime, tz: str) -> date:
    """The journey's operating day: a date in its DataFrameRef (the profile's usual carrier), else
    the local date of its origin's aimed departure, else of its first time, cut at 04:00."""
    frame = _text(journey, "FramedVehicleJourneyRef", "DataFrameRef") or _text(journey, "DataFrameRef") or ""
    if m := re.search(r"(\d{4})-(\d{2})-(\d{2})", frame):
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            pass
    origin = _instant(_text(journey, "OriginAimedDepartureTime"))
    if origin is not None:
        return origin.astimezone(ZoneInfo(tz)).date()
    instant = first or at
    return day_of(instant, tz)


def _journey_id(journey: dict) -> str | None:
    return (
        _text(journey, "FramedVehicleJourneyRef", "DatedVehicleJourneyRef")
        or _text(journey, "DatedVehicleJourneyRef")
        or _text(journey, "DatedVehicleJourneyCode")
        or _text(journey, "VehicleJourneyRef")
    )


def _call(call: dict, recorded: bool, stop_ref: str | None = None) -> dict:
    """One call's passage. ``stop_ref``: the stop the request monitored (StopMonitoring's
    ``MonitoringRef``), for a call that names no ``StopPointRef``. A time is actual only when SIRI
    says so (an Actual* time, a RecordedCall, an arrived/departed status, the vehicle at the stop):
    an expected time, even past or equal to the aimed one, stays a prediction."""
    actual_arr, actual_dep = _instant(_text(call, "ActualArrivalTime")), _instant(_text(call, "ActualDepartureTime"))
    expected_arr = _instant(_text(call, "ExpectedArrivalTime"))
    expected_dep = _instant(_text(call, "ExpectedDepartureTime"))
    statuses = {(_text(call, "ArrivalStatus") or "").lower(), (_text(call, "DepartureStatus") or "").lower()}
    at_stop = (_text(call, "VehicleAtStop") or "").lower() == "true"
    actual = recorded or actual_arr is not None or actual_dep is not None or bool(statuses & {"arrived", "departed"})
    return {
        "stop_id": _text(call, "StopPointRef") or stop_ref,
        "stop_sequence": _int(_text(call, "Order")),
        "scheduled_arrival_at": _instant(_text(call, "AimedArrivalTime")),
        "scheduled_departure_at": _instant(_text(call, "AimedDepartureTime")),
        "arrival_at": actual_arr or expected_arr,
        "departure_at": actual_dep or expected_dep,
        "actual": actual or at_stop and (actual_arr or expected_arr) is not None,
        "status": "skipped" if "cancelled" in statuses or (_text(call, "Cancellation") or "") == "true" else None,
        "past_is_actual": False,
    }


def _calls(kind: str, record: dict) -> tuple[dict, list[dict]]:
    """(journey, its calls) of one record: ET's recorded and estimated calls, SM/VM's monitored call."""
    if kind == "EstimatedVehicleJourney":
        recorded = [_call(c, True) for c in _list(record, "RecordedCalls", "RecordedCall")]
        estimated = [_call(c, False) for c in _list(record, "EstimatedCalls", "EstimatedCall")]
        return record, recorded + estimated
    journey = _get(record, "MonitoredVehicleJourney") or {}
    monitored = _list(journey, "MonitoredCall")
    stop_ref = _text(record, "MonitoringRef") if kind == "MonitoredStopVisit" else None
    return journey, [_call(c, False, stop_ref) for c in monitored]


def observed_passages(docs: list[Document], tz: str) -> pl.DataFrame:
    """One row per (operating day, journey, stop) the responses mention, with the passage times
    and how they are known (:mod:`.passages`); ids are the producer's (``StopPointRef``,
    ``DatedVehicleJourneyRef``): the operator's contract maps them to the network's."""
    log = PassageLog()
    for doc in docs:
        for kind, record in doc.records:
            journey, calls = _calls(kind, record)
            first = next((t for c in calls for t in (c["scheduled_departure_at"], c["arrival_at"]) if t), None)
            day = _service_date(journey, first, doc.at, tz)
            trip = _journey_id(journey)
            base = {
                "route_id": _text(journey, "LineRef"),
                "direction_ref": _text(journey, "DirectionRef"),
                "vehicle_id": _text(journey, "VehicleRef"),
            }
            if trip is None:
                log.add(doc.at, Call(day, None, **base, reason=f"{kind} without a vehicle journey reference"))
                continue
            log.journey_seen(day, trip, doc.at)
            if (_text(journey, "Cancellation") or "").lower() == "true":
                continue
            for c in calls:
                log.add(doc.at, Call(day, trip, **base, **c))
    return log.frame()


def vehicle_positions(docs: list[Document], tz: str) -> pl.DataFrame:
    """VehicleMonitoring positions in the TIDES ``vehicle_locations`` vocabulary (WGS84)."""
    seen: dict[tuple[str, datetime], dict] = {}
    for doc in docs:
        for kind, record in doc.records:
            if kind != "VehicleActivity":
                continue
            journey = _get(record, "MonitoredVehicleJourney") or {}
            at = _instant(_text(record, "RecordedAtTime")) or doc.at
            vehicle = _text(journey, "VehicleRef") or _text(record, "VehicleMonitoringRef")
            if vehicle is None or (vehicle, at) in seen:
                continue
            location = _get(journey, "VehicleLocation") or {}
            lon, lat = _float(_text(location, "Longitude")), _float(_text(location, "Latitude"))
            reason = None
            coordinates = _text(location, "Coordinates")
            if lon is None and coordinates:
                srs = location.get("@srsName") if isinstance(location, dict) else None
                try:
                    x, y = (float(v) for v in coordinates.split()[:2])
                    lon, lat = geo.to_wgs84(x, y, srs or "EPSG:4326")
                except ValueError as exc:
                    reason = f"Coordinates {coordinates!r} ({srs}): {exc}"
            if reason is None and (lon is None or lat is None):
                reason = "no vehicle location"
            trip = _journey_id(journey)
            seen[(vehicle, at)] = {
                "location_ping_id": f"{vehicle}@{at:%Y%m%dT%H%M%SZ}",
                "service_date": _service_date(journey, None, at, tz),
                "event_timestamp": at,
                "trip_id": trip,
                "route_id": _text(journey, "LineRef"),
                "direction_id": None,
                "vehicle_id": vehicle,
                "vehicle_label": None,
                "stop_id": _text(journey, "MonitoredCall", "StopPointRef"),
                "current_status": "Stopped at"
                if (_text(journey, "MonitoredCall", "VehicleAtStop") or "").lower() == "true"
                else None,
                "latitude": lat,
                "longitude": lon,
                "heading": _float(_text(journey, "Bearing")),
                "speed": _float(_text(journey, "Velocity")),
                "odometer": None,
                "age_s": int((doc.at - at).total_seconds()),
                "is_valid": reason is None,
                "invalid_reason": reason,
            }
    return positions(seen)
