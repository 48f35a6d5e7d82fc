"""Where the buses go: each trip's stops located along its GTFS shape, the distance between
consecutive stops measured along it, and the segments cut from it (issue #34).

A stop is located on its trip's shape in one of two ways:

* by ``shape_dist_traveled`` when both ``stop_times.txt`` and ``shapes.txt`` give it for every
  row and it never decreases: the stop's value is interpolated on the shape's own values, so the
  feed's unit (metres, kilometres, feet) does not matter;
* else by projection: each stop's nearest point on each pass of the shape near it is a
  candidate, and the stops take, in their order, the candidates that
  never go back along the shape and are nearest in total (a dynamic programme). A loop line
  whose first and last stops share a place, or a stop passed twice, lands on the right pass.

A shape is refused for a pattern, with the reason kept in ``shape_status``, when a stop lies more
than :data:`MAX_STOP_OFFSET_M` from it (the shape is some other path) or when no placement keeps
the stops in order; a feed's patterns are placed within :data:`WORK_BUDGET` (stops × shape
points), the rest left ``over_budget``. The segment's length is then the straight line times the network's
``road_factor``, applied in dbt where that factor is set (``int_stop_distances``).

Distances are metres on the sphere (haversine between shape points); locating uses a local
equirectangular plane around the shape, exact enough for a city (under 0.1 % over 50 km).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from ingestion import gtfs

EARTH_M = 6_371_000.0
#: A stop farther than this from its trip's shape means the shape is not the trip's path.
MAX_STOP_OFFSET_M = 300.0
#: Passes of the shape near a stop kept as candidates in the projection (a stop passed at most this
#: many times).
CANDIDATES = 6
#: Stops x shape edges computed at once: a shape of a million points costs memory for a few stops
#: at a time, not for all of them (about 0.2 GB at this size).
CHUNK_ELEMENTS = 2_000_000
#: Stops x shape edges a feed may cost in all (its patterns together): past it, the remaining
#: patterns are not placed (shape_status over_budget) rather than the night stalled by a feed
#: whose every pattern carries a huge shape. The sample network costs 1.9 M, a metro of 28 such
#: networks about 55 M.
WORK_BUDGET = 2_000_000_000
#: Going back along the shape by less than this between two stops is still "in order": two stops a
#: few metres apart, each a little off the street, may project in the other order (their segment
#: then measures 0 m). Farther back is a real disorder: the shape is not this trip's path.
BACKTRACK_TOLERANCE_M = 50.0

SHAPE_OK = "shape"
SHAPE_DIST_OK = "shape_dist_traveled"
NO_SHAPE = "no_shape"
FAR = "stop_far_from_shape"
DISORDER = "stops_out_of_order"
OVER_BUDGET = "over_budget"

STOP_DISTANCES_SCHEMA = {
    "trip_id": pl.Utf8,
    "stop_sequence": pl.Int64,
    "stop_id": pl.Utf8,
    "pattern_id": pl.Utf8,
    "along_m": pl.Float64,
    "offset_m": pl.Float64,
    "shape_status": pl.Utf8,
}
SEGMENTS_SCHEMA = {
    "pattern_id": pl.Utf8,
    "route_id": pl.Utf8,
    "direction_id": pl.Int32,
    "shape_id": pl.Utf8,
    "segment_index": pl.Int32,
    "from_stop_id": pl.Utf8,
    "to_stop_id": pl.Utf8,
    "length_m": pl.Float64,
    "shape_status": pl.Utf8,
    "trips": pl.Int64,
    "path_lon": pl.List(pl.Float64),
    "path_lat": pl.List(pl.Float64),
}


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Return great-circle distances in metres (vectorised)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


@dataclass(frozen=True)
class Placement:
    """Stops placed on a shape: metres along it, metres off it, and how they were placed."""

    along_m: np.ndarray | None
    offset_m: np.ndarray | None
    status: str


def _plane(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    k = np.radians(1.0) * EARTH_M
    return np.column_stack(((lon - lon0) * k * np.cos(np.radians(lat0)), (lat - lat0) * k))


def place_stops(
    shape_lat: np.ndarray,
    shape_lon: np.ndarray,
    stop_lat: np.ndarray,
    stop_lon: np.ndarray,
    shape_dist: np.ndarray | None = None,
    stop_dist: np.ndarray | None = None,
) -> Placement:
    """Return where each stop (in trip order) lies along the shape, or why it cannot be placed."""
    if len(shape_lat) < 2:
        return Placement(None, None, NO_SHAPE)
    cum = cumulative_m(shape_lat, shape_lon)
    edge_m = np.diff(cum)
    lat0, lon0 = float(np.mean(shape_lat)), float(np.mean(shape_lon))
    pts = _plane(shape_lat, shape_lon, lat0, lon0)
    stops = _plane(stop_lat, stop_lon, lat0, lon0)

    if shape_dist is not None and stop_dist is not None:
        along = _by_shape_dist(shape_dist, stop_dist, cum)
        if along is not None:
            offset = np.hypot(*(_point_at(pts, cum, along) - stops).T)
            if offset.max() <= MAX_STOP_OFFSET_M:
                return Placement(along, offset, SHAPE_DIST_OK)
        # values out of order, or not this shape's: projected instead

    cand_along: list[np.ndarray] = []
    cand_off: list[np.ndarray] = []
    step = max(1, CHUNK_ELEMENTS // max(len(pts) - 1, 1))  # stops per chunk: bounded memory
    for first in range(0, len(stops), step):
        along_c, off_c = _candidates(pts, cum, edge_m, stops[first : first + step])
        if any(len(c) == 0 for c in off_c):
            return Placement(None, None, FAR)
        cand_along += along_c
        cand_off += off_c

    # dynamic programme: least total offset with positions that never go back; on a tie, the
    # earlier pass (a bus serves a stop the first time it passes it)
    cost = cand_off[0].copy()
    back: list[np.ndarray] = []
    for s in range(1, len(stops)):
        ok = cand_along[s - 1][None, :] <= cand_along[s][:, None] + BACKTRACK_TOLERANCE_M
        total = np.where(ok, cost[None, :], np.inf)
        best = total.argmin(axis=1)
        cost = total[np.arange(len(best)), best] + cand_off[s]
        back.append(best)
    if not np.isfinite(cost).any():
        return Placement(None, None, DISORDER)
    k = int(cost.argmin())
    chosen = [k]
    for s in range(len(stops) - 1, 0, -1):
        k = int(back[s - 1][k])
        chosen.append(k)
    chosen.reverse()
    along = np.array([cand_along[s][k] for s, k in enumerate(chosen)])
    offset = np.array([cand_off[s][k] for s, k in enumerate(chosen)])
    return Placement(np.maximum.accumulate(along), offset, SHAPE_OK)


def _candidates(
    pts: np.ndarray, cum: np.ndarray, edge_m: np.ndarray, stops: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each stop's candidate places on the shape (metres along, metres off), in order along it:
    the local minima of its distance to the shape taken as a line (a foot inside an edge, a corner
    both its edges end at, or an end of the shape) within MAX_STOP_OFFSET_M, the nearest few."""
    a, b = pts[:-1], pts[1:]
    ab = b - a
    len2 = np.einsum("ij,ij->i", ab, ab)
    rel = stops[:, None, :] - a[None, :, :]  # stops x edges x 2
    t = np.where(len2 > 0, np.einsum("sij,ij->si", rel, ab) / np.where(len2 > 0, len2, 1), 0.0)
    t = np.clip(t, 0.0, 1.0)
    foot = a[None, :, :] + t[..., None] * ab[None, :, :]
    dist = np.hypot(*(foot - stops[:, None, :]).transpose(2, 0, 1))
    along_all = cum[None, :-1] + t * edge_m[None, :]
    inner = (t > 0) & (t < 1)
    at_start = t == 0
    prev_at_end = np.concatenate([np.ones((len(stops), 1), bool), t[:, :-1] == 1], axis=1)
    last_at_end = np.zeros_like(inner)
    last_at_end[:, -1] = t[:, -1] == 1
    minima = (inner | (at_start & prev_at_end) | last_at_end) & (dist <= MAX_STOP_OFFSET_M)
    out_along, out_off = [], []
    for s in range(len(stops)):
        idx = np.flatnonzero(minima[s])
        idx = idx[np.argsort(dist[s, idx], kind="stable")[:CANDIDATES]]
        idx = idx[np.argsort(along_all[s, idx], kind="stable")]
        out_along.append(along_all[s, idx])
        out_off.append(np.round(dist[s, idx], 2))  # to the centimetre: a tie goes to the earlier pass
    return out_along, out_off


def _by_shape_dist(shape_dist: np.ndarray, stop_dist: np.ndarray, cum: np.ndarray) -> np.ndarray | None:
    """Metres along the shape from the feed's shape_dist_traveled, or None when unusable."""
    if np.isnan(shape_dist).any() or np.isnan(stop_dist).any():
        return None
    if (np.diff(shape_dist) < 0).any() or (np.diff(stop_dist) < 0).any():
        return None
    if stop_dist[0] < shape_dist[0] - 1e-9 or stop_dist[-1] > shape_dist[-1] + 1e-9:
        return None
    return np.interp(stop_dist, shape_dist, cum)


def _point_at(pts: np.ndarray, cum: np.ndarray, along: np.ndarray) -> np.ndarray:
    return np.column_stack([np.interp(along, cum, pts[:, 0]), np.interp(along, cum, pts[:, 1])])


def cumulative_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Metres along a polyline at each of its points (0 at the first)."""
    return np.concatenate([[0.0], np.cumsum(haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:]))])


def cut(
    shape_lat: np.ndarray, shape_lon: np.ndarray, cum: np.ndarray, along_from: float, along_to: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the shape's points between two distances along it (ends interpolated); ``cum`` is
    :func:`cumulative_m` of the shape, computed once for all its segments."""
    inside = (cum > along_from) & (cum < along_to)
    marks = np.concatenate([[along_from], cum[inside], [along_to]])
    return np.interp(marks, cum, shape_lat), np.interp(marks, cum, shape_lon)


def pattern_id(route_id: str, direction_id: int, shape_id: str, stop_ids: tuple[str, ...]) -> str:
    """Return a pattern's id: the same line, direction, shape and stops give the same id in every
    network version, so a map can follow a pattern across months."""
    text = "\x1f".join([route_id, str(direction_id), shape_id, *stop_ids])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _floats(frame: pl.DataFrame, column: str, limit: float | None = None) -> pl.Expr:
    """A text column as numbers: null where it is not one, not finite (``nan``, ``inf``) or,
    with ``limit``, beyond ±limit (a latitude past 90°)."""
    if column not in frame.columns:
        return pl.lit(None, pl.Float64)
    value = pl.col(column).cast(pl.Float64, strict=False)
    usable = value.is_finite() & (value.abs() <= limit if limit is not None else pl.lit(True))
    return pl.when(usable).then(value).otherwise(None)


def stop_distances(feed: gtfs.Feed) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (each stop time's place along its trip's shape, the pattern segments) of a feed.

    A pattern is a line, a direction, a shape and an ordered list of stops: it is located once,
    whatever its number of trips. Trips whose stops lack coordinates are left out of both.
    """
    empty = (pl.DataFrame(schema=STOP_DISTANCES_SCHEMA), pl.DataFrame(schema=SEGMENTS_SCHEMA))
    if "stop_times" not in feed or "trips" not in feed or "stops" not in feed:
        return empty
    stops = feed["stops"].select(
        "stop_id",
        _floats(feed["stops"], "stop_lat", 90).alias("lat"),
        _floats(feed["stops"], "stop_lon", 180).alias("lon"),
    )
    trips_raw = feed["trips"]
    trips = trips_raw.select(
        "trip_id",
        pl.col("route_id").fill_null(""),
        (pl.col("direction_id") if "direction_id" in trips_raw.columns else pl.lit(None, pl.Utf8))
        .cast(pl.Int32, strict=False)
        .fill_null(0)
        .alias("direction_id"),
        (pl.col("shape_id") if "shape_id" in trips_raw.columns else pl.lit(None, pl.Utf8))
        .fill_null("")
        .alias("shape_id"),
    ).unique("trip_id", keep="first")
    st_raw = feed["stop_times"]
    st = (
        st_raw.select(
            "trip_id",
            "stop_id",
            pl.col("stop_sequence").cast(pl.Int64, strict=False),
            _floats(st_raw, "shape_dist_traveled").alias("sdt"),
        )
        .filter(pl.col("stop_sequence").is_not_null())
        .join(stops, on="stop_id", how="left")
        .join(trips, on="trip_id", how="inner")
        .sort("trip_id", "stop_sequence")
    )
    located = st.group_by("trip_id").agg(pl.col("lat").is_not_null().all() & pl.col("lon").is_not_null().all())
    st = st.join(located.filter(pl.col("lat")).select("trip_id"), on="trip_id", how="semi")
    if st.height == 0:
        return empty
    per_trip = st.group_by("trip_id", maintain_order=True).agg(
        pl.first("route_id"),
        pl.first("direction_id"),
        pl.first("shape_id"),
        pl.col("stop_id"),
        pl.col("stop_sequence"),
        pl.col("sdt"),
        pl.col("lat"),
        pl.col("lon"),
    )
    per_trip = per_trip.filter(pl.col("stop_id").list.len() >= 2)
    per_trip = per_trip.with_columns(
        pl.struct("route_id", "direction_id", "shape_id", "stop_id")
        .map_elements(
            lambda r: pattern_id(r["route_id"], r["direction_id"], r["shape_id"], tuple(r["stop_id"])),
            return_dtype=pl.Utf8,
        )
        .alias("pattern_id")
    )
    shapes = _shapes(feed)
    distance_rows: list[pl.DataFrame] = []
    segment_rows: list[dict] = []
    spent = 0
    counts = per_trip.group_by("pattern_id").len()
    n_trips = dict(zip(counts["pattern_id"], counts["len"], strict=True))
    # a pattern is placed once (its first trip; shape_dist_traveled may differ between trips of a
    # pattern only if the feed contradicts itself, and the first trip's values are then used)
    for first in per_trip.unique("pattern_id", keep="first", maintain_order=True).iter_rows(named=True):
        lat, lon = np.array(first["lat"]), np.array(first["lon"])
        shape = shapes.get(first["shape_id"]) if first["shape_id"] else None
        cost = 0 if shape is None else len(lat) * len(shape[0])
        spent += cost
        if shape is None:
            placed = Placement(None, None, NO_SHAPE)
        elif spent > WORK_BUDGET:
            placed = Placement(None, None, OVER_BUDGET)
        else:
            sdt = np.array([np.nan if v is None else v for v in first["sdt"]], dtype=float)
            placed = place_stops(shape[0], shape[1], lat, lon, shape[2], sdt)
        along = placed.along_m
        shape_cum = cumulative_m(shape[0], shape[1]) if along is not None else None
        distance_rows.append(
            pl.DataFrame(
                {
                    "pattern_id": first["pattern_id"],
                    "position": np.arange(len(lat), dtype=np.int64),
                    "along_m": along if along is not None else np.full(len(lat), np.nan),
                    "offset_m": placed.offset_m if placed.offset_m is not None else np.full(len(lat), np.nan),
                    "shape_status": placed.status,
                }
            ).with_columns(pl.col("along_m", "offset_m").fill_nan(None))
        )
        for i in range(len(lat) - 1):
            if along is not None:
                path_lat, path_lon = cut(shape[0], shape[1], shape_cum, along[i], along[i + 1])
                # the segment's ends are its stops: stop, its foot on the shape, the shape, next foot, next stop
                path_lat = np.concatenate([[lat[i]], path_lat, [lat[i + 1]]])
                path_lon = np.concatenate([[lon[i]], path_lon, [lon[i + 1]]])
                length = float(along[i + 1] - along[i])
            else:
                path_lat, path_lon, length = lat[i : i + 2], lon[i : i + 2], None
            keep = np.concatenate([[True], (np.diff(path_lat) != 0) | (np.diff(path_lon) != 0)])
            keep[-1] = True
            segment_rows.append(
                {
                    "pattern_id": first["pattern_id"],
                    "route_id": first["route_id"],
                    "direction_id": first["direction_id"],
                    "shape_id": first["shape_id"] or None,
                    "segment_index": i + 1,
                    "from_stop_id": first["stop_id"][i],
                    "to_stop_id": first["stop_id"][i + 1],
                    "length_m": length,
                    "shape_status": placed.status,
                    "trips": n_trips[first["pattern_id"]],
                    "path_lon": np.round(path_lon[keep], 7).tolist(),
                    "path_lat": np.round(path_lat[keep], 7).tolist(),
                }
            )
    placed_rows = pl.concat(distance_rows)
    trip_rows = (
        per_trip.select("trip_id", "pattern_id", "stop_id", "stop_sequence")
        .explode("stop_id", "stop_sequence")
        .with_columns((pl.col("trip_id").cum_count().over("trip_id") - 1).cast(pl.Int64).alias("position"))
        .join(placed_rows, on=["pattern_id", "position"], how="left")
        .select(list(STOP_DISTANCES_SCHEMA))
    )
    return trip_rows.cast(STOP_DISTANCES_SCHEMA), pl.DataFrame(segment_rows, schema=SEGMENTS_SCHEMA)


def _shapes(feed: gtfs.Feed) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Return each shape's points in order: (lat, lon, shape_dist_traveled or None)."""
    if "shapes" not in feed:
        return {}
    raw = feed["shapes"]
    if not {"shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"} <= set(raw.columns):
        return {}
    frame = (
        raw.select(
            "shape_id",
            _floats(raw, "shape_pt_lat", 90).alias("lat"),
            _floats(raw, "shape_pt_lon", 180).alias("lon"),
            pl.col("shape_pt_sequence").cast(pl.Int64, strict=False).alias("seq"),
            _floats(raw, "shape_dist_traveled").alias("sdt"),
        )
        .filter(pl.col("lat").is_not_null() & pl.col("lon").is_not_null() & pl.col("seq").is_not_null())
        .sort("shape_id", "seq")
    )
    out = {}
    for (shape_id,), part in frame.group_by("shape_id", maintain_order=True):
        sdt = part["sdt"].to_numpy().astype(float) if part["sdt"].null_count() == 0 else None
        out[shape_id] = (part["lat"].to_numpy(), part["lon"].to_numpy(), sdt)
    return out
