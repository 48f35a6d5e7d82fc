"""DuckDB and Polars read and write Parquet in the lake through the factory, on both backends."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from citylake.core import duck
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, S3Storage


def _write_days(con, lake: LakeStorage) -> list[str]:
    keys = []
    for day in (date(2026, 3, 1), date(2026, 3, 2)):
        k = key(Zone.STAGED, "fare_transactions", {"service_date": day}, "part-0.parquet")
        duck.copy_to_lake(
            con,
            "select i as transaction_id, 'S' || (i % 7) as stop_id, i % 3 + 1 as amount from range(?) t(i)",
            lake,
            k,
            params=[1000 if day.day == 1 else 500],
        )
        keys.append(k)
    return keys


def test_duckdb_writes_and_reads_parquet_in_the_lake(lake_settings: Settings, lake: LakeStorage) -> None:
    con = duck.connect(lake_settings, lake)
    keys = _write_days(con, lake)
    assert [i.key for i in lake.list("staged/fare_transactions/")] == keys
    glob = lake.url("staged/fare_transactions/*/*.parquet")
    rows = con.sql(
        f"select service_date, count(*), sum(amount) from read_parquet('{glob}', hive_partitioning=true) "
        "group by 1 order by 1"
    ).fetchall()
    assert [(str(d), n) for d, n, _ in rows] == [("2026-03-01", 1000), ("2026-03-02", 500)]
    if isinstance(lake, S3Storage):
        assert glob.startswith("s3://")
        loaded = con.sql("select loaded from duckdb_extensions() where extension_name = 'httpfs'").fetchone()
        assert loaded == (True,)


def test_polars_reads_the_same_objects(lake_settings: Settings, lake: LakeStorage) -> None:
    import polars as pl

    con = duck.connect(lake_settings, lake)
    _write_days(con, lake)
    frame = (
        duck.scan_parquet(lake_settings, lake, "staged/fare_transactions/**/*.parquet", hive_partitioning=True)
        .group_by("service_date")
        .agg(pl.len().alias("n"))
        .sort("service_date")
        .collect()
    )
    assert frame["n"].to_list() == [1000, 500]
    one = next(i.key for i in lake.list("staged/fare_transactions/") if i.key.endswith(".parquet"))
    assert duck.scan_parquet(lake_settings, lake, one).collect().height in (1000, 500)  # one object, no glob


def test_a_failed_copy_leaves_nothing_under_the_key(lake_settings: Settings, lake: LakeStorage) -> None:
    con = duck.connect(lake_settings, lake)
    k = "staged/broken/part-0.parquet"
    with pytest.raises(duckdb.Error):
        duck.copy_to_lake(con, "select error('boom') as x from range(10)", lake, k)
    assert not lake.exists(k)


def test_connection_uses_the_configured_timezone(file_settings: Settings) -> None:
    con = duck.connect(file_settings)
    assert con.sql("select current_setting('TimeZone')").fetchone() == ("Europe/Paris",)
    # 2026-03-29 is a DST day in Europe/Paris: 01:30 UTC is 03:30 local.
    local = con.sql("select (timestamptz '2026-03-29 01:30:00+00')::timestamp").fetchone()[0]
    assert local.hour == 3


def _cp1252_csv():
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "v.csv"
    path.write_bytes("a;b\nMontant (€);Arrêt\n".encode("cp1252"))
    return path


def test_bundled_extensions_install_offline() -> None:
    assert duck.install_bundled_extensions() == ["httpfs", "ducklake", "encodings", "delta", "spatial"]
    con = duckdb.connect()
    for name in ("httpfs", "ducklake", "encodings"):
        duck.load_extension(con, name)
    loaded = dict(
        con.sql(
            "select extension_name, loaded from duckdb_extensions() where extension_name in ('httpfs', 'ducklake', "
            "'encodings')"
        ).fetchall()
    )
    assert loaded == {"httpfs": True, "ducklake": True, "encodings": True}
    # windows-1252, as operators deliver it, read by DuckDB alone (the benchmark's lower bound)
    assert con.sql(
        "select * from read_csv(?, encoding='CP1252', header=true)", params=[str(_cp1252_csv())]
    ).fetchall() == [("Montant (€)", "Arrêt")]
