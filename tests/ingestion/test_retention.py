"""RGPD retention job: expired raw files of personal-data feeds go, with a record; nothing else."""

from __future__ import annotations

from datetime import date

from citylake import cli
from citylake.core.settings import Settings
from ingestion.retention import personal_feeds, purge_personal_raw


def test_personal_feeds_come_from_the_contracts() -> None:
    assert ("bus", "ticketing") in personal_feeds()
    assert ("bus", "gtfs") not in personal_feeds()


def test_retention_purges_only_expired_personal_raw_files(lake, lake_settings: Settings) -> None:
    old = "raw/operator=bus/feed=ticketing/received_date=2026-01-02/validations_20260101.csv"
    young = "raw/operator=bus/feed=ticketing/received_date=2026-03-20/validations_20260319.csv"
    quarantined = "quarantine/operator=bus/feed=ticketing/received_date=2025-12-01/bad.csv"
    not_personal = "raw/operator=bus/feed=gtfs/received_date=2025-06-01/gtfs.zip"
    for k in (old, young, quarantined, not_personal):
        lake.put_bytes(k, b"card_serial;x\n0123456789;1\n")
    settings = lake_settings.model_copy(update={"raw_personal_retention_days": 60})

    dry = purge_personal_raw(lake, settings, today=date(2026, 3, 30), dry_run=True)
    assert {e["key"] for e in dry["purged"]} == {old, quarantined} and lake.exists(old)

    record = purge_personal_raw(lake, settings, today=date(2026, 3, 30))
    assert {e["key"] for e in record["purged"]} == {old, quarantined}
    assert not lake.exists(old) and not lake.exists(quarantined)
    assert lake.exists(young) and lake.exists(not_personal)
    stored = lake.get_json(record["record_key"])
    assert stored["cutoff"] == "2026-01-29" and all(e["sha256"] for e in stored["purged"])
    assert purge_personal_raw(lake, settings, today=date(2026, 3, 30))["purged"] == []  # idempotent


def test_retention_command(file_settings, capsys) -> None:
    assert cli.main(["retention", "--dry-run"]) == 0
    assert "0 file(s)" in capsys.readouterr().out


def test_scrub_withholds_card_numbers_written_in_messages_by_older_code(tmp_path, monkeypatch) -> None:
    """Issue #29: a lake written before messages withheld values holds card numbers in manifest
    details and staged invalid reasons; `citylake retention --scrub-messages` rewrites those objects
    (recorded), and leaves other feeds' records alone."""
    import polars as pl

    from citylake.cli import main
    from citylake.core.settings import Settings
    from citylake.core.storage import open_storage
    from ingestion import manifest

    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    storage = open_storage(Settings())
    old = manifest.RunRecords("20260330T000000Z-old", "bus", "ticketing")
    cut = "V.csv: truncated, the file ends in the middle of a row: '30/03;325614905732;Ca'"
    old.step("a" * 64, "quarantined", "error", cut)
    old.step("b" * 64, "parsed", "ok", "VALIDATIONS_20260330.csv -> raw/x/20260330__VALIDATIONS_20260330.csv")
    other = manifest.RunRecords("20260330T000000Z-old", "bus", "apc")
    other.step("c" * 64, "quarantined", "error", "A.csv: stop_id '123456789012' is not in GTFS version v1")
    old.write(storage)
    other.write(storage)
    staged = pl.DataFrame(
        {"operator": ["bus"], "source_row": [2], "invalid_reason": ["stop_id '325614905732' is not in GTFS version v1"]}
    )
    path = tmp_path / "p.parquet"
    staged.write_parquet(path)
    storage.put_file("staged/fare_transactions/operator=bus/service_date=2026-03-30/part-0.parquet", path)
    assert main(["retention", "--scrub-messages"]) == 0
    details = manifest.load(storage, "steps").sort("sha256")["detail"].to_list()
    assert "325614905732" not in details[0] and "<personal-data feed: value withheld>" in details[0]
    assert details[1].endswith("20260330__VALIDATIONS_20260330.csv")  # unquoted names and dates untouched
    assert "123456789012" in details[2]  # the APC feed carries no personal data: its record stays as written
    reason = pl.read_parquet(
        storage.url("staged/fare_transactions/operator=bus/service_date=2026-03-30/part-0.parquet")
    )["invalid_reason"][0]
    assert reason == "stop_id '<personal-data feed: value withheld>' is not in GTFS version v1"
    records = [i.key for i in storage.list("control/manifest/purges/")]
    assert len(records) == 1 and len(storage.get_json(records[0])["rewritten"]) == 2
