"""``make bench``: measure each stage in its own process and write BENCHMARKS.md.

Every stage runs as a fresh subprocess (so peak memory is that stage's own, read from the
kernel's rusage of the child) a number of times; the median wall time and the largest peak
memory are reported with the machine, the versions and the date. Figures are written as
measured, with their targets; a missed target says so.

Stages (issue #10): simulate a metro day; the **lower bound** (DuckDB alone reads the day's
delivered files, writes them as Parquet once and makes one group-by pass: the I/O and parsing
no pipeline can avoid); ingest + parse; dbt full build of the day; the quality suites and the
publication; a full rebuild of 28 small days, and the incremental build of the metro day on top
of them; the whole night through Airflow (``dag.test()``) with Airflow's share; then the
**growth curve**, the same night at 0.5x, 1x, 2x and 4x the metro volume, charted (issue #32: the 4x
night must fit this machine). ``python -m devtools.bench lower-bound DROP OUT`` runs the lower bound
alone; ``python -m devtools.bench growth`` (``make bench-growth``) the growth curve alone, rewriting
only its block of BENCHMARKS.md. ``make bench`` rewrites only its own block, the other benchmarks'
blocks and the notes written by hand stay.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


KEY = "benchmark-key-not-a-secret"
DAY = "2026-03-17"  # the metro day (a term-time Tuesday)
HISTORY = ("2026-02-17", 28)  # 28 small days before it
VOLUMES = (0.5, 1.0, 2.0, 4.0)  # issue #32: 0.5x to 4x; the 4x night must run within 24 GiB
BENCH_BEGIN, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
GROWTH_BEGIN, GROWTH_END = "<!-- bench-growth:start -->", "<!-- bench-growth:end -->"
CHART = ROOT / "docs" / "benchmarks_growth.png"


@dataclass
class Stage:
    key: str
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    before_each: Callable[[], None] | None = None
    target_s: float | None = None
    target_mib: float | None = None
    target_ratio: float | None = None  # at most this many times the lower bound
    note: str = ""
    ok_codes: tuple[int, ...] = (0,)
    runs: int | None = None


@dataclass
class Result:
    stage: Stage
    walls: list[float]
    peaks: list[float]
    outputs: list[str]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak_mib(self) -> float:
        return max(self.peaks)


def measure(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)
) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS MiB of the child, its stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) not in ok_codes:
        raise RuntimeError(
            f"benchmark command failed ({os.waitstatus_to_exitcode(status)}): {' '.join(command)}\n"
            f"{stdout[-1500:]}\n{stderr[-3000:]}"
        )
    return wall, usage.ru_maxrss / 1024, stdout


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# -- the lower bound ------------------------------------------------------------------------
DUCKDB_ENCODING = {"cp1252": "CP1252", "utf-8": "utf-8", "latin-1": "latin-1"}


def lower_bound(drop: Path, out: Path) -> dict[str, float]:
    """DuckDB alone: every delivered file of the drop read once, written as Parquet, one group-by.

    CSVs are read with their contract's encoding and delimiter, as text (typing, rules and
    pseudonyms are what the pipeline adds); JSONL natively; the GTFS zip is unpacked by Python's
    zipfile (DuckDB reads no zip) and its tables read as CSV. The maintenance .xlsx (14 kB a
    day) is left out: DuckDB reads no Excel file without a network-installed extension."""
    import zipfile

    import duckdb

    from ingestion import registry
    from ingestion.contracts import contract

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("LOAD encodings")
    figures = {"files": 0, "bytes": 0, "rows": 0, "skipped_bytes": 0}

    def to_parquet(source_sql: str, name: str) -> None:
        target = out / f"{name}.parquet"
        con.execute(f"COPY (SELECT * FROM {source_sql}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        rows = con.sql(
            f"SELECT sum(n) FROM (SELECT #1, count(*) AS n FROM read_parquet('{target}') GROUP BY #1)"
        ).fetchone()[0]
        figures["rows"] += int(rows or 0)

    for operator, spec in registry.operators().items():
        for feed in spec["feeds"]:
            folder = drop / spec["drop"].get("path", operator) / feed
            if not folder.is_dir():
                continue
            c = contract(operator, feed)
            for f in sorted(folder.iterdir()):
                size = f.stat().st_size
                name = f"{operator}__{feed}__{f.stem}"
                if c.format == "csv":
                    enc = DUCKDB_ENCODING[c.file.get("encoding", "utf-8").lower()]
                    to_parquet(
                        f"read_csv('{f}', encoding='{enc}', delim='{c.file['delimiter']}', header=true, "
                        "all_varchar=true)",
                        name,
                    )
                elif c.format == "jsonl":
                    to_parquet(f"read_json('{f}', format='newline_delimited')", name)
                elif c.format == "gtfs":
                    unpacked = out / f"{name}_unzipped"
                    with zipfile.ZipFile(f) as z:
                        z.extractall(unpacked)
                    for table in sorted(unpacked.glob("*.txt")):
                        to_parquet(f"read_csv('{table}', header=true, all_varchar=true)", f"{name}__{table.stem}")
                else:
                    figures["skipped_bytes"] += size
                    continue
                figures["files"] += 1
                figures["bytes"] += size
    return figures


# -- the stages -----------------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "citylake.cli", *args]


def _simulate(out: Path, start: str, days: int, scale: str, volume: float = 1.0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "devtools",
        "simulate",
        "--start",
        start,
        "--days",
        str(days),
        "--scale",
        scale,
        "--volume",
        str(volume),
        "--faults",
        "default",
        "--out",
        str(out),
        "--no-progress",
    ]


def _env(lake: Path, drop: Path | None = None, warehouse: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"CITYLAKE_LAKE_URI": lake.as_uri(), "CITYLAKE_PSEUDONYM_KEY": KEY, **extra}
    if drop:
        env["CITYLAKE_DROP_ROOT"] = drop.as_uri()
    if warehouse:
        env["CITYLAKE_WAREHOUSE"] = str(warehouse)
    return env


def _rm(*paths: Path) -> Callable[[], None]:
    def reset() -> None:
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    return reset


def _setup(command: list[str], env: dict[str, str] | None = None) -> None:
    wall, mib, _ = measure(command, ROOT, env)
    print(f"  (setup, not timed: {' '.join(command[2:5])} ... {wall:.0f} s, {mib:.0f} MiB)", flush=True)


def _night(work: Path, name: str, drop: Path) -> Stage:
    lake, wh = work / f"{name}-lake", work / f"{name}.duckdb"
    return Stage(
        name,
        "",
        [sys.executable, "-m", "devtools.airflow_run", DAY],
        env=_env(lake, drop, wh, AIRFLOW_HOME=str(work / "airflow_home")),
        before_each=_rm(lake, wh),
    )


def run_stage(stage: Stage, runs: int) -> Result:
    walls, peaks, outputs = [], [], []
    n = stage.runs or runs
    for i in range(n):
        if stage.before_each:
            stage.before_each()
        wall, mib, stdout = measure(stage.command, ROOT, stage.env, stage.ok_codes)
        walls.append(wall)
        peaks.append(mib)
        outputs.append(stdout)
        print(f"{stage.name}: run {i + 1}/{n} {wall:.1f} s, {mib:.0f} MiB", flush=True)
    return Result(stage, walls, peaks, outputs)


def airflow_split(result: Result) -> tuple[float, float]:
    """Return (median seconds inside tasks, median share of the process wall time outside them)."""
    inside, shares = [], []
    for wall, out in zip(result.walls, result.outputs, strict=True):
        line = [ln for ln in out.splitlines() if " tasks " in ln and "Airflow" in ln][-1]
        task_s = float(line.split(" tasks ")[1].split(" s")[0])
        inside.append(task_s)
        shares.append(1 - task_s / wall)
    return statistics.median(inside), statistics.median(shares)


def dbt_profile(top: int = 8) -> list[tuple[str, float]]:
    """The slowest dbt nodes of the last dbt invocation (its run_results.json)."""
    import json

    from citylake.build.dbt import target_dir

    data = json.loads((target_dir() / "run_results.json").read_text())
    nodes = sorted(data["results"], key=lambda r: -r["execution_time"])
    return [(r["unique_id"].split(".", 2)[-1], r["execution_time"]) for r in nodes[:top]]


def count_validations(drop: Path) -> int:
    import json

    return sum(d["validations"] for d in json.loads((drop / "simulation.json").read_text())["days"])


# -- the report -----------------------------------------------------------------------------
def _fmt_target(s: Stage) -> str:
    parts = [
        f"< {s.target_s:g} s" if s.target_s else "",
        f"< {s.target_mib / 1024:g} GiB" if s.target_mib else "",
        f"≤ {s.target_ratio:g}× lower bound" if s.target_ratio else "",
    ]
    return ", ".join(p for p in parts if p) or "—"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def stage_ok(r: Result, bound: float) -> bool:
    s = r.stage
    return (
        (not s.target_s or r.median < s.target_s)
        and (not s.target_mib or r.peak_mib < s.target_mib)
        and (not s.target_ratio or r.median <= s.target_ratio * bound)
    )


def growth_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): 1 is linear growth, below 1 sub-linear."""
    import math

    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def chart(growth: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [g["validations"] / 1e6 for g in growth]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, key, unit, title in ((axes[0], "wall", "s", "wall time"), (axes[1], "peak_gib", "GiB", "peak memory")):
        ys = [g[key] for g in growth]
        ax.plot(xs, ys, "o-", color="#1f5fa8", label="nightly refresh (Airflow dag.test)")
        ax.plot(
            [0, xs[-1]],
            [0, ys[0] * xs[-1] / xs[0]],
            "--",
            color="#999999",
            label=f"linear from the {growth[0]['volume']:g}× point",
        )
        for x, y, g in zip(xs, ys, growth, strict=True):
            ax.annotate(f"{g['volume']:g}×", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        ax.set_xlabel("validations in the night (millions)")
        ax.set_ylabel(unit)
        ax.set_title(f"Nightly refresh {title} vs volume")
        ax.set_xlim(0, xs[-1] * 1.12)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


#: What profiling showed and what was changed, before these figures were recorded (issue #10).
PROFILE_FIXES = """\
Profiled on 2026-11-22 on this machine (single runs, before → after):

- **ingest + parse** (pyinstrument): the AVL JSONL was handed to polars as a `StringIO` (3× slower
  than bytes), CSV lines were split and stripped in Python, every typed value was evaluated again
  inside each validity rule, and each card id went through `hmac.new`. Now: bytes to
  `read_ndjson`, lines split in polars, each typed value computed once, HMAC from precomputed
  key states (same RFC 2104 bytes). Metro day 18.4 s → 13.3 s; the staged Parquet is identical.
- **dbt build** (dbt's per-node timing, `run_results.json`): `int_journey_stages_chained` (20.9 s)
  and `int_fare_transactions_located` (11.1 s) chose the nearest candidate with
  `row_number() over (…) = 1`, a window sort over ~20 M candidate rows. Now one hash aggregate
  (`arg_min` on a struct key): 9.8 s and 8.5 s; metro full build 53 s → 38 s, peak 5.7 → 3.6 GiB.
  Same rows, except that two validations whose stop the trip lists twice in a row, previously
  placed on either visit at random (a tie the window sort left open), now always take the earlier.
"""


def render_growth(growth: list[dict]) -> str:
    """The growth curve's block of BENCHMARKS.md (between its markers): the table, the fitted
    exponents against issue #32's targets (the 1× night ≤ 60 s, memory ∝ volume^≤0.7, the 4×
    night within this machine's memory), the chart."""
    xs = [g["validations"] for g in growth]
    k_time = growth_exponent(xs, [g["wall"] for g in growth]) if len(growth) > 1 else float("nan")
    k_mem = growth_exponent(xs, [g["peak_gib"] for g in growth]) if len(growth) > 1 else float("nan")
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        GROWTH_BEGIN,
        "## Growth curve",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}. The same night (Airflow `dag.test()`, fresh lake and "
        f"warehouse, the metro day {DAY}) at {len(growth)} volumes of the metro scenario (`python -m devtools "
        "simulate --scale metro --volume v`: validations and trips scaled together); one run per volume.",
        "",
        "| volume | validations | wall | s per M validations | peak memory |",
        "|---|---|---|---|---|",
    ]
    for g in growth:
        lines.append(
            f"| {g['volume']:g}× | {g['validations'] / 1e6:.2f} M | {g['wall']:.1f} s | "
            f"{g['wall'] / (g['validations'] / 1e6):.1f} | {g['peak_gib']:.2f} GiB |"
        )
    lines += [
        "",
        f"Fitted on log-log: wall time ∝ volume^{k_time:.2f}, peak memory ∝ volume^{k_mem:.2f} "
        "(1 is linear; fixed costs — interpreter, dbt parse, Airflow — make small nights dearer per validation).",
    ]
    one = [g for g in growth if g["volume"] == 1.0]
    if one:
        lines.append(f"- The metro night (1×): {one[0]['wall']:.1f} s, target ≤ 60 s: {_yes(one[0]['wall'] <= 60)}.")
    if len(growth) > 1:

        def step(a: dict, b: dict, key: str) -> float:
            return growth_exponent([a["validations"], b["validations"]], [a[key], b[key]])

        pairs = list(zip(growth, growth[1:], strict=False))
        worst = max(step(a, b, "peak_gib") for a, b in pairs)
        steps = "; ".join(
            f"{a['volume']:g}×→{b['volume']:g}×: time ^{step(a, b, 'wall'):.2f}, memory ^{step(a, b, 'peak_gib'):.2f}"
            for a, b in pairs
        )
        lines += [
            f"- Memory ∝ volume^{k_mem:.2f} fitted, up to ^{worst:.2f} between two volumes; target ≤ 0.7 at every "
            f"step: {_yes(worst <= 0.7)}.",
            f"- Step by step: {steps}. DuckDB's memory_limit (CITYLAKE_DUCKDB_MEMORY_LIMIT, "
            f"{os.environ.get('CITYLAKE_DUCKDB_MEMORY_LIMIT', '8GB')} here) caps the build: a night that needs more "
            "spills to the temp folder, so the exponent of a step falls when its larger night reaches the limit.",
        ]
    biggest = growth[-1] if growth else None
    if biggest:
        lines.append(
            f"- The {biggest['volume']:g}× night peaks at {biggest['peak_gib']:.2f} GiB of this machine's "
            f"{ram_gib:.0f} GiB: {_yes(biggest['peak_gib'] < ram_gib)}."
        )
    lines += ["", f"![growth curve]({CHART.relative_to(ROOT).as_posix()})", GROWTH_END]
    return "\n".join(lines)


def replace_block(text: str, begin: str, end: str, block: str, default_at: int | None = None) -> str:
    """``text`` with what lies between ``begin`` and ``end`` (markers included) replaced by
    ``block``; without the markers, ``block`` is inserted at ``default_at`` (the end if None)."""
    if begin in text and end in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    at = len(text) if default_at is None else default_at
    return text[:at] + block + "\n\n" + text[at:].lstrip("\n")


def write_benchmarks(bench_block: str | None, growth_block: str | None) -> None:
    """Write make bench's block and/or the growth curve's into BENCHMARKS.md; every other block
    (bench-history, bench-accuracy, bench-memory, bench-backfill) and the notes written by hand stay."""
    from devtools.bench_history import BEGIN as HISTORY_BEGIN

    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if bench_block is not None:
        block = f"{BENCH_BEGIN}\n{bench_block.rstrip()}\n{BENCH_END}"
        if BENCH_BEGIN not in text and HISTORY_BEGIN in text:  # written before the markers: what precedes
            text = text[text.index(HISTORY_BEGIN) :]  # the history block was make bench's
        text = replace_block(text, BENCH_BEGIN, BENCH_END, block, default_at=0)
    if growth_block is not None:
        default = text.index(BENCH_END) + len(BENCH_END) if BENCH_END in text else None
        text = replace_block(text, GROWTH_BEGIN, GROWTH_END, growth_block, default_at=default)
    path.write_text(text, encoding="utf-8")


def measure_growth(work: Path, volumes: tuple[float, ...], runs: int, known: dict[float, tuple] | None = None):
    """The night through Airflow at each volume of the metro scenario, each from a fresh lake;
    ``known`` gives (Result, validations) of volumes already measured (make bench's 1× night)."""
    growth = []
    for v in volumes:
        if known and v in known:
            r, validations = known[v]
        else:
            drop = work / f"metro-x{v:g}"
            _setup(_simulate(drop, DAY, 1, "metro", v))
            validations = count_validations(drop)
            r = run_stage(_night(work, f"night_x{v:g}", drop), runs)
            shutil.rmtree(drop, ignore_errors=True)
            shutil.rmtree(work / f"night_x{v:g}-lake", ignore_errors=True)
            (work / f"night_x{v:g}.duckdb").unlink(missing_ok=True)
        growth.append({"volume": v, "validations": validations, "wall": r.median, "peak_gib": r.peak_mib / 1024})
    return growth


def prepare_airflow(work: Path) -> None:
    _setup(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from devtools.airflow_run import "
            "prepare_airflow_home as p; p(Path(sys.argv[1]))",
            str(work / "airflow_home"),
        ]
    )


def main_growth(volumes: tuple[float, ...]) -> int:
    """``make bench-growth``: the growth curve alone, written into its block of BENCHMARKS.md."""
    runs = int(os.environ.get("CITYLAKE_BENCH_GROWTH_RUNS", "1"))
    work = Path(tempfile.mkdtemp(prefix="citylake-bench-growth-"))
    try:
        prepare_airflow(work)
        growth = measure_growth(work, volumes, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    chart(growth, CHART)
    block = render_growth(growth)
    write_benchmarks(None, block)
    print(block)
    return 0


def render(
    results: dict[str, Result],
    bound: Result,
    growth: list[dict],
    runs: int,
    growth_runs: int,
    profile: list[tuple[str, float]],
    accuracy: dict[str, float],
) -> str:
    night = results["night_metro"]
    inside, share = airflow_split(night)
    lb = bound.median
    metro_validations = growth[[g["volume"] for g in growth].index(1.0)]["validations"] if growth else 0
    k_time = (
        growth_exponent([g["validations"] for g in growth], [g["wall"] for g in growth])
        if len(growth) > 1
        else float("nan")
    )
    k_mem = (
        growth_exponent([g["validations"] for g in growth], [g["peak_gib"] for g in growth])
        if len(growth) > 1
        else float("nan")
    )
    ingest = results["ingest"]
    span = f"{growth[0]['volume']:g}× to {growth[-1]['volume']:g}×" if growth else "—"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Do not edit by hand: rerun it.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: citylake {version('citylake')}, duckdb {version('duckdb')}, polars {version('polars')}, "
        f"pyarrow {version('pyarrow')}, dbt-core {version('dbt-core')}, apache-airflow {version('apache-airflow')}",
        f"- Method: every stage in a fresh process, {runs} runs (growth curve: {growth_runs} run(s) per volume, "
        "the 1× point is the nightly stage below); median wall time, largest peak RSS of the process. "
        f"Data: the simulator, fixed seed, default faults; the metro day is {DAY} "
        f"({metro_validations / 1e6:.2f} M validations).",
        "",
        "## Targets (issue #10)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| ingest + parse ≤ 2× its lower bound | {ingest.median:.1f} s = {ingest.median / lb:.2f}× {lb:.1f} s | "
        f"{_yes(ingest.median <= 2 * lb)} |",
        f"| nightly refresh at metro scale < 3 min wall | {night.median:.1f} s | {_yes(night.median < 180)} |",
        f"| peak memory < 8 GiB (nightly refresh, metro) | {night.peak_mib / 1024:.2f} GiB | "
        f"{_yes(night.peak_mib < 8192)} |",
        f"| Airflow overhead < 20 % | {share:.1%} of the process wall time outside tasks | {_yes(share < 0.20)} |",
        f"| time grows no faster than linearly | volume^{k_time:.2f} ({span}) | {_yes(k_time <= 1.0)} |",
        f"| memory grows no faster than linearly | volume^{k_mem:.2f} ({span}) | {_yes(k_mem <= 1.0)} |",
        "",
        "## Stages",
        "",
        "| stage | median wall | runs (s) | peak memory | × lower bound | target | met |",
        "|---|---|---|---|---|---|---|",
        f"| {bound.stage.name} | {lb:.1f} s | {', '.join(f'{w:.1f}' for w in bound.walls)} | "
        f"{bound.peak_mib / 1024:.2f} GiB | 1.00 | — | — |",
    ]
    for r in results.values():
        s = r.stage
        met = _yes(stage_ok(r, lb)) if (s.target_s or s.target_mib or s.target_ratio) else "—"
        lines.append(
            f"| {s.name} | {r.median:.1f} s | {', '.join(f'{w:.1f}' for w in r.walls)} | {r.peak_mib / 1024:.2f} GiB | "
            f"{r.median / lb:.2f} | {_fmt_target(s)} | {met} |"
        )
    lines += ["", "Notes:", ""]
    lines.append(f"- lower bound: {bound.stage.note}")
    lines += [f"- {r.stage.name}: {r.stage.note}" for r in results.values() if r.stage.note]
    lines += [
        f"- Airflow's share: the nightly process ran {night.median:.1f} s (median), {inside:.1f} s of it inside the "
        f"tasks; the rest ({share:.1%}) is Airflow (interpreter and Airflow start, DAG parse, `dag.test()` "
        "scheduling, XCom and metadata in SQLite) — measured against the whole process, the strictest reading.",
        "",
    ]
    lines += [render_growth(growth), ""]
    lines += [
        "## Profile of the slowest stage and what was fixed",
        "",
        "Slowest dbt nodes of the metro full build (dbt's own timing, last run above):",
        "",
        "| node | seconds |",
        "|---|---|",
    ]
    lines += [f"| {n} | {t:.2f} |" for n, t in profile]
    lines += ["", PROFILE_FIXES]
    return "\n".join(lines) + "\n" + render_accuracy(accuracy)


#: Targets of issue #5 on the metro scenario with default faults: (figure, target, comparison).
ACCURACY_TARGETS = {
    "inferred_share": (0.80, ">="),
    "load_profile_wape": (0.10, "<="),
    "line_boardings_wape": (0.02, "<="),
    "network_boardings_error": (0.02, "abs<="),
}


#: Why a missed accuracy target is missed, written under the table whenever it is.
ACCURACY_NOTES = {
    "line_boardings_wape": (
        "Line boardings carry what is left of the APC counters' bias: the simulator's infrared counters miss "
        "4 % of boardings (methods_and_kpis.md §1.5), and citylake corrects them by the manual counts of the "
        "surveyed trips (docs/transit_method.md); on a single day the correction rests on the network's few "
        "surveyed APC trips, with a wide interval, not on each line's."
    ),
}
ACCURACY_NOTES["network_boardings_error"] = ACCURACY_NOTES["line_boardings_wape"]


def figures_of(out: str) -> dict[str, float]:
    """The figures ``python -m devtools evaluate`` printed (``name: value`` lines)."""
    return {k.strip(): float(v) for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def evaluate_in(env: dict[str, str], *args: str) -> dict[str, float]:
    """Run ``python -m devtools evaluate ARGS`` in a clean process with ``env``; return its figures."""
    command = [sys.executable, "-m", "devtools", "evaluate", *args]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return figures_of(out)


def evaluate_metro(work: Path) -> dict[str, float]:
    """Accuracy of the metro day built by the benchmark (marts vs the simulator's truth)."""
    env = {
        **os.environ,
        "CITYLAKE_LAKE_URI": (work / "ingest-lake").as_uri(),
        "CITYLAKE_WAREHOUSE": str(work / "warehouse.duckdb"),
        "CITYLAKE_PSEUDONYM_KEY": "benchmark-key-not-a-secret",
    }
    return evaluate_in(env, "--truth", str(work / "metro"))


def render_accuracy(figures: dict[str, float]) -> str:
    lines = [
        "",
        "## Accuracy of the transit marts (metro day, default faults)",
        "",
        "`python -m devtools evaluate` against the simulator's ground truth (same run as above).",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for name, value in figures.items():
        target, met = "—", "—"
        if name in ACCURACY_TARGETS:
            limit, op = ACCURACY_TARGETS[name]
            ok = value >= limit if op == ">=" else (abs(value) <= limit if op == "abs<=" else value <= limit)
            target, met = (
                f"{op.replace('abs<=', 'abs ≤').replace('>=', '≥').replace('<=', '≤')} {limit:g}",
                "yes" if ok else "**no**",
            )
        lines.append(f"| {name} | {value:.4f} | {target} | {met} |")
    notes = {ACCURACY_NOTES[n] for n, v in figures.items() if n in ACCURACY_NOTES and not _met(n, v)}
    if notes:
        lines += ["", "Missed targets and their cause:", ""] + [f"- {n}" for n in sorted(notes)]
    return "\n".join(lines) + "\n"


def _met(name: str, value: float) -> bool:
    limit, op = ACCURACY_TARGETS[name]
    return value >= limit if op == ">=" else (abs(value) <= limit if op == "abs<=" else value <= limit)


def evaluate(lake: Path, warehouse: Path, drop: Path) -> dict[str, float]:
    """Accuracy of the metro day built by the benchmark (marts vs the simulator's truth)."""
    env = {**os.environ, **_env(lake, warehouse=warehouse)}
    out = subprocess.run(
        [sys.executable, "-m", "devtools", "evaluate", "--truth", str(drop)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return figures_of(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "lower-bound":
        figures = lower_bound(Path(args[1]), Path(args[2]))
        print(" ".join(f"{k}={v}" for k, v in figures.items()))
        return 0
    if args and args[0] == "growth":
        volumes = tuple(float(v) for v in args[1].split(",")) if len(args) > 1 else VOLUMES
        return main_growth(volumes)
    runs = int(os.environ.get("CITYLAKE_BENCH_RUNS", "3"))
    growth_runs = int(os.environ.get("CITYLAKE_BENCH_GROWTH_RUNS", "1"))
    work = Path(tempfile.mkdtemp(prefix="citylake-bench-"))
    started = time.perf_counter()
    metro = work / "metro"
    try:
        results: dict[str, Result] = {}
        results["simulate"] = run_stage(
            Stage(
                "simulate",
                "simulate one metro day (~1.5 M validations, 28 tiles of the sample network)",
                _simulate(metro, DAY, 1, "metro"),
                before_each=_rm(metro),
                target_s=60,
                target_mib=4096,
                note="issue #3: under 60 s and 4 GiB; its last run is the drop every stage below reads",
            ),
            runs,
        )
        bound = run_stage(
            Stage(
                "bound",
                "lower bound: DuckDB alone reads the day's files, writes Parquet once, one group-by",
                [sys.executable, "-m", "devtools.bench", "lower-bound", str(metro), str(work / "bound")],
                before_each=_rm(work / "bound"),
                note=(
                    "every delivered file of the metro day read once by DuckDB (CSV with its contract's encoding and "
                    "delimiter, as text; JSONL; the GTFS tables after Python's zipfile unpacks them), written as zstd "
                    "Parquet, then one group-by per table; the 14 kB maintenance .xlsx is left out (DuckDB reads no "
                    "Excel offline). No typing, rules, pseudonyms, manifest or raw copy: what the pipeline adds"
                ),
            ),
            runs,
        )
        metro_lake, metro_wh = work / "metro-lake", work / "metro.duckdb"
        results["ingest"] = run_stage(
            Stage(
                "ingest",
                "ingest + parse one metro day (validations, AVL, APC, trips, parking, maintenance, GTFS)",
                _cli("ingest", "--no-progress"),
                env=_env(metro_lake, metro),
                before_each=_rm(metro_lake),
                target_s=30,
                target_ratio=2,
                note="issues #4 and #10: under 30 s and ≤ 2× the lower bound; each run from an empty lake "
                "(lands raw, parses, types, pseudonymises, stages, writes the manifest)",
            ),
            runs,
        )
        results["dbt_full"] = run_stage(
            Stage(
                "dbt_full",
                "dbt build (full) of the metro day: every model and data test",
                _cli("build", "--full-refresh"),
                env=_env(metro_lake, warehouse=metro_wh),
                before_each=_rm(metro_wh),
                note="the lake of the last ingest run; each run rebuilds the warehouse from scratch",
            ),
            runs,
        )
        profile = dbt_profile()
        results["gate"] = run_stage(
            Stage(
                "gate",
                "quality suites + publication of the metro day (`citylake publish`)",
                _cli("publish", "--date", DAY),
                env=_env(metro_lake, warehouse=metro_wh),
                ok_codes=(0, 1),
                note="Great Expectations suites on the candidate marts, gate, Parquet export and atomic pointer "
                "switch; "
                "a refused group still counts (its checks ran)",
            ),
            runs,
        )

        # 28 small days, then the metro day on top of them
        small, hist_lake, hist_wh = work / "small28", work / "hist-lake", work / "hist.duckdb"
        _setup(_simulate(small, HISTORY[0], HISTORY[1], "small"))
        _setup(_cli("ingest", "--no-progress"), _env(hist_lake, small))
        full_wh = work / "hist-full.duckdb"
        results["dbt_full_28"] = run_stage(
            Stage(
                "dbt_full_28",
                "dbt full rebuild of 28 small days (~20 k validations a weekday)",
                _cli("build", "--full-refresh"),
                env=_env(hist_lake, warehouse=full_wh),
                before_each=_rm(full_wh),
                note=f"{HISTORY[0]} and the 27 days after",
            ),
            runs,
        )
        shutil.copyfile(full_wh, hist_wh)
        inc_lake, inc_wh = work / "inc-lake", work / "inc.duckdb"
        shutil.copytree(hist_lake, inc_lake)
        _setup(_cli("ingest", "--no-progress"), _env(inc_lake, metro))

        def fresh_incremental() -> None:
            shutil.copyfile(hist_wh, inc_wh)

        results["dbt_incremental"] = run_stage(
            Stage(
                "dbt_incremental",
                "dbt incremental build of the metro day on top of 28 days already built",
                _cli("build", "--dates", DAY),
                env=_env(inc_lake, warehouse=inc_wh),
                before_each=fresh_incremental,
                note="each run starts from a copy of the 28-day warehouse; incremental models compute only the new "
                "day, "
                "tables (dimensions, monthly marts) are rebuilt over the 29 days",
            ),
            runs,
        )

        # the whole night through Airflow, and its growth with the volume
        prepare_airflow(work)
        night = _night(work, "night_metro", metro)
        night.name = "nightly refresh through Airflow (dag.test), one metro day: ingest, build, audit, publish"
        night.target_s, night.target_mib = 180, 8192
        night.note = (
            "issues #8 and #10: under 3 minutes and 8 GiB; each run from an empty lake and warehouse, "
            "the partitioned DAG run by dag.test() in one process"
        )
        results["night_metro"] = run_stage(night, runs)
        known = {1.0: (results["night_metro"], count_validations(metro))}
        growth = measure_growth(work, VOLUMES, growth_runs, known)
        accuracy = evaluate(metro_lake, metro_wh, metro)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    chart(growth, CHART)
    text = render(results, bound, growth, runs, growth_runs, profile, accuracy)
    text += f"\n_`make bench` took {(time.perf_counter() - started) / 60:.1f} minutes._\n"
    write_benchmarks(text, None)  # the growth curve is in it
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
