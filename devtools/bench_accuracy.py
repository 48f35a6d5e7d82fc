"""``make bench-accuracy``: the accuracy figures of issue #19 on every network at hand.

For each network: simulate its days (default faults on the sample network, none elsewhere),
ingest, build, and ``python -m devtools evaluate`` against the truth. Networks: the sample
(Cairns, 4 days), the NYC subway excerpt (3 days), the Finistère ferries (NeTEx only, read into
GTFS, 3 days) and, with ``--metro``, one metro-scale day. The figures go into BENCHMARKS.md
between the accuracy markers, with the machine and date; every figure as measured, each goal
met or not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BEGIN, END = "<!-- bench-accuracy:start -->", "<!-- bench-accuracy:end -->"
KEY = "benchmark-key-not-a-secret-0123456789"

#: The goals of issue #19 (figure -> (limit, comparison)).
GOALS = {
    "load_profile_wape": (0.07, "<="),
    "load_wape_per_stop_visit": (0.09, "<="),
    "boardings_wape_per_stop_visit": (0.12, "<="),
    "peak_load_per_trip_wape": (0.05, "<="),
    "network_boardings_error": (0.02, "abs<="),
    "line_boardings_wape": (0.02, "<="),
    "inferred_share": (0.85, ">="),
    "alighting_stop_accuracy": (0.85, ">="),
    "alighting_within_one_stop": (0.95, ">="),
}


#: the loads of :func:`devtools.evaluate.floors`: as estimated, then with one input swapped for the truth
FLOOR_VARIANTS = {
    "estimated": "as estimated",
    "true_boardings": "with true boardings",
    "true_alightings": "with true alightings",
}


def _met(name: str, value: float) -> bool:
    limit, op = GOALS[name]
    return value >= limit if op == ">=" else (abs(value) <= limit if op == "abs<=" else value <= limit)


def _networks(work: Path, metro: bool) -> list[dict]:
    from devtools import SAMPLE_NETWORK

    nets = [
        {
            "name": "sample network (Cairns), 4 days, default faults",
            "gtfs": SAMPLE_NETWORK,
            "start": "2026-03-30",
            "days": 4,
            "faults": "default",
            "scale": "small",
        },
    ]
    nyc = ROOT / ".cache" / "nyc_subway_gtfs.zip"
    if nyc.exists():
        nets.append(
            {
                "name": "NYC subway excerpt, 3 days",
                "gtfs": nyc,
                "start": "2026-03-30",
                "days": 3,
                "faults": "none",
                "scale": "small",
            }
        )
    netex = SHARED / "realdata" / "standards" / "netex_fr_pabmar_finistere_maritime_2024-07-04.zip"
    if netex.exists():
        from ingestion import gtfs
        from ingestion.standards import netex as netex_reader

        path = work / "pabmar_gtfs.zip"
        gtfs.write_feed(netex_reader.read(netex.read_bytes(), netex.name), path)
        nets.append(
            {
                "name": "Finistère ferries (NeTEx only), 3 days",
                "gtfs": path,
                "start": "2026-07-06",
                "days": 3,
                "faults": "none",
                "scale": "small",
            }
        )
    if metro:
        nets.append(
            {
                "name": "metro day (sample network tiled), default faults",
                "gtfs": SAMPLE_NETWORK,
                "start": "2026-03-31",
                "days": 1,
                "faults": "default",
                "scale": "metro",
            }
        )
    return nets


def _run(net: dict, work: Path) -> dict[str, float]:
    drop, lake, wh = work / "drop", work / "lake", work / "warehouse.duckdb"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYLAKE_")},
        "CITYLAKE_LAKE_URI": lake.as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_WAREHOUSE": str(wh),
        "CITYLAKE_PSEUDONYM_KEY": KEY,
        "DBT_TARGET_PATH": str(work / "dbt-target"),
        "DBT_LOG_PATH": str(work / "dbt-logs"),
    }
    from devtools.bench import evaluate_in

    py = [sys.executable, "-m"]
    steps = [
        [
            *py,
            "devtools",
            "simulate",
            "--network",
            str(net["gtfs"]),
            "--start",
            net["start"],
            "--days",
            str(net["days"]),
            "--scale",
            net["scale"],
            "--faults",
            net["faults"],
            "--out",
            str(drop),
            "--no-progress",
        ],
        [*py, "citylake.cli", "ingest", "--no-progress"],
        [*py, "citylake.cli", "build"],
    ]
    for cmd in steps:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return evaluate_in(env, "--truth", str(drop), "--warehouse", str(wh))


def render(results: list[tuple[str, dict[str, float]]], machine: str, minutes: float) -> str:
    names = [n for n, _ in results]
    lines = [
        BEGIN,
        "## Accuracy on every network at hand (`make bench-accuracy`)",
        "",
        f"Measured {date.today().isoformat()} on {machine} (`devtools/bench_accuracy.py`, {minutes:.1f} min): "
        "simulate, ingest, build, then `python -m devtools evaluate` against the truth. Goals of issue #19.",
        "",
        "| figure | goal | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    figures = [k for k in GOALS] + ["alighting_stop_linked", "load_profile_cells"]
    for f in figures:
        goal = "—"
        if f in GOALS:
            limit, op = GOALS[f]
            goal = f"{op.replace('abs<=', 'abs ≤').replace('>=', '≥').replace('<=', '≤')} {limit:g}"
        cells = []
        for _, r in results:
            if f not in r:
                cells.append("—")
                continue
            v = r[f]
            text = (
                f"{v:.0f}"
                if f == "load_profile_cells"
                else (f"{v:+.2%}" if f == "network_boardings_error" else f"{v:.4f}")
            )
            cells.append(text if f not in GOALS or _met(f, v) else f"**{text}**")
        lines.append(f"| {f} | {goal} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Figures in bold miss their goal; docs/transit_method.md says why and what each method step gives.",
        "",
        "**How far each part of the method is from what the data allows** (issue #31; "
        "`devtools.evaluate.floors`): the same figures with the method's boardings swapped for the truth's "
        "(sent downstream by the method's own shares), and with its alightings swapped for the truth's "
        "(scaled to the method's boardings on each trip). Cells are keyed by the truth's day type and time "
        "band, so that only the loads differ.",
        "",
        "| figure | loads | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for f in ("load_profile_wape", "load_wape_per_stop_visit", "peak_load_per_trip_wape"):
        for variant, label in FLOOR_VARIANTS.items():
            cells = [f"{r[f'{variant}_{f}']:.4f}" if f"{variant}_{f}" in r else "—" for _, r in results]
            lines.append(f"| {f} | {label} | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metro", action="store_true", help="also one metro-scale day (about 10 minutes, 4 GiB)")
    args = parser.parse_args(argv)
    from devtools.bench import machine

    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        work = Path(tmp)
        for i, net in enumerate(_networks(work, args.metro)):
            sub = work / f"net{i}"
            sub.mkdir()
            print(f"{net['name']}…", flush=True)
            results.append((net["name"], _run(net, sub)))
            shutil.rmtree(sub / "drop", ignore_errors=True)
    block = render(results, machine(), (time.monotonic() - started) / 60)
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")
    print(block)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
