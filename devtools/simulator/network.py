"""The simulated network: a real GTFS feed turned into arrays, blocks, templates and tiles.

* **Patterns**: trips grouped by their exact stop sequence; demand is drawn on patterns.
* **Templates**: a real feed is valid for past dates, so each simulated date is served by the
  feed's busiest date of the same weekday (Sundays and French public holidays by its Sunday).
* **Blocks**: vehicle duties from ``block_id``, or, when the feed has none, a greedy
  vehicle-scheduling pass per route (earliest free vehicle after a layover).
* **Tiles**: ``metro`` scale copies the network with distinct ids (``T<k>-…``) and coordinates
  shifted by half a degree of longitude per tile, so tiles never interact.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from citylake.core.errors import DataError
from ingestion import gtfs
from ingestion.geometry import cumulative_m, haversine_m

TILE_LON_SHIFT = 0.5
ROAD_FACTOR = 1.25  # street distance / straight line between consecutive stops, where no shape fits
LAYOVER_S = 180  # minimum turnaround when chaining trips into blocks


def tile_id(k: int, base_id: str) -> str:
    """Return the id of ``base_id`` in tile ``k`` (tile 0 keeps the feed's ids)."""
    return base_id if k == 0 else f"T{k}-{base_id}"


@dataclass
class BaseNetwork:
    """One real network as arrays. Indices: stops ``s``, routes ``r``, trips ``t``, patterns ``p``."""

    name: str
    feed: gtfs.Feed
    stops: pl.DataFrame  # stop_idx, stop_id, stop_name, lat, lon
    routes: pl.DataFrame  # route_idx, route_id, short_name, long_name, route_type
    trips: pl.DataFrame  # trip_idx, trip_id, route_idx, direction_id, service_id, block_id, shape_id, pattern_idx
    trip_ptr: np.ndarray  # rows of trip t are trip_ptr[t]:trip_ptr[t+1]
    st_stop: np.ndarray
    st_arr: np.ndarray
    st_dep: np.ndarray
    st_seq: np.ndarray
    st_km: np.ndarray  # cumulative km from the trip's first stop
    pattern_stops: list[np.ndarray]
    pattern_route: np.ndarray
    pattern_dir: np.ndarray
    dates: dict[date, set[str]]
    templates: dict[int, date | None] = field(default_factory=dict)

    # -- derived -----------------------------------------------------------------------
    @cached_property
    def stop_lat(self) -> np.ndarray:
        return self.stops["lat"].to_numpy()

    @cached_property
    def stop_lon(self) -> np.ndarray:
        return self.stops["lon"].to_numpy()

    @cached_property
    def trip_route(self) -> np.ndarray:
        return self.trips["route_idx"].to_numpy()

    @cached_property
    def trip_pattern(self) -> np.ndarray:
        return self.trips["pattern_idx"].to_numpy()

    @cached_property
    def trip_service(self) -> np.ndarray:
        return self.trips["service_id"].to_numpy()

    @cached_property
    def route_type(self) -> np.ndarray:
        return self.routes["route_type"].to_numpy()

    @property
    def n_stops(self) -> int:
        return self.stops.height

    def trips_on_template(self, template: date | None) -> np.ndarray:
        """Return the trip indices running on a template date (sorted)."""
        if template is None:
            return np.zeros(0, dtype=np.int64)
        services = self.dates.get(template, set())
        return np.flatnonzero(np.isin(self.trip_service, list(services)))

    def template_for(self, weekday: int) -> date | None:
        """Return the feed date serving a simulated weekday (0=Monday … 6=Sunday)."""
        return self.templates.get(weekday)

    def blocks(self, trips: np.ndarray) -> np.ndarray:
        """Return a block number per trip of ``trips`` (a vehicle duty), scheduling if needed."""
        block_ids = self.trips["block_id"].to_numpy()[trips]
        has = np.array([b is not None and b != "" for b in block_ids], dtype=bool)
        out = np.full(len(trips), -1, dtype=np.int64)
        if has.any():
            _, codes = np.unique(block_ids[has].astype(str), return_inverse=True)
            out[has] = codes
        next_block = out.max() + 1 if has.any() else 0
        todo = np.flatnonzero(~has)
        if len(todo):
            first = self.st_dep[self.trip_ptr[trips[todo]]]
            last = self.st_arr[self.trip_ptr[trips[todo] + 1] - 1]
            routes = self.trip_route[trips[todo]]
            for r in np.unique(routes):
                sel = routes == r
                idx, f, end = todo[sel], first[sel], last[sel]
                free: list[tuple[int, int]] = []  # (available at, block): earliest free first
                for k in np.argsort(f, kind="stable"):
                    if free and free[0][0] <= f[k]:
                        _, b = heapq.heappop(free)
                    else:
                        b, next_block = next_block, next_block + 1
                    out[idx[k]] = b
                    heapq.heappush(free, (int(end[k]) + LAYOVER_S, b))
        return out


def load_network(path: Path | str) -> BaseNetwork:
    """Return the BaseNetwork of a GTFS feed, or raise DataError naming what is wrong."""
    feed = gtfs.expand_frequencies(gtfs.read_feed(path))  # frequency-based trips made explicit
    name = Path(path).stem

    stop_times = (
        feed["stop_times"]
        .select(
            "trip_id",
            "stop_id",
            pl.col("stop_sequence").cast(pl.Int64, strict=False).alias("seq"),
            gtfs.time_to_seconds(pl.col("arrival_time")).alias("arr"),
            gtfs.time_to_seconds(pl.col("departure_time")).alias("dep"),
        )
        .filter(pl.col("seq").is_not_null())
        .sort("trip_id", "seq")
        .with_columns(
            pl.col("arr").fill_null(pl.col("dep")),
            pl.col("dep").fill_null(pl.col("arr")),
        )
        .with_columns(
            pl.col("arr").cast(pl.Float64).interpolate().over("trip_id").cast(pl.Int32),
            pl.col("dep").cast(pl.Float64).interpolate().over("trip_id").cast(pl.Int32),
        )
    )
    if stop_times["arr"].null_count():
        # A trip whose first or last time is missing cannot be placed on the clock.
        bad = stop_times.filter(pl.col("arr").is_null())["trip_id"].unique()
        stop_times = stop_times.filter(~pl.col("trip_id").is_in(bad.implode()))

    stops_raw = feed["stops"]
    used = stop_times["stop_id"].unique().sort()
    stops = (
        stops_raw.filter(pl.col("stop_id").is_in(used.implode()))
        .select(
            "stop_id",
            pl.col("stop_name").fill_null("") if "stop_name" in stops_raw.columns else pl.lit("").alias("stop_name"),
            pl.col("stop_lat").cast(pl.Float64, strict=False).alias("lat"),
            pl.col("stop_lon").cast(pl.Float64, strict=False).alias("lon"),
        )
        .filter(pl.col("lat").is_not_null() & pl.col("lon").is_not_null())
        .sort("stop_id")
        .with_row_index("stop_idx")
    )
    if stops.height == 0:
        raise DataError(f"{path}: no stop with coordinates is served by any trip")

    routes_raw = feed["routes"]
    routes = (
        routes_raw.select(
            "route_id",
            pl.coalesce(
                pl.col("route_short_name") if "route_short_name" in routes_raw.columns else pl.lit(None),
                pl.col("route_id"),
            ).alias("short_name"),
            (pl.col("route_long_name") if "route_long_name" in routes_raw.columns else pl.lit(""))
            .fill_null("")
            .alias("long_name"),
            pl.col("route_type").cast(pl.Int32, strict=False).fill_null(3).alias("route_type"),
        )
        .sort("route_id")
        .with_row_index("route_idx")
    )

    trips_raw = feed["trips"]
    optional = {
        c: (pl.col(c) if c in trips_raw.columns else pl.lit(None, dtype=pl.Utf8)).alias(c)
        for c in ("direction_id", "block_id", "shape_id", "trip_headsign")
    }
    trips = trips_raw.select("trip_id", "route_id", "service_id", *optional.values()).with_columns(
        pl.col("direction_id").cast(pl.Int32, strict=False).fill_null(0)
    )

    st = (
        stop_times.join(stops.select("stop_id", "stop_idx"), on="stop_id", how="inner")
        .join(trips.select("trip_id"), on="trip_id", how="semi")
        .sort("trip_id", "seq")
    )
    per_trip = (
        st.group_by("trip_id", maintain_order=True)
        .agg(pl.col("stop_idx").cast(pl.Utf8).str.join("-").alias("pattern_key"), pl.len().alias("n"))
        .filter(pl.col("n") >= 2)
    )
    st = st.join(per_trip.select("trip_id"), on="trip_id", how="semi")
    trips = (
        trips.join(per_trip, on="trip_id", how="inner")
        .join(routes.select("route_id", "route_idx"), on="route_id", how="inner")
        .sort("trip_id")
        .with_row_index("trip_idx")
    )
    st = st.join(trips.select("trip_id", "trip_idx"), on="trip_id").sort("trip_idx", "seq")
    if trips.height == 0:
        raise DataError(f"{path}: no trip with two or more located stops")

    patterns = (
        trips.group_by("route_idx", "direction_id", "pattern_key")
        .agg(pl.len().alias("n_trips"))
        .sort("route_idx", "direction_id", "pattern_key")
        .with_row_index("pattern_idx")
    )
    trips = trips.join(
        patterns.select("route_idx", "direction_id", "pattern_key", "pattern_idx"),
        on=["route_idx", "direction_id", "pattern_key"],
    ).sort("trip_idx")
    pattern_stops = [np.array(k.split("-"), dtype=np.int64) for k in patterns["pattern_key"]]

    counts = trips["n"].to_numpy()
    trip_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    st_stop = st["stop_idx"].to_numpy().astype(np.int64)
    lat = stops["lat"].to_numpy()
    lon = stops["lon"].to_numpy()
    seg = np.zeros(len(st_stop))
    seg[1:] = haversine_m(lat[st_stop[:-1]], lon[st_stop[:-1]], lat[st_stop[1:]], lon[st_stop[1:]])
    seg[trip_ptr[:-1]] = 0.0
    km = np.cumsum(seg) / 1000 * ROAD_FACTOR
    km -= np.repeat(km[trip_ptr[:-1]], counts)
    # buses drive along the trip's shape when the feed has one that fits its stops (issue #34)
    km = _along_shapes(feed, trips, st_stop, lat, lon, km, trip_ptr)

    # Feeds often give consecutive stops the same time (only timepoints are timed): spread the
    # stops between two timepoints by distance, as a bus would reach them.
    arr_s, dep_s = _spread_untimed(st["arr"].to_numpy(), st["dep"].to_numpy(), km, counts)

    network = BaseNetwork(
        name=name,
        feed=feed,
        stops=stops,
        routes=routes,
        trips=trips.drop("pattern_key", "n"),
        trip_ptr=trip_ptr,
        st_stop=st_stop,
        st_arr=arr_s,
        st_dep=dep_s,
        st_seq=st["seq"].to_numpy().astype(np.int64),
        st_km=km,
        pattern_stops=pattern_stops,
        pattern_route=patterns["route_idx"].to_numpy(),
        pattern_dir=patterns["direction_id"].to_numpy(),
        dates=gtfs.service_dates(feed),
    )
    network.templates = _templates(network)
    if not any(network.templates.values()):
        raise DataError(f"{path}: the calendar activates no trip on any date")
    return network


def _along_shapes(
    feed: gtfs.Feed,
    trips: pl.DataFrame,
    st_stop: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    km: np.ndarray,
    trip_ptr: np.ndarray,
) -> np.ndarray:
    """Return the cumulative km of each stop time along the trip's shape where its stops fit on it,
    else the straight line × ROAD_FACTOR given.

    The simulator places stops on its roads its own way, not with the city's ``ingestion.geometry``
    (so that measuring the marts against it is not circular): the shape is resampled every
    DENSIFY_M metres and each stop, in order, takes the first resampled point from the previous
    stop onwards that is within PASS_SLACK_M of its nearest one (a stop passed twice is served
    the first time). A stop over MAX_OFFSET_M from the rest of the shape: the shape is not the
    trip's road, and the straight line × ROAD_FACTOR stays."""
    if "shapes" not in feed:
        return km
    raw = feed["shapes"]
    frame = (
        raw.select(
            "shape_id",
            pl.col("shape_pt_lat").cast(pl.Float64, strict=False).alias("lat"),
            pl.col("shape_pt_lon").cast(pl.Float64, strict=False).alias("lon"),
            pl.col("shape_pt_sequence").cast(pl.Int64, strict=False).alias("seq"),
        )
        .drop_nulls()
        .sort("shape_id", "seq")
    )
    shapes = {sid: (part["lat"].to_numpy(), part["lon"].to_numpy()) for (sid,), part in frame.group_by("shape_id")}
    out = km.copy()
    placed: dict[tuple, np.ndarray | None] = {}
    for t, shape_id in enumerate(trips["shape_id"].to_list()):
        if not shape_id or shape_id not in shapes:
            continue
        rows = slice(trip_ptr[t], trip_ptr[t + 1])
        pattern = (shape_id, tuple(st_stop[rows]))
        if pattern not in placed:
            placed[pattern] = _drive(*shapes[shape_id], lat[st_stop[rows]], lon[st_stop[rows]])
        along = placed[pattern]
        if along is not None:
            out[rows] = (along - along[0]) / 1000
    return out


DENSIFY_M = 5.0
PASS_SLACK_M = 20.0
MAX_OFFSET_M = 300.0


def _drive(shape_lat: np.ndarray, shape_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray | None:
    """Metres along the shape of each stop (in order), or None when the stops do not fit on it."""
    if len(shape_lat) < 2:
        return None
    cum = cumulative_m(shape_lat, shape_lon)
    marks = np.arange(0.0, cum[-1] + DENSIFY_M, DENSIFY_M).clip(max=cum[-1])
    dense_lat, dense_lon = np.interp(marks, cum, shape_lat), np.interp(marks, cum, shape_lon)
    along, start = [], 0
    for a, b in zip(lat, lon, strict=True):
        d = haversine_m(dense_lat[start:], dense_lon[start:], a, b)
        if d.size == 0 or d.min() > MAX_OFFSET_M:
            return None
        start += int(np.flatnonzero(d <= d.min() + PASS_SLACK_M)[0])
        along.append(marks[start])
    return np.array(along)


def _spread_untimed(
    arr: np.ndarray, dep: np.ndarray, km: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return arrival/departure times where runs of identical times are interpolated by distance."""
    arr = arr.astype(float)
    dep = np.maximum(dep, arr).astype(float)
    trip = np.repeat(np.arange(len(counts)), counts)
    frame = pl.DataFrame({"trip": trip, "km": km, "arr": arr, "dep": dep})
    repeated = ((frame["arr"] == frame["arr"].shift(1)) & (frame["trip"] == frame["trip"].shift(1))).fill_null(False)
    last = (frame["trip"] != frame["trip"].shift(-1)).fill_null(True)
    frame = frame.with_columns(
        pl.when(repeated & ~last).then(None).otherwise(pl.col("arr")).alias("arr_t"),
    ).with_columns(pl.col("arr_t").interpolate_by("km").over("trip").alias("arr_i"))
    new_arr = frame["arr_i"].fill_null(frame["arr"]).round().to_numpy()
    new_dep = np.where(repeated.to_numpy() & ~last.to_numpy(), new_arr, np.maximum(dep, new_arr))
    return new_arr.astype(np.int64), new_dep.astype(np.int64)


def _templates(network: BaseNetwork) -> dict[int, date | None]:
    """Return, per weekday, the feed date with the most trips (earliest on ties)."""
    service_trips = network.trips.group_by("service_id").len()
    per_service = dict(zip(service_trips["service_id"], service_trips["len"], strict=True))
    best: dict[int, tuple[int, date]] = {}
    for day, services in network.dates.items():
        n = sum(per_service.get(s, 0) for s in services)
        if n and (day.weekday() not in best or n > best[day.weekday()][0]):
            best[day.weekday()] = (n, day)
    return {wd: (best[wd][1] if wd in best else None) for wd in range(7)}


def feed_for_period(
    network: BaseNetwork, tiles: int, start: date, days: int, template_of, tz: str = "Europe/Paris"
) -> gtfs.Feed:
    """Return the tiled GTFS feed the network operator delivers for [start, start+days).

    The calendar is rewritten as explicit ``calendar_dates`` (the services of each simulated
    date's template), agencies are moved to the simulated city's time zone, and ids are tiled.
    """
    feed = network.feed
    tables: dict[str, pl.DataFrame] = {}

    def tiled(frame: pl.DataFrame, id_cols: list[str], coord: tuple[str, str] | None = None) -> pl.DataFrame:
        parts = []
        for k in range(tiles):
            part = frame
            if k:
                part = part.with_columns(
                    pl.when(pl.col(c).is_not_null() & (pl.col(c) != ""))
                    .then(pl.lit(f"T{k}-") + pl.col(c))
                    .otherwise(pl.col(c))
                    .alias(c)
                    for c in id_cols
                    if c in frame.columns
                )
                if coord:
                    lat_c, lon_c = coord
                    part = part.with_columns(
                        (pl.col(lon_c).cast(pl.Float64) + TILE_LON_SHIFT * k).round(6).cast(pl.Utf8).alias(lon_c)
                    )
            parts.append(part)
        return pl.concat(parts)

    agency = feed["agency"] if "agency" in feed else pl.DataFrame({"agency_name": [network.name]})
    tables["agency"] = agency.with_columns(pl.lit(tz).alias("agency_timezone"))
    stops = feed["stops"].join(network.stops.select("stop_id"), on="stop_id", how="semi")
    tables["stops"] = tiled(stops, ["stop_id", "parent_station"], ("stop_lat", "stop_lon"))
    tables["routes"] = tiled(feed["routes"], ["route_id", "route_short_name"])
    trips = feed["trips"].join(network.trips.select("trip_id"), on="trip_id", how="semi")
    tables["trips"] = tiled(trips, ["trip_id", "route_id", "block_id", "shape_id"])
    stop_times = feed["stop_times"].join(network.trips.select("trip_id"), on="trip_id", how="semi")
    tables["stop_times"] = tiled(stop_times, ["trip_id", "stop_id"])
    if "shapes" in feed:
        tables["shapes"] = tiled(feed["shapes"], ["shape_id"], ("shape_pt_lat", "shape_pt_lon"))
    rows = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        template = template_of(day)
        for service in sorted(network.dates.get(template, set()) if template else set()):
            rows.append({"service_id": service, "date": day.strftime("%Y%m%d"), "exception_type": "1"})
    tables["calendar_dates"] = pl.DataFrame(
        rows or None, schema={"service_id": pl.Utf8, "date": pl.Utf8, "exception_type": pl.Utf8}
    )
    end = start + timedelta(days=days - 1)
    tables["feed_info"] = pl.DataFrame(
        {
            "feed_publisher_name": ["citylake simulator"],
            "feed_publisher_url": ["https://example.org/citylake"],
            "feed_lang": ["fr"],
            "feed_start_date": [start.strftime("%Y%m%d")],
            "feed_end_date": [end.strftime("%Y%m%d")],
            "feed_version": [f"{network.name}-x{tiles}-{start:%Y%m%d}"],
        }
    )
    return gtfs.Feed(tables, source=f"{network.feed.source} (tiled x{tiles})")
