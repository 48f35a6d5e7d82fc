"""A range of days in one pass publishes what the nights, one by one, published."""

from __future__ import annotations

from datetime import date

import pytest

from citylake import cli
from citylake.core.errors import ConfigError
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.night.steps import backfill
from citylake.publish.reader import current, registry
from devtools.compare import compare_publications
from tests.conftest import PSEUDONYM_KEY


def test_backfill_equals_the_nights_one_by_one(lake_after_nights, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", lake_after_nights.drop.as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    assert cli.main(["backfill", "--from", "2026-03-29", "--to", "2026-03-31"]) == 0
    # from the day before the first: the nights also saw the hostile files dated that day (the
    # session's drop, tests/support/hostile.py), quarantined, which the contract KPIs' lineage names
    out = capsys.readouterr().out
    assert "built service dates: 2 from 2026-03-29 to 2026-03-31 (dbt ok)" in out, out
    storage = open_storage(Settings())
    assert len(registry(storage)) == 1  # one publication for the whole range
    nights = open_storage(lake_after_nights.settings())
    counts, diffs = compare_publications((storage, current(storage)), (nights, current(nights)))
    assert diffs == [] and counts["fct_stop_visit_loads"] > 10_000 and counts["mart_contract_kpis"] > 0
    with pytest.raises(ConfigError, match="the first date is after the last"):
        backfill(Settings(), date(2026, 3, 31), date(2026, 3, 30))
