"""Every consumer command on an S3 lake (moto's server standing in for MinIO), as a new user runs them."""

from __future__ import annotations

import duckdb
import pytest

from citylake import cli
from citylake.core import duck
from citylake.core.settings import Settings
from citylake.core.storage import open_storage

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_lake(lake_after_nights, s3_settings):
    """The session's published lake, copied into a bucket (what consumers read: published/)."""
    storage = open_storage(s3_settings)
    for path in sorted((lake_after_nights.lake / "published").rglob("*")):
        if path.is_file():
            storage.put_file(path.relative_to(lake_after_nights.lake).as_posix(), path)
    return s3_settings, storage


def test_query_report_opendata_and_catalog_on_s3(s3_lake, tmp_path, capsys) -> None:
    settings, storage = s3_lake
    assert cli.main(["query", "select count(*) as n from mart_contract_kpis"]) == 0
    assert cli.main(["report", "--operator", "bus", "--month", "2026-03"]) == 0
    report = capsys.readouterr().out.strip().splitlines()[-1]
    prefix = storage.url("reports/contract/operator=bus/month=2026-03/")
    assert report.startswith(prefix) and storage.exists(report.removeprefix(storage.url("")))
    assert cli.main(["opendata"]) == 0
    assert any(line.startswith(storage.url("opendata/")) for line in capsys.readouterr().out.splitlines())
    catalog = tmp_path / "catalog.duckdb"
    assert cli.main(["catalog", "--out", str(catalog)]) == 0
    assert "views" in capsys.readouterr().out
    # an analyst opens the file read-only with the lake's read credentials (a DuckDB secret)
    con = duckdb.connect(str(catalog), read_only=True)
    duck.load_extension(con, "httpfs")
    con.execute(duck.s3_secret_sql(storage, Settings()))
    assert con.sql("select count(*) from fct_stop_visit_loads").fetchone()[0] > 10_000
    # the catalog keeps no credential: the secret was the session's, not the file's
    con.close()
    assert b"citylake-test-secret-key" not in catalog.read_bytes()


def test_the_api_reads_an_s3_lake(s3_lake, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from citylake.consumers.api import TokenRegister, create_app

    settings, storage = s3_lake
    register = TokenRegister(tmp_path / "tokens.json")
    token = register.add("analyst-s3", "analyst")
    client = TestClient(create_app(settings, storage, register), raise_server_exceptions=False)
    page = client.get(
        "/v1/marts/mart_contract_kpis/rows",
        params={"limit": 5},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert page.status_code == 200, page.text
    assert len(page.json()["rows"]) == 5
