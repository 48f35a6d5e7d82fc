"""Published marts as Delta tables: a night writes its periods only, every version stays readable."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from citylake.core import duck
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.publish.gate import plan_marts
from citylake.publish.reader import mart_source, pointer_as_of, published_views
from citylake.publish.tables import TABLE_PROPERTIES, table_key, vacuum_table, write_mart

DAY0 = date(2026, 3, 2)


def rows_of(days: dict[date, float]):
    """A mart with one row per (service_date, stop) whose value encodes the delivery."""
    table = pa.table(
        {
            "service_date": [d for d in days for _ in range(3)],
            "stop_id": [s for _ in days for s in ("A", "B", "C")],
            "value": [v + i for v in days.values() for i in range(3)],
        }
    )

    def select(values):
        if values is None:
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        wanted = table.filter(pa.compute.is_in(table["service_date"], pa.array(values, pa.date32())))
        return pa.RecordBatchReader.from_batches(table.schema, wanted.to_batches())

    return select


def read(settings, storage, table: str, version: int) -> list[tuple]:
    con = duck.connect(settings, storage)
    duck.load_extension(con, "delta")
    entry = {"table": table, "version": version}
    return con.sql(f"select * from {mart_source(storage, entry)} order by all").fetchall()


def test_twelve_nights_with_a_late_delivery_every_version_reads_as_published(lake_settings) -> None:
    storage = open_storage(lake_settings)
    table = table_key("transit", "mart_demo_daily")
    truth: dict[date, float] = {}
    published: list[tuple[int, list[tuple]]] = []
    for night in range(12):
        day = DAY0 + timedelta(days=night)
        changed = [day]
        truth[day] = 100.0 * night
        if night == 7:  # a late, corrected delivery for the 3rd day arrives with the 8th
            late = DAY0 + timedelta(days=2)
            truth[late] = -1.0
            changed.append(late)
        version = write_mart(
            lake_settings,
            storage,
            table,
            rows_of(dict(truth)),
            period="service_date",
            values=None if night == 0 else changed,
            publication_id=f"P{night}",
        )
        expected = sorted((d, s, v + i) for d, v in truth.items() for i, s in enumerate(("A", "B", "C")))
        published.append((version, expected))
    for version, expected in published:  # as published on each night, value for value
        assert read(lake_settings, storage, table, version) == expected
    # any engine reads a version without citylake: Polars, by path and version number
    assert sorted(_polars_reads(storage.url(table), published[2][0], _options(lake_settings, storage))) == [
        tuple(r) for r in published[2][1]
    ]
    assert read(lake_settings, storage, table, published[2][0])[6:9] == [
        (DAY0 + timedelta(days=2), s, 200.0 + i) for i, s in enumerate("ABC")
    ]
    dt = DeltaTable(storage.url(table), storage_options=_options(lake_settings, storage))
    # old versions stay readable after 30 days: delta-rs's log cleanup is off, retentions long
    assert {k: dt.metadata().configuration.get(k) for k in TABLE_PROPERTIES} == TABLE_PROPERTIES
    assert dt.protocol().min_reader_version == 1  # no naive timestamps raised the protocol
    adds = [a for a in _commits(storage, table) if a]
    # each night after the first adds one file per changed day: the cost follows the night
    assert [len(a) for a in adds[1:]] == [1] * 6 + [2] + [1] * 4


def _options(settings, storage):
    from citylake.publish.tables import storage_options

    return storage_options(settings, storage)


def _commits(storage, table: str) -> list[list[str]]:
    """The data files each commit added, from the Delta log."""
    out = []
    logs = sorted(i.key for i in storage.list(f"{table}/_delta_log/") if i.key.endswith(".json"))
    for k in logs:
        actions = [json.loads(line) for line in storage.get_bytes(k).decode().splitlines() if line]
        out.append([a["add"]["path"] for a in actions if "add" in a])
    return out


def test_vacuum_keeps_exactly_the_versions_named(file_settings) -> None:
    storage = open_storage(file_settings)
    table = table_key("transit", "mart_vacuumed")
    truth: dict[date, float] = {}
    for night in range(6):
        truth[DAY0] = float(night)  # every night rewrites the same day: each version its own file
        write_mart(
            file_settings,
            storage,
            table,
            rows_of(dict(truth)),
            period="service_date",
            values=None if night == 0 else [DAY0],
            publication_id=f"P{night}",
        )
    dry = vacuum_table(file_settings, storage, table, [1, 3], dry_run=True)
    assert len(dry) == 3  # versions 0, 2 and 4's files; 5 is the latest
    assert vacuum_table(file_settings, storage, table, [1, 3], dry_run=False) == dry
    for version, value in ((1, 1.0), (3, 3.0), (5, 5.0)):
        assert read(file_settings, storage, table, version)[0][2] == value
    with pytest.raises(duckdb.Error):
        read(file_settings, storage, table, 2)


def test_an_old_lake_is_read_through_the_old_path_and_converted_by_the_next_publication(
    file_settings, tmp_path: Path
) -> None:
    """A publication written before the tables (a Parquet file per publication) still reads as of
    its date; the first publication after the change writes each mart's table whole."""
    storage = open_storage(file_settings)
    old = "published/versions/20260101T000000Z-00000000/transit/mart_old.parquet"
    local = tmp_path / "m.parquet"
    duckdb.sql(f"copy (select date '2026-01-01' as service_date, 42 as n) to '{local}' (format parquet)")
    storage.put_file(old, local)
    pointer = {"groups": {"transit": {"publication_id": "20260101T000000Z-00000000", "marts": {"mart_old": old}}}}
    storage.put_json(
        "published/registry/20260101T000000Z-00000000.json",
        {
            "publication_id": "20260101T000000Z-00000000",
            "created_at": "2026-01-01T03:00:00+00:00",
            "current_after": pointer,
        },
    )
    con = duck.connect(file_settings, storage)
    published_views(con, storage, pointer_as_of(storage, "2026-01-02"))
    assert con.sql("select n from mart_old").fetchall() == [(42,)]
    warehouse = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    warehouse.execute("create table mart_old as select date '2026-01-01' as service_date, 43 as n")
    plan = plan_marts(
        warehouse, ("mart_old",), {"mart_old": "service_date"}, [date(2026, 1, 2)], pointer["groups"]["transit"]
    )
    assert plan["mart_old"]["values"] is None  # no table in force yet: written whole


def test_a_dimension_is_rewritten_only_when_it_changed() -> None:
    con = duckdb.connect()
    con.execute("create table dim_x as select * from (values (1, 'a'), (2, 'b')) t(id, name)")
    first = plan_marts(con, ("dim_x",), {"dim_x": None}, [DAY0], {})["dim_x"]
    entry = {
        "table": "published/marts/transit/dim_x",
        "version": 0,
        "period": None,
        "fingerprint": first["fingerprint"],
    }
    assert plan_marts(con, ("dim_x",), {"dim_x": None}, [DAY0], {"marts": {"dim_x": entry}})["dim_x"]["unchanged"]
    con.execute("update dim_x set name = 'c' where id = 2")
    assert "unchanged" not in plan_marts(con, ("dim_x",), {"dim_x": None}, [DAY0], {"marts": {"dim_x": entry}})["dim_x"]


def test_published_tables_equal_the_warehouse_after_the_nights(lake_after_nights) -> None:
    """Two nights, the second writing only its own day: the published tables hold every row the
    warehouse (every date built) holds."""
    settings: Settings = lake_after_nights.settings()
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    names = published_views(con, storage, pointer_as_of(storage, None))
    con.execute(f"attach '{lake_after_nights.warehouse}' as wh (read_only)")
    for mart in names:
        cols = [r[0] for r in con.sql(f"describe {mart}").fetchall() if r[0] != "publication_id"]
        listed = ", ".join(f'"{c}"' for c in cols)
        diff = con.sql(
            f"select count(*) from ((select {listed} from {mart} except all select {listed} from wh.{mart}) "
            f"union all (select {listed} from wh.{mart} except all select {listed} from {mart}))"
        ).fetchone()[0]
        assert diff == 0, mart


def _polars_reads(uri: str, version: int, options: dict | None) -> list[tuple]:
    """Rows of a table's version as Polars' ``scan_delta`` reads it. On S3, in a process of its own:
    Polars' cloud reader leaves a thread that reads the environment every few milliseconds, and
    this worker's later tests set variables (glibc's setenv/getenv race: SIGSEGV, seen 2026-12-06;
    citylake.core.duck.scan_parquet avoids that reader for the same reason)."""
    import json
    import subprocess
    import sys

    if options is None:
        return pl.scan_delta(uri, version=version).collect().rows()
    code = (
        "import json, sys, polars as pl\n"
        "a = json.loads(sys.argv[1])\n"
        "rows = pl.scan_delta(a['uri'], version=a['version'], storage_options=a['options']).collect()\n"
        "buf = __import__('io').BytesIO(); rows.write_ipc(buf); sys.stdout.buffer.write(buf.getvalue())\n"
    )
    args = json.dumps({"uri": uri, "version": version, "options": options})
    out = subprocess.run([sys.executable, "-c", code, args], capture_output=True, check=True, timeout=120)
    return pl.read_ipc(io.BytesIO(out.stdout)).rows()
