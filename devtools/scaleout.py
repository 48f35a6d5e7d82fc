"""``make scaleout-check``: the nightly refresh on Airflow's CeleryExecutor, two workers, for real.

On 127.0.0.1, in a throwaway folder, this script starts:

* PostgreSQL (Debian's ``postgresql`` package) for Airflow's metadata and Celery's results;
* Redis (Debian's ``redis-server``) as the Celery broker;
* Airflow's api-server (the task execution API), scheduler and dag-processor;
* two Celery workers (``airflow celery worker``, one task slot each, named ``w1`` and ``w2``).

It simulates two service days, triggers the night that sees both, waits for it, and checks that:

1. the DAG run succeeded, and its partitions ran on both workers;
2. the marts it published equal, row by row, those of the single-process run (``citylake run``,
   unpartitioned) over a copy of the same delivered files.

Then the history load (issue #32): the two workers restarted on an empty lake, it triggers the
``backfill_range`` DAG over the same two days in one-date batches and checks that it succeeded,
its tasks ran on both workers, and its marts equal, row by row, those of ``citylake backfill``
(one process) over the same files.

Exit code 0 only when all of this holds. Missing Debian packages are installed with apt-get
(root) or named in the error. Everything stops and the folder is removed at the end (``--keep``
keeps it, with every component's log, for a post-mortem).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from devtools import SAMPLE_NETWORK

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_ID = "scaleout_check"
LOGICAL_DATE = "2026-04-01T04:30:00+00:00"  # 06:30 Paris: the night that sees 30 and 31 March
KEY = "scaleout-check-key-not-a-secret"
BACKFILL = ("2026-03-30", "2026-03-31")
BACKFILL_ENV = {"CITYLAKE_BATCH_MEMORY": "1MB", "CITYLAKE_REPORT_PDF": "never"}  # one date a batch: two batches


def worker_hostname() -> str:
    """Airflow's hostname_callable for the workers: the machine and the worker's name."""
    return f"{socket.getfqdn()}/{os.environ.get('CITYLAKE_WORKER_NAME', 'main')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    return PG_BIN


def ensure_packages() -> None:
    """Install PostgreSQL and Redis from Debian when missing (root), else say what to install."""
    missing = []
    if not (_pg_bin() / "pg_ctl").exists():
        missing.append("postgresql")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            f"scaleout-check needs the Debian packages {' '.join(missing)}: sudo apt-get install {' '.join(missing)}"
        )
    print(f"installing {' '.join(missing)} from Debian ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


class Stack:
    """The processes of the check; every one logs to <work>/logs/<name>.log and stops at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.pg_port, self.redis_port, self.api_port = _free_port(), _free_port(), _free_port()
        self.pgdata = work / "pgdata"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    # -- services ------------------------------------------------------------------------
    def start_postgres(self) -> None:
        sock = self.work / "pgsock"
        for d in (self.pgdata, sock):
            d.mkdir()
        if self.as_postgres:
            shutil.chown(self.work, "postgres")
            for d in (self.pgdata, sock, self.logs):
                shutil.chown(d, "postgres")
        pg = _pg_bin()
        subprocess.run(
            [
                *self.as_postgres,
                str(pg / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "airflow",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                *self.as_postgres,
                str(pg / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-l",
                str(self.logs / "postgres.log"),
                "-o",
                f"-p {self.pg_port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow", "airflow"], check=True
        )

    def stop_postgres(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_postgres, str(_pg_bin() / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL after 30 s)."""
        p = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.stop_postgres()

    # -- airflow -------------------------------------------------------------------------
    def airflow_env(self, citylake_env: dict[str, str]) -> dict[str, str]:
        db = f"airflow@127.0.0.1:{self.pg_port}/airflow"
        return {
            **os.environ,
            **citylake_env,
            "AIRFLOW_HOME": str(self.work / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.scaleout.worker_hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),  # this run only, never written down
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "CITYLAKE_NIGHTLY_SCHEDULE": "none",
            "PYTHONPATH": str(ROOT),
        }

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        with (
            psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow") as conn,
            conn.cursor() as cur,
        ):
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []


def _citylake_env(work: Path, name: str, drop: Path) -> dict[str, str]:
    return {
        "CITYLAKE_LAKE_URI": (work / f"{name}-lake").as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_WAREHOUSE": str(work / f"{name}-warehouse.duckdb"),
        "CITYLAKE_PSEUDONYM_KEY": KEY,
    }


def _wait(what: str, probe, timeout: float, stack: Stack, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def single_process(work: Path, drop: Path, name: str, command: list[str], extra: dict[str, str] | None = None) -> None:
    """A citylake command in one process over its own copy of the drop, on its own lake ``name``."""
    env = {**os.environ, **_citylake_env(work, name, drop), **(extra or {})}
    out = subprocess.run(
        [sys.executable, "-m", "citylake.cli", *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"single-process {command[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def start_workers(stack: Stack, env: dict[str, str], count: int = 2) -> None:
    """Start ``count`` Celery workers, one task slot each, named w1, w2, ..."""
    airflow = [sys.executable, "-m", "airflow"]
    for name in (f"w{i}" for i in range(1, count + 1)):
        stack.start(
            f"worker-{name}",
            [
                *airflow,
                "celery",
                "worker",
                "--concurrency",
                "1",
                "--skip-serve-logs",
                "--celery-hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            {**env, "CITYLAKE_WORKER_NAME": name},
        )


def run_dag(stack: Stack, env: dict[str, str], dag_id: str, run_id: str, extra: list[str], timeout: float) -> tuple:
    """Unpause and trigger a DAG, wait for its run; print and return its state, wall time and
    task instances (task, map index, state, worker, seconds)."""
    airflow = [sys.executable, "-m", "airflow"]
    _wait(f"{dag_id} to be parsed", lambda: stack.sql("select 1 from dag where dag_id = %s", (dag_id,)), 300, stack)
    for cmd in (["dags", "unpause", dag_id], ["dags", "trigger", dag_id, "--run-id", run_id, *extra]):
        out = subprocess.run([*airflow, *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    print(f"triggered {dag_id} on the CeleryExecutor ...", flush=True)
    t0 = time.monotonic()

    def finished():
        rows = stack.sql("select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id))
        return rows and rows[0][0] in ("success", "failed") and rows[0][0]

    state = _wait(f"the {dag_id} run", finished, timeout, stack, every=3)
    wall = time.monotonic() - t0
    tis = stack.sql(
        "select task_id, map_index, state, hostname, extract(epoch from end_date - start_date) "
        "from task_instance where dag_id = %s and run_id = %s order by start_date",
        (dag_id, run_id),
    )
    print(f"\n{dag_id} run {state} in {wall:.0f} s; task instances:")
    for task_id, idx, st, host, secs in tis:
        print(f"  {task_id}{f'[{idx}]' if idx >= 0 else ''}: {st} on {host} ({float(secs or 0):.1f} s)")
    return state, wall, tis


def check_run(state: str, tis: list, ours: str, theirs: str, work: Path, what: str) -> list[str]:
    """What is wrong with a DAG run: not a success, not on both workers, marts unlike the
    single-process run's (``ours``, ``theirs``: the two lakes' names)."""
    workers = sorted({h.rsplit("/", 1)[-1] for _, _, _, h, _ in tis if h})
    problems = []
    if state != "success":
        problems.append(f"{what}: the DAG run ended {state}")
    if workers != ["w1", "w2"]:
        problems.append(f"{what}: tasks ran on {workers}, not on both workers")
    if state == "success":
        from citylake.core.settings import Settings
        from citylake.core.storage import open_storage
        from citylake.publish.reader import current
        from devtools.compare import compare_publications

        def storage_of(name: str):
            os.environ["CITYLAKE_LAKE_URI"] = (work / f"{name}-lake").as_uri()
            s = open_storage(Settings())
            return s, current(s)

        counts, diffs = compare_publications(storage_of(ours), storage_of(theirs))
        print(f"\n{what}: compared {len(counts)} marts, {sum(counts.values())} rows, with the single-process run:")
        for mart, n in counts.items():
            print(f"  {mart}: {n} rows")
        problems += [f"{what}: {d}" for d in diffs]
    return problems


def start_services(stack: Stack, citylake_env: dict[str, str]) -> dict[str, str]:
    """PostgreSQL, Redis, Airflow's metadata, api-server, scheduler and dag-processor; return the
    Airflow environment (the workers are started apart)."""
    stack.start_postgres()
    stack.start(
        "redis",
        ["redis-server", "--port", str(stack.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
    )
    env = stack.airflow_env(citylake_env)
    airflow = [sys.executable, "-m", "airflow"]
    out = subprocess.run([*airflow, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{out.stderr[-3000:]}")
    print(
        f"PostgreSQL on 127.0.0.1:{stack.pg_port}, Redis on 127.0.0.1:{stack.redis_port}: Airflow metadata migrated",
        flush=True,
    )
    stack.start("api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(stack.api_port)], env)
    stack.start("scheduler", [*airflow, "scheduler", "--skip-serve-logs"], env)
    stack.start("dag-processor", [*airflow, "dag-processor"], env)
    return env


def bench_workers(
    stack: Stack, work: Path, drop: Path, first: str, last: str, counts: list[int], timeout: float
) -> bool:
    """``backfill_range`` over the same drop with each number of workers, each on an empty lake:
    the run's wall time, the time its tasks took by kind, and its marts against the first run's,
    row by row. Returns whether every run succeeded with the same marts."""
    env = start_services(stack, _citylake_env(work, f"{counts[0]}w", drop))
    conf = json.dumps({"first": first, "last": last})
    runs, ok = [], True
    for n in counts:
        for name in [k for k in stack.procs if k.startswith("worker-")]:
            stack.stop(name)
        w_env = {**env, **_citylake_env(work, f"{n}w", drop), "CITYLAKE_REPORT_PDF": "never"}
        start_workers(stack, w_env, n)
        state, wall, tis = run_dag(stack, w_env, "backfill_range", f"bench_{n}w", ["--conf", conf], timeout)
        kinds: dict[str, list] = {}
        for task_id, _, _, host, secs in tis:
            k = kinds.setdefault(task_id, [0, 0.0, set()])
            k[0] += 1
            k[1] += float(secs or 0)
            k[2].add((host or "?").rsplit("/", 1)[-1])
        runs.append((n, state, wall, kinds))
        ok &= state == "success"
    if ok:
        from citylake.core.settings import Settings
        from citylake.core.storage import open_storage
        from citylake.publish.reader import current
        from devtools.compare import compare_publications

        def storage_of(name: str):
            os.environ["CITYLAKE_LAKE_URI"] = (work / f"{name}-lake").as_uri()
            s = open_storage(Settings())
            return s, current(s)

        for n in counts[1:]:
            counts_, diffs = compare_publications(storage_of(f"{counts[0]}w"), storage_of(f"{n}w"))
            print(
                f"{n} workers against {counts[0]}: {len(counts_)} marts, {sum(counts_.values())} rows, "
                f"{'equal' if not diffs else 'DIFFERENT: ' + '; '.join(diffs[:5])}"
            )
            ok &= not diffs
    print(f"\nbackfill_range {first} .. {last} (task seconds summed, workers used):")
    for n, state, wall, kinds in runs:
        parts = ", ".join(f"{t} ×{c} {secs:.0f} s on {'+'.join(sorted(w))}" for t, (c, secs, w) in kinds.items())
        print(f"  {n} worker(s): {state} in {wall:.0f} s — {parts}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds the DAG run may take")
    parser.add_argument(
        "--bench-workers",
        metavar="DROP",
        type=Path,
        help="instead of the check: time backfill_range over this simulated drop with each --workers count",
    )
    parser.add_argument("--first", help="with --bench-workers: the first service date")
    parser.add_argument("--last", help="with --bench-workers: the last service date")
    parser.add_argument("--workers", default="1,2", help="with --bench-workers: worker counts, in order")
    args = parser.parse_args(argv)
    if args.bench_workers and not (args.first and args.last):
        parser.error("--bench-workers needs --first and --last")
    ensure_packages()
    work = Path(tempfile.mkdtemp(prefix="citylake-scaleout-"))
    stack = Stack(work)
    started = time.monotonic()
    ok = False
    try:
        if args.bench_workers:
            counts = [int(x) for x in args.workers.split(",")]
            ok = bench_workers(stack, work, args.bench_workers.resolve(), args.first, args.last, counts, args.timeout)
            print(f"\nbench-workers {'passed' if ok else 'FAILED'} ({time.monotonic() - started:.0f} s)")
            return 0 if ok else 1
        from devtools.simulator.faults import parse_faults
        from devtools.simulator.run import SimulationConfig, simulate

        drop = work / "drop"
        simulate(
            SimulationConfig(
                network=SAMPLE_NETWORK,
                start=date(2026, 3, 30),
                days=2,
                out=drop,
                faults=parse_faults("default"),
                seed=47,
                progress=False,
            )
        )
        print(f"simulated 2 service days in {drop}", flush=True)
        single_drop = work / "drop-single"
        shutil.copytree(drop, single_drop)
        single_process(work, single_drop, "single", ["run", "--as-of", LOGICAL_DATE])
        print("single-process run (citylake run) published", flush=True)

        env = start_services(stack, _citylake_env(work, "celery", drop))
        start_workers(stack, env)
        state, _, tis = run_dag(stack, env, "nightly_refresh", RUN_ID, ["--logical-date", LOGICAL_DATE], args.timeout)
        problems = check_run(state, tis, "celery", "single", work, "nightly_refresh")

        # the history load: the same days through backfill_range, the workers on an empty lake
        backfill = ["backfill", "--from", BACKFILL[0], "--to", BACKFILL[1]]
        single_process(work, single_drop, "backfill-single", backfill, BACKFILL_ENV)  # one date a batch
        print("single-process backfill (citylake backfill) published", flush=True)
        for name in ("w1", "w2"):
            stack.stop(f"worker-{name}")
        backfill_env = {**env, **_citylake_env(work, "backfill-celery", drop), **BACKFILL_ENV}
        start_workers(stack, backfill_env)
        conf = json.dumps({"first": BACKFILL[0], "last": BACKFILL[1]})
        state, _, tis = run_dag(
            stack, backfill_env, "backfill_range", "scaleout_backfill", ["--conf", conf], args.timeout
        )
        problems += check_run(state, tis, "backfill-celery", "backfill-single", work, "backfill_range")
        ok = not problems
        print(
            "\n"
            + ("scaleout-check passed" if ok else "scaleout-check FAILED:\n  " + "\n  ".join(problems))
            + f" ({time.monotonic() - started:.0f} s)"
        )
    finally:
        stack.stop_all()
        if args.keep or not ok:
            print(f"work folder and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
