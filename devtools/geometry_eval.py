"""Segment lengths, speeds and trip km against the simulator's truth, before and after the shapes
(issue #34).

The simulator's buses drive along each trip's GTFS shape when its stops fit on it
(``devtools/simulator/network.py``), so the truth of a segment's length is the road the bus took.
A published lake is measured against it two ways:

* **before**: the straight line between the two stops × ``road_factor`` (1.25), what the marts
  used for every segment until issue #34 (recomputed here from the stops' coordinates);
* **after**: the marts as published (``mart_commercial_speed.segment_m``: along the shape where
  one fits, else the straight line × road_factor, and ``segment_length_source`` says which).

A segment's speed is its length over the same AVL running time, so its relative speed error is
its relative length error; the absolute error in km/h is reported too. Trip km are compared on
``mart_service_delivered.km_scheduled`` against the simulator's own trip lengths.

``python -m devtools.geometry_eval --lake LAKE --drop DROP [--network devtools/data/cairns_gtfs.zip]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from citylake.publish.reader import current, published_views
from devtools.simulator.network import ROAD_FACTOR, BaseNetwork, haversine_m, load_network


def truth_table(net: BaseNetwork) -> pl.DataFrame:
    """The simulator's km of every stop time (trip_id, stop_sequence, stop_id, km), tile 0."""
    counts = np.diff(net.trip_ptr)
    return pl.DataFrame(
        {
            "trip_id": np.repeat(net.trips["trip_id"].to_numpy(), counts),
            "stop_sequence": net.st_seq,
            "stop_id": net.stops["stop_id"].to_numpy()[net.st_stop],
            "km": net.st_km,
        }
    )


def _published(lake: Path, mart: str) -> pl.DataFrame:
    """A mart as the lake's pointer publishes it (the one reader of publications)."""
    from citylake.core.storage import LocalStorage

    storage = LocalStorage(lake)
    con = duckdb.connect()
    published_views(con, storage, current(storage))
    return con.sql(f"select * from {mart}").pl()


def _stats(errors: np.ndarray) -> dict[str, float]:
    a = np.abs(errors)
    return {
        "median_abs_pct": round(float(np.median(a)) * 100, 2),
        "p90_abs_pct": round(float(np.quantile(a, 0.9)) * 100, 2),
        "mean_signed_pct": round(float(np.mean(errors)) * 100, 2),
    }


def assess(lake: Path, drop: Path, network_path: Path) -> dict:
    """Return the before/after errors of segment lengths, speeds and trip km against the truth."""
    net = load_network(network_path)
    truth = truth_table(net)
    speeds = _published(lake, "mart_commercial_speed").filter(pl.col("running_s") > 0)
    # the truth of a segment: km at its first stop, and at the next row of the trip with its last stop
    start = speeds.join(
        truth.rename({"stop_sequence": "from_stop_sequence", "km": "km_from", "stop_id": "truth_from"}),
        on=["trip_id", "from_stop_sequence"],
    )
    ends = (
        start.select("service_date", "trip_id", "from_stop_sequence", "to_stop_id")
        .join(truth.rename({"stop_id": "to_stop_id", "km": "km_to"}), on=["trip_id", "to_stop_id"])
        .filter(pl.col("stop_sequence") > pl.col("from_stop_sequence"))
        .group_by("service_date", "trip_id", "from_stop_sequence")
        .agg(pl.col("km_to").sort_by("stop_sequence").first())
    )
    seg = start.join(ends, on=["service_date", "trip_id", "from_stop_sequence"]).with_columns(
        ((pl.col("km_to") - pl.col("km_from")) * 1000).alias("truth_m")
    )
    seg = seg.filter(pl.col("truth_m") > 20)  # a stop pair a few metres apart has no speed to speak of
    # before: the straight line between the two stops' coordinates x road_factor
    net_stops = net.stops.select("stop_id", "lat", "lon")
    seg = seg.join(net_stops.rename({"stop_id": "from_stop_id", "lat": "lat0", "lon": "lon0"}), on="from_stop_id")
    seg = seg.join(net_stops.rename({"stop_id": "to_stop_id", "lat": "lat1", "lon": "lon1"}), on="to_stop_id")
    straight = haversine_m(seg["lat0"], seg["lon0"], seg["lat1"], seg["lon1"]) * ROAD_FACTOR
    truth_m = seg["truth_m"].to_numpy()
    after_m = seg["segment_m"].to_numpy()
    running = seg["running_s"].to_numpy()
    on_shape = (seg["segment_length_source"] == "shape").to_numpy()
    truth_kmh = truth_m / running * 3.6
    out: dict = {
        "segments": int(len(seg)),
        "segments_along_shape_share": round(float(on_shape.mean()), 4),
        "length_before": _stats(straight / truth_m - 1),
        "length_after": _stats(after_m / truth_m - 1),
        "speed_abs_kmh_before": round(float(np.median(np.abs(straight / running * 3.6 - truth_kmh))), 2),
        "speed_abs_kmh_after": round(float(np.median(np.abs(after_m / running * 3.6 - truth_kmh))), 2),
        "length_after_on_shape": _stats(after_m[on_shape] / truth_m[on_shape] - 1) if on_shape.any() else None,
        "length_after_fallback": _stats(after_m[~on_shape] / truth_m[~on_shape] - 1) if (~on_shape).any() else None,
    }
    # trip km per line and day: the marts' km_scheduled (after) and the trips' straight lines x
    # road_factor (before) against the simulator's own trip lengths (truth/trips)
    first = net.trip_ptr[:-1]
    hop = np.zeros(len(net.st_stop))
    hop[1:] = haversine_m(
        net.stop_lat[net.st_stop[:-1]],
        net.stop_lon[net.st_stop[:-1]],
        net.stop_lat[net.st_stop[1:]],
        net.stop_lon[net.st_stop[1:]],
    )
    hop[first] = 0.0
    straight_km = np.add.reduceat(hop, first) / 1000 * ROAD_FACTOR
    trips = pl.DataFrame({"trip_id": net.trips["trip_id"].to_numpy(), "km_before": straight_km})
    truth_trips = pl.read_parquet(drop / "truth" / "trips" / "**" / "*.parquet").select(
        "service_date", "trip_id", "route_id", pl.col("scheduled_km").alias("km_truth")
    )
    names = net.routes.select("route_id", pl.col("short_name").alias("route_short_name"))
    per_line = (
        truth_trips.join(trips, on="trip_id")
        .join(names, on="route_id")
        .group_by("service_date", "route_short_name")
        .agg(pl.col("km_truth").sum(), pl.col("km_before").sum())
        .join(
            _published(lake, "mart_service_delivered").select(
                "service_date", "route_short_name", pl.col("km_scheduled").alias("km_after"), "km_along_shape_share"
            ),
            on=["service_date", "route_short_name"],
        )
    )
    truth_km = per_line["km_truth"].to_numpy()
    out["line_days"] = per_line.height
    out["km_line_day_before"] = _stats(per_line["km_before"].to_numpy() / truth_km - 1)
    out["km_line_day_after"] = _stats(per_line["km_after"].to_numpy() / truth_km - 1)
    out["km_total"] = {
        "truth": round(float(truth_km.sum()), 1),
        "before": round(float(per_line["km_before"].sum()), 1),
        "after": round(float(per_line["km_after"].sum()), 1),
        "after_along_shape_share": round(
            float((per_line["km_after"] * per_line["km_along_shape_share"]).sum() / per_line["km_after"].sum()), 4
        ),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.geometry_eval", description=__doc__)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--drop", type=Path, required=True, help="the simulated drop, with its truth/")
    parser.add_argument("--network", type=Path, default=Path(__file__).parent / "data" / "cairns_gtfs.zip")
    args = parser.parse_args(argv)
    print(json.dumps(assess(args.lake, args.drop, args.network), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
