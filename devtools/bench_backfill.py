"""``make bench-backfill``: loading history at metro scale in batches (issue #32), measured.

Simulates metro-scale days (``--volume`` of a 1.5 M-validation network: 0.25 by default, which
this 2-core machine runs in about half an hour; 1.0 is the real size), then from an empty lake:

1. ``citylake backfill`` of the first ``--short`` days, then the night of the day after them;
2. ``citylake backfill`` of all ``--long`` days.

Each is one process, measured from outside (wall time, peak RSS of the process and its children,
``getrusage``). Targets (the issue): the long backfill's peak within 1.1× the short one's and
under 8 GiB; a backfilled day no dearer than a night's day. The table goes to BENCHMARKS.md
between its markers, with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

from devtools.bench import KEY, ROOT, machine, measure

BEGIN, END = "<!-- bench-backfill:start -->", "<!-- bench-backfill:end -->"
NETWORK = ROOT / "devtools" / "data" / "cairns_gtfs.zip"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "citylake.cli", *args]


def _env(work: Path, name: str, drop: Path) -> dict[str, str]:
    return {
        "CITYLAKE_LAKE_URI": (work / name / "lake").as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_WAREHOUSE": str(work / name / "warehouse.duckdb"),
        "CITYLAKE_PSEUDONYM_KEY": KEY,
        "CITYLAKE_REPORT_PDF": "never",
        "DBT_TARGET_PATH": str(work / name / "target"),
        "DBT_LOG_PATH": str(work / name / "logs"),
    }


def _batches(work: Path, name: str) -> int:
    state = json.loads((work / name / "lake" / "control" / "batches" / "state.json").read_text())
    return len(state["batches"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "backfill")
    parser.add_argument("--volume", type=float, default=0.25, help="share of a 1.5 M-validation metro day")
    parser.add_argument("--short", type=int, default=7)
    parser.add_argument("--long", type=int, default=28)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    parser.add_argument("--keep-drop", action="store_true", help="reuse the days already simulated in --work")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    work, drop = args.work, args.work / "drop"
    work.mkdir(parents=True, exist_ok=True)
    days = args.long + 1  # the night after the short backfill needs the day after it
    if not (args.keep_drop and (drop / "bus").exists()):
        shutil.rmtree(drop, ignore_errors=True)
        wall, _, _ = measure(
            [sys.executable, "-m", "devtools", "simulate", "--network", str(NETWORK), "--start", args.start.isoformat()]
            + ["--days", str(days), "--scale", "metro", "--volume", str(args.volume), "--faults", "none"]
            + ["--seed", "42", "--out", str(drop), "--no-progress"],
            ROOT,
        )
        print(f"simulated {days} metro days at volume {args.volume} in {wall:.0f} s", flush=True)
    simulated = json.loads((drop / "simulation.json").read_text())["days"]
    validations = {d["service_date"]: d["validations"] for d in simulated}

    rows = []
    for name, n in (("short", args.short), ("long", args.long)):
        shutil.rmtree(work / name, ignore_errors=True)
        (work / name).mkdir()
        last = args.start + timedelta(days=n - 1)
        wall, mib, _ = measure(
            _cli("backfill", "--from", args.start.isoformat(), "--to", last.isoformat()), ROOT, _env(work, name, drop)
        )
        v = sum(validations[(args.start + timedelta(days=i)).isoformat()] for i in range(n))
        rows.append({"what": f"backfill of {n} days", "days": n, "validations": v, "wall": wall, "mib": mib})
        rows[-1]["batches"] = _batches(work, name)
        print(f"backfill {n} days: {wall:.0f} s, {mib:.0f} MiB, {rows[-1]['batches']} batches", flush=True)
        if name == "short":  # the night of the day after: what a day costs the nightly refresh
            from citylake.night.steps import night_after

            day = last + timedelta(days=1)
            as_of = night_after(day, "Europe/Paris").isoformat()
            wall, mib, _ = measure(_cli("run", "--as-of", as_of), ROOT, _env(work, name, drop))
            v = validations[day.isoformat()]
            rows.append({"what": f"the night of {day}", "days": 1, "validations": v, "wall": wall, "mib": mib})
            print(f"night of {day}: {wall:.0f} s, {mib:.0f} MiB", flush=True)
    text = write(rows, args)
    print(text)
    if not args.no_write:
        path = ROOT / "BENCHMARKS.md"
        body = path.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in body:
            body = body[: body.index(BEGIN)] + block + body[body.index(END) + len(END) :]
        else:
            body = body.rstrip("\n") + "\n\n" + block + "\n"
        path.write_text(body)
    return 0


def write(rows: list[dict], args: argparse.Namespace) -> str:
    short, night, long = rows
    ratio = long["mib"] / short["mib"]
    per_day = [r["wall"] / (r["validations"] / 1.5e6) for r in rows]  # seconds per metro day (1.5 M validations)
    lines = [
        "## Loading history at metro scale (`make bench-backfill`)",
        "",
        f"{date.today()}, {machine()}. Metro-scale days simulated at volume {args.volume} "
        f"(the Cairns network tiled, {short['validations'] / short['days']:,.0f} validations a day), from "
        f"{args.start}; each run from an empty lake, the default batch budget (a quarter of the machine's "
        "memory); wall time and peak RSS of the process and its children.",
        "",
        "| run | days | validations | batches | wall | per metro day (1.5 M validations) | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, pd in zip(rows, per_day, strict=True):
        lines.append(
            f"| {r['what']} | {r['days']} | {r['validations']:,} | {r.get('batches', '—')} | {r['wall']:.0f} s "
            f"| {pd:.0f} s | {r['mib'] / 1024:.2f} GiB |"
        )
    lines += [
        "",
        f"- Peak of the {long['days']}-day backfill against the {short['days']}-day one: **{ratio:.2f}×** "
        f"(target ≤ 1.1×: {'met' if ratio <= 1.1 else 'missed'}); under 8 GiB: "
        f"{'met' if long['mib'] < 8 * 1024 else 'missed'}.",
        f"- A backfilled metro day costs {per_day[2]:.0f} s ({long['days']} days) and {per_day[0]:.0f} s "
        f"({short['days']} days); the night's day, scaled from volume {args.volume}, {per_day[1]:.0f} s, its "
        "fixed part scaled too (the target compares with the metro night at full volume: `make bench`).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
