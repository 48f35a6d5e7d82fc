"""One ingestion DAG per operator feed, generated from the registry (ingestion/operators.yaml).

Each waits for the day's delivery (a sensor in reschedule mode, giving up at the contract's
deadline: a missing delivery is then recorded by the manifest and counted by the data-delivery
KPI, it never blocks other operators), lands and parses it, and updates the staged dataset's
Asset. Registers and networks (gtfs, fleet, facilities) are delivered when they change: their
DAG just takes whatever is there (``reference: true`` in their extract contracts). Onboarding an
operator is an entry in operators.yaml and its extract contracts.
"""

from __future__ import annotations

from datetime import time, timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from citylake.core.settings import Settings
from citylake.night.airflow import default_args, sensor_timeout
from ingestion import registry

CITY_TZ = Settings().timezone  # the city's (city.yaml): schedules and service dates are its time
RUN_AT = time(1, 0)  # each feed's DAG runs at 01:00 city time, the day after the service date


def make_dag(operator: str, feed: str):
    c = registry.contract(operator, feed)
    dataset = Asset(f"citylake://staged/{c.staged['dataset']}")
    due = registry.deadline_of(c, CITY_TZ)
    is_register = c.reference or due is None

    @dag(
        dag_id=f"ingest_{operator}_{feed}",
        schedule=f"{RUN_AT.minute} {RUN_AT.hour} * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz=CITY_TZ),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["citylake", "ingestion", operator],
        doc_md=__doc__,
    )
    def ingestion_dag():
        if not is_register:
            # wait until the contract's delivery deadline (from this 01:00 run), then give up softly
            @task.sensor(
                poke_interval=300,
                timeout=sensor_timeout(due, RUN_AT).total_seconds(),
                mode="reschedule",
                soft_fail=True,
            )
            def wait_for_delivery(**context) -> bool:
                from citylake.core.settings import Settings
                from citylake.night.airflow import service_date_of
                from citylake.night.steps import delivery_present

                return delivery_present(Settings(), operator, feed, service_date_of(context["logical_date"]))

        @task(outlets=[dataset], trigger_rule="none_failed", execution_timeout=timedelta(minutes=30))
        def land_and_parse(**context) -> dict:
            from citylake.core.settings import Settings
            from citylake.night.airflow import no_retry, service_date_of
            from citylake.night.steps import ingest_feed

            day = None if is_register else service_date_of(context["logical_date"])
            return no_retry(ingest_feed)(Settings(), operator, feed, day)

        if is_register:
            land_and_parse()
        else:
            wait_for_delivery() >> land_and_parse()

    return ingestion_dag()


for _operator, _spec in registry.operators().items():
    for _feed in _spec["feeds"]:
        globals()[f"ingest_{_operator}_{_feed}"] = make_dag(_operator, _feed)
