"""Open data: ODbL exports of the published marts, with no personal data.

For each dataset: ``opendata/<dataset>/<publication_id>/data.csv``, ``data.parquet`` and a
Frictionless ``datapackage.json`` (licence ODbL, source, schema), then
``opendata/<dataset>/latest.json`` pointing at it; a map layer (stops, segment loads) is
``data.geojson`` (RFC 7946, WGS84) and ``data.parquet`` (GeoParquet) instead. Rules, each enforced and tested:

* no identifier of a card, pseudonymous or not: only aggregates leave, and any column whose name
  looks like an id of a person is refused outright;
* small counts are suppressed: in a row where a count is below ``k`` (default 10), every count
  and every column derived from one (a load factor is a load over a capacity) becomes empty, so no
  published column gives a suppressed count back; the row says ``is_suppressed`` (k is a
  setting: ``CITYLAKE_OPENDATA_K``);
* text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) are
  neutralised in the CSV with a leading apostrophe, and every text cell is quoted, so a
  spreadsheet that splits lines on ``;`` (French locale) or tabs cannot cut one in two.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage

FORBIDDEN_COLUMNS = re.compile(r"(fare_media|card|serial|pseudonym|rider|person|email|phone)", re.IGNORECASE)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: also tab and CR
LICENSE = {
    "name": "ODbL-1.0",
    "title": "Open Data Commons Open Database License 1.0",
    "path": "https://opendatacommons.org/licenses/odbl/1-0/",
}


@dataclass(frozen=True)
class OpenDataset:
    name: str
    title: str
    description: str
    sql: str  # over the published views
    count_columns: tuple[str, ...]  # counts of people, suppressed below k
    derived_columns: tuple[str, ...] = ()  # computed from a count: blanked with it
    geometry: bool = False  # a map layer: GeoJSON (RFC 7946) and GeoParquet instead of CSV and Parquet


DATASETS = (
    OpenDataset(
        "ridership_per_stop_month",
        "Fréquentation estimée par arrêt et par mois",
        "Montées et descentes estimées (validations redressées par les comptages) par arrêt et par mois.",
        """select date_trunc('month', service_date)::date as month, stop_id, any_value(stop_name) as stop_name,
                  round(sum(boardings_estimated)) as boardings, round(sum(alightings_estimated)) as alightings
           from fct_stop_visit_loads group by all order by month, stop_id""",
        ("boardings", "alightings"),
    ),
    OpenDataset(
        "load_profiles_per_line",
        "Profils de charge par ligne (serpents de charge)",
        "Charge moyenne et 90e centile à bord, arrêt par arrêt, par ligne, sens, mois, version du réseau, "
        "type de jour et tranche horaire.",
        """select route_short_name, direction_id, month, feed_version, stop_sequence, stop_id, stop_name,
                  day_type, time_band,
                  trips_observed, round(mean_boardings, 1) as mean_boardings, round(mean_alightings, 1) as
                  mean_alightings,
                  round(mean_load, 1) as mean_load, round(p90_load, 1) as p90_load, round(load_factor, 3) as load_factor
           from mart_bus_load_profile order by all""",
        ("mean_boardings", "mean_alightings", "mean_load", "p90_load"),
        ("load_factor",),
    ),
    OpenDataset(
        "parking_occupancy_hourly",
        "Occupation horaire des parcs de stationnement",
        "Taux d'occupation moyen et maximal par parc et par heure, hors relevés anormaux.",
        """select operator, facility_id, facility_name, service_date, local_hour, capacity,
                  round(mean_occupancy_rate, 3) as mean_occupancy_rate, round(peak_occupancy_rate, 3) as
                  peak_occupancy_rate,
                  round(completeness, 3) as completeness
           from mart_parking_occupancy_hourly order by all""",
        (),
    ),
    OpenDataset(
        "service_delivered",
        "Offre réalisée par ligne et par jour",
        "Courses et kilomètres programmés et réalisés par ligne et par jour.",
        """select service_date, route_short_name, trips_scheduled, trips_run, round(km_scheduled, 1) as km_scheduled,
                  round(km_run, 1) as km_run, round(offer_delivered_rate, 4) as offer_delivered_rate
           from mart_service_delivered order by all""",
        (),
    ),
    OpenDataset(
        "stops_use_map",
        "Carte de la fréquentation des arrêts",
        "Montées et descentes estimées par jour en moyenne, par arrêt et par mois, avec la position de l'arrêt "
        "(GeoJSON WGS84, GeoParquet).",
        """select month, stop_id, stop_name, round(mean_daily_boardings, 1) as mean_daily_boardings,
                  round(mean_daily_alightings, 1) as mean_daily_alightings, is_rarely_used, geometry
           from mart_stop_usage where geometry is not null order by month, stop_id""",
        ("mean_daily_boardings", "mean_daily_alightings"),
        geometry=True,
    ),
    OpenDataset(
        "segment_loads_map",
        "Carte des charges par tronçon (serpents de charge le long du tracé)",
        "Charge moyenne et 90e centile à bord entre deux arrêts consécutifs, par ligne, sens, mois, type de jour "
        "et tranche horaire, avec le tracé du tronçon (GeoJSON WGS84, GeoParquet).",
        """select month, route_short_name, direction_id, day_type, time_band, from_stop_id, from_stop_name,
                  to_stop_id, to_stop_name, trips_observed, round(mean_load, 1) as mean_load,
                  round(p90_load, 1) as p90_load, round(load_factor, 3) as load_factor,
                  round(length_m) as length_m, geometry
           from mart_segment_loads where geometry is not null order by all""",
        ("mean_load", "p90_load"),
        ("load_factor",),
        geometry=True,
    ),
)


def suppress(frame: pl.DataFrame, columns: tuple[str, ...], k: int, derived: tuple[str, ...] = ()) -> pl.DataFrame:
    """Flag the rows where a count is below k, and blank every count and derived column of those
    rows: a count left beside a blanked one, or a rate over a published capacity, would give it
    back."""
    if not columns:
        return frame.with_columns(pl.lit(False).alias("is_suppressed"))
    small = pl.any_horizontal([(pl.col(c) < k) & pl.col(c).is_not_null() for c in columns])
    return frame.with_columns(small.alias("is_suppressed")).with_columns(
        pl.when(pl.col("is_suppressed")).then(None).otherwise(pl.col(c)).alias(c) for c in (*columns, *derived)
    )


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix text cells a spreadsheet would evaluate (= + - @) with an apostrophe."""
    starts = "".join(re.escape(s) for s in FORMULA_START)
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(f"^[{starts}]")).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c, t in frame.schema.items()
        if t == pl.Utf8
    )


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    """The CSV of an export: formulas neutralised, every text cell quoted (a spreadsheet splitting
    on ';' or tabs keeps each cell whole), numbers bare."""
    neutralise_formulas(frame).write_csv(path, quote_style="non_numeric")


def _field_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or dtype.is_decimal():
        return "number"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "string"


def export(storage: LakeStorage, con: duckdb.DuckDBPyConnection, publication_id: str, k: int = 10) -> list[str]:
    """Write every open dataset of the publication the views of ``con`` show; return the keys."""
    written = []
    for ds in DATASETS:
        try:
            frame = con.sql(ds.sql).pl()
        except duckdb.Error:
            continue  # the mart is not published (yet)
        bad = [c for c in frame.columns if FORBIDDEN_COLUMNS.search(c)]
        if bad:
            raise ValueError(f"open dataset {ds.name} would expose identifying columns {bad}")
        frame = suppress(frame, ds.count_columns, k, ds.derived_columns)
        folder = f"{ds.name}/{publication_id}"
        fields = [{"name": c, "type": _field_type(t)} for c, t in frame.schema.items()]
        with tempfile.TemporaryDirectory() as tmp:
            if ds.geometry:
                files, resources = _write_layer(con, frame, Path(tmp), fields)
            else:
                files, resources = _write_table(frame, Path(tmp), fields)
            for path in files:
                put = storage.put_file(key(Zone.OPENDATA, folder, filename=path.name), path, overwrite=True)
                written.append(put.key)
        package = {
            "name": ds.name.replace("_", "-"),
            "title": ds.title,
            "description": ds.description + f" Les effectifs inférieurs à {k} sont masqués (is_suppressed).",
            "licenses": [LICENSE],
            "sources": [{"title": "citylake, publication " + publication_id}],
            "resources": resources,
        }
        written.append(
            storage.put_json(key(Zone.OPENDATA, folder, filename="datapackage.json"), package, overwrite=True).key
        )
        storage.put_json(
            key(Zone.OPENDATA, ds.name, filename="latest.json"),
            {"publication_id": publication_id, "folder": folder},
            overwrite=True,
        )
    return written


def _write_table(frame: pl.DataFrame, tmp: Path, fields: list[dict]) -> tuple[list[Path], list[dict]]:
    """A table: CSV (formulas neutralised) and Parquet."""
    csv_path, pq_path = tmp / "data.csv", tmp / "data.parquet"
    write_csv(frame, csv_path)
    frame.write_parquet(pq_path)
    resources = [
        {
            "name": "data-csv",
            "path": "data.csv",
            "format": "csv",
            "mediatype": "text/csv",
            "encoding": "utf-8",
            "schema": {"fields": fields},
        },
        {"name": "data-parquet", "path": "data.parquet", "format": "parquet"},
    ]
    return [csv_path, pq_path], resources


def _write_layer(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, tmp: Path, fields: list[dict]
) -> tuple[list[Path], list[dict]]:
    """A map layer: GeoJSON (RFC 7946, WGS84 longitude first) and GeoParquet."""
    from citylake.core.duck import load_extension

    load_extension(con, "spatial")
    con.register("open_layer", neutralise_formulas(frame).to_arrow())
    select = "select * exclude (geometry), st_geomfromwkb(geometry) as geometry from open_layer"
    geojson, parquet = tmp / "data.geojson", tmp / "data.parquet"
    try:
        con.execute(
            f"copy ({select}) to '{geojson}' "
            "(format gdal, driver 'GeoJSON', srs 'OGC:CRS84', layer_creation_options 'RFC7946=YES')"
        )
        con.execute(f"copy ({select}) to '{parquet}' (format parquet, compression zstd)")
    finally:
        con.unregister("open_layer")
    geo_fields = [{**f, "type": "geojson"} if f["name"] == "geometry" else f for f in fields]
    resources = [
        {
            "name": "data-geojson",
            "path": "data.geojson",
            "format": "geojson",
            "mediatype": "application/geo+json",
            "schema": {"fields": geo_fields},
        },
        {"name": "data-geoparquet", "path": "data.parquet", "format": "parquet"},
    ]
    return [geojson, parquet], resources


def write_catalog(path: Path, settings: Settings, storage: LakeStorage, pointer: dict) -> list[str]:
    """Write a DuckDB database of views over the published marts, for analysts (open it read-only).

    On S3 the views are bound through the lake's credentials as a session secret, which DuckDB
    never writes into the file: analysts open it with their own read-only secret."""
    from citylake.core import duck
    from citylake.publish.reader import published_views

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    con = duck.connect(settings, storage, str(tmp))
    try:
        names = published_views(con, storage, pointer, geometry=True)
        con.execute(
            "create table publication_in_force (group_name varchar, publication_id varchar, published_at varchar)"
        )
        rows = [(g, e["publication_id"], e.get("published_at")) for g, e in pointer.get("groups", {}).items()]
        if rows:
            con.executemany("insert into publication_in_force values (?, ?, ?)", rows)
    finally:
        con.close()
    os.replace(tmp, path)
    return names
