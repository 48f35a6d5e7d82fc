"""The operators' declared figures against the city's recomputation, as the nights published them.

The session's simulated days end March: each operator delivered its monthly report with the last
day's files, the bus operator's bent by the default biases (devtools/simulator/declared.py). The
published ``mart_contract_reconciliation`` is checked against the simulator's two books, its
evidence against the raw deliveries it names, and the contract report's page against both.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from citylake.core import duck
from citylake.core.storage import open_storage
from citylake.publish.reader import current, published_views
from devtools.declared_eval import assess

MARCH = date(2026, 3, 1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def published(lake_after_nights):
    settings = lake_after_nights.settings()
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    published_views(con, storage, current(storage))
    yield con, storage
    con.close()


def test_every_declared_figure_is_reconciled_with_its_source_row(published) -> None:
    con, storage = published
    rows = con.sql(
        "select operator, figure_code, status, declared_sha256, declared_row, report_status "
        "from mart_contract_reconciliation where month = ? and route_short_name is null",
        params=[MARCH],
    ).pl()
    seed = pl.read_csv(ROOT / "dbt_project" / "seeds" / "contract_declared_figures.csv")
    assert sorted(rows.select("operator", "figure_code").rows()) == sorted(
        seed.select("operator", "figure_code").rows()
    )
    assert set(rows["report_status"]) == {"on_time"}
    assert rows.filter(pl.col("declared_row").is_null()).height == 0  # each value names its cell
    reports = con.sql("select distinct declared_sha256 from mart_contract_reconciliation").fetchall()
    raw = {i.sha256 for i in storage.list("raw/")}
    assert {s for (s,) in reports if s} <= raw  # the reports the values come from are kept, as delivered


def test_the_biases_the_operator_was_given_are_found_and_priced(lake_after_nights, published) -> None:
    """Against the simulator's truth: the friendlier punctuality window, the immobilised vehicles
    counted available and the lost trips reported run are each found outside tolerance; their euro
    effect is the contract grid's on the declared value minus on the recomputed one; no honest
    figure is flagged but for a cause listed in the assessment."""
    con, _ = published
    found = assess(lake_after_nights.drop, con)
    assert {"declared_punctuality", "declared_run_not_run"} <= set(found["biases_injected"])
    assert found["falsified"] >= 1 and found["detection"] is not None
    missed = {bias for _, biases in found["missed"] for bias in biases.split(",")}
    assert not missed & {"declared_punctuality", "declared_availability", "declared_run_not_run"}, found
    punctuality = con.sql(
        "select declared_value, recomputed_value, status, euro_effect_eur, amount_recomputed_eur "
        "from mart_contract_reconciliation where operator = 'bus' and figure_code = 'ponctualite' and month = ?",
        params=[MARCH],
    ).fetchone()
    declared, recomputed, status, effect, amount = punctuality
    assert declared > recomputed and status == "outside_tolerance" and effect > 0
    kpi = con.sql(
        "select amount_eur from mart_contract_kpis where operator = 'bus' and kpi_code = 'PUNCTUALITY' and month = ?",
        params=[MARCH],
    ).fetchone()[0]
    assert amount == kpi  # the recomputed side is what the contract pays
    assert abs(found["euro_abs_error"]) <= abs(found["euro_effect_true"])  # the euros err less than they measure
    # every lost trip the operator reported run is in the evidence
    assert found["trips_found"] == found["trips_falsified"]


def test_each_evidence_row_points_at_the_raw_row_it_quotes(published) -> None:
    con, storage = published
    trips = con.sql(
        "select subject, source_sha256, source_row from fct_reconciliation_evidence "
        "where evidence_kind = 'trip_reported_run_without_avl_trace'"
    ).fetchall()
    keys = {i.sha256: i.key for i in storage.list("raw/")}
    for trip_id, sha, row in trips:
        line = storage.get_bytes(keys[sha]).decode("utf-8").splitlines()[row - 1]
        record = json.loads(line)
        assert record["course"] == trip_id and record["statut"] in ("REALISEE", "DEVIEE")


def test_the_contract_report_shows_declared_against_recomputed_with_its_annex(lake_after_nights) -> None:
    storage = open_storage(lake_after_nights.settings())
    pub = current(storage)["groups"]["contract"]["publication_id"]
    folder = "reports/contract/operator=bus/month=2026-03/"
    page = storage.get_bytes(f"{folder}{pub}.html").decode()
    assert "<h2>Déclaré / recalculé</h2>" in page and "remis à temps" in page
    punct = page.split("data-figure='ponctualite'")[1].split("</tr>")[0]
    assert "data-status='outside_tolerance'" in punct and "hors tolérance" in punct
    assert f"{pub}__preuves.csv" in page
    annex = pl.read_csv(storage.get_bytes(f"{folder}{pub}__preuves.csv"), separator=";")
    assert set(annex["evidence_kind"]) >= {"departures_outside_window"}
    assert annex["source_sha256"].null_count() == 0
