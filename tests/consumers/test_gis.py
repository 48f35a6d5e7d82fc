"""Map layers for the GIS team, from a real publication (issue #34): read back by DuckDB's spatial
extension, their geometry checked against the GTFS the night staged (a segment starts and ends
at its stops and follows its shape between them), Lambert-93 checked against pyproj, the QGIS
styles well-formed and drawn on columns the layers have."""

from __future__ import annotations

import json
import sqlite3

import duckdb
import numpy as np
import polars as pl
import pytest
from lxml import etree
from pyproj import Transformer

from citylake.consumers.gis import LAYERS, GisExportError, export_gis
from citylake.consumers.opendata import write_catalog
from citylake.core import duck
from citylake.core.duck import load_extension
from citylake.core.storage import open_storage
from citylake.publish.reader import current, published_views


@pytest.fixture(scope="module")
def views(lake_after_nights):
    settings = lake_after_nights.settings()
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    published_views(con, storage, current(storage))
    return con


def _read() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load_extension(con, "spatial")
    return con


def test_geoparquet_layers_follow_the_gtfs_shapes_from_stop_to_stop(views, lake_after_nights, tmp_path) -> None:
    files = export_gis(views, tmp_path, "geoparquet")
    names = {p.name for p in files}
    for layer in LAYERS:
        assert f"{layer.name}.parquet" in names and f"{layer.name}.qml" in names, names
    meta = json.loads((tmp_path / "layers.json").read_text())
    assert meta["crs"] == "EPSG:4326" and all(v["rows"] > 0 for v in meta["layers"].values())

    con = _read()
    segments = con.sql(
        f"""select from_stop_id, to_stop_id, length_source, length_m,
                   st_x(st_startpoint(geometry)) as x0, st_y(st_startpoint(geometry)) as y0,
                   st_x(st_endpoint(geometry)) as x1, st_y(st_endpoint(geometry)) as y1,
                   [st_x(p.geom) for p in st_dump(st_points(geometry))] as xs,
                   [st_y(p.geom) for p in st_dump(st_points(geometry))] as ys
            from '{tmp_path / "troncons_charge.parquet"}'"""
    ).pl()
    assert segments.height > 100
    # the night's GTFS, as staged: stops and shapes
    staged = lake_after_nights.lake / "staged"
    stops = pl.read_parquet(staged / "gtfs_stops" / "**" / "*.parquet").select(
        "stop_id", pl.col("stop_lon").cast(float), pl.col("stop_lat").cast(float)
    )
    shape_points = pl.read_parquet(staged / "gtfs_shapes" / "**" / "*.parquet").select(
        pl.col("shape_pt_lon").cast(float).round(6), pl.col("shape_pt_lat").cast(float).round(6)
    )
    on_shape = set(shape_points.iter_rows())
    ends = segments.join(stops, left_on="from_stop_id", right_on="stop_id").join(
        stops, left_on="to_stop_id", right_on="stop_id", suffix="_to"
    )
    assert ends.height == segments.height
    # a segment's endpoints are its stops
    assert np.allclose(ends["x0"], ends["stop_lon"], atol=1e-6) and np.allclose(ends["y0"], ends["stop_lat"], atol=1e-6)
    assert np.allclose(ends["x1"], ends["stop_lon_to"], atol=1e-6)
    assert np.allclose(ends["y1"], ends["stop_lat_to"], atol=1e-6)
    # and between them it runs on the shape: every vertex but the stops and their feet is a shape point
    along = segments.filter(pl.col("length_source") == "shape")
    assert along.height > 0.8 * segments.height
    for xs, ys in zip(along["xs"], along["ys"], strict=True):
        inner = {(round(x, 6), round(y, 6)) for x, y in zip(xs[2:-2], ys[2:-2], strict=True)}
        assert inner <= on_shape
    # along the road is longer than as the crow flies
    crow = segments.with_columns(
        (
            6_371_000
            * 2
            * np.arcsin(
                np.sqrt(
                    np.sin(np.radians(pl.col("y1") - pl.col("y0")) / 2) ** 2
                    + np.cos(np.radians(pl.col("y0")))
                    * np.cos(np.radians(pl.col("y1")))
                    * np.sin(np.radians(pl.col("x1") - pl.col("x0")) / 2) ** 2
                )
            )
        ).alias("crow_m")
    )
    shaped = crow.filter(pl.col("length_source") == "shape")
    assert (shaped["length_m"] >= shaped["crow_m"] - 2 * 300).all()
    assert shaped["length_m"].sum() > shaped["crow_m"].sum()


def test_pattern_paths_run_from_their_first_stop_to_their_last(views, tmp_path) -> None:
    export_gis(views, tmp_path, "geoparquet")
    con = _read()
    paths = con.sql(
        f"""select p.pattern_id, p.length_m, p.length_source, st_x(st_startpoint(p.geometry)) as x0,
                   st_y(st_startpoint(p.geometry)) as y0, st_x(st_endpoint(p.geometry)) as x1,
                   st_y(st_endpoint(p.geometry)) as y1, st_x(a.geometry) as ax, st_y(a.geometry) as ay,
                   st_x(b.geometry) as bx, st_y(b.geometry) as by
            from '{tmp_path / "lignes.parquet"}' as p
            join '{tmp_path / "arrets.parquet"}' as a on a.stop_id = p.first_stop_id
            join '{tmp_path / "arrets.parquet"}' as b on b.stop_id = p.last_stop_id"""
    ).pl()
    assert paths.height > 10
    assert np.allclose(paths["x0"], paths["ax"], atol=1e-6) and np.allclose(paths["y0"], paths["ay"], atol=1e-6)
    assert np.allclose(paths["x1"], paths["bx"], atol=1e-6) and np.allclose(paths["y1"], paths["by"], atol=1e-6)
    assert (paths["length_source"] == "shape").mean() > 0.9 and (paths["length_m"] > 0).all()


def test_lambert_93_geopackage_agrees_with_pyproj(views, tmp_path) -> None:
    export_gis(views, tmp_path / "l93", "gpkg", crs=2154)
    export_gis(views, tmp_path / "wgs", "geoparquet")
    con = _read()
    l93 = con.sql(
        f"select stop_id, st_x(geom) as x, st_y(geom) as y from st_read('{tmp_path / 'l93' / 'arrets.gpkg'}')"
    ).pl()
    wgs = con.sql(
        f"select stop_id, st_x(geometry) as lon, st_y(geometry) as lat from '{tmp_path / 'wgs' / 'arrets.parquet'}'"
    ).pl()
    both = l93.join(wgs, on="stop_id")
    assert both.height == wgs.height > 0
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(
        both["lon"].to_numpy(), both["lat"].to_numpy()
    )
    assert np.abs(both["x"].to_numpy() - x).max() < 0.01 and np.abs(both["y"].to_numpy() - y).max() < 0.01
    with sqlite3.connect(tmp_path / "l93" / "arrets.gpkg") as gpkg:
        assert gpkg.execute("select srs_id from gpkg_geometry_columns").fetchall() == [(2154,)]


def test_geojson_is_wgs84_longitude_first_and_refuses_lambert_93(views, tmp_path) -> None:
    export_gis(views, tmp_path, "geojson")
    doc = json.loads((tmp_path / "arrets.geojson").read_text())
    lon, lat = doc["features"][0]["geometry"]["coordinates"]
    stops = views.sql("select stop_lon, stop_lat from mart_stop_usage").fetchall()
    assert any(abs(lon - a) < 1e-6 and abs(lat - b) < 1e-6 for a, b in stops)
    with pytest.raises(GisExportError, match="RFC 7946"):
        export_gis(views, tmp_path / "no", "geojson", crs=2154)


def test_qgis_styles_are_well_formed_and_draw_the_layers_columns(views, tmp_path) -> None:
    export_gis(views, tmp_path, "geoparquet")
    con = _read()
    for layer in LAYERS:
        root = etree.parse(str(tmp_path / f"{layer.name}.qml")).getroot()
        renderer = root.find("renderer-v2")
        columns = {r[0] for r in con.sql(f"describe select * from '{tmp_path / (layer.name + '.parquet')}'").fetchall()}
        assert renderer.get("attr") in columns
        symbols = renderer.findall("symbols/symbol")
        classes = renderer.findall("ranges/range") or renderer.findall("categories/category")
        assert len(symbols) == len(classes) >= 2
    loads = etree.parse(str(tmp_path / "troncons_charge.qml")).getroot()
    widths = [
        float(o.get("value")) for o in loads.iter("Option") if o.get("name") == "line_width"
    ]  # graduated widths for the load
    assert widths == sorted(widths) and widths[-1] > widths[0]


def test_the_analysts_catalog_reads_geometry_columns(lake_after_nights, tmp_path) -> None:
    settings = lake_after_nights.settings()
    storage = open_storage(settings)
    path = tmp_path / "catalog.duckdb"
    write_catalog(path, settings, storage, current(storage))
    con = duckdb.connect(str(path), read_only=True)
    load_extension(con, "spatial")
    for mart in ("dim_stops", "dim_line_patterns", "dim_network_segments", "mart_segment_loads", "mart_segment_speeds"):
        assert con.sql(f"select typeof(geometry) from {mart} limit 1").fetchone()[0] == "GEOMETRY"
