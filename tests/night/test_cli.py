"""The command line: help lists every command, API tokens, lake commands work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from citylake import cli
from devtools import cli as dev_cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citylake.cli", *args], capture_output=True, text=True)


def test_help_lists_the_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ["info", "lake", "install-extensions", "run", "report", "serve", "api-token", "api-spec"]:
        assert command in out.stdout


def test_api_tokens_and_serve_without_tokens(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_API_TOKENS_FILE", str(tmp_path / "tokens.json"))
    assert cli.main(["serve"]) == 1
    assert "no API token" in capsys.readouterr().err
    assert cli.main(["api-token", "add", "ana", "--role", "analyst"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("clk_") and token not in (tmp_path / "tokens.json").read_text()
    assert cli.main(["api-token", "add", "x", "--role", "operator", "--operator", "nobody"]) == 1
    assert cli.main(["api-token", "list"]) == 0 and "ana" in capsys.readouterr().out
    assert cli.main(["api-token", "revoke", "ana"]) == 0


def test_lake_init_put_ls_get(file_settings, tmp_path, capsys) -> None:
    assert cli.main(["lake", "init"]) == 0
    out = capsys.readouterr().out
    assert "initialised lake" in out and "lake healthy" in out
    src = tmp_path / "f.csv"
    src.write_bytes(b"a;b\n1;2\n")
    assert cli.main(["lake", "put", str(src), "raw/operator=demo/feed=x/received_date=2026-03-01/f.csv"]) == 0
    assert cli.main(["lake", "put", "--dry-run", str(src), "staged/x/f.csv"]) == 0
    assert cli.main(["lake", "ls", "raw/"]) == 0
    assert "raw/operator=demo/feed=x/received_date=2026-03-01/f.csv" in capsys.readouterr().out
    # Overwriting raw with other bytes is refused with a clear error and a non-zero exit.
    src.write_bytes(b"changed")
    assert (
        cli.main(["lake", "put", "--overwrite", str(src), "raw/operator=demo/feed=x/received_date=2026-03-01/f.csv"])
        == 1
    )
    assert "refusing to overwrite" in capsys.readouterr().err
    assert cli.main(["lake", "init"]) == 0
    assert "already initialised" in capsys.readouterr().out


def test_lake_init_on_s3_creates_the_bucket(moto_endpoint, monkeypatch, capsys) -> None:
    import uuid

    monkeypatch.setenv("CITYLAKE_LAKE_URI", f"s3://new-{uuid.uuid4().hex[:10]}/lake")
    monkeypatch.setenv("CITYLAKE_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("CITYLAKE_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("CITYLAKE_S3_SECRET_KEY", "sk")
    assert cli.main(["lake", "init"]) == 0
    out = capsys.readouterr().out
    assert "created bucket" in out and "lake healthy" in out


def test_info_masks_secrets(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_S3_SECRET_KEY", "super-secret-value")
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "super-secret-value" not in out and '"s3_secret_key": "set"' in out


def test_missing_credentials_exit_cleanly(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", "s3://bucket")
    assert cli.main(["lake", "ls"]) == 1
    assert "S3 credentials missing" in capsys.readouterr().err


def test_devtools_simulate_command(tmp_path, capsys) -> None:
    out = tmp_path / "drop"
    assert dev_cli.main(["simulate", "--start", "2026-03-16", "--days", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "simulated 1 day(s) of cairns_gtfs x1 tile(s)" in printed
    assert (out / "bus" / "ticketing" / "VALIDATIONS_20260316.csv").exists()
    assert dev_cli.main(["simulate", "--start", "2026-03-16", "--out", str(out), "--faults", "gremlins"]) == 2
    assert "unknown fault 'gremlins'" in capsys.readouterr().err
    assert (
        dev_cli.main(["simulate", "--start", "2026-03-16", "--out", str(out), "--faults", "dst", "--no-progress"]) == 2
    )
    assert "DST change day" in capsys.readouterr().err


def test_freshness_follows_the_deadlines(tmp_path, monkeypatch, capsys) -> None:
    """Yesterday's data is fresh; a feed whose newest day is four days old is an error (exit 1)."""
    from datetime import date, timedelta

    import duckdb

    lake = tmp_path / "lake"
    datasets = ["fare_transactions", "stop_visits", "trips_performed", "passenger_events", "parking_occupancy"]
    for ds in [*datasets, "work_orders"]:
        age = 4 if ds == "work_orders" else 1
        day = date.today() - timedelta(days=age)
        folder = lake / "staged" / ds / "operator=bus" / f"service_date={day.isoformat()}"
        folder.mkdir(parents=True)
        duckdb.sql(f"copy (select 1 as source_row) to '{folder / 'part-0.parquet'}' (format parquet)")
    monkeypatch.setenv("CITYLAKE_LAKE_URI", lake.as_uri())
    monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    assert cli.main(["freshness"]) == 1
    out = capsys.readouterr().out
    assert "pass   staged.fare_transactions" in out and "error  staged.work_orders" in out
    assert "source freshness: error" in out

    # the maintenance export moved to D+5 in the city's contract (no code, no dbt edit): four days
    # old is within its deadline now, and the other feeds keep theirs
    city = tmp_path / "city"
    (city / "contracts").mkdir(parents=True)
    shipped = (ROOT / "ingestion" / "contracts" / "bus__maintenance.v1.yaml").read_text(encoding="utf-8")
    assert 'deadline: "D+1 06:00"' in shipped
    (city / "contracts" / "bus__maintenance.v1.yaml").write_text(
        shipped.replace('deadline: "D+1 06:00"', 'deadline: "D+5 06:00"'), encoding="utf-8"
    )
    monkeypatch.setenv("CITYLAKE_CONFIG_DIR", str(city))
    assert cli.main(["freshness"]) == 0
    out = capsys.readouterr().out
    assert "pass   staged.work_orders" in out and "source freshness: pass" in out
