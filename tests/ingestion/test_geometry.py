"""Stops placed along their trip's shape (issue #34), proven on generated shapes whose truth is
known: stops put on the shape at chosen distances are found there, in metres, whatever the
feed's shape_dist_traveled unit; a loop line's last stop is placed at the end, not at the start
it shares a place with; a shape that is not the trip's path is refused with the reason, never
measured; a segment's path starts and ends at its stops."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion import geometry, gtfs

LAT0, LON0 = 43.6, 3.88  # Montpellier
M_PER_DEG_LAT = np.radians(1.0) * geometry.EARTH_M


def _to_latlon(x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = LAT0 + y_m / M_PER_DEG_LAT
    lon = LON0 + x_m / (M_PER_DEG_LAT * np.cos(np.radians(LAT0)))
    return lat, lon


def _street(steps: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """A street heading east: x always grows, y wanders (never crosses itself)."""
    x = np.concatenate([[0.0], np.cumsum([dx for dx, _ in steps])])
    y = np.concatenate([[0.0], np.cumsum([dy for _, dy in steps])])
    return _to_latlon(x, y)


def _true_along(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(geometry.haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:]))])


streets = st.lists(
    st.tuples(st.floats(5, 400), st.floats(-300, 300)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(streets, st.lists(st.floats(0, 1), min_size=2, max_size=30), st.data())
def test_stops_on_the_shape_are_found_where_they_are(steps, fractions, data) -> None:
    lat, lon = _street(steps)
    cum = _true_along(lat, lon)
    truth = np.sort(np.array(fractions)) * cum[-1]
    stop_lat, stop_lon = np.interp(truth, cum, lat), np.interp(truth, cum, lon)
    use_sdt = data.draw(st.booleans())
    unit = data.draw(st.sampled_from([1.0, 0.001, 3.28084]))  # metres, km, feet: any unit
    placed = geometry.place_stops(
        lat, lon, stop_lat, stop_lon, cum * unit if use_sdt else None, truth * unit if use_sdt else None
    )
    assert placed.status == (geometry.SHAPE_DIST_OK if use_sdt else geometry.SHAPE_OK)
    assert (np.diff(placed.along_m) >= 0).all()
    # a stop exactly on the street is found where it is (the plane is exact to well under a metre)
    assert np.abs(placed.along_m - truth).max() < 0.5 + 1e-4 * cum[-1]
    assert placed.offset_m.max() < 0.5


@settings(max_examples=100, deadline=None)
@given(streets, st.lists(st.floats(0, 1), min_size=2, max_size=20), st.lists(st.floats(-20, 20), min_size=20))
def test_stops_beside_the_shape_stay_in_order_and_near_their_place(steps, fractions, offsets) -> None:
    lat, lon = _street(steps)
    cum = _true_along(lat, lon)
    truth = np.sort(np.array(fractions)) * cum[-1]
    stop_lat = np.interp(truth, cum, lat) + np.array(offsets[: len(truth)]) / M_PER_DEG_LAT
    stop_lon = np.interp(truth, cum, lon)
    placed = geometry.place_stops(lat, lon, stop_lat, stop_lon)
    assert placed.status == geometry.SHAPE_OK
    assert (np.diff(placed.along_m) >= 0).all()
    assert placed.offset_m.max() <= 20.0 + 0.5


def test_a_loop_lines_last_stop_is_placed_at_the_end_not_at_the_start() -> None:
    # a square loop of 4 x 500 m leaving from and coming back to the same terminus
    lat, lon = _to_latlon(np.array([0, 500, 500, 0, 0.0]), np.array([0, 0, 500, 500, 0.0]))
    stops = np.array([0.0, 400, 900, 1500, 2000])
    cum = _true_along(lat, lon)
    placed = geometry.place_stops(lat, lon, np.interp(stops, cum, lat), np.interp(stops, cum, lon))
    assert placed.status == geometry.SHAPE_OK
    assert placed.along_m[0] == pytest.approx(0, abs=0.5)
    assert placed.along_m[-1] == pytest.approx(cum[-1], abs=0.5)
    assert np.abs(placed.along_m - stops).max() < 0.5


def test_a_stop_passed_twice_is_placed_on_the_right_pass() -> None:
    # out along a street and back along the same street: the middle stop is served on the way back
    lat, lon = _to_latlon(np.array([0, 1000, 0.0]), np.array([0, 0, 0.0]))
    stops = np.array([100.0, 900, 1500])  # 1500 m along = 500 m from the start, on the way back
    cum = _true_along(lat, lon)
    placed = geometry.place_stops(lat, lon, np.interp(stops, cum, lat), np.interp(stops, cum, lon))
    assert np.abs(placed.along_m - stops).max() < 0.5


def test_a_shape_that_is_not_the_trips_path_is_refused_with_the_reason() -> None:
    lat, lon = _to_latlon(np.array([0, 1000.0]), np.array([0, 0.0]))
    far_lat, far_lon = _to_latlon(np.array([100, 900.0]), np.array([0, 800.0]))
    assert geometry.place_stops(lat, lon, far_lat, far_lon).status == geometry.FAR
    back_lat, back_lon = _to_latlon(np.array([900, 100.0]), np.array([0, 0.0]))  # the other direction's shape
    placed = geometry.place_stops(lat, lon, back_lat, back_lon)
    assert placed.status == geometry.DISORDER and placed.along_m is None
    # shape_dist_traveled that contradicts the shape is not trusted: the stops are projected
    on_lat, on_lon = _to_latlon(np.array([100, 900.0]), np.array([0, 0.0]))
    wrong = geometry.place_stops(lat, lon, on_lat, on_lon, np.array([0, 1000.0]), np.array([800, 900.0]))
    assert wrong.status == geometry.SHAPE_OK
    assert wrong.along_m == pytest.approx([100, 900], abs=0.5)


def _feed(shape_xy: list[tuple[float, float]], stops_xy: list[tuple[float, float]], with_shape: bool) -> gtfs.Feed:
    slat, slon = _to_latlon(np.array([p[0] for p in shape_xy]), np.array([p[1] for p in shape_xy]))
    plat, plon = _to_latlon(np.array([p[0] for p in stops_xy]), np.array([p[1] for p in stops_xy]))
    n = len(stops_xy)
    tables = {
        "stops": pl.DataFrame(
            {
                "stop_id": [f"S{i}" for i in range(n)],
                "stop_lat": [str(v) for v in plat],
                "stop_lon": [str(v) for v in plon],
            }
        ),
        "trips": pl.DataFrame(
            {"trip_id": ["T1", "T2"], "route_id": ["R"] * 2, "service_id": ["W"] * 2, "shape_id": ["SH"] * 2}
        ),
        "stop_times": pl.DataFrame(
            {
                "trip_id": ["T1"] * n + ["T2"] * n,
                "stop_id": [f"S{i}" for i in range(n)] * 2,
                "stop_sequence": [str(10 * i + 5) for i in range(n)] * 2,
            }
        ),
    }
    if with_shape:
        tables["shapes"] = pl.DataFrame(
            {
                "shape_id": ["SH"] * len(shape_xy),
                "shape_pt_lat": [str(v) for v in slat],
                "shape_pt_lon": [str(v) for v in slon],
                "shape_pt_sequence": [str(i) for i in range(len(shape_xy))],
            }
        )
    return gtfs.Feed(tables)


def test_segments_start_and_end_at_their_stops_and_add_up_to_the_trip() -> None:
    shape = [(0, 0), (400, 0), (400, 300), (900, 300), (900, -200)]
    stops = [(0, 8), (395, 150), (700, 290), (910, -200)]
    distances, segments = geometry.stop_distances(_feed(shape, stops, with_shape=True))
    assert distances.height == 8 and distances["pattern_id"].n_unique() == 1  # two trips, one pattern
    assert set(distances["shape_status"]) == {geometry.SHAPE_OK}
    assert segments.height == 3 and segments["trips"].to_list() == [2, 2, 2]
    stops_frame = _feed(shape, stops, True)["stops"]
    for row in segments.iter_rows(named=True):
        a = stops_frame.filter(pl.col("stop_id") == row["from_stop_id"]).row(0, named=True)
        b = stops_frame.filter(pl.col("stop_id") == row["to_stop_id"]).row(0, named=True)
        assert (row["path_lat"][0], row["path_lon"][0]) == pytest.approx((float(a["stop_lat"]), float(a["stop_lon"])))
        assert (row["path_lat"][-1], row["path_lon"][-1]) == pytest.approx((float(b["stop_lat"]), float(b["stop_lon"])))
    t1 = distances.filter(pl.col("trip_id") == "T1").sort("stop_sequence")
    assert segments["length_m"].sum() == pytest.approx(t1["along_m"][-1] - t1["along_m"][0])
    # along the street: 400 + 300 + 500 + 500 m from the first stop's foot to the last one's
    assert t1["along_m"][-1] - t1["along_m"][0] == pytest.approx(1700, abs=1)


def test_without_a_shape_the_segments_are_straight_and_unmeasured() -> None:
    distances, segments = geometry.stop_distances(_feed([], [(0, 0), (500, 0), (500, 500)], with_shape=False))
    assert set(distances["shape_status"]) == {geometry.NO_SHAPE}
    assert distances["along_m"].null_count() == distances.height
    assert segments["length_m"].null_count() == segments.height
    assert segments["path_lat"].list.len().to_list() == [2, 2]


def test_a_huge_shape_costs_bounded_memory_and_a_feed_its_budget(monkeypatch) -> None:
    # a million-point shape: placed a few stops at a time (never stops x points at once)
    x = np.linspace(0, 50_000, 1_000_000)
    lat, lon = _to_latlon(x, np.zeros_like(x))
    stops = np.linspace(0, 50_000, 40)
    placed = geometry.place_stops(lat, lon, *_to_latlon(stops, np.zeros_like(stops)))
    assert placed.status == geometry.SHAPE_OK and np.abs(placed.along_m - stops).max() < 1.0
    # a feed whose patterns together cost more than the budget: the rest are left, with the reason
    monkeypatch.setattr(geometry, "WORK_BUDGET", 5)  # the pattern costs 3 stops x 2 points
    distances, segments = geometry.stop_distances(_feed([(0, 0), (1000, 0)], [(0, 5), (500, 5), (1000, 5)], True))
    assert set(distances["shape_status"]) == {geometry.OVER_BUDGET}
    assert segments["length_m"].null_count() == segments.height


COORDINATE_TEXT = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", "abc", "91", "-181", "1e308", "0x10"]),
    st.floats(-0.01, 0.01).map(lambda d: str(43.6 + d)),
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_coordinate_text_gives_finite_places_or_a_reason(data) -> None:
    """Coordinates as operators write them, well or badly: a stop or shape point whose latitude or
    longitude is not a number on the globe is no place (its trip is left out, the point dropped);
    nothing placed or drawn is ever NaN or infinite, and every status is one of the documented."""
    feed = _feed([(0, 0), (1000, 0), (2000, 0)], [(0, 5), (800, 5), (1900, 5)], with_shape=True)
    shapes, stops = feed["shapes"], feed["stops"]
    feed.tables["shapes"] = shapes.with_columns(
        pl.Series("shape_pt_lat", [data.draw(st.one_of(st.just(v), COORDINATE_TEXT)) for v in shapes["shape_pt_lat"]])
    )
    feed.tables["stops"] = stops.with_columns(
        pl.Series("stop_lat", [data.draw(st.one_of(st.just(v), COORDINATE_TEXT)) for v in stops["stop_lat"]])
    )
    distances, segments = geometry.stop_distances(feed)
    known = {geometry.SHAPE_OK, geometry.SHAPE_DIST_OK, geometry.NO_SHAPE, geometry.FAR, geometry.DISORDER}
    assert set(distances["shape_status"]) <= known
    assert distances["along_m"].drop_nulls().is_finite().all()
    for column in ("path_lat", "path_lon"):
        assert segments[column].explode().drop_nulls().is_finite().all()
    assert segments["length_m"].drop_nulls().is_finite().all()
