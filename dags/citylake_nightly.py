"""Nightly refresh: ingest what operators delivered, build the marts, audit, publish.

Runs in the city's time zone half an hour after the contracts' latest delivery deadline (06:30
for D+1 06:00; ``CITYLAKE_NIGHTLY_SCHEDULE``, ``citylake info``): the night of
logical date X works on service date X-1 and only sees files delivered by X's logical time, so
clearing a run or backfilling a range replays those nights as they were. Each task calls one
function of ``citylake.night.airflow``; the same steps run in-process with ``citylake run``.

* ``plan_ingest`` → ``ingest_references`` → ``ingest_dated`` → ``ingest_sweep``: the files not yet
  landed, partitioned by (service date × operator × dependency group) and mapped over the
  executor's workers (``citylake.night.partitions``); the sweep stages whatever a failed partition left;
* ``plan_build`` → ``build_transit`` → ``build_parking`` → ``build_maintenance`` →
  ``build_contract``: dbt build of the service dates that changed (all of them on a first
  build), one publication group per task, in the order of ``ingestion/operators.yaml``: they
  share one DuckDB warehouse (one writer), and a group may use nodes an earlier group built.
  Several dates (after missed nights) are cut into batches under ``CITYLAKE_BATCH_MEMORY``,
  built in order by each group's task;
* ``audit_and_publish``: quality suites and the gate (batch by batch when there are several,
  each committed to the Delta tables): each publication group that passes is published by one
  atomic pointer switch, the others keep their last good publication; when a group is refused
  the task fails (``PublicationRefused``, no retry) with the reason;
* ``notify``: a webhook/e-mail when a feed failed or a group was refused.

Retries with backoff for transient faults (network, S3); data faults never retry (they are
quarantined or refused). Backfill: ``airflow backfill create --dag-id nightly_refresh
--from-date 2026-03-27 --to-date 2026-03-31`` (catchup is off: the schedule never piles up runs).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from citylake.core.settings import Settings
from citylake.night.airflow import default_args, nightly_cron
from ingestion import registry

# the city's clock; "none": only triggered or backfilled nights (the scale-out check, a test environment)
SETTINGS = Settings()
SCHEDULE = nightly_cron(SETTINGS)
PUBLISHED = Asset("citylake://published/CURRENT.json")


@dag(
    dag_id="nightly_refresh",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.timezone),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["citylake", "nightly"],
    doc_md=__doc__,
)
def nightly_refresh():
    @task
    def plan_ingest(kind: str, **context) -> list:
        from citylake.night.steps import plan_ingest as plan

        return plan(Settings(), as_of=context["logical_date"])[kind]

    @task(execution_timeout=timedelta(minutes=30))
    def ingest_references(partition: dict, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import ingest_partition

        return no_retry(ingest_partition)(Settings(), partition, as_of=context["logical_date"])

    @task(execution_timeout=timedelta(minutes=30), trigger_rule="all_done")
    def ingest_dated(partition: dict, **context) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import ingest_partition

        return no_retry(ingest_partition)(Settings(), partition, as_of=context["logical_date"])

    @task(execution_timeout=timedelta(minutes=30), trigger_rule="all_done")
    def ingest_sweep(references: list, dated: list, **context) -> dict:
        from citylake.night.airflow import no_retry, service_date_of
        from citylake.night.steps import ingest_all

        swept = no_retry(ingest_all)(Settings(), as_of=context["logical_date"])
        swept.pop("report")
        partitions = [*(references or []), *(dated or [])]  # a failed partition has no result: the sweep redid its work
        day = service_date_of(context["logical_date"]).isoformat()
        staged = {d for p in partitions for d in p["changed_dates"]}
        # every file a partition or the sweep quarantined is notified, named
        quarantined = [q for p in partitions for q in p.get("quarantined", [])] + swept["quarantined"]
        return {
            **swept,
            "quarantined": quarantined,
            "partitions": len(partitions),
            "build_dates": sorted({*staged, *swept["changed_dates"], day}),
        }

    @task
    def plan_build(ingested: dict) -> dict:
        from citylake.night.steps import plan_build as plan

        return plan(Settings(), ingested["build_dates"])

    # one DuckDB warehouse, one writer: the group builds run one after the other, on any worker,
    # in the registry's order (a group's dbt selection may use nodes an earlier group built)
    @task(execution_timeout=timedelta(hours=1))
    def build_group(plan: dict, group: str) -> dict:
        from citylake.night.airflow import no_retry
        from citylake.night.steps import build_marts

        return no_retry(build_marts)(Settings(), plan, group)

    @task(execution_timeout=timedelta(minutes=30), outlets=[PUBLISHED])
    def audit_and_publish(builds: list, **context) -> dict:
        from citylake.night.airflow import no_retry, refuse_if_refused
        from citylake.night.steps import audit_and_publish as run
        from citylake.night.steps import merge_builds
        from ingestion.run import new_run_id

        result = no_retry(run)(Settings(), new_run_id(), merge_builds(builds))
        return no_retry(refuse_if_refused)(result, context["ti"])

    @task(trigger_rule="all_done", retries=0)
    def notify(ingested: dict, published: dict, **context) -> list:
        from citylake.night.airflow import OUTCOME_KEY
        from citylake.night.steps import notify_outcome

        # a refused publication fails its task: its outcome is still there, under its own key
        outcome = published or context["ti"].xcom_pull(task_ids="audit_and_publish", key=OUTCOME_KEY) or {}
        return notify_outcome(Settings(), ingested or {}, outcome)

    # notify runs in every case, so it is the leaf that decides the run's state: this watcher
    # (Airflow's pattern for all_done leaves) makes the night failed when the publication was
    # refused or could not run, after notify has done its work
    @task(trigger_rule="one_failed", retries=0)
    def night_failed() -> None:
        from citylake.night.airflow import fail_night

        fail_night()

    references = ingest_references.expand(partition=plan_ingest.override(task_id="plan_references")("references"))
    dated = ingest_dated.expand(partition=plan_ingest.override(task_id="plan_dated")("dated"))
    references >> dated
    ingested = ingest_sweep(references, dated)
    build_plan = plan_build(ingested)
    builds, before = [], build_plan
    for group in registry.groups():
        built = build_group.override(task_id=f"build_{group}")(build_plan, group)
        before >> built
        builds.append(built)
        before = built
    published = audit_and_publish(builds)
    notify(ingested, published)
    published >> night_failed()


nightly_refresh()
