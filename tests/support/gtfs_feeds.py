"""Small GTFS feeds made to order, for the property tests of the simulator and the pipeline:
the odd shapes real feeds take (a day with 0, 1 or 2 trips, no blocks, frequencies, times past
48:00, extended route types, quoted ids with colons, a calendar far from the simulated dates,
GTFS-Flex columns, translations, a missing file)."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path


@dataclass
class FeedSpec:
    routes: int = 2
    stops_per_route: int = 5
    weekday_trips: int = 6  # per route and direction
    weekend_trips: int = 1  # per route, one direction (0 = no weekend service)
    first_departure_s: int = 6 * 3600
    headway_s: int = 1800
    with_blocks: bool = True
    frequencies: bool = False
    route_type: int = 3
    id_prefix: str = ""  # e.g. "FR:Line:" quoted ids with colons
    calendar_start: date = date(2026, 1, 5)
    calendar_days: int = 28
    flex_columns: bool = False
    translations: bool = False
    drop: tuple[str, ...] = ()  # files left out
    parent_stations: bool = False
    extra: dict[str, str] = field(default_factory=dict)


HEADERS = {  # of a table written without rows
    "trips.txt": ["route_id", "service_id", "trip_id", "direction_id", "block_id"],
    "stop_times.txt": ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"],
}


def _csv(rows: list[dict], name: str = "") -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(rows[0]) if rows else HEADERS.get(name, ["x"]), quoting=csv.QUOTE_ALL, lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _hms(s: int) -> str:
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def build(spec: FeedSpec, path: Path) -> Path:
    """Write the feed ``spec`` describes as a zip at ``path``."""
    p = spec.id_prefix
    tables: dict[str, list[dict]] = {
        "agency.txt": [
            {
                "agency_id": f"{p}A",
                "agency_name": "Réseau d'essai",
                "agency_url": "https://example.org",
                "agency_timezone": "Europe/Paris",
            }
        ]
    }
    stops, routes, trips, stop_times, freqs = [], [], [], [], []
    for r in range(spec.routes):
        route_id = f"{p}R{r}"
        routes.append(
            {
                "route_id": route_id,
                "agency_id": f"{p}A",
                "route_short_name": f"L{r}",
                "route_long_name": f"Ligne {r}",
                "route_type": str(spec.route_type),
            }
        )
        ids = []
        for k in range(spec.stops_per_route):
            stop_id = f"{p}S{r}-{k}"
            ids.append(stop_id)
            row = {
                "stop_id": stop_id,
                "stop_name": f"Arrêt {r}-{k}",
                "stop_lat": f"{48.85 + 0.004 * k:.6f}",
                "stop_lon": f"{2.30 + 0.01 * r + 0.002 * k:.6f}",
                "location_type": "0",
                "parent_station": "",
            }
            if spec.parent_stations and k == 0:
                row["parent_station"] = f"{p}ST{r}"
                stops.append(
                    {
                        "stop_id": f"{p}ST{r}",
                        "stop_name": f"Pôle {r}",
                        "stop_lat": row["stop_lat"],
                        "stop_lon": row["stop_lon"],
                        "location_type": "1",
                        "parent_station": "",
                    }
                )
            stops.append(row)
        for service, count, directions in (("WD", spec.weekday_trips, (0, 1)), ("WE", spec.weekend_trips, (0,))):
            for d in directions:
                seq = ids if d == 0 else ids[::-1]
                for n in range(count):
                    trip_id = f"{p}T{r}-{service}-{d}-{n}"
                    start = spec.first_departure_s + n * spec.headway_s + d * 600
                    trips.append(
                        {
                            "route_id": route_id,
                            "service_id": f"{p}{service}",
                            "trip_id": trip_id,
                            "direction_id": str(d),
                            "block_id": f"{p}B{r}-{service}-{n}" if spec.with_blocks else "",
                        }
                    )
                    for k, stop_id in enumerate(seq):
                        t = start + 150 * k
                        row = {
                            "trip_id": trip_id,
                            "arrival_time": _hms(t),
                            "departure_time": _hms(t + 20),
                            "stop_id": stop_id,
                            "stop_sequence": str(k + 1),
                        }
                        if spec.flex_columns:
                            row.update(
                                {
                                    "start_pickup_drop_off_window": "",
                                    "end_pickup_drop_off_window": "",
                                    "pickup_booking_rule_id": "",
                                }
                            )
                        stop_times.append(row)
                    if spec.frequencies and n == 0:
                        freqs.append(
                            {
                                "trip_id": trip_id,
                                "start_time": _hms(start),
                                "end_time": _hms(start + 3 * 3600),
                                "headway_secs": "900",
                                "exact_times": "0",
                            }
                        )
    end = spec.calendar_start + timedelta(days=spec.calendar_days - 1)
    tables["stops.txt"] = stops
    tables["routes.txt"] = routes
    tables["trips.txt"] = trips
    tables["stop_times.txt"] = stop_times
    tables["calendar.txt"] = [
        {
            "service_id": f"{p}WD",
            "monday": "1",
            "tuesday": "1",
            "wednesday": "1",
            "thursday": "1",
            "friday": "1",
            "saturday": "0",
            "sunday": "0",
            "start_date": f"{spec.calendar_start:%Y%m%d}",
            "end_date": f"{end:%Y%m%d}",
        },
        {
            "service_id": f"{p}WE",
            "monday": "0",
            "tuesday": "0",
            "wednesday": "0",
            "thursday": "0",
            "friday": "0",
            "saturday": "1",
            "sunday": "1",
            "start_date": f"{spec.calendar_start:%Y%m%d}",
            "end_date": f"{end:%Y%m%d}",
        },
    ]
    if freqs:
        tables["frequencies.txt"] = freqs
    if spec.translations:
        tables["translations.txt"] = [
            {
                "table_name": "stops",
                "field_name": "stop_name",
                "language": "en",
                "translation": "Stop",
                "record_id": stops[0]["stop_id"],
            }
        ]
    with zipfile.ZipFile(path, "w") as z:
        for name, rows in tables.items():
            if name not in spec.drop:
                z.writestr(name, _csv(rows, name))
        for name, text in spec.extra.items():
            z.writestr(name, text)
    return path


# -- small hand-made feeds for the hostile-file tests (issue #29) ------------------------------
def gtfs_zip(calendar: str, feed_info: str | None = None, calendar_dates: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("agency.txt", "agency_id,agency_name,agency_url,agency_timezone\nA,A,http://a,Europe/Paris\n")
        z.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nS1,One,43.6,3.9\nS2,Two,43.7,3.8\n")
        z.writestr("routes.txt", "route_id,agency_id,route_short_name,route_type\nR,A,1,3\n")
        z.writestr("trips.txt", "route_id,service_id,trip_id\nR,WK,T1\n")
        z.writestr(
            "stop_times.txt",
            "trip_id,arrival_time,departure_time,stop_id,stop_sequence\nT1,08:00:00,08:00:00,S1,1\n"
            "T1,08:10:00,08:10:00,S2,2\n",
        )
        z.writestr("calendar.txt", calendar)
        if feed_info is not None:
            z.writestr("feed_info.txt", feed_info)
        if calendar_dates is not None:
            z.writestr("calendar_dates.txt", calendar_dates)
    return buf.getvalue()


CALENDAR = "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
