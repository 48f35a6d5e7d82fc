"""The accuracy floors of issue #31 (``devtools.evaluate.floors``), on trips worked by hand."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest

from devtools.evaluate import floors

DAY = date(2026, 3, 30)
KEYS = ["route_short_name", "stop_sequence"]


def _warehouse(visits: list[tuple], flows: list[tuple]) -> duckdb.DuckDBPyConnection:
    """fct_stop_visit_loads rows (trip, position, boardings, alightings, load, method) and
    int_od_flows rows (trip, board position, alight position, passengers)."""
    con = duckdb.connect()
    con.sql(
        "create table fct_stop_visit_loads (service_date date, trip_id varchar, stop_sequence bigint, "
        "stop_position bigint, boardings_estimated double, alightings_estimated double, load_estimated double, "
        "alightings_method varchar)"
    )
    for t, pos, b, a, load, method in visits:
        con.execute(
            "insert into fct_stop_visit_loads values (?, ?, ?, ?, ?, ?, ?, ?)",
            [DAY, t, pos * 10, pos, b, a, load, method],
        )
    con.sql(
        "create table int_od_flows (service_date date, trip_id varchar, board_position bigint, "
        "alight_position bigint, passengers double)"
    )
    for t, i, j, n in flows:
        con.execute("insert into int_od_flows values (?, ?, ?, ?, ?)", [DAY, t, i, j, n])
    return con


def _truth(rows: list[tuple]) -> pl.DataFrame:
    """(trip, position, boardings, alightings, load) of the truth."""
    return pl.DataFrame(
        [
            {
                "route_short_name": "1",
                "stop_sequence": pos * 10,
                "service_date": DAY,
                "trip_id": t,
                "boardings": b,
                "alightings": a,
                "load": load,
            }
            for t, pos, b, a, load in rows
        ]
    )


def test_each_input_swapped_for_the_truth_gives_the_loads_worked_by_hand() -> None:
    # truth: 2 board at the first stop, 1 at the second; 1 gets off at the second, 2 at the last
    truth = _truth([("T", 1, 2, 0, 2), ("T", 2, 1, 1, 2), ("T", 3, 0, 2, 0)])
    # the method saw 1 and 1 boardings, and sends both to the last stop
    con = _warehouse(
        [("T", 1, 1, 0, 1, "inferred"), ("T", 2, 1, 0, 2, "inferred"), ("T", 3, 0, 2, 0, "inferred")],
        [("T", 1, 3, 1.0), ("T", 2, 3, 1.0)],
    )
    got = floors(con, truth, KEYS)
    # as estimated: loads 1, 2, 0 against 2, 2, 0
    assert got["estimated_load_wape_per_stop_visit"] == pytest.approx(1 / 4)
    # true boardings (2, 1) sent to the last stop as the method sends them: loads 2, 3, 0
    assert got["true_boardings_load_wape_per_stop_visit"] == pytest.approx(1 / 4)
    assert got["true_boardings_peak_load_per_trip_wape"] == pytest.approx(1 / 2)
    # true alightings (0, 1, 2) scaled to the method's 2 boardings: loads 1, 1 + 1/3, 0
    assert got["true_alightings_load_wape_per_stop_visit"] == pytest.approx((1 + 2 / 3) / 4)
    assert got["true_alightings_peak_load_per_trip_wape"] == pytest.approx((2 - 4 / 3) / 2)
    # cells here are one visit each: the same as per visit
    assert got["estimated_load_profile_wape"] == pytest.approx(got["estimated_load_wape_per_stop_visit"])


def test_a_stop_the_method_sent_nobody_from_spreads_evenly_and_a_counted_trip_keeps_its_counter() -> None:
    truth = _truth(
        [
            ("E", 1, 3, 0, 3),  # the method saw nobody board here: the true 3 spread evenly downstream
            ("E", 2, 0, 1, 2),
            ("E", 3, 0, 1, 1),
            ("E", 4, 0, 1, 0),
            ("C", 1, 4, 0, 4),  # a counted trip: its counter's alightings, scaled to the true boardings
            ("C", 2, 0, 2, 2),
            ("C", 3, 0, 2, 0),
        ]
    )
    con = _warehouse(
        [
            ("E", 1, 0, 0, 0, "inferred"),
            ("E", 2, 0, 0, 0, "inferred"),
            ("E", 3, 0, 0, 0, "inferred"),
            ("E", 4, 0, 0, 0, "inferred"),
            ("C", 1, 2, 0, 2, "apc"),
            ("C", 2, 0, 1, 1, "apc"),
            ("C", 3, 0, 1, 0, "apc"),
        ],
        [],
    )
    got = floors(con, truth, KEYS)
    # E: 3, 2, 1, 0 exactly; C: 4, 2, 0 exactly
    assert got["true_boardings_load_wape_per_stop_visit"] == pytest.approx(0.0)
    assert got["true_boardings_peak_load_per_trip_wape"] == pytest.approx(0.0)
