"""The trip has one name from contract to mart (issue #30): TIDES's two ids read as ``trip_id``,
and a lake staged by an earlier version migrated in place."""

from __future__ import annotations

import io

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citylake import cli
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from ingestion.parsing import Refused
from ingestion.standards.tides import trip_id_once

TRIPS = ("trip_id", "trip_id_scheduled", "trip_id_performed")
ids = st.one_of(st.none(), st.text(alphabet="AB12:_", min_size=1, max_size=4))


@st.composite
def frames(draw) -> pl.DataFrame:
    """A frame with any subset of the three trip columns (any order, nulls anywhere) among others."""
    n = draw(st.integers(0, 6))
    names = draw(st.permutations([*TRIPS, "stop_id", "source_row"]))
    kept = [c for c in names if c not in TRIPS or draw(st.booleans())]
    data = {c: (list(range(n)) if c == "source_row" else [draw(ids) for _ in range(n)]) for c in kept}
    return pl.DataFrame(data, schema={c: (pl.Int64 if c == "source_row" else pl.Utf8) for c in kept})


@settings(max_examples=300, deadline=None)
@given(frames())
def test_the_trip_is_named_once_whatever_columns_a_file_has(frame) -> None:
    """The trip is ``trip_id``: the id already named so, else TIDES's scheduled (GTFS) one, else
    its performed one; no other trip column is left, every other column is kept, in its order."""
    out = trip_id_once(frame)
    present = [c for c in TRIPS if c in frame.columns]
    assert [c for c in out.columns if c.startswith("trip_id")] == (["trip_id"] if present else [])
    assert [c for c in out.columns if c != "trip_id"] == [c for c in frame.columns if c not in TRIPS]
    for i, row in enumerate(frame.iter_rows(named=True)):
        expected = next((row[c] for c in present if row[c] is not None), None)
        assert (out["trip_id"][i] if present else None) == expected
    if present:  # where the first trip column was
        first = min(frame.columns.index(c) for c in present)
        assert out.columns.index("trip_id") == len([c for c in frame.columns[:first] if c not in TRIPS])


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd")
    return buf.getvalue()


def test_a_lake_staged_by_an_earlier_version_is_migrated_in_place(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    storage = open_storage(Settings())
    old = pl.DataFrame(
        {
            "source_row": [1, 2],
            "trip_id_performed": ["T1", "T2"],
            "trip_id_scheduled": ["T1", "T2"],
            "trip_stop_sequence": [1, 2],
            "is_valid": [True, True],
        }
    )
    new = pl.DataFrame({"source_row": [1], "trip_id": ["T9"], "trip_stop_sequence": [1], "is_valid": [True]})
    old_key = "staged/stop_visits/operator=bus/service_date=2026-03-30/part-0.parquet"
    new_key = "staged/stop_visits/operator=bus/service_date=2026-03-31/part-0.parquet"
    other_key = "staged/work_orders/operator=bus/service_date=2026-03-30/part-0.parquet"
    storage.put_bytes(old_key, _parquet(old))
    storage.put_bytes(new_key, _parquet(new))
    storage.put_bytes(other_key, _parquet(pl.DataFrame({"source_row": [1], "work_order_id": ["W1"]})))
    untouched = {k: storage.get_bytes(k) for k in (new_key, other_key)}

    assert cli.main(["lake", "migrate"]) == 0
    assert "staged files: 3; trip named trip_id (was trip_id_performed) in 1" in capsys.readouterr().out
    migrated = pl.read_parquet(io.BytesIO(storage.get_bytes(old_key)))
    assert migrated.columns == ["source_row", "trip_id", "trip_stop_sequence", "is_valid"]
    assert migrated["trip_id"].to_list() == ["T1", "T2"]
    assert {k: storage.get_bytes(k) for k in untouched} == untouched  # byte for byte
    # what dbt's staging reads (every file of the dataset, by name) has the trip on every row
    import duckdb

    read = duckdb.sql(
        f"select trip_id from read_parquet('{tmp_path}/lake/staged/stop_visits/**/*.parquet', union_by_name = true)"
    ).fetchall()
    assert sorted(r[0] for r in read) == ["T1", "T2", "T9"]
    assert cli.main(["lake", "migrate"]) == 0  # again: nothing left to do
    assert "in 0 (the lake is already at this version)" in capsys.readouterr().out


def test_a_tides_file_gives_its_scheduled_trip_as_the_trip() -> None:
    """TIDES 1.0 trips_performed with the agency's own performed id and the GTFS one: the lake's
    trip is the GTFS trip (what the marts join the offer on); without it, the performed id."""
    from ingestion.standards import tides

    data = (
        b"service_date,trip_id_performed,vehicle_id,trip_id_scheduled\n"
        b"2026-03-30,run-1-20260330,290,T1\n"
        b"2026-03-30,T2,291,\n"
    )
    frame, warnings = tides.read("trips_performed", data, "trips_performed.csv", "Europe/Paris")
    assert warnings == [] and frame["trip_id"].to_list() == ["T1", "T2"]
    assert not {"trip_id_performed", "trip_id_scheduled"} & set(frame.columns)
    missing = b"service_date,vehicle_id\n2026-03-30,290\n"
    with pytest.raises(Refused, match="trip_id_performed"):  # the file's own column is named
        tides.read("trips_performed", missing, "trips_performed.csv", "Europe/Paris")
