"""What the Airflow DAGs need beyond the night's steps: errors mapped to Airflow's, the service
date of a logical date, the failure callback, and the refusal of a publication.

DAG files only wire :mod:`citylake.night.steps`; these adapters keep the error kinds to the edge:
a :class:`~citylake.core.errors.TransientError` is worth Airflow's retries; any other citylake
error (configuration, a refused publication) fails the task at once (:func:`no_retry`), with the
reason as its message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from citylake.core.errors import CitylakeError, PublicationRefused, TransientError

if TYPE_CHECKING:
    from citylake.core.city import Deadline
    from citylake.core.settings import Settings

log = logging.getLogger("citylake.night.airflow")


def default_args() -> dict[str, Any]:
    """Every citylake DAG's task policy: transient faults retried with exponential backoff (data
    faults fail at once, :func:`no_retry`), a failure notified (:func:`failure_callback`)."""
    from datetime import timedelta as td

    return {
        "retries": 3,
        "retry_delay": td(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": td(minutes=30),
        "on_failure_callback": failure_callback,
    }


OUTCOME_KEY = "publication"  # the XCom key under which audit_and_publish leaves its outcome


def no_retry(fn: Callable) -> Callable:
    """Re-raise non-transient citylake errors as AirflowFailException (fail now, no retry)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TransientError:
            raise
        except CitylakeError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def service_date_of(logical_date: datetime, tz: str | None = None) -> date:
    """Return the service date a night works on: the day before its logical date, in the city's
    time (``tz``, by default the configured city's)."""
    if tz is None:
        from citylake.core.settings import Settings

        tz = Settings().timezone
    return (logical_date.astimezone(ZoneInfo(tz)) - timedelta(days=1)).date()


def sensor_timeout(deadline: Deadline, run_at: time) -> timedelta:
    """How long the ingestion sensor of a feed waits, from its run at ``run_at`` on the day after
    the service date, until the feed's deadline (:class:`citylake.core.city.Deadline`), at least a
    minute: a deadline moved in the contract moves the give-up time with it."""
    start = timedelta(hours=run_at.hour, minutes=run_at.minute)
    due = timedelta(days=deadline.days - 1, hours=deadline.at.hour, minutes=deadline.at.minute)
    return max(due - start, timedelta(minutes=1))


def refuse_if_refused(result: dict[str, Any], ti: Any = None) -> dict[str, Any]:
    """Return the publication's outcome; raise :class:`PublicationRefused` when a group was refused.

    The groups that passed are published already; the task fails with the reason, and the
    outcome stays readable by the notify task (XCom ``publication``)."""
    if ti is not None:
        ti.xcom_push(key=OUTCOME_KEY, value=result)
    if result.get("refused"):
        raise PublicationRefused(result["refused"], result.get("published"))
    return result


def fail_night(task: str = "audit_and_publish", run: str = "night") -> None:
    """Fail the watcher task: the run's publication failed or was refused (``task`` says why)."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(f"the {run}'s publication was refused or failed: see {task}")


def failure_callback(context: dict) -> None:
    """Airflow on_failure_callback: a task failed after its retries."""
    from citylake.core.settings import Settings
    from citylake.night.notify import notify

    ti = context.get("task_instance")
    notify(
        Settings(),
        "citylake task failed",
        {
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": getattr(ti, "task_id", None),
            "run_id": context.get("run_id"),
            "exception": str(context.get("exception")),
        },
    )


def nightly_cron(settings: Settings) -> str | None:
    """The nightly refresh's cron, in the city's time zone: ``CITYLAKE_NIGHTLY_SCHEDULE`` when it
    is a cron, none for 'none', else ('auto') every day at ``registry.night_time``."""
    from ingestion import registry

    schedule = settings.nightly_schedule.strip()
    if schedule == "none":
        return None
    if schedule != "auto":
        return schedule
    at = registry.night_time(settings.timezone)
    return f"{at.minute} {at.hour} * * *"
