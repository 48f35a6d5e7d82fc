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
