"""``make bench-memory``: peak memory of staging one delivery, as a multiple of its size.

Issue #29 gives each delivery a byte budget (``parsing.MAX_TEXT_BYTES``, ``gtfs.
MAX_UNCOMPRESSED_BYTES``); what a worker needs is the budget times what reading a delivery costs
per byte. This measures that cost on a simulated metro day: each feed's files alone in a drop,
``citylake ingest`` on an empty folder lake in its own process, peak RSS from the kernel
(``wait4``), minus the peak of the same command on an empty drop (the interpreter and its
libraries). The multiple is that difference over the delivery's text bytes (an offer's unpacked
members). Figures go into BENCHMARKS.md between the bench-memory markers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipfile
from datetime import date
from pathlib import Path

from devtools.bench import KEY, ROOT, _simulate, machine, measure

BEGIN, END = "<!-- bench-memory:start -->", "<!-- bench-memory:end -->"
FEEDS = ("bus/ticketing", "bus/avl", "bus/gtfs", "bus/apc", "bus/trips", "parking/occupancy")
LARGE = 50 * 10**6  # deliveries this large show the cost per byte; smaller ones, fixed costs
RUNS = 2  # each measurement runs this many times; the larger peak is reported


def text_bytes(folder: Path) -> int:
    """Bytes of text the feed's files hold: a zip's members unpacked, any other file as it is."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                total += sum(i.file_size for i in z.infolist())
        else:
            total += path.stat().st_size
    return total


def ingest_peak(drop: Path, work: Path) -> float:
    """Peak RSS (MiB) of ``citylake ingest`` on ``drop`` into a fresh folder lake, the larger of RUNS."""
    peaks = []
    for _ in range(RUNS):
        lake = work / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        env = {
            "CITYLAKE_LAKE_URI": lake.as_uri(),
            "CITYLAKE_DROP_ROOT": drop.as_uri(),
            "CITYLAKE_PSEUDONYM_KEY": KEY,
        }
        _, peak, _ = measure([sys.executable, "-m", "citylake.cli", "ingest", "--no-progress"], ROOT, env)
        peaks.append(peak)
    return max(peaks)


def run(day: Path, work: Path) -> list[dict]:
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    base = ingest_peak(empty, work)
    rows = [{"feed": "(empty drop)", "bytes": 0, "peak": base, "above": 0.0, "multiple": None}]
    for feed in FEEDS:
        src = day / feed
        if not src.is_dir():
            continue
        drop = work / "drop"
        shutil.rmtree(drop, ignore_errors=True)
        shutil.copytree(src, drop / feed)
        size = text_bytes(drop)
        peak = ingest_peak(drop, work)
        above = max(peak - base, 0.0)
        rows.append({"feed": feed, "bytes": size, "peak": peak, "above": above, "multiple": above * 1024**2 / size})
        print(f"{feed}: {size / 1e6:.1f} MB of text, peak {peak:.0f} MiB, {rows[-1]['multiple']:.1f}x", flush=True)
    return rows


def report(rows: list[dict]) -> str:
    lines = [
        BEGIN,
        "## Memory of one delivery (`make bench-memory`)",
        "",
        f"Measured {date.today().isoformat()} on {machine()}: one simulated metro day (2026-03-17), each "
        "feed's files alone in a drop, `citylake ingest` on an empty folder lake, peak RSS of the process "
        f"(the larger of {RUNS} runs), minus the peak on an empty drop. *Multiple* = that difference over the "
        "delivery's bytes of text (an offer: its members unpacked). The byte budgets (docs/ingestion.md) "
        "times the largest multiple is what a worker needs for one delivery.",
        "",
        "| feed | text | peak RSS | above the empty drop | multiple |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        multiple = "—" if r["multiple"] is None else f"{r['multiple']:.1f}×"
        size = "—" if not r["bytes"] else f"{r['bytes'] / 1e6:.1f} MB"
        lines.append(f"| {r['feed']} | {size} | {r['peak']:.0f} MiB | {r['above']:.0f} MiB | {multiple} |")
    large = [r["multiple"] for r in rows if r["multiple"] is not None and r["bytes"] >= LARGE]
    worst = max(large, default=0.0)
    lines += [
        "",
        f"Largest multiple among deliveries of {LARGE // 10**6} MB or more: {worst:.1f}×, so a delivery at its "
        f"1 GiB budget needs about {worst:.0f} GiB above the process's own. A small delivery's multiple is "
        "mostly fixed costs (the network's references read to check ids, the staged partitions written), "
        "not its size. Before issue #29's pieces (one read of the whole text), the metro "
        "validations took 1.52 GiB to read and type in a profile of `parsing.parse` alone, 1.32 GiB after.",
        END,
    ]
    return "\n".join(lines)


def write(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    body = path.read_text(encoding="utf-8")
    if BEGIN in body:
        head, rest = body.split(BEGIN, 1)
        body = head + text + rest.split(END, 1)[1]
    else:
        body = body.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=Path, help="a simulated metro day (simulated here when absent)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citylake-bench-memory-") as tmp:
        work = Path(tmp)
        day = args.day
        if day is None:
            day = work / "metro"
            measure(_simulate(day, "2026-03-17", 1, "metro"), ROOT)
        rows = run(day, work)
    text = report(rows)
    write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
