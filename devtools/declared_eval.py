"""How well the reconciliation finds what the simulated operator falsified (issue #33).

The simulator keeps two books of each month (devtools/simulator/declared.py): the honest one,
from what really happened, and the declared one, bent by the biases it was given. Against them,
a published ``mart_contract_reconciliation`` is measured:

* **detection**: of the figures a bias bent beyond the contract's tolerance of the honest value
  (the falsified items), the share the city flags outside tolerance;
* **false alarms**: of the figures no bias touched, the share flagged outside tolerance (each
  one's cause is the city's data, not the operator's word: listed by figure);
* **euro error**: for the figures a KPI pays on, the euro effect the city computes (grid on the
  declared value minus grid on its recomputation) against the true one (grid on the declared
  value minus grid on the honest value), summed as absolute error;
* **evidence**: the trips the evidence table says were reported run without an AVL trace,
  against the trips the simulator really reported run while they were lost (precision, recall);
* **cause classes**: of the losses falsely classed external, the share the city does not
  corroborate (found); of the truly external ones, the share it wrongly doubts.

Also what the operator's report status became (late, missing) against the faults injected.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

SEEDS = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds"
#: the data faults of real deliveries, without any bias of the declaration
NOISE = "unparsable_rows,unknown_ids,negative_counts,over_capacity,stuck_sensor,clock_skew"


def _grid() -> dict[tuple[str, str], dict]:
    """The contract grid (seed contract_kpis), per (operator, kpi_code): the oracle's own reading."""
    with (SEEDS / "contract_kpis.csv").open(encoding="utf-8") as f:
        return {(r["operator"], r["kpi_code"]): r for r in csv.DictReader(f)}


def amount(value: float | None, row: dict) -> float:
    """The contract's capped bonus (+) / penalty (-) for a KPI value (mart_contract_kpis' rule)."""
    if value is None:
        return 0.0
    value = round(value, 6)
    lo, hi = float(row["minimum"]), float(row["target"])
    bonus, penalty, cap = float(row["bonus_per_point_eur"]), float(row["penalty_per_point_eur"]), float(row["cap_eur"])
    higher = row["direction"] == "higher_better"
    if (value >= hi) if higher else (value <= hi):
        raw = abs(value - hi) * 100 * bonus
    elif (value < lo) if higher else (value > lo):
        raw = -abs(lo - value) * 100 * penalty
    else:
        raw = 0.0
    return round((1 if raw >= 0 else -1) * min(abs(raw), cap), 2)


def assess(drop: Path, con: duckdb.DuckDBPyConnection) -> dict:
    """The figures above, from the simulator's ``drop`` (with its truth/) and a connection that
    reads the published marts (or a warehouse)."""
    truth = pl.read_parquet(drop / "truth" / "declared_figures" / "**" / "*.parquet", hive_partitioning=False)
    recon = con.sql(
        "select operator, strftime(month, '%Y-%m') as month, route_short_name, figure_code, kpi_code, "
        "declared_value, recomputed_value, tolerance, status, euro_effect_eur, report_status "
        "from mart_contract_reconciliation"
    ).pl()
    keys = ["operator", "month", "route_short_name", "figure_code"]
    joined = truth.join(recon, on=keys, how="inner", nulls_equal=True)
    # a falsified item: a bias bent it beyond the tolerance around the honest value (a bias that
    # moved a figure by less than the contract tolerates is no breach to find)
    bent = (pl.col("declared_value") - pl.col("honest_value")).abs() > pl.col("tolerance") + 1e-9
    joined = joined.with_columns(
        (pl.col("biases").is_not_null() & bent).alias("falsified"),
        (pl.col("status") == "outside_tolerance").alias("flagged"),
    )
    falsified = joined.filter(pl.col("falsified"))
    honest = joined.filter(pl.col("biases").is_null())
    grid = _grid()
    paid = joined.filter(pl.col("kpi_code").is_not_null())
    euro_rows = []
    for r in paid.iter_rows(named=True):
        row = grid[(r["operator"], r["kpi_code"])]
        true_effect = amount(r["declared_value"], row) - amount(r["honest_value"], row)
        euro_rows.append(
            {
                "operator": r["operator"],
                "month": r["month"],
                "figure_code": r["figure_code"],
                "computed_eur": r["euro_effect_eur"] or 0.0,
                "true_eur": round(true_effect, 2),
            }
        )
    euros = pl.DataFrame(
        euro_rows,
        schema={
            "operator": pl.Utf8,
            "month": pl.Utf8,
            "figure_code": pl.Utf8,
            "computed_eur": pl.Float64,
            "true_eur": pl.Float64,
        },
    )
    trips = pl.read_parquet(drop / "truth" / "trips" / "**" / "*.parquet", hive_partitioning=False)
    bent_trips = set(
        trips.filter(pl.col("declared_bias") == "declared_run_not_run").select("service_date", "trip_id").iter_rows()
    )
    evidence = set(
        con.sql(
            "select service_date, subject from fct_reconciliation_evidence "
            "where evidence_kind = 'trip_reported_run_without_avl_trace'"
        ).fetchall()
    )
    found = bent_trips & evidence
    # the cause classes: falsely classed external (the bias) against truly external losses
    doubted = set(
        con.sql(
            "select service_date, subject from fct_reconciliation_evidence "
            "where evidence_kind = 'external_loss_uncorroborated'"
        ).fetchall()
    )
    falsely_external = set(
        trips.filter(pl.col("declared_bias") == "declared_external").select("service_date", "trip_id").iter_rows()
    )
    truly_external = set(
        trips.filter(pl.col("cancel_cause") == "Aléa externe").select("service_date", "trip_id").iter_rows()
    )
    faults = json.loads((drop / "truth" / "faults.json").read_text())
    injected = {f["kind"] for f in faults if f["kind"].startswith("declared_")}
    return {
        "figures_compared": joined.height,
        "falsified": falsified.height,
        "falsified_found": int(falsified["flagged"].sum()),
        "detection": float(falsified["flagged"].mean()) if falsified.height else None,
        "unbiased": honest.height,
        "false_alarms": int(honest["flagged"].sum()),
        "false_alarm_rate": float(honest["flagged"].mean()) if honest.height else None,
        "false_alarm_figures": sorted(set(honest.filter(pl.col("flagged"))["figure_code"].to_list())),
        "missed": sorted(
            set(falsified.filter(~pl.col("flagged")).select("figure_code", "biases").iter_rows()), key=str
        ),
        "euro_effect_computed": float(euros["computed_eur"].sum()) if euros.height else 0.0,
        "euro_effect_true": float(euros["true_eur"].sum()) if euros.height else 0.0,
        "euro_abs_error": float((euros["computed_eur"] - euros["true_eur"]).abs().sum()) if euros.height else 0.0,
        "trips_falsified": len(bent_trips),
        "trips_in_evidence": len(evidence),
        "trips_found": len(found),
        "trip_recall": len(found) / len(bent_trips) if bent_trips else None,
        "trip_precision": len(found) / len(evidence) if evidence else None,
        "external_falsely_classed": len(falsely_external),
        "external_falsely_classed_found": len(falsely_external & doubted),
        "external_true": len(truly_external),
        "external_true_doubted": len(truly_external & doubted),
        "biases_injected": sorted(injected),
        "report_status": sorted(set(recon.select("operator", "month", "report_status").iter_rows())),
    }


def measure(out: Path, start: date, days: int, faults: str, seed: int) -> dict:
    """Simulate ``days`` from ``start`` with ``faults`` into ``out``, run the night after the last
    day in-process on a lake of its own, and assess what it published."""
    import os

    from citylake.core import duck
    from citylake.core.settings import Settings
    from citylake.core.storage import open_storage
    from citylake.night.steps import night_after, run_night
    from citylake.publish.reader import current, published_views
    from devtools import SAMPLE_NETWORK
    from devtools.simulator.faults import parse_faults
    from devtools.simulator.run import SimulationConfig, simulate

    drop = out / "drop"
    simulate(
        SimulationConfig(SAMPLE_NETWORK, start, days, out=drop, faults=parse_faults(faults), seed=seed, progress=False)
    )
    os.environ.update(
        {
            "CITYLAKE_LAKE_URI": (out / "lake").as_uri(),
            "CITYLAKE_DROP_ROOT": drop.as_uri(),
            "CITYLAKE_WAREHOUSE": str(out / "warehouse.duckdb"),
            "CITYLAKE_REPORT_PDF": "never",
            "CITYLAKE_DOCS_SITE": "false",
        }
    )
    os.environ.setdefault("CITYLAKE_PSEUDONYM_KEY", "declared-eval-throwaway-key-0123456789")
    settings = Settings()
    last = start + timedelta(days=days - 1)
    night = run_night(settings, as_of=night_after(last, settings.timezone))
    if not night.ok:
        raise RuntimeError(f"the night failed: {night.gate.refused_groups if night.gate else night.ingest.lines()}")
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    try:
        published_views(con, storage, current(storage))
        return assess(drop, con)
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.declared_eval``: the reconciliation measured bias by bias."""
    import argparse
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2026-03-04", help="first simulated day (the window must end a month)")
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--faults",
        nargs="+",
        default=[
            "noise",
            "declared_run_not_run",
            "declared_external",
            "declared_punctuality",
            "declared_availability",
            "default",
        ],
        help="one simulation per value: 'noise' (the data faults of real deliveries alone, no bias), a "
        "declared_* bias with that noise, or any --faults value of the simulator ('default': noise and every bias)",
    )
    args = parser.parse_args(argv)
    start = date.fromisoformat(args.start)
    print(
        "| faults | falsified figures found | false alarms (figures) | euro effect computed / true / abs. error | "
        "trips reported run found (precision) | falsely external found | true external doubted |"
    )
    print("|---|---|---|---|---|---|---|")
    for faults in args.faults:
        work = Path(tempfile.mkdtemp(prefix="declared-eval-"))
        try:
            given = NOISE if faults == "noise" else f"{NOISE},{faults}" if faults.startswith("declared_") else faults
            r = measure(work, start, args.days, given, args.seed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        precision = f"{r['trip_precision']:.2f}" if r["trip_precision"] is not None else "—"
        print(
            f"| {faults} | {r['falsified_found']} of {r['falsified']} | {r['false_alarms']} of {r['unbiased']} "
            f"({', '.join(r['false_alarm_figures']) or 'none'}) | {r['euro_effect_computed']:+,.2f} / "
            f"{r['euro_effect_true']:+,.2f} / {r['euro_abs_error']:,.2f} EUR | {r['trips_found']} of "
            f"{r['trips_falsified']} ({precision} of {r['trips_in_evidence']}) | "
            f"{r['external_falsely_classed_found']} of {r['external_falsely_classed']} | "
            f"{r['external_true_doubted']} of {r['external_true']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
