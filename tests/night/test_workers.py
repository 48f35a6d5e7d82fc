"""A backfill spread over two worker processes equals the nights run one by one, row by row.

The ``backfill_range`` DAG (dags/citylake_backfill.py) maps its ingestion partitions onto
Airflow's workers, then builds the batches on one worker and publishes from another. Here two
worker processes (spawned: each its own interpreter, its own DuckDB, as a Celery worker's task)
run the very steps those tasks call (:mod:`citylake.night.steps`), pulling partitions from one
queue as Celery workers pull them from Redis: the staged partitions and the Delta commits of two
processes meet in the same lake. ``make scaleout-check`` runs the DAG itself on the
CeleryExecutor with PostgreSQL and Redis (five minutes: outside the suite).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.night import batches, steps
from citylake.publish.reader import current, registry
from devtools.compare import compare_publications
from tests.night.conftest import history_load_env

FIRST, LAST = "2026-03-29", "2026-03-31"


def _ready(barrier) -> None:
    """A worker's start: the steps imported, then wait for the other (neither takes every task)."""
    import citylake.night.steps  # noqa: F401

    barrier.wait(timeout=120)


def _task(step: str, *args):
    """One DAG task in a worker process: its step, with the settings from the environment."""
    started = time.monotonic()
    result = getattr(steps, step)(Settings(), *args)
    return os.getpid(), started, time.monotonic(), result


def test_backfill_over_two_worker_processes_equals_the_nights(lake_after_nights, tmp_path, monkeypatch) -> None:
    history_load_env(monkeypatch, tmp_path, lake_after_nights.drop, "8GiB")  # one batch (several: test_batches.py)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=_ready, initargs=(ctx.Barrier(2),)) as workers:
        plan = steps.plan_backfill_ingest(Settings(), FIRST, LAST)
        ran = []
        for kind in ("references", "dated"):  # the registers first, as the DAG orders them
            futures = [workers.submit(_task, "ingest_backfill_partition", p, LAST) for p in plan[kind]]
            ran += [f.result() for f in futures]
        pids = {pid for pid, *_ in ran}
        assert len(pids) == 2, "both workers ingest"
        spans = sorted((start, end, pid) for pid, start, end, _ in ran)
        assert any(a[2] != b[2] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :]), (
            "two partitions ingested at the same time"
        )

        ingested = [result for *_, result in ran]  # a feed's error would have raised in its worker
        planned = workers.submit(_task, "plan_backfill", FIRST, LAST, ingested).result()[3]
        assert planned["batches"] == [["2026-03-30", "2026-03-31"]]
        built = workers.submit(_task, "build_backfill").result()[3]
        assert built == {"built": 1, "batches": 1}
        published = workers.submit(_task, "publish_backfill").result()[3]
        assert published["publication_id"] and not published["refused"], published

    storage = open_storage(Settings())
    assert batches.read_state(storage)["finished"]
    records = registry(storage)
    assert len(records) == 1 and records[0]["kind"] == "backfill" and records[0]["batches"] == 1
    nights = open_storage(lake_after_nights.settings())
    counts, diffs = compare_publications((storage, current(storage)), (nights, current(nights)))
    assert diffs == [] and counts["fct_stop_visit_loads"] > 10_000 and counts["mart_contract_kpis"] > 0
