"""Car parks near the network and their occupancy every five minutes.

Centre car parks fill with commuters on weekdays and shoppers (more on Saturdays); park-and-ride
sites fill in the morning peak and empty in the evening; an event now and then saturates a
centre car park in the evening. Readings follow the local calendar day, so a DST day has 23 or
25 hours of readings. Sensor faults are not here: they are injected into the delivery only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from citylake.core.calendar_fr import SATURDAY, SUNDAY_HOLIDAY, DayInfo
from devtools.simulator.network import TILE_LON_SHIFT, BaseNetwork
from devtools.simulator.params import Params

CENTRE, PARK_AND_RIDE = "centre", "parc-relais"


def build_car_parks(net: BaseNetwork, tiles: int, insee: str, seed: int) -> pl.DataFrame:
    """Return the car-park register: 5 centre car parks at the busiest stops, 3 P+R at terminals, per tile."""
    rng = np.random.default_rng([seed, 17])
    weekday = net.template_for(0) or next(t for t in net.templates.values() if t)
    trips = net.trips_on_template(weekday)
    rows = np.concatenate([np.arange(net.trip_ptr[t], net.trip_ptr[t + 1]) for t in trips])
    freq = np.bincount(net.st_stop[rows], minlength=net.n_stops)
    centre = list(np.argsort(-freq, kind="stable")[:5])
    firsts = np.unique(net.st_stop[net.trip_ptr[trips]])
    terminals = [s for s in firsts[np.argsort(freq[firsts], kind="stable")] if s not in centre][:3]
    names = net.stops["stop_name"].to_numpy()
    records = []
    n = 0
    for k in range(tiles):
        for kind, stops in ((CENTRE, centre), (PARK_AND_RIDE, terminals)):
            for s in stops:
                n += 1
                cap = int(rng.integers(250, 900)) if kind == CENTRE else int(rng.integers(150, 500))
                label = (names[s] or f"arrêt {s}").split(" - ")[0][:40]
                prefix = "Parking" if kind == CENTRE else "P+R"
                records.append(
                    {
                        "facility_id": f"{insee}-P-{n:03d}" if n < 1000 else f"{insee}-P-{n}",
                        "facility_name": f"{prefix} {label}" + (f" ({k})" if k else ""),
                        "kind": kind,
                        "tile": k,
                        "capacity": cap,
                        "lat": round(float(net.stop_lat[s]) + float(rng.normal(0, 0.0008)), 6),
                        "lon": round(float(net.stop_lon[s]) + TILE_LON_SHIFT * k + float(rng.normal(0, 0.0008)), 6),
                        "is_free": kind == PARK_AND_RIDE,
                        "disabled_places": max(1, cap // 50),
                        "max_height": "190" if kind == CENTRE else "N/A",
                    }
                )
    return pl.DataFrame(records)


def _window(h: np.ndarray, rise: float, fall: float, width: float = 0.35) -> np.ndarray:
    return 1 / (1 + np.exp(-(h - rise) / width)) * (1 - 1 / (1 + np.exp(-(h - fall) / width)))


def reading_instants(day: date, tz: str, step_min: int) -> list[datetime]:
    """Return the UTC instants of the day's readings, local midnight to local midnight."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    n = int((end - start).total_seconds() // (step_min * 60))
    return [start + timedelta(minutes=step_min * i) for i in range(n)]


def occupancy_day(
    parks: pl.DataFrame, info: DayInfo, tz: str, params: Params, rng: np.random.Generator
) -> pl.DataFrame:
    """Return the true occupancy of every car park at every reading of the day."""
    instants = reading_instants(info.day, tz, params.parking_step_min)
    zone = ZoneInfo(tz)
    h = np.array([(t.astimezone(zone).hour + t.astimezone(zone).minute / 60) for t in instants])
    weekday = info.day_type == "weekday"
    sat, sun = info.day_type == SATURDAY, info.day_type == SUNDAY_HOLIDAY
    commuters = 0.38 * _window(h, 7.6, 18.0) * (1.0 if weekday else 0.15 if sat else 0.05)
    shoppers = (0.55 if sat else 0.15 if sun else 0.28) * _window(h, 10.5, 18.8, 0.6)
    centre = 0.08 + commuters + shoppers
    pr_amp = (0.7 if info.is_school_holiday else 0.88) if weekday else 0.15 if sat else 0.05
    pr = 0.03 + pr_amp * _window(h, 7.4, 17.8, 0.45)
    out = []
    step_h = params.parking_step_min / 60
    for row in parks.iter_rows(named=True):
        cap = row["capacity"]
        base = centre if row["kind"] == CENTRE else pr
        f = base * rng.normal(1.0, 0.07)
        noise = np.zeros(len(h))
        for i in range(1, len(h)):
            noise[i] = 0.9 * noise[i - 1] + rng.normal(0, 0.012)
        f = f + noise
        if row["kind"] == CENTRE and rng.random() < params.parking_event_prob:
            f = f + 0.75 * _window(h, 19.5, 23.3, 0.25)
        occupied = np.round(cap * np.clip(f, 0, 1)).astype(np.int64)
        delta = np.diff(occupied, prepend=occupied[0])
        busy = (
            np.where((h >= 7) & (h < 20), 0.10, 0.01)
            if row["kind"] == CENTRE
            else np.where((h >= 6) & (h < 20), 0.02, 0.003)
        )
        churn = rng.poisson(cap * busy * step_h)
        out.append(
            pl.DataFrame(
                {
                    "facility_id": row["facility_id"],
                    "observed_at": instants,
                    "capacity": cap,
                    "occupied": occupied,
                    "entries": np.maximum(delta, 0) + churn,
                    "exits": np.maximum(-delta, 0) + churn,
                }
            )
        )
    return pl.concat(out).with_columns(pl.col("observed_at").dt.cast_time_unit("us"))
