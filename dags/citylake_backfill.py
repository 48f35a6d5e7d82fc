"""Backfill a range of service dates over Airflow's workers: the history a city loads on day one.

Triggered with its range, never scheduled::

    airflow dags trigger backfill_range --conf '{"first": "2024-01-01", "last": "2025-12-31"}'

The same steps as ``citylake backfill`` (``citylake.night.steps``), one task each:

* ``dates`` → ``ingest_date``, mapped over the range's dates: every date is ingested on any
  worker at once, as the night after the range's last date sees the deliveries (a feed's failure
  is named, never stops the others);
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
from citylake.night.airflow import failure_callback

SETTINGS = Settings()
PUBLISHED = Asset("citylake://published/CURRENT.json")

default_args = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "on_failure_callback": failure_callback,
}


@dag(
    dag_id="backfill_range",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.timezone),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={
        "first": Param("2026-01-01", type="string", format="date", description="the range's first service date"),
        "last": Param("2026-01-31", type="string", format="date", description="the range's last service date"),
    },
    tags=["citylake", "backfill"],
    doc_md=__doc__,
)
def backfill_range():
    @task
    def dates(**context) -> list[str]:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import backfill_range as in_range

        return no_retry(in_range)(context["params"]["first"], context["params"]["last"])

    @task(execution_timeout=timedelta(hours=1))
    def ingest_date(day: str, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import ingest_date as ingest

        return no_retry(ingest)(Settings(), day, context["params"]["last"])

    @task
    def plan_batches(ingested: list, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import plan_backfill

        params = context["params"]
        return no_retry(plan_backfill)(Settings(), params["first"], params["last"], list(ingested))

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
    def notify(ingested: list, published: dict | None) -> list:
        from citylake.night.steps import notify_outcome

        ingested = [i for i in (ingested or []) if i]
        summary = {
            "errors": [e for i in ingested for e in i["errors"]],
            "quarantined": [q for i in ingested for q in i["quarantined"]],
        }
        return notify_outcome(Settings(), summary, published or {"build_ok": False})

    # notify runs in every case: this watcher makes the run failed when a step before it failed
    @task(trigger_rule="one_failed", retries=0)
    def backfill_failed() -> None:
        from citylake.night.airflow import fail_night

        fail_night("build_batches and publish", run="backfill")

    ingested = ingest_date.expand(day=dates())
    published = publish(build_batches(plan_batches(ingested)))
    notify(ingested, published)
    published >> backfill_failed()


backfill_range()
