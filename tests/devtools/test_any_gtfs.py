"""Any GTFS feed simulates and runs, or is refused with a clear message — never a traceback
(issue #19): generated feeds in the odd shapes real ones take, and the real feeds at hand."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from citylake.core.errors import DataError
from devtools.cli import main as devtools_main
from devtools.simulator.run import SimulationConfig, simulate
from tests.conftest import require_shared
from tests.support.gtfs_feeds import FeedSpec, build

FRIDAY = date(2026, 3, 27)  # Friday to Sunday, across the spring DST change

specs = st.builds(
    FeedSpec,
    routes=st.integers(1, 3),
    stops_per_route=st.integers(2, 9),
    weekday_trips=st.integers(0, 4),
    weekend_trips=st.integers(0, 2),
    first_departure_s=st.sampled_from([4 * 3600, 6 * 3600, 23 * 3600, 25 * 3600, 47 * 3600 + 1800]),
    headway_s=st.sampled_from([60, 600, 1800]),
    with_blocks=st.booleans(),
    frequencies=st.booleans(),
    route_type=st.sampled_from([0, 3, 4, 700, 715, 1100]),
    id_prefix=st.sampled_from(["", "FR:Line:", 'x"y:', "é "]),
    calendar_start=st.sampled_from([date(2019, 1, 7), date(2026, 3, 2), date(2030, 6, 3)]),
    calendar_days=st.integers(1, 30),
    flex_columns=st.booleans(),
    translations=st.booleans(),
    parent_stations=st.booleans(),
)


def _check_truth(out: Path) -> None:
    visits = pl.read_parquet(out / "truth" / "stop_visits" / "**" / "*.parquet")
    if visits.height:
        assert visits["load"].min() >= 0
        assert (visits["load"] <= visits["capacity"]).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_any_generated_feed_simulates_or_is_refused_with_a_message(spec, tmp_path_factory) -> None:
    base = tmp_path_factory.mktemp("feed")
    feed = build(spec, base / "feed.zip")
    try:
        summary = simulate(
            SimulationConfig(network=feed, start=FRIDAY, days=3, out=base / "out", seed=5, progress=False)
        )
    except (ValueError, DataError) as exc:  # a refusal names the feed and the reason
        event(f"refused: {str(exc).split(': ', 1)[-1][:60]}")
        assert "feed.zip" in str(exc), exc
        return
    event("simulated")
    assert len(summary["days"]) == 3
    _check_truth(base / "out")


@pytest.mark.parametrize(
    ("spec", "days"),
    [
        (FeedSpec(weekend_trips=0), 3),  # a day with no trip at all
        (FeedSpec(routes=1, weekday_trips=1, weekend_trips=0), 3),  # one trip a day
        (FeedSpec(routes=1, weekday_trips=1, weekend_trips=2), 3),  # the weekend of a handful of trips
        (FeedSpec(with_blocks=False, first_departure_s=47 * 3600), 2),  # no blocks, times past 48:00
    ],
)
def test_days_with_zero_one_or_two_trips_simulate(spec, days, tmp_path) -> None:
    summary = simulate(
        SimulationConfig(
            network=build(spec, tmp_path / "feed.zip"),
            start=FRIDAY,
            days=days,
            out=tmp_path / "out",
            seed=2,
            progress=False,
        )
    )
    assert [d["service_date"] for d in summary["days"]][0] == "2026-03-27"
    _check_truth(tmp_path / "out")


@pytest.mark.parametrize("missing", ["stop_times.txt", "trips.txt", "stops.txt"])
def test_a_feed_without_a_required_file_is_refused_naming_it(missing, tmp_path, capsys) -> None:
    feed = build(FeedSpec(drop=(missing,)), tmp_path / "feed.zip")
    code = devtools_main(["simulate", "--network", str(feed), "--start", "2026-03-27", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert missing in err and "Traceback" not in err


def test_a_real_netex_only_network_simulates(tmp_path) -> None:
    """The Finistère ferries publish NeTEx only: its offer, read into GTFS, is a network to simulate."""
    from ingestion import gtfs
    from ingestion.standards import netex

    data = require_shared("realdata/standards/netex_fr_pabmar_finistere_maritime_2024-07-04.zip").read_bytes()
    gtfs.write_feed(netex.read(data, "pabmar.zip"), tmp_path / "pabmar.zip")
    summary = simulate(
        SimulationConfig(
            network=tmp_path / "pabmar.zip", start=date(2026, 7, 3), days=2, out=tmp_path / "o", seed=3, progress=False
        )
    )
    assert all(d["trips_scheduled"] > 20 for d in summary["days"])
    assert all(not math.isnan(d["validations"]) and d["validations"] > 0 for d in summary["days"])
    _check_truth(tmp_path / "o")


def test_an_odd_feed_runs_end_to_end(tmp_path, monkeypatch) -> None:
    """simulate → ingest → build → evaluate on a feed with quoted ids holding colons and quotes,
    no blocks, frequencies, an extended route type, GTFS-Flex columns, translations, a weekend of
    one trip per line and a calendar years before the simulated dates."""
    from citylake.build.dbt import build as dbt_build
    from citylake.core.settings import Settings
    from devtools.evaluate import evaluate
    from ingestion.run import ingest

    spec = FeedSpec(
        id_prefix='FR:"L":',
        with_blocks=False,
        frequencies=True,
        route_type=715,
        flex_columns=True,
        translations=True,
        weekend_trips=1,
        first_departure_s=5 * 3600,
        calendar_start=date(2019, 1, 7),
    )
    drop = tmp_path / "drop"
    simulate(
        SimulationConfig(
            network=build(spec, tmp_path / "feed.zip"), start=FRIDAY, days=3, out=drop, seed=7, progress=False
        )
    )
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "any-gtfs-test-key-0123456789abcdef")
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    settings = Settings()
    report = ingest(settings, progress=False)
    assert report.ok and not any(f.quarantined for f in report.feeds), report.lines()
    result = dbt_build(settings)
    assert result.success, [(r["node"], r["message"]) for r in result.failures]
    figures = evaluate(drop, result.warehouse, settings.timezone)
    assert figures["load_profile_cells"] > 0
    assert all(math.isfinite(v) for v in figures.values())


def test_frequency_based_trips_are_made_explicit(tmp_path) -> None:
    from ingestion import gtfs

    spec = FeedSpec(routes=1, weekday_trips=2, weekend_trips=0, frequencies=True, first_departure_s=6 * 3600)
    feed = gtfs.expand_frequencies(gtfs.read_feed(build(spec, tmp_path / "feed.zip")))
    trips = feed["trips"]["trip_id"].to_list()
    # each direction's first trip has a 3-hour window every 15 min: 12 departures instead of 1
    assert len(trips) == 2 * (1 + 12)
    assert "T0-WD-0-0@06:00:00" in trips and "T0-WD-0-0@08:45:00" in trips and "T0-WD-0-0" not in trips
    times = feed["stop_times"].filter(pl.col("trip_id") == "T0-WD-0-0@08:45:00").sort("stop_sequence")
    assert times["arrival_time"].to_list()[:2] == ["08:45:00", "08:47:30"]
    assert "frequencies" not in feed.tables
