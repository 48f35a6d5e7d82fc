"""DATEX II parking (v2 and v3) → car-park occupancy readings and the car-park register.

* ``ParkingStatusPublication`` (dynamic): one ``parkingRecordStatus`` per car park, its
  ``parkingRecordReference/@id``, ``parkingStatusOriginTime`` (UTC) and ``parkingOccupancy``
  (vacant, occupied, capacity override, rate, vehicles in and out within an interval) and
  ``parkingSiteStatus`` → ``parking_occupancy`` rows;
* ``ParkingTablePublication`` (static): one ``parkingRecord`` per car park (name, number of
  spaces, location) → ``parking_facilities`` rows.

v2 (``http://datex2.eu/schema/2/2_0``, often inside a ``GenericPublication``) and v3
(``http://datex2.eu/schema/3/...``, parking in its own namespace) differ by namespace and
wrapping, not by the names read here: elements are matched by namespace URI (any DATEX II one)
and local name, never by prefix. The XML is streamed (lxml ``iterparse``) with entities and
network access off.

Traps of real feeds (the Aachen sample): a record whose origin time is days older than the
publication (stale: kept, invalid, with its age), a capacity of 0, a status ``unknown``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from ingestion.parsing import Refused
from ingestion.standards import geo
from ingestion.standards.containers import xml_elements
from ingestion.standards.passages import numbered

NAMESPACE_PREFIX = "http://datex2.eu/schema/"
#: An occupancy reading older than this when the publication was made is stale (the sensor or
#: the link is down): kept, invalid. Operators' contracts may set their own (``stale_after_min``).
STALE_AFTER = timedelta(hours=1)

OCCUPANCY_SCHEMA = {
    "source_row": pl.Int64,
    "facility_id": pl.Utf8,
    "facility_name": pl.Utf8,
    "observed_at": pl.Datetime("us", "UTC"),
    "capacity": pl.Int64,
    "occupied": pl.Int64,
    "free": pl.Int64,
    "entries": pl.Int64,
    "exits": pl.Int64,
    "occupancy_rate_pct": pl.Float64,
    "site_status": pl.Utf8,
    "published_at": pl.Datetime("us", "UTC"),
    "is_valid": pl.Boolean,
    "invalid_reason": pl.Utf8,
}

FACILITY_SCHEMA = {
    "source_row": pl.Int64,
    "facility_id": pl.Utf8,
    "facility_name": pl.Utf8,
    "insee": pl.Utf8,
    "address": pl.Utf8,
    "user_type": pl.Utf8,
    "is_free": pl.Boolean,
    "capacity": pl.Int64,
    "park_and_ride_places": pl.Int64,
    "disabled_places": pl.Int64,
    "max_height": pl.Float64,
    "operator_siret": pl.Utf8,
    "lon": pl.Float64,
    "lat": pl.Float64,
    "structure_type": pl.Utf8,
    "is_valid": pl.Boolean,
    "invalid_reason": pl.Utf8,
}


def _local(el) -> str:
    from lxml import etree

    return etree.QName(el).localname


def _is_datex(el) -> bool:
    from lxml import etree

    ns = etree.QName(el).namespace
    return ns is not None and ns.startswith(NAMESPACE_PREFIX)


def _first(el, *path: str):
    """The first descendant reached through local names ``path`` (DATEX II namespaces only)."""
    nodes = [el]
    for name in path:
        nodes = [c for n in nodes for c in n.iter() if c is not n and _is_datex(c) and _local(c) == name]
        if not nodes:
            return None
    return nodes[0]


def _text(el, *path: str) -> str | None:
    node = _first(el, *path)
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def _number(el, *path: str) -> float | None:
    raw = _text(el, *path)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _int(value: float | None) -> int | None:
    return int(round(value)) if value is not None else None


def _instant(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo else None


def _records(data: bytes, name: str, local_name: str):
    """Yield (publication time, element) for each DATEX II element named ``local_name``."""
    published = None

    def datex_root(ns: str | None, _local_name: str) -> str | None:
        return None if ns and ns.startswith(NAMESPACE_PREFIX) else f"is not DATEX II ({NAMESPACE_PREFIX}…)"

    for event, el, ns, local in xml_elements(data, name, datex_root):
        if event == "start" or not (ns or "").startswith(NAMESPACE_PREFIX):
            continue
        if local == "publicationTime" and published is None:
            published = _instant((el.text or "").strip())
        elif local == local_name:
            yield published, el
            el.clear()


def parking_status(data: bytes, name: str, stale_after: timedelta = STALE_AFTER) -> pl.DataFrame:
    """``parking_occupancy`` rows of a ParkingStatusPublication (v2 or v3)."""
    rows = []
    for published, rec in _records(data, name, "parkingRecordStatus"):
        ref = _first(rec, "parkingRecordReference")
        facility = ref.get("id") if ref is not None else None
        at = _instant(_text(rec, "parkingStatusOriginTime")) or _instant(_text(rec, "parkingStatusTime"))
        occupancy = _first(rec, "parkingOccupancy")
        vacant = _int(_number(occupancy, "parkingNumberOfVacantSpaces")) if occupancy is not None else None
        occupied = _int(_number(occupancy, "parkingNumberOfOccupiedSpaces")) if occupancy is not None else None
        capacity = _int(_number(occupancy, "parkingNumberOfSpacesOverride")) if occupancy is not None else None
        if capacity is None:
            capacity = _int(_number(rec, "parkingNumberOfSpaces"))
        if occupied is None and capacity is not None and vacant is not None:
            occupied = capacity - vacant
        if vacant is None and capacity is not None and occupied is not None:
            vacant = capacity - occupied
        rate = _number(occupancy, "parkingOccupancy") if occupancy is not None else None
        entries = _int(_number(rec, "numberOfIncomingVehicles", "vehicleCount"))
        exits = _int(_number(rec, "numberOfOutgoingVehicles", "vehicleCount"))
        status = _text(rec, "parkingSiteStatus") or _text(rec, "parkingStatus")
        reason = None
        if facility is None:
            reason = "parkingRecordStatus without a parkingRecordReference id"
        elif at is None:
            reason = "no parkingStatusOriginTime with a time zone"
        elif vacant is None and occupied is None:
            reason = "no vacant nor occupied spaces"
        elif published is not None and published - at > stale_after:
            reason = f"stale: reading of {at:%Y-%m-%dT%H:%M:%SZ}, {(published - at)} before the publication"
        elif status == "unknown":
            reason = "parkingSiteStatus 'unknown'"
        elif not capacity:
            reason = f"capacity {capacity}: no car park to measure"
        rows.append(
            {
                "facility_id": facility,
                "facility_name": None,
                "observed_at": at,
                "capacity": capacity,
                "occupied": occupied,
                "free": vacant,
                "entries": entries,
                "exits": exits,
                "occupancy_rate_pct": rate,
                "site_status": status,
                "published_at": published,
                "is_valid": reason is None,
                "invalid_reason": reason,
            }
        )
    if not rows:
        raise Refused(f"{name}: no parkingRecordStatus: not a DATEX II ParkingStatusPublication")
    return numbered(rows, OCCUPANCY_SCHEMA)


def parking_table(data: bytes, name: str) -> pl.DataFrame:
    """``parking_facilities`` rows of a ParkingTablePublication (v2 or v3)."""
    rows = []
    for _, rec in _records(data, name, "parkingRecord"):
        facility = rec.get("id")
        label = _text(rec, "parkingName", "value")
        capacity = _int(_number(rec, "parkingNumberOfSpaces"))
        lat, lon = _number(rec, "pointCoordinates", "latitude"), _number(rec, "pointCoordinates", "longitude")
        if lat is None:
            lat, lon = _number(rec, "latitude"), _number(rec, "longitude")
        if lat is None:  # a projected point (gml:pos with a srsName) instead of WGS84
            pos = next((c for c in rec.iter() if _local(c) == "pos" and c.text), None)
            srs = pos.get("srsName") if pos is not None else None
            if pos is not None and srs:
                x, y = (float(v) for v in pos.text.split()[:2])
                lon, lat = geo.to_wgs84(x, y, srs)
        reason = None
        if not facility:
            reason = "parkingRecord without an id"
        elif capacity is None:
            reason = "no parkingNumberOfSpaces"
        rows.append(
            {
                **dict.fromkeys(FACILITY_SCHEMA),
                "facility_id": facility,
                "facility_name": label,
                "capacity": capacity,
                "lon": lon,
                "lat": lat,
                "is_valid": reason is None,
                "invalid_reason": reason,
            }
        )
    if not rows:
        raise Refused(f"{name}: no parkingRecord: not a DATEX II ParkingTablePublication")
    return numbered(rows, FACILITY_SCHEMA)
