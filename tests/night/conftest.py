"""Fixtures of the night's tests: a throwaway Airflow home, migrated once per worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    """A throwaway AIRFLOW_HOME with SQLite metadata, migrated once."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    yield home
    mp.undo()


@pytest.fixture
def airflow_env(airflow_home, monkeypatch):
    """This test's Airflow: the throwaway home, the project's DAGs, no examples."""
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return airflow_home


def history_load_env(monkeypatch, tmp_path: Path, drop: Path, batch_memory: str) -> None:
    """A fresh lake and warehouse loading the history in ``drop`` under a batch budget; no PDF nor
    docs site (the nights' tests check those: tests/conftest.py lake_after_nights)."""
    from tests.conftest import PSEUDONYM_KEY

    for name, value in {
        "CITYLAKE_LAKE_URI": (tmp_path / "lake").as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "CITYLAKE_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "CITYLAKE_BATCH_MEMORY": batch_memory,
        "CITYLAKE_REPORT_PDF": "never",
        "CITYLAKE_DOCS_SITE": "false",
    }.items():
        monkeypatch.setenv(name, value)
