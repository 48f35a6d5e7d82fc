"""``make bench``: measure each stage in its own process and write BENCHMARKS.md.

Every stage runs as a fresh subprocess (so peak memory is that stage's own, read from the
kernel's rusage of the child) a number of times; the median wall time and the largest peak
memory are reported with the machine, the versions and the date. Figures are written as
measured, with their targets; a missed target says so.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    command: list[str]
    target_s: float | None = None
    target_mib: float | None = None
    note: str = ""
    env: dict[str, str] | None = None
    setup: list[str] | None = None  # run once before the measured runs, not timed
    reset: Path | None = None  # folder emptied before each measured run
    reset_also: Path | None = None  # a file removed before each measured run


@dataclass
class Result:
    stage: Stage
    walls: list[float]
    peak_mib: float

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


LAST_OUTPUT: dict[str, str] = {}


def measure(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS MiB of the child)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.PIPE,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        LAST_OUTPUT["stdout"] = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"benchmark command failed: {' '.join(command)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


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
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def stages(work: Path) -> list[Stage]:
    citylake = [sys.executable, "-m", "citylake.cli"]
    return [
        Stage(
            "simulate one metro day (~1.5 M validations, 28 tiles of the sample network)",
            [*citylake, "simulate", "--start", "2026-03-17", "--days", "1", "--scale", "metro",
             "--faults", "default", "--out", str(work / "metro"), "--no-progress"],
            target_s=60, target_mib=4096,
            note="issue #3: under 60 s and 4 GiB",
        ),
        Stage(
            "ingest + parse one metro day (~1.5 M validations, AVL, APC, trips, parking, maintenance, GTFS)",
            [*citylake, "ingest", "--no-progress"],
            target_s=30,
            note="issue #4: under 30 s on this 2-core machine; the drop is simulated once (not timed), each run starts from an empty lake",
            env={"CITYLAKE_LAKE_URI": (work / "ingest-lake").as_uri(), "CITYLAKE_DROP_ROOT": (work / "metro").as_uri(),
                 "CITYLAKE_PSEUDONYM_KEY": "benchmark-key-not-a-secret"},
            setup=[*citylake, "simulate", "--start", "2026-03-17", "--days", "1", "--scale", "metro",
                   "--faults", "default", "--out", str(work / "metro"), "--no-progress"],
            reset=work / "ingest-lake",
        ),
        Stage(
            "dbt build (full) of the metro day: transit marts and their tests",
            [*citylake, "build", "--full-refresh"],
            note="the lake left by the last ingest run; each run rebuilds the warehouse from scratch",
            env={"CITYLAKE_LAKE_URI": (work / "ingest-lake").as_uri(), "CITYLAKE_WAREHOUSE": str(work / "warehouse.duckdb")},
            reset=work / "warehouse.duckdb",
        ),
        Stage(
            "nightly refresh through Airflow (dag.test), one small day: ingest, build, audit, publish",
            [sys.executable, "-m", "citylake.airflow_run", "2026-03-17"],
            note="issue #8; each run from an empty lake and warehouse; Airflow's share below",
            env={"CITYLAKE_LAKE_URI": (work / "night-small-lake").as_uri(), "CITYLAKE_DROP_ROOT": (work / "small1").as_uri(),
                 "CITYLAKE_WAREHOUSE": str(work / "night-small.duckdb"), "AIRFLOW_HOME": str(work / "airflow_home"),
                 "CITYLAKE_PSEUDONYM_KEY": "benchmark-key-not-a-secret"},
            setup=[*citylake, "simulate", "--start", "2026-03-17", "--days", "1", "--scale", "small",
                   "--faults", "default", "--out", str(work / "small1"), "--no-progress"],
            reset=work / "night-small-lake",
            reset_also=work / "night-small.duckdb",
        ),
        Stage(
            "nightly refresh through Airflow (dag.test), one metro day: ingest, build, audit, publish",
            [sys.executable, "-m", "citylake.airflow_run", "2026-03-17"],
            target_s=180, target_mib=8192,
            note="issues #8 and #10 (target under 3 minutes and 8 GiB); each run from an empty lake and warehouse",
            env={"CITYLAKE_LAKE_URI": (work / "night-metro-lake").as_uri(), "CITYLAKE_DROP_ROOT": (work / "metro").as_uri(),
                 "CITYLAKE_WAREHOUSE": str(work / "night-metro.duckdb"), "AIRFLOW_HOME": str(work / "airflow_home"),
                 "CITYLAKE_PSEUDONYM_KEY": "benchmark-key-not-a-secret"},
            reset=work / "night-metro-lake",
            reset_also=work / "night-metro.duckdb",
        ),
        Stage(
            "simulate 7 small days (~20 k validations a weekday)",
            [*citylake, "simulate", "--start", "2026-03-16", "--days", "7", "--scale", "small",
             "--faults", "default", "--out", str(work / "small"), "--no-progress"],
        ),
    ]


def render(results: list[Result], runs: int) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Do not edit by hand: rerun it.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: citylake {version('citylake')}, duckdb {version('duckdb')}, polars {version('polars')}, "
        f"pyarrow {version('pyarrow')}, numpy {version('numpy')}",
        f"- Method: each stage in a fresh process, {runs} runs; median wall time, largest peak RSS of the process.",
        "",
        "| stage | median wall | runs (s) | peak memory | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.stage
        target = ", ".join(x for x in (f"< {s.target_s:g} s" if s.target_s else "", f"< {s.target_mib / 1024:g} GiB" if s.target_mib else "") if x) or "—"
        met = "—"
        if s.target_s or s.target_mib:
            ok = (not s.target_s or r.median < s.target_s) and (not s.target_mib or r.peak_mib < s.target_mib)
            met = "yes" if ok else "**no**"
        runs_s = ", ".join(f"{w:.1f}" for w in r.walls)
        lines.append(f"| {s.name} | {r.median:.1f} s | {runs_s} | {r.peak_mib / 1024:.2f} GiB | {target} | {met} |")
    lines += ["", "Notes:", ""]
    lines += [f"- {r.stage.name}: {r.stage.note}" for r in results if r.stage.note]
    return "\n".join(lines) + "\n"


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
        "Line boardings run about 3 % low: APC counters under-count boardings (the simulator's infrared "
        "counters miss 4 %, the direction reported in methods_and_kpis.md §1.5), and citylake takes APC counts "
        "as the boardings of equipped trips and measures the validation rate on them, so the bias carries over "
        "to every line. An agency would apply the correction factor certified by its APC acceptance tests "
        "(manual counts) in stg_apc__passenger_counts; no factor is applied here, because the only value "
        "available would be the simulator's own parameter."
    ),
}
ACCURACY_NOTES["network_boardings_error"] = ACCURACY_NOTES["line_boardings_wape"]


def evaluate_metro(work: Path) -> dict[str, float]:
    """Accuracy of the metro day built by the benchmark (marts vs the simulator's truth)."""
    env = {**os.environ, "CITYLAKE_LAKE_URI": (work / "ingest-lake").as_uri(),
           "CITYLAKE_WAREHOUSE": str(work / "warehouse.duckdb"), "CITYLAKE_PSEUDONYM_KEY": "benchmark-key-not-a-secret"}
    out = subprocess.run([sys.executable, "-m", "citylake.cli", "evaluate", "--truth", str(work / "metro")],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return {k.strip(): float(v) for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def render_accuracy(figures: dict[str, float]) -> str:
    lines = ["", "## Accuracy of the transit marts (metro day, default faults)", "",
             "`citylake evaluate` against the simulator's ground truth (same run as above).", "",
             "| figure | value | target | met |", "|---|---|---|---|"]
    for name, value in figures.items():
        target, met = "—", "—"
        if name in ACCURACY_TARGETS:
            limit, op = ACCURACY_TARGETS[name]
            ok = value >= limit if op == ">=" else (abs(value) <= limit if op == "abs<=" else value <= limit)
            target, met = f"{op.replace('abs<=', 'abs ≤').replace('>=', '≥').replace('<=', '≤')} {limit:g}", "yes" if ok else "**no**"
        lines.append(f"| {name} | {value:.4f} | {target} | {met} |")
    notes = {ACCURACY_NOTES[n] for n, v in figures.items() if n in ACCURACY_NOTES and not _met(n, v)}
    if notes:
        lines += ["", "Missed targets and their cause:", ""] + [f"- {n}" for n in sorted(notes)]
    return "\n".join(lines) + "\n"


def _met(name: str, value: float) -> bool:
    limit, op = ACCURACY_TARGETS[name]
    return value >= limit if op == ">=" else (abs(value) <= limit if op == "abs<=" else value <= limit)


def main(argv: list[str] | None = None) -> int:
    runs = int(os.environ.get("CITYLAKE_BENCH_RUNS", "3"))
    work = Path(tempfile.mkdtemp(prefix="citylake-bench-"))
    results = []
    try:
        for stage in stages(work):
            walls, peak = [], 0.0
            if stage.setup and not Path(stage.setup[stage.setup.index("--out") + 1], "simulation.json").exists():
                measure(stage.setup, ROOT)
            for i in range(runs):
                if stage.reset and stage.reset.is_dir():
                    shutil.rmtree(stage.reset, ignore_errors=True)
                elif stage.reset:
                    stage.reset.unlink(missing_ok=True)
                if stage.reset_also:
                    stage.reset_also.unlink(missing_ok=True)
                wall, mib = measure(stage.command, ROOT, stage.env)
                if "airflow_run" in " ".join(stage.command):
                    share = [ln for ln in LAST_OUTPUT.get("stdout", "").splitlines() if "Airflow" in ln]
                    stage.note = stage.note.split(" | ")[0] + (" | last run: " + share[-1].strip() if share else "")
                walls.append(wall)
                peak = max(peak, mib)
                print(f"{stage.name}: run {i + 1}/{runs} {wall:.1f} s, {mib:.0f} MiB", flush=True)
            results.append(Result(stage, walls, peak))
        accuracy = evaluate_metro(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results, runs) + render_accuracy(accuracy)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
