"""The published marts as map layers for the city's GIS team (issue #34).

``citylake export gis --format geoparquet|gpkg|geojson [--crs 2154] [--month YYYY-MM] --out DIR``
writes one file per layer of one month, each with a QGIS style beside it (``<layer>.qml``, which
QGIS applies when it opens the layer):

* ``lignes`` — each line pattern's path (the network versions in force that month), from
  ``dim_line_patterns``;
* ``arrets`` — stops with their mean daily boardings and alightings (points; the rarely used ones
  in red), from ``mart_stop_usage``;
* ``troncons_charge`` — the serpent de charge along the route: load per segment between
  consecutive stops, per line, direction, day type and time band (lines, width ∝ load), from
  ``mart_segment_loads``;
* ``troncons_vitesse`` — running speed per segment (lines, red = slow to green = fast), from
  ``mart_segment_speeds``;
* ``parcs`` — car parks with their month's mean and peak occupancy and hours saturated (points),
  from ``mart_parking_occupancy_monthly``.

Geometry is stored in the marts as WKB in WGS84; the layers are written in WGS84, or in
Lambert-93 (EPSG:2154) when asked, by DuckDB's spatial extension (PROJ; checked against pyproj
in the tests). GeoParquet carries its CRS in its metadata (PROJJSON; none means OGC:CRS84),
GeoPackage in its SRS table. GeoJSON is WGS84 by its standard (RFC 7946): Lambert-93 is refused
for it with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
from lxml import etree

from citylake.core.duck import load_extension

FORMATS = {"geoparquet": "parquet", "gpkg": "gpkg", "geojson": "geojson"}
CRS = {4326: "EPSG:4326", 2154: "EPSG:2154"}


class GisExportError(ValueError):
    """An export that cannot be written as asked (the reason is the message)."""


@dataclass(frozen=True)
class Layer:
    name: str
    title: str
    mart: str
    sql: str  # over the published views; ``?`` is the month; has a WKB column ``geometry``
    style: Callable[[duckdb.DuckDBPyConnection, str], bytes]  # QML from the written rows' table


# -- QGIS styles -----------------------------------------------------------------------------

RED_TO_GREEN = ("215,25,28", "253,174,97", "255,255,191", "166,217,106", "26,150,65")
SPEED_BREAKS_KMH = (0.0, 10.0, 15.0, 20.0, 30.0, 200.0)  # fixed bins, the same map every month


def _option(parent: etree._Element, name: str, value: str) -> None:
    etree.SubElement(parent, "Option", name=name, type="QString", value=value)


def _symbol(symbols: etree._Element, index: int, kind: str, color: str, size: float) -> None:
    symbol = etree.SubElement(
        symbols, "symbol", type=kind, name=str(index), alpha="1", clip_to_extent="1", force_rhr="0"
    )
    attrs = {"class": "SimpleLine" if kind == "line" else "SimpleMarker", "enabled": "1", "locked": "0", "pass": "0"}
    layer = etree.SubElement(symbol, "layer", attrs)
    options = etree.SubElement(layer, "Option", type="Map")
    if kind == "line":
        _option(options, "line_color", f"{color},255")
        _option(options, "line_width", f"{size:.2f}")
        _option(options, "line_width_unit", "MM")
        _option(options, "capstyle", "round")
        _option(options, "joinstyle", "round")
    else:
        _option(options, "name", "circle")
        _option(options, "color", f"{color},255")
        _option(options, "outline_color", "35,35,35,255")
        _option(options, "outline_width", "0.2")
        _option(options, "size", f"{size:.2f}")
        _option(options, "size_unit", "MM")


def _document(renderer: etree._Element) -> bytes:
    root = etree.Element("qgis", version="3.34.0", styleCategories="Symbology")
    root.append(renderer)
    body = etree.tostring(root, pretty_print=True, encoding="utf-8")
    return b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body


def graduated_qml(
    attribute: str, breaks: list[float], kind: str, colors: list[str], sizes: list[float], unit: str = ""
) -> bytes:
    """A QGIS graduated renderer on ``attribute``: one class per pair of breaks, each with its
    colour and width (lines) or size (points)."""
    renderer = etree.Element(
        "renderer-v2",
        type="graduatedSymbol",
        attr=attribute,
        graduatedMethod="GraduatedColor",
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
    )
    ranges = etree.SubElement(renderer, "ranges")
    symbols = etree.SubElement(renderer, "symbols")
    for i, (low, high) in enumerate(zip(breaks[:-1], breaks[1:], strict=True)):
        label = f"{low:g} – {high:g}{unit}" if i < len(breaks) - 2 else f"≥ {low:g}{unit}"
        etree.SubElement(
            ranges, "range", lower=f"{low:.6f}", upper=f"{high:.6f}", symbol=str(i), label=label, render="true"
        )
        _symbol(symbols, i, kind, colors[i], sizes[i])
    return _document(renderer)


def categorized_qml(attribute: str, categories: list[tuple[str, str, str]], kind: str, size: float) -> bytes:
    """A QGIS categorized renderer: (value, label, colour) per category."""
    renderer = etree.Element(
        "renderer-v2", type="categorizedSymbol", attr=attribute, symbollevels="0", enableorderby="0", forceraster="0"
    )
    cats = etree.SubElement(renderer, "categories")
    symbols = etree.SubElement(renderer, "symbols")
    for i, (value, label, color) in enumerate(categories):
        etree.SubElement(cats, "category", value=value, symbol=str(i), label=label, render="true")
        _symbol(symbols, i, kind, color, size)
    return _document(renderer)


def _quantile_breaks(con: duckdb.DuckDBPyConnection, table: str, column: str, classes: int = 5) -> list[float]:
    """Class breaks at the quantiles of a column (at least two distinct values)."""
    qs = ", ".join(f"quantile_cont({column}, {i / classes})" for i in range(classes + 1))
    row = con.execute(f"select {qs} from {table} where {column} is not null").fetchone()
    values = sorted({round(float(v), 1) for v in row if v is not None})
    if len(values) < 2:
        values = [values[0] if values else 0.0, (values[0] if values else 0.0) + 1.0]
    return values


def _load_style(con: duckdb.DuckDBPyConnection, table: str) -> bytes:
    breaks = _quantile_breaks(con, table, "mean_load")
    n = len(breaks) - 1
    widths = [0.4 + 2.6 * i / max(n - 1, 1) for i in range(n)]
    return graduated_qml("mean_load", breaks, "line", ["31,120,180"] * n, widths, " voyageurs")


def _speed_style(con: duckdb.DuckDBPyConnection, table: str) -> bytes:
    n = len(SPEED_BREAKS_KMH) - 1
    return graduated_qml("median_speed_kmh", list(SPEED_BREAKS_KMH), "line", list(RED_TO_GREEN), [1.2] * n, " km/h")


def _pattern_style(con: duckdb.DuckDBPyConnection, table: str) -> bytes:
    breaks = _quantile_breaks(con, table, "trips", classes=4)
    n = len(breaks) - 1
    widths = [0.3 + 1.5 * i / max(n - 1, 1) for i in range(n)]
    return graduated_qml("trips", breaks, "line", ["90,90,90"] * n, widths, " courses")


def _stop_style(con: duckdb.DuckDBPyConnection, table: str) -> bytes:
    return categorized_qml(
        "is_rarely_used",
        [("true", "arrêt peu utilisé", "215,25,28"), ("false", "arrêt", "31,120,180")],
        "marker",
        2.0,
    )


def _parking_style(con: duckdb.DuckDBPyConnection, table: str) -> bytes:
    breaks = [0.0, 0.5, 0.75, 0.9, 1.0, 10.0]
    return graduated_qml(
        "peak_occupancy_rate", breaks, "marker", list(reversed(RED_TO_GREEN)), [2.0, 2.5, 3.0, 3.5, 4.0]
    )


LAYERS = (
    Layer(
        "lignes",
        "Tracés des lignes (un par itinéraire : ligne, sens, tracé, arrêts)",
        "dim_line_patterns",
        """select feed_version, pattern_id, route_short_name, direction_id, trips, stops, first_stop_id,
                  last_stop_id, round(length_m) as length_m, length_source, shape_status, geometry
           from dim_line_patterns
           where feed_version in (select feed_version from mart_segment_loads where month = ?)""",
        _pattern_style,
    ),
    Layer(
        "arrets",
        "Fréquentation des arrêts (moyenne par jour du mois)",
        "mart_stop_usage",
        """select month, stop_id, stop_name, service_dates, round(mean_daily_boardings, 1) as mean_daily_boardings,
                  round(mean_daily_alightings, 1) as mean_daily_alightings, is_rarely_used, geometry
           from mart_stop_usage where month = ?""",
        _stop_style,
    ),
    Layer(
        "troncons_charge",
        "Charge par tronçon (serpent de charge le long du tracé)",
        "mart_segment_loads",
        """select month, route_short_name, direction_id, day_type, time_band, from_stop_id, from_stop_name,
                  to_stop_id, to_stop_name, trips_observed, round(mean_load, 1) as mean_load,
                  round(p90_load, 1) as p90_load, round(mean_capacity, 1) as mean_capacity,
                  round(load_factor, 3) as load_factor, round(length_m) as length_m, length_source, geometry
           from mart_segment_loads where month = ?""",
        _load_style,
    ),
    Layer(
        "troncons_vitesse",
        "Vitesse de marche par tronçon (médiane et 20e centile)",
        "mart_segment_speeds",
        """select month, route_short_name, direction_id, day_type, time_band, from_stop_id, from_stop_name,
                  to_stop_id, to_stop_name, observations, round(median_speed_kmh, 1) as median_speed_kmh,
                  round(p20_speed_kmh, 1) as p20_speed_kmh, round(length_m) as length_m, length_source, geometry
           from mart_segment_speeds where month = ?""",
        _speed_style,
    ),
    Layer(
        "parcs",
        "Occupation des parcs de stationnement (mois)",
        "mart_parking_occupancy_monthly",
        """select month, operator, facility_id, facility_name, days_observed,
                  round(mean_occupancy_rate, 3) as mean_occupancy_rate,
                  round(peak_occupancy_rate, 3) as peak_occupancy_rate, hours_saturated, geometry
           from mart_parking_occupancy_monthly where month = ?""",
        _parking_style,
    ),
)


def latest_month(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest month of the published segment loads (else stop use), or None."""
    for mart in ("mart_segment_loads", "mart_stop_usage"):
        try:
            value = con.execute(f"select max(month) from {mart}").fetchone()[0]
        except duckdb.Error:
            continue
        if value is not None:
            return value
    return None


def geometry_sql(crs: int) -> str:
    """The expression turning the marts' WKB (WGS84, longitude first) into the layer's geometry."""
    if crs == 4326:
        return "st_geomfromwkb(geometry)"
    return (
        f"st_setcrs(st_transform(st_geomfromwkb(geometry), 'EPSG:4326', '{CRS[crs]}', always_xy := true), '{CRS[crs]}')"
    )


def export_gis(
    con: duckdb.DuckDBPyConnection, out: Path, fmt: str, crs: int = 4326, month: date | None = None, source: str = ""
) -> list[Path]:
    """Write every layer (and its QGIS style) of one month into ``out``; return the files written.

    ``con`` has the published marts as views (``published_views``). A layer whose mart is not
    published, or has no row with a place that month, is left out and named in ``layers.json``.
    Files are written to a temporary folder first and moved in whole."""
    if fmt not in FORMATS:
        raise GisExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if crs not in CRS:
        raise GisExportError(f"--crs {crs}: expected 4326 (WGS84) or 2154 (Lambert-93)")
    if fmt == "geojson" and crs != 4326:
        raise GisExportError(
            "GeoJSON is WGS84 by its standard (RFC 7946): use --format geoparquet or gpkg for Lambert-93"
        )
    load_extension(con, "spatial")
    month = month or latest_month(con)
    if month is None:
        raise GisExportError("nothing to draw: no published month of segment loads or stop use")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest = {"source": source, "month": month.isoformat(), "crs": CRS[crs], "format": fmt, "layers": {}}
    with tempfile.TemporaryDirectory(prefix="citylake-gis-", dir=out) as tmp:
        for layer in LAYERS:
            table = f"gis_{layer.name}"
            try:
                con.execute(
                    f"create or replace temp table {table} as "
                    f"select * exclude (geometry), {geometry_sql(crs)} as geometry "
                    f"from ({layer.sql}) where geometry is not null",
                    [month],
                )
            except duckdb.CatalogException:
                manifest["layers"][layer.name] = {"title": layer.title, "rows": 0, "why_not": "not published"}
                continue
            rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            if not rows:
                manifest["layers"][layer.name] = {"title": layer.title, "rows": 0, "why_not": f"none in {month:%Y-%m}"}
                continue
            target = Path(tmp) / f"{layer.name}.{FORMATS[fmt]}"
            if fmt == "geoparquet":
                con.execute(f"copy {table} to '{target}' (format parquet, compression zstd)")
            else:
                # GeoJSON: OGC:CRS84 (longitude first) — EPSG:4326 would make GDAL swap the axes
                driver, srs, options = (
                    ("GPKG", CRS[crs], f"layer_name '{layer.name}'")
                    if fmt == "gpkg"
                    else ("GeoJSON", "OGC:CRS84", "layer_creation_options 'RFC7946=YES'")
                )
                con.execute(f"copy {table} to '{target}' (format gdal, driver '{driver}', srs '{srs}', {options})")
            (Path(tmp) / f"{layer.name}.qml").write_bytes(layer.style(con, table))
            manifest["layers"][layer.name] = {"title": layer.title, "rows": rows, "mart": layer.mart}
            con.execute(f"drop table {table}")
        (Path(tmp) / "layers.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        for path in sorted(Path(tmp).iterdir()):
            final = out / path.name
            if final.exists():
                final.unlink() if final.is_file() else shutil.rmtree(final)
            os.replace(path, final)
            written.append(final)
    return written
