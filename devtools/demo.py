"""``make demo``: everything citylake can do so far, end to end, on sample data.

Each stage is a real call of the package, the same the CLI and the DAGs make. The demo works
in ``./demo`` (lake, drops) unless CITYLAKE_LAKE_URI / CITYLAKE_DROP_ROOT say otherwise, and
ends by printing where to look.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path

from citylake.core.doctor import init_lake
from citylake.core.settings import Settings, resolve_local_root
from citylake.core.storage import open_storage
from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import DEFAULT_FAULTS
from devtools.simulator.run import SimulationConfig, simulate

#: Four days with the spring DST change (Sunday 29 March 2026) that end a month: the
#: operators' monthly reports of March are delivered with the last day's files.
DEMO_START, DEMO_DAYS = date(2026, 3, 28), 4


def main(workdir: Path | None = None) -> int:
    workdir = (workdir or Path("demo")).resolve()
    if "CITYLAKE_LAKE_URI" not in os.environ:
        # the story starts from scratch: the demo's previous lake and warehouse (perhaps built by
        # an older checkout, whose incremental tables lack this release's columns) are removed
        for sub in ("lake", "build", "airflow_home", "logs"):
            shutil.rmtree(workdir / sub, ignore_errors=True)
    os.environ.setdefault("CITYLAKE_LAKE_URI", (workdir / "lake").as_uri())
    os.environ.setdefault("CITYLAKE_DROP_ROOT", (workdir / "drop").as_uri())
    os.environ.setdefault("CITYLAKE_WAREHOUSE", str(workdir / "build" / "warehouse.duckdb"))
    settings = Settings()
    print(f"== citylake demo in {workdir}")
    print("-- 1. the lake")
    for line in init_lake(settings):
        print("   " + line)
    drop = resolve_local_root(settings.drop_root)
    print(
        f"\n-- 2. operators' deliveries: {DEMO_DAYS} simulated days from {DEMO_START} (sample network, default faults)"
    )
    summary = simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=DEMO_START,
            days=DEMO_DAYS,
            out=drop,
            faults=DEFAULT_FAULTS,
            seed=42,
            progress=False,
        )
    )
    for day in summary["days"]:
        print(
            f"   {day['service_date']} {day['day_type']:<24} {day['trips_scheduled']:>5} trips "
            f"({day['trips_cancelled']} cancelled), {day['validations']:>7,} validations"
        )
    real = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "parking"
    if (real / "montpellier_historique_parkings.csv").exists():
        print("   + Montpellier's real car-park series and register (second parking format), from shared/realdata")
        for feed, src, name in (
            (
                "facilities",
                "montpellier_parkings_inventaire_VilleMTP_MTP_ParkingOuv.csv",
                "VilleMTP_MTP_ParkingOuv.csv",
            ),
            ("occupancy", "montpellier_historique_parkings.csv", "historique_parkings.csv"),
        ):
            (drop / "montpellier" / feed).mkdir(parents=True, exist_ok=True)
            shutil.copy2(real / src, drop / "montpellier" / feed / name)
    if not os.environ.get("CITYLAKE_PSEUDONYM_KEY"):
        # Demo only: a throwaway key for simulated cards. Production sets its own secret.
        os.environ["CITYLAKE_PSEUDONYM_KEY"] = "demo-only-key-for-simulated-cards"
        print("\n   (CITYLAKE_PSEUDONYM_KEY not set: the demo uses a throwaway key for its simulated cards)")
    from datetime import timedelta

    from citylake.build.dbt import warehouse_path
    from citylake.core import duck
    from citylake.publish.reader import current, published_views
    from devtools.airflow_run import prepare_airflow_home, run_nights
    from devtools.evaluate import evaluate

    print("\n-- 3. the nightly refresh through Airflow (DAG nightly_refresh, dag.test(), SQLite metadata)")
    print("      each night: ingest what was delivered by 06:30 -> dbt build -> quality suites -> publish -> report")
    prepare_airflow_home(workdir / "airflow_home")
    # Airflow's, dbt's and Great Expectations' own logs go to a file per night (VERBOSE=1: here)
    log_dir = None if os.environ.get("VERBOSE") else workdir / "logs"
    if log_dir:
        shutil.rmtree(log_dir, ignore_errors=True)
        print(f"      library logs: {log_dir}/night-<date>.log (VERBOSE=1 make demo shows them here)")

    lake = open_storage(settings)
    audited: set[str] = set()

    def night_line(n, log) -> None:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in n.tasks.items() if v >= 0.5)
        print(f"   night of {n.logical_date:%Y-%m-%d %H:%M}: {n.state} in {n.wall_s:.0f} s ({steps})", flush=True)
        # what the night's gate decided (its quality report's record)
        for k in sorted(i.key for i in lake.list("reports/quality/") if i.key.endswith("/result.json")):
            if k not in audited:
                audited.add(k)
                r = json.loads(lake.get_bytes(k))
                refused = ", ".join(r["groups_refused"]) or "none"
                print(f"      published {', '.join(r['groups_published']) or 'nothing'}; refused {refused}", flush=True)

    run_nights([DEMO_START + timedelta(days=i) for i in range(DEMO_DAYS)], log_dir=log_dir, on_night=night_line)
    from citylake.publish.reader import registry

    storage = open_storage(settings)
    last = registry(storage)[-1]
    print(f"   published: {', '.join(last['groups_published'])} (publication {last['publication_id']})")
    for g, reasons in last["groups_refused"].items():
        print(f"   refused {g}: {reasons[0]}")
    for w in last["warnings"]:
        print(f"   warning: {w}")
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    published_views(con, storage, current(storage))
    kpis = con.sql(
        "select operator, kpi_code, month, round(value, 4) as value, status, amount_eur "
        "from mart_contract_kpis order by operator, kpi_code, month"
    ).fetchall()
    print("   contract KPIs, as published:")
    for op, code, month, value, status, amount in kpis:
        print(
            f"     {op:<8} {code:<26} {month:%Y-%m}  {value if value is not None else '—'!s:<8} {status:<15} "
            f"{amount:+,.2f} EUR"
        )
    from citylake.consumers.opendata import export, write_catalog
    from citylake.publish.docs_site import site_for

    opendata = export(storage, con, last["publication_id"])
    # the night wrote the month-to-date contract reports of the publication now current
    contract_pub = current(storage)["groups"]["contract"]["publication_id"]
    reports = sorted(
        i.key for i in storage.list("reports/contract/") if i.key.rsplit("/", 1)[-1].startswith(f"{contract_pub}.")
    )
    catalog = write_catalog(workdir / "build" / "citylake_published.duckdb", settings, storage, current(storage))
    from citylake.consumers.gis import export_gis

    gis_dir = workdir / "build" / "gis"
    gis = export_gis(con, gis_dir, "gpkg", crs=2154, source=f"citylake {last['publication_id']}")
    drop = resolve_local_root(settings.drop_root)
    print("\n-- 4. accuracy against the simulator's ground truth (python -m devtools evaluate)")
    for name, value in evaluate(drop, warehouse_path(settings)).items():
        print(f"   {name}: {value:.4f}")
    declared_vs_recomputed(con, drop)
    storage = open_storage(settings)
    print("\n== where to look")
    print(
        f"   drops: {drop}/bus/{{gtfs,fleet,ticketing,avl,trips,apc,survey,maintenance,declared}}, "
        f"{drop}/parking/{{facilities,occupancy,declared}}"
    )
    print(f"   truth: {drop}/truth/ (what really happened: loads, journeys, faults.json)")
    print(f"   lake:  {storage.root_uri}")
    print("          raw/ (every delivery as received), staged/ (typed Parquet), quarantine/, control/manifest/")
    for prefix in ("staged/", "quarantine/"):
        folders = sorted({i.key.split("/")[1] for i in storage.list(prefix)})
        print(f"          {prefix}: {', '.join(folders) or '(empty)'}")
    print(
        f"   published marts: {storage.url('published/CURRENT.json')} -> published/marts/ "
        "(Delta tables, each at its version)"
    )
    print(f"   quality report: {storage.url(last['report'])}")
    print(f"   airflow: {workdir / 'airflow_home'} (airflow standalone there for the UI)")
    print(f"   analysts: {workdir / 'build' / 'citylake_published.duckdb'} ({len(catalog)} views; open it read-only)")
    for k in reports:
        print(f"   contract report: {storage.url(k)}")
    docs = site_for(storage, current(storage))
    print(
        f"   docs of the marts: {storage.url(docs) if docs else '(none written)'}  "
        "(dbt's docs site: grain, columns, lineage; citylake serve: /docs/marts with a token, "
        "or the link /v1/docs/link answers)"
    )
    print(f"   open data (ODbL): {storage.url('opendata/')} ({len(opendata)} files)")
    layers = ", ".join(p.name for p in gis if p.suffix == ".gpkg")
    print(
        f"   GIS layers (Lambert-93, QGIS styles beside): {gis_dir}/ ({layers})  "
        "(citylake export gis --format geoparquet|gpkg|geojson [--crs 2154] --out DIR)"
    )
    print(
        '   query:  .venv/bin/citylake query "select * from mart_bus_load_profile limit 10"   '
        "(with CITYLAKE_LAKE_URI=" + storage.root_uri + ")"
    )
    print(
        '   try:   .venv/bin/python -c "import duckdb; print(duckdb.sql(\\"select service_date, count(*), '
        "count(*) filter (where not is_valid) as invalid from read_parquet('"
        + storage.url("staged/fare_transactions/*/*/*.parquet")
        + '\', hive_partitioning=true) group by 1 order by 1\\"))"'
    )
    print(
        f"   API:    export CITYLAKE_LAKE_URI={storage.root_uri}; TOKEN=$(.venv/bin/citylake api-token add me "
        "--role analyst); "
        '.venv/bin/citylake serve   then   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/v1/marts'
    )
    print(
        "   explorer: the same citylake serve, then open http://127.0.0.1:8000/explore#token=$TOKEN in a browser "
        "(serpent de charge on the map, speeds by segment, car parks; CITYLAKE_BASEMAP_STYLE for a basemap)"
    )
    return 0


def declared_vs_recomputed(con, drop: Path) -> None:
    """Print each operator's declared figures against the city's recomputation, as published,
    and what the reconciliation found of the biases the simulated operator was given."""
    from devtools.declared_eval import assess
    from ingestion.declared import FIGURES

    print(
        "\n-- 5. declared by the operators (monthly reports) against recomputed by the city"
        " (mart_contract_reconciliation)"
    )
    rows = con.sql(
        "select operator, month, figure_code, declared_value, recomputed_value, status, euro_effect_eur, "
        "evidence_rows from mart_contract_reconciliation where route_short_name is null "
        "order by operator, month, figure_code"
    ).fetchall()

    def show(v, code: str) -> str:
        if v is None:
            return "—"
        unit = FIGURES[code].unit
        return f"{v * 100:.2f} %" if unit == "ratio" else f"{v:,.0f}" if unit == "nombre" else f"{v:,.1f}"

    for op, month, code, declared, recomputed, status, euros, evidence in rows:
        money = f"{euros:+,.2f} EUR" if euros else ""
        proof = f"{evidence} evidence rows" if evidence else ""
        print(
            f"     {op:<8} {month:%Y-%m} {code:<28} declared {show(declared, code):>12}"
            f"  recomputed {show(recomputed, code):>12}"
            f"  {status:<17} {money:>14}  {proof}"
        )
    found = assess(drop, con)
    print(
        f"   biases the simulator injected: {', '.join(found['biases_injected']) or 'none'}; reports: "
        + ", ".join(f"{op} {month} {status}" for op, month, status in found["report_status"])
    )
    print(
        f"   found: {found['falsified_found']} of {found['falsified']} falsified figures outside tolerance"
        f" (missed: {', '.join(f'{c} ({b})' for c, b in found['missed']) or 'none'});"
        f" false alarms: {found['false_alarms']} of {found['unbiased']} honest figures"
        f" ({', '.join(found['false_alarm_figures']) or 'none'})"
    )
    print(
        f"   euro effect of the declarations: {found['euro_effect_computed']:+,.2f} EUR as the city computes it,"
        f" {found['euro_effect_true']:+,.2f} EUR against the truth; trips reported run without an AVL trace:"
        f" {found['trips_found']} of the {found['trips_falsified']} falsified found, among {found['trips_in_evidence']}"
        " in the evidence"
    )
    print(
        f"   losses classed external: {found['external_falsely_classed_found']} of the"
        f" {found['external_falsely_classed']} falsely classed not corroborated (found);"
        f" {found['external_true_doubted']} of the {found['external_true']} truly external wrongly doubted"
    )


if __name__ == "__main__":
    sys.exit(main())
