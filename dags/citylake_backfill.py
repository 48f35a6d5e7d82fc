"""Backfill a range of service dates over Airflow's workers: the history a city loads on day one.

Triggered with its range, never scheduled::

    airflow dags trigger backfill_range --conf '{"first": "2024-01-01", "last": "2025-12-31"}'

The same steps as ``citylake backfill`` (``citylake.night.steps``), one task each:

* ``plan_references`` → ``ingest_references`` → ``plan_dated`` → ``ingest_dated``: the files not
  landed yet, as the night after the range's last date sees them, cut as the nightly DAG cuts
  them: the registers first (GTFS, fleet, car parks: every dated row is checked against them), then
  one task per (date × operator × group) of the range, on every worker at once. A partition that
  fails (after its retries) does not stop the others; it fails the run at the end, named;
* ``plan_batches``: the dates cut into batches under ``CITYLAKE_BATCH_MEMORY``, the plan recorded
  in the lake (``control/batches/state.json``); refused while another backfill is interrupted;
* ``build_batches``: each batch built, audited and committed to the Delta tables, in date order,
  on one worker at a time: the look-back windows (28-day card history, 91-day calibration, the
  validation rate's window) chain a batch to the ones before, so batches cannot build side by side
  and equal the nights. A retried task goes on from the first batch not recorded; a refused batch
  publishes what passed and fails the task with the reason;
* ``publish``: every batch at once — one registry record, one switch of ``CURRENT.json`` — then
  the contract reports and the docs site. Until then the nights publish nothing (their dates wait);
* ``notify``: a webhook/e-mail when a feed failed, a delivery was quarantined or a group refused.

The warehouse (``CITYLAKE_WAREHOUSE``) must be on storage every worker reaches, as for the
nightly DAG's builds. ``max_active_runs=1``: one backfill at a time.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from citylake.core.settings import Settings
from citylake.night.airflow import default_args

SETTINGS = Settings()
PUBLISHED = Asset("citylake://published/CURRENT.json")


@dag(
    dag_id="backfill_range",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.timezone),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "first": Param("2026-01-01", type="string", format="date", description="the range's first service date"),
        "last": Param("2026-01-31", type="string", format="date", description="the range's last service date"),
    },
    tags=["citylake", "backfill"],
    doc_md=__doc__,
)
def backfill_range():
    @task
    def plan_ingest(kind: str, **context) -> list:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import plan_backfill_ingest

        params = context["params"]
        return no_retry(plan_backfill_ingest)(Settings(), params["first"], params["last"])[kind]

    @task(execution_timeout=timedelta(hours=1))
    def ingest_partition(partition: dict, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import ingest_backfill_partition

        return no_retry(ingest_backfill_partition)(Settings(), partition, context["params"]["last"])

    @task(trigger_rule="all_done")  # a failed partition does not stop the load: the end fails the run
    def plan_batches(references: list, dated: list, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import plan_backfill

        params = context["params"]
        ingested = [i for i in [*(references or []), *(dated or [])] if i]
        return no_retry(plan_backfill)(Settings(), params["first"], params["last"], ingested)

    @task(execution_timeout=timedelta(hours=48))
    def build_batches(plan: dict) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import build_backfill

        return no_retry(build_backfill)(Settings())

    @task(execution_timeout=timedelta(hours=2), outlets=[PUBLISHED])
    def publish(built: dict) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import publish_backfill

        return no_retry(publish_backfill)(Settings())

    @task(trigger_rule="all_done", retries=0)
    def notify(references: list, dated: list, published: dict | None) -> list:
        from citylake.night.steps import notify_outcome

        parts = [*(references or []), *(dated or [])]
        failed = len([i for i in parts if not i])  # a failed task leaves no result: its log says why
        summary = {
            "errors": [f"{failed} ingestion partition(s) failed: see their tasks"] if failed else [],
            "quarantined": [q for i in parts if i for q in i.get("quarantined", [])],
        }
        return notify_outcome(Settings(), summary, published or {"build_ok": False})

    # notify runs in every case: this watcher makes the run failed when an ingestion partition,
    # the build or the publication failed
    @task(trigger_rule="one_failed", retries=0)
    def backfill_failed() -> None:
        from citylake.night.airflow import fail_night

        fail_night("the failed tasks", run="backfill")

    references = ingest_partition.override(task_id="ingest_references").expand(
        partition=plan_ingest.override(task_id="plan_references")("references")
    )
    dated = ingest_partition.override(task_id="ingest_dated", trigger_rule="all_done").expand(
        partition=plan_ingest.override(task_id="plan_dated")("dated")
    )
    references >> dated
    published = publish(build_batches(plan_batches(references, dated)))
    notify(references, dated, published)
    [references, dated, published] >> backfill_failed()


backfill_range()
