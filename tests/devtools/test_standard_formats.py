"""The same simulated day delivered twice, as vendor files and in the standards (offer in NeTEx,
ticketing in TIDES, AVL in GTFS-RT or SIRI), read through YAML only: the staged rows and the
marts must agree, and the accuracy against the truth must be the same.

Where a standard carries less, the tolerance is stated and measured here:

* GTFS-RT TripUpdates carry no scheduled times: they come from the published offer, whose
  consecutive stops share a minute where the operator's SAE spreads them. Punctuality is measured
  against the offer, so it moves (measured: −0.38 point of the punctuality KPI on this day);
  SIRI ET carries the aimed times, and its passages equal the vendor's.
* Neither TripUpdates nor SIRI ET carries an odometer: vehicle km are the scheduled km of the
  trips each vehicle ran (no runs between trips), so the fleet's km are lower (measured −7.6 %).
* The NeTEx offer carries no route geometry (no ``ServiceLink`` projection, as the real French
  sample has none): every distance of the standard path is the straight line × road_factor where
  the vendor's GTFS measures along its shapes (issue #34). The distance columns (km, metres,
  speeds, paths) and the KPI on km (offer delivered) are compared apart: the rest is equal.
"""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from citylake.build.dbt import build
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from devtools import SAMPLE_NETWORK
from devtools.evaluate import evaluate
from devtools.simulator.run import SimulationConfig, simulate
from ingestion.run import ingest

DAY = date(2026, 3, 30)
KEY = "standard-formats-test-key-0123456789"
LINEAGE = ("operator", "source_sha256", "source_row", "observation", "invalid_reason")


def _settings(mp: pytest.MonkeyPatch, base: Path, drop: Path, config: Path | None) -> Settings:
    if config is not None:
        mp.setenv("CITYLAKE_CONFIG_DIR", str(config))
    mp.setenv("CITYLAKE_LAKE_URI", (base / "lake").as_uri())
    mp.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    mp.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    mp.setenv("CITYLAKE_WAREHOUSE", str(base / "warehouse.duckdb"))
    return Settings()


def _world(tmp_path_factory, name: str, formats: str, avl_format: str = "gtfs_rt", build_marts: bool = True) -> dict:
    base = tmp_path_factory.mktemp(name)
    drop = base / "drop"
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=DAY,
            days=1,
            out=drop,
            seed=11,
            progress=False,
            formats=formats,
            avl_format=avl_format,
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        settings = _settings(mp, base, drop, drop / "config" if formats == "standard" else None)
        report = ingest(settings, progress=False)
        assert report.ok and not any(f.quarantined for f in report.feeds), report.lines()
        warehouse = None
        if build_marts:
            result = build(settings)
            assert result.success, [(r["node"], r["message"]) for r in result.failures]
            warehouse = result.warehouse
    return {"drop": drop, "lake": base / "lake", "warehouse": warehouse, "settings": settings}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory) -> dict:
    return _world(tmp_path_factory, "vendor", "vendor")


@pytest.fixture(scope="module")
def gtfs_rt(tmp_path_factory) -> dict:
    return _world(tmp_path_factory, "standard_gtfs_rt", "standard")


@pytest.fixture(scope="module")
def siri(tmp_path_factory) -> dict:
    return _world(tmp_path_factory, "standard_siri", "standard", "siri", build_marts=False)


def staged(world: dict, dataset: str) -> pl.DataFrame:
    storage = open_storage(world["settings"])
    keys = [i.key for i in storage.list(f"staged/{dataset}/") if i.key.endswith(".parquet")]
    return pl.concat([pl.read_parquet(io.BytesIO(storage.get_bytes(k))) for k in keys], how="diagonal_relaxed")


def same_rows(a: pl.DataFrame, b: pl.DataFrame, drop: tuple[str, ...] = ()) -> None:
    columns = [c for c in a.columns if c in b.columns and c not in LINEAGE + drop]
    left = a.select(columns).sort(columns, nulls_last=True)
    right = b.select(columns).cast(dict(left.schema)).sort(columns, nulls_last=True)
    assert left.height == right.height
    for column in columns:
        assert left[column].equals(right[column]), column


def test_the_standard_drop_is_what_real_producers_deliver(gtfs_rt, siri) -> None:
    bus = gtfs_rt["drop"] / "bus"
    assert (bus / "gtfs" / "offre_netex_cairns_gtfs-x1-20260330.zip").exists()
    assert (
        (bus / "ticketing" / "fare_transactions_2026-03-30.csv")
        .read_text()
        .startswith(
            "transaction_id,service_date,event_timestamp,amount,currency_type,fare_action,fare_product_id,fare_media_id"
        )
    )
    assert (bus / "avl" / "tripupdates_2026-03-30.zip").exists()
    assert (siri["drop"] / "bus" / "avl" / "siri_et_2026-03-30.xml").read_bytes().count(
        b"<EstimatedVehicleJourney>"
    ) > 500
    contracts = sorted(p.name for p in (gtfs_rt["drop"] / "config" / "contracts").iterdir())
    assert contracts == ["bus__avl.v1.yaml", "bus__gtfs.v1.yaml", "bus__ticketing.v1.yaml"]


def test_the_netex_offer_stages_the_gtfs_tables_of_the_vendor_offer(vendor, gtfs_rt) -> None:
    for table in ("stops", "routes", "trips", "stop_times", "calendar_dates"):
        a, b = staged(vendor, f"gtfs_{table}"), staged(gtfs_rt, f"gtfs_{table}")
        # the GTFS columns the NeTEx reader fills (not stop_code, route_url, block_id, shape_id,
        # pickup_type…), but the operator: a NeTEx line always names one, the sample GTFS has no agency_id
        carried = [c for c in b.columns if b[c].null_count() < b.height and c != "agency_id"]
        assert {"stop_id", "trip_id", "route_id", "service_id"} & set(carried)
        same_rows(a.select(c for c in carried if c in a.columns), b.select(carried))


def test_tides_ticketing_stages_the_vendor_validations(vendor, gtfs_rt) -> None:
    a, b = staged(vendor, "fare_transactions"), staged(gtfs_rt, "fare_transactions")
    assert a.height == b.height > 10_000
    same_rows(a, b)  # pseudonyms included: the same card gives the same pseudonym


def test_passages_from_gtfs_rt_and_siri_equal_the_vendor_avl(vendor, gtfs_rt, siri) -> None:
    a = staged(vendor, "stop_visits").filter("is_valid")
    b = staged(gtfs_rt, "stop_visits")
    c = staged(siri, "stop_visits")
    for standard in (b, c):
        skipped = standard.filter(~pl.col("is_valid"))
        assert set(skipped["observation"]) == {"skipped"}  # detour stops, kept invalid with the reason
        assert standard.filter("is_valid")["observation"].unique().to_list() == ["recorded"]
        assert standard.filter("is_valid")["odometer_km"].null_count() == standard.filter("is_valid").height
    same_rows(a, c.filter("is_valid"), drop=("odometer_km",))
    # GTFS-RT: scheduled times from the offer (minute resolution), so they are left out here
    same_rows(a, b.filter("is_valid"), drop=("odometer_km", "schedule_arrival_time", "schedule_departure_time"))


def marts(warehouse: Path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        names = [
            r[0]
            for r in con.sql(
                "select table_name from information_schema.tables "
                "where table_name like 'mart_%' or table_name like 'fct_%' or table_name like 'dim_%'"
            ).fetchall()
        ]
        return {n: con.sql(f"select * from {n}").pl() for n in names}
    finally:
        con.close()


def assert_close(a: pl.DataFrame, b: pl.DataFrame, name: str) -> None:
    versions = [c for c in a.columns if "sha256" in c or "feed_version" in c]
    a, b = a.drop(versions), b.drop(versions)
    floats = [c for c, t in a.schema.items() if t.is_float()]
    keys = [c for c in a.columns if c not in floats]
    joined = a.join(b, on=keys, how="full", suffix="_std", nulls_equal=True, coalesce=True)
    assert joined.height == a.height == b.height, f"{name}: rows differ"
    for c in floats:
        gap = (joined[c] - joined[f"{c}_std"]).abs()
        assert (gap.fill_null(0) <= 1e-9 * joined[c].abs().fill_null(0).clip(1)).all(), f"{name}.{c}"
        assert joined[c].is_null().equals(joined[f"{c}_std"].is_null()), f"{name}.{c} nulls"


#: Columns measured along the GTFS shapes in the vendor path (km, metres, speeds, paths and what
#: rests on them, and the patterns, each a shape and its stops): the NeTEx offer has no geometry
#: (module docstring).
DISTANCE = re.compile(r"km|_m$|speed|length|geometry|shape|pattern|offer_delivered|observations")


def test_marts_from_standard_inputs_match_the_vendor_marts(vendor, gtfs_rt) -> None:
    a, b = marts(vendor["warehouse"]), marts(gtfs_rt["warehouse"])
    assert set(a) == set(b)
    tolerated = {
        "mart_punctuality",
        "mart_maintenance_monthly",
        "mart_contract_kpis",
        "mart_contract_kpis_daily",
        "fct_contract_kpi_values_monthly",
        "fct_contract_figures_recomputed_monthly",
        "mart_contract_reconciliation",
        "fct_reconciliation_evidence",
    }
    for name in sorted(set(a) - tolerated - {"dim_line_patterns"}):
        left, right = a[name], b[name]
        if name == "fct_stop_visit_loads":  # scheduled times: see the module docstring
            left, right = left.drop("scheduled_departure_at"), right.drop("scheduled_departure_at")
        far = [c for c in left.columns if DISTANCE.search(c)]  # along the shape / straight line x road_factor
        assert_close(left.drop(far), right.drop(far), name)
    # a pattern is a shape and its stops: the vendor's patterns that differ only by their shape
    # are one in the NeTEx offer; the same runs of stops, the same trips
    runs = ["route_short_name", "direction_id", "first_stop_id", "last_stop_id", "stops"]
    assert set(a["dim_line_patterns"].select(runs).iter_rows()) == set(b["dim_line_patterns"].select(runs).iter_rows())
    assert a["dim_line_patterns"]["trips"].sum() == b["dim_line_patterns"]["trips"].sum()
    # the vendor's GTFS has shapes, the NeTEx offer none: measured along them, and not
    segments_vendor, segments_std = a["dim_network_segments"], b["dim_network_segments"]
    assert (segments_vendor["length_source"] == "shape").mean() > 0.9
    assert set(segments_std["length_source"]) == {"straight_line_x_road_factor"}
    assert set(segments_std["shape_status"]) == {"no_shape"}
    km_vendor = a["mart_service_delivered"]["km_scheduled"].sum()
    km_std = b["mart_service_delivered"]["km_scheduled"].sum()
    assert 0.85 * km_vendor < km_std < 1.15 * km_vendor

    def kpis(frame: pl.DataFrame) -> dict[tuple[str, str], float]:
        return {(r["operator"], r["kpi_code"]): r["value"] for r in frame.iter_rows(named=True)}

    vendor_kpis, standard_kpis = kpis(a["mart_contract_kpis"]), kpis(b["mart_contract_kpis"])
    assert set(vendor_kpis) == set(standard_kpis)
    for key, value in vendor_kpis.items():
        if key[1] not in ("PUNCTUALITY", "OFFER_DELIVERED"):
            assert standard_kpis[key] == pytest.approx(value, rel=1e-9), key
    assert abs(standard_kpis[("bus", "PUNCTUALITY")] - vendor_kpis[("bus", "PUNCTUALITY")]) < 0.01
    # km run / km scheduled: trips weigh by their km, along the shape or not
    assert abs(standard_kpis[("bus", "OFFER_DELIVERED")] - vendor_kpis[("bus", "OFFER_DELIVERED")]) < 0.005

    # the declared figures' recomputation and its evidence: equal but for punctuality (above)
    for name in ("fct_contract_figures_recomputed_monthly", "mart_contract_reconciliation"):
        keep = ~pl.col("figure_code").is_in(["ponctualite", "taux_realisation_offre"]) & ~pl.col(
            "figure_code"
        ).str.starts_with("km_")
        assert_close(a[name].filter(keep), b[name].filter(keep), name)
    keep = (pl.col("evidence_kind") != "departures_outside_window") & (pl.col("unit") != "km")
    assert_close(
        a["fct_reconciliation_evidence"].filter(keep), b["fct_reconciliation_evidence"].filter(keep), "evidence"
    )
    on_km = pl.col("unit") == "km"  # the same trips, their km measured differently
    assert_close(
        a["fct_reconciliation_evidence"].filter(on_km).drop("quantity"),
        b["fct_reconciliation_evidence"].filter(on_km).drop("quantity"),
        "evidence in km",
    )

    daily = "mart_contract_kpis_daily"
    on_km = pl.col("kpi_code").is_in(["PUNCTUALITY", "OFFER_DELIVERED"])
    assert_close(a[daily].filter(~on_km), b[daily].filter(~on_km), daily)

    km_vendor, km_std = a["mart_maintenance_monthly"]["km"].sum(), b["mart_maintenance_monthly"]["km"].sum()
    assert 0.85 * km_vendor <= km_std <= km_vendor  # scheduled km of the trips run: no runs between trips
    assert_close(
        a["mart_maintenance_monthly"].drop("km", "km_between_failures", "cost_per_km_eur"),
        b["mart_maintenance_monthly"].drop("km", "km_between_failures", "cost_per_km_eur"),
        "mart_maintenance_monthly",
    )


def test_evaluate_gives_the_same_accuracy_on_standard_inputs(vendor, gtfs_rt) -> None:
    tz = vendor["settings"].timezone
    figures = evaluate(vendor["drop"], vendor["warehouse"], tz)
    assert figures["load_profile_cells"] > 1000
    # equal up to the order floating-point sums are taken in
    assert evaluate(gtfs_rt["drop"], gtfs_rt["warehouse"], tz) == pytest.approx(figures, rel=1e-9)


def test_faults_are_refused_with_standard_formats(tmp_path) -> None:
    with pytest.raises(ValueError, match="vendor formats only"):
        simulate(
            SimulationConfig(
                network=SAMPLE_NETWORK, start=DAY, days=1, out=tmp_path, faults=("missing_day",), formats="standard"
            )
        )
