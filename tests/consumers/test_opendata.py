"""Open data and the analysts' catalog, from a real publication."""

from __future__ import annotations

import io
import json
from datetime import date

import duckdb
import polars as pl
import pytest

from citylake.consumers.opendata import (
    FORBIDDEN_COLUMNS,
    export,
    neutralise_formulas,
    suppress,
    write_catalog,
)
from citylake.core import duck
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.publish.reader import current, published_views


def test_exports_suppress_small_counts_and_carry_no_identifier(lake_after_nights, tmp_path) -> None:
    night = lake_after_nights.last
    settings = lake_after_nights.copy(tmp_path)  # the export writes opendata/
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    published_views(con, storage, current(storage))
    keys = export(storage, con, night.run_id, k=10)
    assert len([k for k in keys if k.endswith("datapackage.json")]) == 6
    # the map layers (issue #34): GeoJSON in WGS84, longitude first, with the small counts suppressed
    for name in ("stops_use_map", "segment_loads_map"):
        geojson = next(k for k in keys if k.endswith(f"{name}/{night.run_id}/data.geojson"))
        doc = json.loads(storage.get_bytes(geojson))
        assert doc["type"] == "FeatureCollection" and doc["features"]
        lon, lat = (
            doc["features"][0]["geometry"]["coordinates"][0]
            if name == "segment_loads_map"
            else doc["features"][0]["geometry"]["coordinates"]
        )
        assert 140 < lon < 150 and -20 < lat < -10  # the sample network (Cairns), longitude first
        props = [f["properties"] for f in doc["features"]]
        column = "mean_daily_boardings" if name == "stops_use_map" else "mean_load"
        assert all(p[column] is None or p[column] >= 10 for p in props)
        assert any(p["is_suppressed"] for p in props)
    for k in keys:
        if k.endswith("data.parquet"):
            frame = pl.read_parquet(storage.url(k))
            assert not [c for c in frame.columns if FORBIDDEN_COLUMNS.search(c)]
            for col in ("boardings", "alightings", "mean_load", "mean_boardings"):
                if col in frame.columns:
                    assert frame[col].drop_nulls().min() >= 10
            if "boardings" in frame.columns:
                assert (
                    frame["is_suppressed"].any() and frame.filter(pl.col("is_suppressed"))["boardings"].null_count() > 0
                )
        if k.endswith("datapackage.json"):
            package = json.loads(storage.get_bytes(k))
            assert package["licenses"][0]["name"] == "ODbL-1.0" and package["resources"][0]["schema"]["fields"]


def test_formula_injection_is_neutralised_and_k_rules() -> None:
    frame = pl.DataFrame({"name": ['=HYPERLINK("x")', "+33", "Gare", "@SUM(A1)", "-1"], "n": [1, 20, 5, 30, 10]})
    out = neutralise_formulas(frame)
    assert out["name"].to_list() == ['\'=HYPERLINK("x")', "'+33", "Gare", "'@SUM(A1)", "'-1"]
    s = suppress(frame, ("n",), 10)
    assert s["n"].to_list() == [None, 20, None, 30, 10] and s["is_suppressed"].to_list() == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_no_published_column_undoes_a_suppression_and_no_cell_is_split_by_a_french_spreadsheet(tmp_path) -> None:
    """Issue #29: a suppressed row blanks every count and what derives from one (load_factor x
    capacity gave mean_load back), and a cell holding ';' or a tab is quoted."""
    import csv as csv_module

    from citylake.consumers.opendata import DATASETS, write_csv

    profiles = next(d for d in DATASETS if d.name == "load_profiles_per_line")
    frame = pl.DataFrame(
        {
            "stop_name": ["Gare;=1+1", "Centre\t@x"],
            "mean_boardings": [3.0, 25.0],
            "mean_alightings": [12.0, 30.0],
            "mean_load": [4.0, 50.0],
            "p90_load": [15.0, 70.0],
            "load_factor": [0.04, 0.5],
        }
    )
    out = suppress(frame, profiles.count_columns, 10, profiles.derived_columns)
    first = out.row(0, named=True)
    assert first["is_suppressed"] and all(first[c] is None for c in (*profiles.count_columns, "load_factor"))
    assert out.row(1, named=True)["load_factor"] == 0.5
    write_csv(out, tmp_path / "data.csv")
    text = (tmp_path / "data.csv").read_text()
    assert '"Gare;=1+1"' in text and '"Centre\t@x"' in text
    # a spreadsheet in a French locale reads the file with ';' as its delimiter: quotes keep each cell whole
    rows = list(csv_module.reader(io.StringIO(text), delimiter=";"))
    assert all(len(r) == 1 for r in rows[1:])


def test_catalog_is_a_duckdb_file_analysts_open_read_only(lake_after_nights, tmp_path) -> None:
    base, night = lake_after_nights.base, lake_after_nights.last
    settings = Settings.model_construct(
        lake_uri=(base / "lake").as_uri(), timezone="Europe/Paris", duckdb_threads=2, duckdb_memory_limit="4GB"
    )
    storage = open_storage(settings)
    path = tmp_path / "citylake.duckdb"
    names = write_catalog(path, settings, storage, current(storage))
    assert "mart_bus_load_profile" in names and "mart_contract_kpis" in names
    con = duckdb.connect(str(path), read_only=True)
    assert con.sql("select count(*) from fct_stop_visit_loads").fetchone()[0] > 10_000
    assert {r[1] for r in con.sql("select * from publication_in_force").fetchall()} == {night.run_id}
    with pytest.raises(duckdb.Error):
        con.execute("create table x as select 1")


def test_monthly_report_shows_the_published_kpis(lake_after_nights, tmp_path) -> None:
    import re

    from citylake.consumers.contract_report import build_report, write_report

    night = lake_after_nights.last
    settings = lake_after_nights.copy(tmp_path)  # the report is written to reports/contract/
    storage = open_storage(settings)
    pointer = current(storage)
    con = duck.connect(settings, storage)
    published_views(con, storage, pointer)
    for operator, chart in (("bus", "Serpent de charge"), ("parking", "Occupation des parcs")):
        page, rows = build_report(con, operator, date(2026, 3, 1), pointer["groups"]["contract"])
        mart = con.execute(
            "select kpi_code, value, amount_eur from mart_contract_kpis where operator = ? order by kpi_code",
            [operator],
        ).fetchall()
        shown = re.findall(r"data-kpi='([A-Z_]+)' data-value='([^']*)' data-amount='([^']*)'", page)
        assert [(k, float(v) if v else None, float(a)) for k, v, a in shown] == [(k, v, a) for k, v, a in mart]
        assert chart in page and "<svg" in page and night.run_id in page and "<script" not in page
        # one month published: the trends go day by day within it (2 simulated days), not one dot
        assert "Évolution jour par jour en 03/2026" in page
        days = dict(re.findall(r"data-trend='([A-Z_]+)' data-points='(\d+)'", page))
        assert days and set(days.values()) == {"2"}, days
        if operator == "bus":  # issue #31: the loads above capacity, counted as the mart flags them
            over = con.execute("select count(*) filter (where is_over_capacity) from fct_stop_visit_loads").fetchone()
            assert f"Charges estimées au-delà de la capacité du véhicule : {over[0]} passages" in page
    k = write_report(storage, con, "bus", date(2026, 3, 1), pointer)
    assert k.startswith("reports/contract/operator=bus/month=2026-03/") and storage.exists(k)


def test_trends_go_monthly_once_two_months_are_published() -> None:
    """Daily points within the month while one month is published; 12 months of monthly points
    after, each KPI with the month's thresholds as reference lines."""
    from citylake.consumers.contract_report import trend_section

    con = duckdb.connect()
    con.sql("create table mart_contract_kpis (operator text, kpi_code text, month date, value double)")
    con.sql("create table mart_contract_kpis_daily (operator text, kpi_code text, service_date date, value double)")
    con.sql(
        "insert into mart_contract_kpis_daily select 'bus', 'PUNCTUALITY', d::date, 0.9 "
        "from range(date '2026-03-01', date '2026-05-01', interval 1 day) t(d)"
    )
    con.sql("insert into mart_contract_kpis values ('bus', 'PUNCTUALITY', date '2026-03-01', 0.9)")
    kpis = [{"kpi_code": "PUNCTUALITY", "label": "Ponctualité", "minimum": 0.85, "target": 0.9}]
    march = trend_section(con, "bus", date(2026, 3, 1), kpis)
    assert "jour par jour en 03/2026" in march and "data-points='31'" in march
    assert ">01/03<" in march and "objectif" in march and "minimum" in march
    con.sql("insert into mart_contract_kpis values ('bus', 'PUNCTUALITY', date '2026-04-01', 0.92)")
    april = trend_section(con, "bus", date(2026, 4, 1), kpis)
    assert "Évolution sur 12 mois" in april and "data-points='2'" in april and ">04/26<" in april
    # a report as of March, rebuilt later, still tells March's story
    assert "jour par jour en 03/2026" in trend_section(con, "bus", date(2026, 3, 1), kpis)
