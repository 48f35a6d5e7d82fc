"""Shared fixtures: isolated settings, and the lake on both backends.

The S3 backend is exercised against a real HTTP endpoint: moto's server on 127.0.0.1 with a
free port, buckets created through the minio SDK.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from citylake.nightly import run_night
from citylake.settings import Settings
from citylake.simulator.faults import parse_faults
from citylake.simulator.run import SimulationConfig, simulate
from citylake.storage import LakeStorage, S3Storage, open_storage

S3_ACCESS = "citylake-test-access"
S3_SECRET = "citylake-test-secret-key"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's CITYLAKE_*/AWS_* variables or a stray .env file."""
    import os

    for name in list(os.environ):
        if name.startswith(("CITYLAKE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 with a free port; yield its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh bucket on the moto server, credentials in the environment."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CITYLAKE_LAKE_URI", f"s3://{bucket}/city")
    monkeypatch.setenv("CITYLAKE_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("CITYLAKE_S3_ACCESS_KEY", S3_ACCESS)
    monkeypatch.setenv("CITYLAKE_S3_SECRET_KEY", S3_SECRET)
    settings = Settings()
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    storage.client.make_bucket(bucket)  # through the minio SDK, as production does
    return settings


@pytest.fixture
def file_settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh lake folder."""
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    return Settings()


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def lake_settings(request: pytest.FixtureRequest) -> Settings:
    """The same test on the local filesystem and on S3."""
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture
def lake(lake_settings: Settings) -> LakeStorage:
    """A fresh, empty lake on each backend."""
    return open_storage(lake_settings)


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    """One simulated day through a real night (run_night): a published lake, shared by the
    tests that read publications (open data, catalog, report, API)."""
    base = tmp_path_factory.mktemp("opendata")
    simulate(SimulationConfig(network=ROOT / "citylake" / "data" / "cairns_gtfs.zip", start=date(2026, 3, 30), days=1,
                              out=base / "drop", faults=parse_faults("default"), seed=41, progress=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("CITYLAKE_LAKE_URI", (base / "lake").as_uri())
    mp.setenv("CITYLAKE_DROP_ROOT", (base / "drop").as_uri())
    mp.setenv("CITYLAKE_PSEUDONYM_KEY", "opendata-test-key-0123456789")
    mp.setenv("CITYLAKE_WAREHOUSE", str(base / "warehouse.duckdb"))
    try:
        night = run_night(Settings())
        assert night.ok
        # the night writes each operator's month-to-date contract report from what it published
        pub = night.gate.publication_id
        assert night.contract_reports == [f"reports/contract/operator={op}/month=2026-03/{pub}.html"
                                          for op in ("bus", "parking")]
        yield base, night
    finally:
        mp.undo()


def published_settings(base: Path) -> Settings:
    """Settings reading the ``published`` fixture's lake (the environment is cleaned per test)."""
    return Settings.model_construct(lake_uri=(base / "lake").as_uri(), timezone="Europe/Paris", duckdb_threads=2,
                                    duckdb_memory_limit="4GB", api_tokens_file=str(base / "api_tokens.json"))
