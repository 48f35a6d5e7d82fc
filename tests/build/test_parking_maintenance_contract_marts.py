"""Parking, maintenance and contract KPI marts: on simulated data and on the real Montpellier files."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from citylake.build.dbt import build
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import parse_faults
from devtools.simulator.run import SimulationConfig, simulate
from ingestion import manifest
from ingestion.run import ingest
from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[2]
KEY = "issue6-pseudonym-key-0123456789"


def real_montpellier_drop(drop: Path) -> None:
    """Lay the real Montpellier files out as the operator 'montpellier' would deliver them."""
    series = require_shared("realdata/parking/montpellier_historique_parkings.csv")
    inventory = require_shared("realdata/parking/montpellier_parkings_inventaire_VilleMTP_MTP_ParkingOuv.csv")
    (drop / "montpellier" / "occupancy").mkdir(parents=True)
    (drop / "montpellier" / "facilities").mkdir(parents=True)
    shutil.copy2(series, drop / "montpellier" / "occupancy" / "historique_parkings.csv")
    shutil.copy2(inventory, drop / "montpellier" / "facilities" / "VilleMTP_MTP_ParkingOuv.csv")
    # the register is delivered before the series
    t = (drop / "montpellier" / "occupancy" / "historique_parkings.csv").stat().st_mtime
    os.utime(drop / "montpellier" / "facilities" / "VilleMTP_MTP_ParkingOuv.csv", (t - 3600, t - 3600))


@pytest.fixture(scope="session")
def lake(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("issue6")
    drop = base / "drop"
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=date(2026, 3, 30),
            days=2,
            out=drop,
            faults=parse_faults("default,missing_day,late_delivery"),
            seed=5,
            progress=False,
        )
    )
    real_montpellier_drop(drop)
    mp = pytest.MonkeyPatch()
    mp.setenv("CITYLAKE_LAKE_URI", (base / "lake").as_uri())
    mp.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    mp.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    mp.setenv("CITYLAKE_WAREHOUSE", str(base / "warehouse.duckdb"))
    try:
        report = ingest(Settings())
        result = build(Settings(), unit_tests=True)
        yield {"base": base, "drop": drop, "report": report, "result": result, "settings": Settings()}
    finally:
        mp.undo()


def q(lake: dict, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(lake["result"].warehouse), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def test_build_passes_with_parking_maintenance_and_contract_marts(lake) -> None:
    result = lake["result"]
    assert result.success, [(r["node"], r["message"]) for r in result.failures]
    nodes = {r["node"] for r in result.results}
    for model in (
        "mart_parking_occupancy_daily",
        "dim_car_parks",
        "mart_fleet_availability_daily",
        "mart_maintenance_monthly",
        "mart_contract_kpis",
        "mart_contract_kpis_daily",
    ):
        assert f"model.citylake.{model}" in nodes
    assert "unit_test.citylake.mart_contract_kpis.kpi_formula_at_target_cap_tolerated_missing" in nodes
    assert "unit_test.citylake.mart_contract_kpis_daily.every_daily_kpi_value_from_its_mart" in nodes
    assert "unit_test.citylake.fct_contract_kpi_values_monthly.every_monthly_kpi_value_sums_its_days" in nodes


def test_real_montpellier_files_are_ingested_and_modelled(lake) -> None:
    by_feed = {(f.operator, f.feed): f for f in lake["report"].feeds}
    occ = by_feed[("montpellier", "occupancy")]
    assert occ.parsed == 1 and not occ.errors and not occ.quarantined
    assert len(occ.staged) == 13  # 2025-12-28 .. 2026-01-09, one partition per local day
    storage = open_storage(lake["settings"])
    reasons = manifest.load(storage, "invalid_reasons").filter(pl.col("operator") == "montpellier")
    text = " | ".join(reasons["reason"].to_list())
    assert "out of scope: bike-share station" in text  # 21,432 Velo rows kept, marked
    assert "is not in the register" in text  # the Gaumont names have no register entry
    daily = q(lake, "select * from mart_parking_occupancy_daily where operator = 'montpellier'")
    assert daily["facility_id"].n_unique() >= 18  # Foch, Comedie, Gare... matched by name or alias
    assert "34172-P-005" in daily["facility_id"].to_list()  # "Foch" -> Foch Préfecture, by alias
    assert ((daily["mean_occupancy_rate"] >= 0) & (daily["mean_occupancy_rate"] <= 1)).all()
    cars = q(lake, "select * from dim_car_parks where operator = 'montpellier'")
    assert cars.height == 37 and cars["is_schema_conformant"].sum() >= 30


def test_simulated_parking_anomalies_are_flagged_not_averaged(lake) -> None:
    import json

    faults = {f["kind"]: f for f in json.loads((lake["drop"] / "truth" / "faults.json").read_text())}
    stuck_id = faults["stuck_sensor"]["detail"].split(":")[0]
    over_id = faults["over_capacity"]["detail"].split(":")[0]
    daily = q(lake, "select * from mart_parking_occupancy_daily where operator = 'parking'")
    stuck = daily.filter(pl.col("readings_stuck") > 0)
    assert (
        stuck["facility_id"].to_list() == [stuck_id] and stuck["readings_stuck"][0] == 72
    )  # 09:00-15:00, nothing else
    over = daily.filter(pl.col("readings_over_capacity") > 0)
    assert over["facility_id"].to_list() == [over_id] and over["readings_over_capacity"][0] == 24  # 16:00-18:00
    # anomalies lower completeness instead of being averaged in; other days are complete
    assert ((daily["completeness"] == 1) | (daily["readings_anomalous"] > 0)).all()
    assert daily.filter(pl.col("readings_anomalous") > 0)["completeness"].max() < 1
    assert (daily["peak_occupancy_rate"] <= 1).all()


def test_fleet_and_maintenance_marts(lake) -> None:
    fleet = q(lake, "select * from mart_fleet_availability_daily")
    assert fleet.height == 2 and (fleet["fleet_size"] > fleet["vehicles_required_at_peak"]).all()
    assert (fleet["vehicles_required_at_peak"] > 30).all()
    monthly = q(lake, "select * from mart_maintenance_monthly")
    assert monthly["km"].sum() > 10_000
    assert monthly["preventive_jobs"].sum() >= monthly["preventive_within_tolerance"].sum()


def test_contract_kpis_with_delivery_breaches(lake) -> None:
    kpis = q(lake, "select * from mart_contract_kpis order by operator, kpi_code")
    codes = set(zip(kpis["operator"], kpis["kpi_code"], strict=True))
    assert ("bus", "OFFER_DELIVERED") in codes and ("parking", "OCCUPANCY_INFO_PUBLISHED") in codes
    delivery = kpis.filter((pl.col("operator") == "bus") & (pl.col("kpi_code") == "DATA_DELIVERY")).row(0, named=True)
    # a ticketing day missing and an APC day late: 2 of 10 daily deliveries not on time
    assert delivery["value"] == pytest.approx(0.8) and delivery["status"] == "missed" and delivery["amount_eur"] < 0
    breaches = q(
        lake, "select delivery_status, count(*) n from int_delivery_compliance_daily where operator = 'bus' group by 1"
    )
    assert dict(zip(breaches["delivery_status"], breaches["n"], strict=True)) == {"on_time": 8, "missing": 1, "late": 1}
    offer = kpis.filter(pl.col("kpi_code") == "OFFER_DELIVERED").row(0, named=True)
    assert 0.9 < offer["value"] <= 1 and offer["contract_version"] == "DSP-bus-2026-v1"
    assert offer["source_deliveries"] > 5 and len(offer["source_sha256s"].split(",")[0]) == 64
    assert (kpis["amount_eur"].abs() <= kpis["cap_eur"]).all()
