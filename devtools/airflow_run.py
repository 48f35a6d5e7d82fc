"""Run the ``nightly_refresh`` DAG for real, in-process, with a throwaway Airflow home.

``dag.test()`` runs every task of a DAG run in this process against SQLite metadata: what
``make demo`` and the benchmark use. Each night reports its wall time and the time spent inside
tasks, so Airflow's own share (scheduling, XCom, metadata) can be measured.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class NightRun:
    logical_date: datetime
    state: str
    wall_s: float
    task_s: float
    tasks: dict[str, float]

    @property
    def airflow_share(self) -> float:
        return max(0.0, 1 - self.task_s / self.wall_s) if self.wall_s else 0.0


def prepare_airflow_home(home: Path) -> Path:
    """Point Airflow at ``home`` (SQLite) and the project's dags/, and migrate its database once."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    if not (home / "airflow.db").exists():
        out = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {out.stderr[-2000:]}")
    return home


def nightly_dag():
    spec = importlib.util.spec_from_file_location("citylake_nightly_dag", ROOT / "dags" / "citylake_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.nightly_refresh()


@contextmanager
def _output_to(path: Path | None) -> Iterator[None]:
    """Send everything written to the process's stdout and stderr (Airflow's, dbt's and Great
    Expectations' logs included: they write to the file descriptors) to ``path``; None: leave it."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_nights(
    service_dates: list[date],
    tz: str = "Europe/Paris",
    log_dir: Path | None = None,
    on_night: Callable[[NightRun, Path | None], None] | None = None,
) -> list[NightRun]:
    """Run the night of each service date (logical date: the next day at 06:30 local). With
    ``log_dir``, each night's library output goes to ``log_dir/night-<date>.log``, and
    ``on_night`` is called after each night (the demo prints one line per night there)."""
    import pendulum

    dag = nightly_dag()
    runs = []
    for day in service_dates:
        nxt = day + timedelta(days=1)
        logical = pendulum.datetime(nxt.year, nxt.month, nxt.day, 6, 30, tz=tz)
        log = log_dir / f"night-{day.isoformat()}.log" if log_dir else None
        start = time.perf_counter()
        with _output_to(log):
            dagrun = dag.test(logical_date=logical)
        wall = time.perf_counter() - start
        tasks: dict[str, float] = {}
        for ti in dagrun.get_task_instances():  # mapped tasks: one instance per map index, summed
            if ti.start_date and ti.end_date:
                tasks[ti.task_id] = tasks.get(ti.task_id, 0.0) + (ti.end_date - ti.start_date).total_seconds()
        runs.append(NightRun(logical, str(dagrun.state), wall, sum(tasks.values()), tasks))
        if on_night:
            on_night(runs[-1], log)
    return runs


def main(argv: list[str] | None = None) -> int:
    """python -m devtools.airflow_run YYYY-MM-DD [...]: run those nights through the DAG."""
    args = argv if argv is not None else sys.argv[1:]
    prepare_airflow_home(Path(os.environ.get("AIRFLOW_HOME", "build/airflow_home")).resolve())
    runs = run_nights([date.fromisoformat(a) for a in args])
    for r in runs:
        print(
            f"night {r.logical_date}: {r.state} in {r.wall_s:.1f} s, tasks {r.task_s:.1f} s, "
            f"Airflow {r.airflow_share:.0%}"
        )
    return 0 if all(r.state == "success" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
