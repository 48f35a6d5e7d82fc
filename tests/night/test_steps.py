"""The night's steps keep errors typed to the edge: configuration fails at once, transient retries."""

from __future__ import annotations

import pytest

from citylake.core.errors import ConfigError, LakeConfigError, PublicationRefused, TransientError
from citylake.core.settings import Settings
from citylake.night.airflow import no_retry, refuse_if_refused
from citylake.night.steps import ingest_partition, raise_for_feeds
from ingestion.run import FeedReport, IngestReport


def _report(*failures: BaseException) -> IngestReport:
    feed = FeedReport("bus", "avl")
    for exc in failures:
        feed.fail(str(exc), exc)
    return IngestReport("run", [feed])


def test_feed_errors_keep_their_kind() -> None:
    raise_for_feeds(_report())  # nothing failed: nothing raised
    with pytest.raises(TransientError, match="bus/avl: S3 did not answer"):
        raise_for_feeds(_report(TransientError("S3 did not answer")))
    with pytest.raises(ConfigError, match="set CITYLAKE_X"):  # configuration wins: retrying cannot fix it
        raise_for_feeds(_report(TransientError("S3 did not answer"), LakeConfigError("set CITYLAKE_X")))


def test_a_missing_pseudonym_key_fails_the_partition_as_configuration(simulated_days, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", simulated_days.as_uri())
    partition = {"operator": "bus", "group": "transit", "service_date": "2026-03-30", "feeds": ["ticketing"]}
    with pytest.raises(ConfigError, match="CITYLAKE_PSEUDONYM_KEY is not set"):
        ingest_partition(Settings(), partition)


def test_airflow_sees_transient_errors_and_fails_the_others_at_once(airflow_env) -> None:
    # in the throwaway Airflow home: the first import of Airflow fixes its database for the whole
    # worker, and a DAG test after this one would find an unmigrated one
    from airflow.sdk.exceptions import AirflowFailException

    def raises(exc):
        def task():
            raise exc

        return task

    with pytest.raises(TransientError):  # left to Airflow's retries
        no_retry(raises(TransientError("503")))()
    with pytest.raises(AirflowFailException, match="ConfigError: bad operators.yaml"):
        no_retry(raises(ConfigError("bad operators.yaml")))()
    refused = {"refused": {"parking": ["occupancy above capacity"]}, "published": ["transit"]}
    with pytest.raises(PublicationRefused, match=r"group\(s\) parking \(published: transit\): parking: occupancy"):
        refuse_if_refused(refused)
    assert refuse_if_refused({"refused": {}, "published": ["transit"]})["published"] == ["transit"]


def test_a_quarantined_delivery_is_notified_naming_its_feed_and_file(tmp_path, monkeypatch, caplog) -> None:
    """Issue #29: a file that failed alone (quarantined) is notified, its feed and file named, even
    when every feed ran and every group published."""
    import logging

    from citylake.core.settings import Settings
    from citylake.night.steps import ingest_all, notify_outcome

    drop = tmp_path / "drop" / "bus" / "apc"
    drop.mkdir(parents=True)
    (drop / "comptages_20260330.csv").write_bytes(b"vehicle_id,trip_id\n1,")  # cut mid-row
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", (tmp_path / "drop").as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "notify-test-pseudonym-key-0123456789abcdef")
    ingested = ingest_all(Settings())
    assert not ingested["errors"] and ingested["quarantined"][0].startswith("bus/apc: comptages_20260330.csv")
    caplog.set_level(logging.WARNING, logger="citylake.notify")
    assert notify_outcome(Settings(), ingested, {"refused": {}}) == ["log"]
    assert "bus/apc: comptages_20260330.csv: truncated" in caplog.text
