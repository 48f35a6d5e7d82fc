"""Nightly refresh: ingest what operators delivered, build the marts, audit, publish.

Runs at 06:30 Europe/Paris, after the contracts' delivery deadline (D+1 06:00): the night of
logical date X works on service date X-1 and only sees files delivered by X's logical time, so
clearing a run or backfilling a range replays those nights as they were. Each task calls one
function of ``citylake.orchestration``; the same steps run in-process with ``citylake run``.

* ``plan_ingest`` → ``ingest_references`` → ``ingest_dated`` → ``ingest_sweep``: the files not yet
  landed, partitioned by (service date × operator × dependency group) and mapped over the
  executor's workers (``citylake.partitions``); the sweep stages whatever a failed partition left;
* ``plan_build`` → ``build_group`` (transit, parking, maintenance) → ``build_contract``: dbt build
  of the service dates that changed (all of them on a first build), one dependency group per task;
* ``audit_and_publish``: quality suites and the gate: each dependency group that passes is
  published by one atomic pointer switch, the others keep their last good publication;
* ``notify``: a webhook/e-mail when a feed failed or a group was refused.

Retries with backoff for transient faults (network, S3); data faults never retry (they are
quarantined or refused). Backfill: ``airflow backfill create --dag-id nightly_refresh
--from-date 2026-03-27 --to-date 2026-03-31`` (catchup is off: the schedule never piles up runs).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from citylake.orchestration import failure_callback

# "none": only triggered or backfilled nights (the scale-out check, a test environment)
SCHEDULE = os.environ.get("CITYLAKE_NIGHTLY_SCHEDULE", "30 6 * * *")
PUBLISHED = Asset("citylake://published/CURRENT.json")

default_args = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "on_failure_callback": failure_callback,
}


@dag(
    dag_id="nightly_refresh",
    schedule=None if SCHEDULE == "none" else SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Paris"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["citylake", "nightly"],
    doc_md=__doc__,
)
def nightly_refresh():
    @task
    def plan_ingest(kind: str, **context) -> list:
        from citylake.partitions import plan_ingest as plan

        return plan(as_of=context["logical_date"])[kind]

    @task(execution_timeout=timedelta(minutes=30))
    def ingest_references(partition: dict, **context) -> dict:
        from citylake.partitions import ingest_partition

        return ingest_partition(partition, as_of=context["logical_date"])

    @task(execution_timeout=timedelta(minutes=30), trigger_rule="all_done")
    def ingest_dated(partition: dict, **context) -> dict:
        from citylake.partitions import ingest_partition

        return ingest_partition(partition, as_of=context["logical_date"])

    @task(execution_timeout=timedelta(minutes=30), trigger_rule="all_done")
    def ingest_sweep(references: list, dated: list, **context) -> dict:
        from citylake.orchestration import no_retry, service_date_of
        from citylake.partitions import sweep_ingest

        swept = no_retry(sweep_ingest)(as_of=context["logical_date"])
        partitions = [*(references or []), *(dated or [])]  # a failed partition has no result: the sweep redid its work
        day = service_date_of(context["logical_date"]).isoformat()
        staged = {d for p in partitions for d in p["changed_dates"]}
        return {**swept, "partitions": len(partitions), "build_dates": sorted({*staged, *swept["changed_dates"], day})}

    @task
    def plan_build(ingested: dict) -> dict:
        from citylake.partitions import plan_build as plan

        return plan(ingested["build_dates"])

    # one DuckDB warehouse, one writer: the group builds run one at a time, on any worker
    @task(execution_timeout=timedelta(hours=1), max_active_tis_per_dagrun=1)
    def build_group(plan: dict, group: str) -> dict:
        from citylake.orchestration import no_retry
        from citylake.partitions import build_group as run

        return no_retry(run)(plan, group)

    @task(execution_timeout=timedelta(minutes=30), outlets=[PUBLISHED])
    def audit_and_publish(groups: list, contract: dict, **context) -> dict:
        from citylake.orchestration import audit_and_publish as run
        from citylake.orchestration import no_retry
        from citylake.partitions import merge_builds
        from ingestion.run import new_run_id

        return no_retry(run)(new_run_id(), merge_builds([*groups, contract]))

    @task(trigger_rule="all_done", retries=0)
    def notify(ingested: dict, published: dict) -> list:
        from citylake.orchestration import notify_outcome

        return notify_outcome(ingested or {}, published or {})

    references = ingest_references.expand(partition=plan_ingest.override(task_id="plan_references")("references"))
    dated = ingest_dated.expand(partition=plan_ingest.override(task_id="plan_dated")("dated"))
    references >> dated
    ingested = ingest_sweep(references, dated)
    build_plan = plan_build(ingested)
    groups = build_group.partial(plan=build_plan).expand(group=["transit", "parking", "maintenance"])
    contract = build_group.override(task_id="build_contract")(build_plan, "contract")
    groups >> contract
    published = audit_and_publish(groups, contract)
    notify(ingested, published)


nightly_refresh()
