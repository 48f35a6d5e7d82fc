"""Nightly refresh: ingest what operators delivered, build the marts, audit, publish.

Runs at 06:30 Europe/Paris, after the contracts' delivery deadline (D+1 06:00): the night of
logical date X works on service date X-1 and only sees files delivered by X's logical time, so
clearing a run or backfilling a range replays those nights as they were. Each task calls one
function of ``citylake.orchestration``; the same steps run in-process with ``citylake run``.

* ``ingest_all``: every operator feed, idempotent (what the per-feed DAGs already landed is skipped);
* ``build_marts``: dbt build of the service dates that changed (all of them on a first build);
* ``audit_and_publish``: quality suites and the gate: each dependency group that passes is
  published by one atomic pointer switch, the others keep their last good publication;
* ``notify``: a webhook/e-mail when a feed failed or a group was refused.

Retries with backoff for transient faults (network, S3); data faults never retry (they are
quarantined or refused). Backfill: ``airflow backfill create --dag-id nightly_refresh
--from-date 2026-03-27 --to-date 2026-03-31`` (catchup is off: the schedule never piles up runs).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from citylake.orchestration import failure_callback

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
    schedule="30 6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Paris"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["citylake", "nightly"],
    doc_md=__doc__,
)
def nightly_refresh():
    @task(execution_timeout=timedelta(minutes=30))
    def ingest_all(**context) -> dict:
        from citylake.orchestration import ingest_all as run
        from citylake.orchestration import no_retry

        return no_retry(run)(as_of=context["logical_date"])

    @task(execution_timeout=timedelta(hours=1))
    def build_marts(ingested: dict, **context) -> dict:
        from citylake.orchestration import build_marts as run
        from citylake.orchestration import no_retry, service_date_of

        dates = sorted({*ingested["changed_dates"], service_date_of(context["logical_date"]).isoformat()})
        return no_retry(run)(dates, publication_id="set-by-the-gate")

    @task(execution_timeout=timedelta(minutes=30), outlets=[PUBLISHED])
    def audit_and_publish(build: dict, **context) -> dict:
        from citylake.orchestration import audit_and_publish as run
        from citylake.orchestration import no_retry
        from ingestion.run import new_run_id

        return no_retry(run)(new_run_id(), build)

    @task(trigger_rule="all_done", retries=0)
    def notify(ingested: dict, published: dict) -> list:
        from citylake.orchestration import notify_outcome

        return notify_outcome(ingested or {}, published or {})

    ingested = ingest_all()
    published = audit_and_publish(build_marts(ingested))
    notify(ingested, published)


nightly_refresh()
