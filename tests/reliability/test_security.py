"""Security rules that can be checked without a MinIO server: the shipped least-privilege policies
against the access matrix of lake_layout.md §6, and no credential in the repository."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "docs" / "minio"
LAKE, DROP = "citylake-lake", "citylake-drop"


def allowed(policy: dict, action: str, bucket: str, key: str | None = None, prefix: str | None = None) -> bool:
    """IAM evaluation as MinIO does it, for the features these policies use: explicit deny wins,
    then any allow; resources and ``s3:prefix`` conditions match with ``*`` wildcards."""
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
    verdict = False
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if not any(fnmatch.fnmatchcase(action, a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"]):
            continue
        cond = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if cond is not None and (prefix is None or not any(fnmatch.fnmatchcase(prefix, c) for c in cond)):
            continue
        if st["Effect"] == "Deny":
            return False
        verdict = True
    return verdict


def load(name: str) -> dict:
    return json.loads((POLICIES / f"{name}.json").read_text())


# (policy, action, bucket, key, prefix, expected) — one row per cell of the access matrix
MATRIX = [
    ("operator-bus", "s3:PutObject", DROP, "bus/ticketing/2026-03-30.csv", None, True),
    ("operator-bus", "s3:PutObject", DROP, "parking/occupancy/x.csv", None, False),
    ("operator-bus", "s3:GetObject", DROP, "parking/occupancy/x.csv", None, False),
    ("operator-bus", "s3:GetObject", DROP, "bus/ticketing/x.csv", None, False),
    ("operator-bus", "s3:DeleteObject", DROP, "bus/ticketing/x.csv", None, False),
    ("operator-bus", "s3:ListBucket", DROP, None, "bus/", True),
    ("operator-bus", "s3:ListBucket", DROP, None, "parking/", False),
    ("operator-bus", "s3:GetObject", LAKE, "published/CURRENT.json", None, False),
    ("operator-parking", "s3:PutObject", DROP, "parking/occupancy/x.csv", None, True),
    ("operator-parking", "s3:PutObject", DROP, "bus/x.csv", None, False),
    ("pipeline", "s3:GetObject", DROP, "bus/ticketing/x.csv", None, True),
    ("pipeline", "s3:PutObject", DROP, "bus/ticketing/x.csv", None, False),
    ("pipeline", "s3:PutObject", LAKE, "raw/operator=bus/feed=ticketing/x.csv", None, True),
    ("pipeline", "s3:DeleteObject", LAKE, "raw/operator=bus/feed=ticketing/x.csv", None, False),
    ("pipeline", "s3:DeleteObject", LAKE, "published/versions/p/transit/m.parquet", None, False),
    ("pipeline", "s3:DeleteObject", LAKE, "published/marts/transit/m/service_date=2026-03-02/f.parquet", None, False),
    ("pipeline", "s3:PutObject", LAKE, "published/marts/transit/m/_delta_log/00000000000000000001.json", None, True),
    ("pipeline", "s3:DeleteObject", LAKE, "control/locks/nightly.json", None, True),
    ("pipeline", "s3:PutObject", LAKE, "published/CURRENT.json", None, True),
    ("pipeline", "s3:BypassGovernanceRetention", LAKE, "raw/x", None, False),
    ("analysts", "s3:GetObject", LAKE, "published/versions/p/transit/m.parquet", None, True),
    ("analysts", "s3:GetObject", LAKE, "published/marts/transit/m/_delta_log/00000000000000000001.json", None, True),
    ("analysts", "s3:GetObject", LAKE, "opendata/x/data.csv", None, True),
    ("analysts", "s3:GetObject", LAKE, "raw/operator=bus/feed=ticketing/x.csv", None, False),
    ("analysts", "s3:GetObject", LAKE, "staged/fare_transactions/x.parquet", None, False),
    ("analysts", "s3:PutObject", LAKE, "published/CURRENT.json", None, False),
    ("analysts", "s3:ListBucket", LAKE, None, "published/", True),
    ("analysts", "s3:ListBucket", LAKE, None, "raw/", False),
    ("contract-managers", "s3:GetObject", LAKE, "raw/operator=bus/feed=ticketing/x.csv", None, True),
    ("contract-managers", "s3:GetObject", LAKE, "control/manifest/x.json", None, True),
    ("contract-managers", "s3:GetObject", LAKE, "staged/x.parquet", None, False),
    ("contract-managers", "s3:PutObject", LAKE, "reports/x.html", None, False),
    ("retention-job", "s3:DeleteObject", LAKE, "raw/operator=bus/feed=ticketing/x.csv", None, True),
    ("retention-job", "s3:BypassGovernanceRetention", LAKE, "raw/x", None, True),
    ("retention-job", "s3:DeleteObject", LAKE, "published/CURRENT.json", None, False),
    ("retention-job", "s3:DeleteObject", LAKE, "published/registry/p.json", None, False),
    (
        "retention-job",
        "s3:DeleteObject",
        LAKE,
        "published/marts/transit/m/service_date=2026-03-02/f.parquet",
        None,
        True,
    ),
    (
        "retention-job",
        "s3:PutObject",
        LAKE,
        "published/marts/transit/m/_delta_log/00000000000000000001.json",
        None,
        False,
    ),
    ("retention-job", "s3:PutObject", LAKE, "control/locks/nightly.json", None, True),
    ("retention-job", "s3:PutObject", LAKE, "control/vacuum/20270601T000000Z-0a1b2c3d.json", None, True),
    ("retention-job", "s3:PutObject", LAKE, "control/manifest/purges/20270601T000000Z-0a1b2c3d.json", None, True),
    ("retention-job", "s3:PutObject", LAKE, "control/manifest/fare_transactions/x.parquet", None, False),
    ("retention-job", "s3:ListBucket", LAKE, None, "reports/docs/", True),
    ("retention-job", "s3:DeleteObject", LAKE, "reports/docs/p/index.html", None, True),
    ("retention-job", "s3:DeleteObject", LAKE, "reports/contract/operator=bus/month=2026-03/p.html", None, False),
    # a purge records each file's sha256, from a HEAD (S3 listings carry no user metadata), and S3
    # authorises HEAD with s3:GetObject: the job that may delete raw files may also read them
    ("retention-job", "s3:GetObject", LAKE, "raw/x", None, True),
    ("retention-job", "s3:GetObject", LAKE, "staged/fare_transactions/x.parquet", None, False),
]


@pytest.mark.parametrize(("policy", "action", "bucket", "key", "prefix", "expected"), MATRIX)
def test_minio_policies_follow_the_access_matrix(policy, action, bucket, key, prefix, expected) -> None:
    assert allowed(load(policy), action, bucket, key, prefix) is expected


def test_every_shipped_policy_is_checked_and_grants_nothing_global() -> None:
    shipped = {p.stem for p in POLICIES.glob("*.json")}
    assert shipped == {row[0] for row in MATRIX}
    for name in shipped:
        for st in load(name)["Statement"]:
            assert "*" not in st["Action"] and "s3:*" not in st["Action"], name
            assert all(r not in ("*", "arn:aws:s3:::*") for r in st["Resource"]), name


#: What a committed credential looks like (AWS/MinIO keys, private keys, API tokens, passwords
#: in URLs or assignments). Test fixtures' fake keys are named in ALLOWED.
SECRET_PATTERNS = {
    "aws access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "citylake API token": re.compile(r"\bclk_[A-Za-z0-9_-]{40,}"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s:@'\"{}$]{6,}@"),
    "secret assignment": re.compile(
        r"""(?i)(?<![a-z0-9])(secret[_-]?key|password|passwd|api[_-]?key|pseudonym[_-]?key)\b\s*[=:]\s*["']([^"'\s$<{]{12,})["']"""
    ),
}
ALLOWED = {
    "citylake-test-secret-key",
    "session-test-pseudonym-key-0123456789",
    "operator-bus",
    "pseudonym-key-for-the-log-test-42",
}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def scan(text: str) -> list[str]:
    found = []
    for name, pattern in SECRET_PATTERNS.items():
        for m in pattern.finditer(text):
            value = m.group(m.lastindex or 0)
            if not any(a in value for a in ALLOWED):
                found.append(f"{name}: {m.group(0)[:60]}")
    return found


def test_the_scanner_finds_credentials() -> None:
    # built by concatenation, so that this file does not itself hold what it looks for
    assert scan("CITYLAKE_S3_SECRET_KEY = " + '"wJalrXUtnFEMI/K7MDENG/' + 'bPxRfiCYzzzzzzz"')
    assert scan("AKIA" + "IOSFODNN7EXAMPLE")
    assert scan("sftp://drop:" + "s3cr3tpassw0rd@sftp.example.org/in")
    assert scan("-----BEGIN OPENSSH " + "PRIVATE KEY-----")
    assert scan("clk_" + "a" * 43)
    assert not scan('password = os.environ["CITYLAKE_SFTP_PASSWORD"]')


def test_no_credential_is_committed() -> None:
    problems = []
    for path in tracked_files():
        if path.suffix in (".zip", ".png", ".parquet", ".xlsx") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in scan(text)]
    assert problems == []


@pytest.mark.s3
def test_credentials_are_never_printed_or_logged(s3_settings, monkeypatch, capsys, caplog) -> None:
    """The CLI's info, lake init and a failed S3 call, at DEBUG: no secret in output or logs."""
    import logging

    from citylake import cli
    from tests.conftest import S3_SECRET

    pseudonym_key = "pseudonym-key-for-the-log-test-42"
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", pseudonym_key)
    caplog.set_level(logging.DEBUG)
    assert cli.main(["-v", "info"]) == 0
    assert cli.main(["-v", "lake", "init"]) == 0
    assert cli.main(["-v", "lake", "get", "raw/operator=x/feed=y/received_date=2026-01-01/missing.csv"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "lake" in text
    for secret in (S3_SECRET, pseudonym_key):
        assert secret not in text


def test_no_card_serial_in_the_warehouse_or_the_published_lake(lake_after_nights) -> None:
    """Issue #29: after the simulated nights, no card serial the simulator delivered is in any text
    column of the warehouse (staging, intermediate, marts), the manifest, the staged rows or what
    is published: card ids leave ingestion pseudonymised, or not at all."""
    import re

    import duckdb
    import polars as pl

    from tests.ingestion.test_ingestion import _texts_of_lake, delivered_serials

    serials = delivered_serials(lake_after_nights.drop)
    assert len(serials) > 1000
    digits = re.compile(r"P?\d{9,}")
    con = duckdb.connect(str(lake_after_nights.warehouse), read_only=True)
    try:
        columns = con.sql(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' and table_schema not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        leaks = []
        for schema, table, column in columns:
            values = con.sql(f'select distinct "{column}" from "{schema}"."{table}" where "{column}" is not null')
            frame = values.pl()
            text = "\n".join(frame[frame.columns[0]].cast(pl.Utf8).to_list())
            leaks += [(f"{schema}.{table}.{column}", m) for m in digits.findall(text) if m in serials]
    finally:
        con.close()
    leaks += [(where, m) for where, text in _texts_of_lake(lake_after_nights.lake) for m in digits.findall(text)
              if m in serials and not where.startswith(("raw/", "quarantine/"))]  # fmt: skip
    assert leaks == [], leaks[:5]


def test_a_night_with_every_hostile_file_publishes_everything_else(lake_after_nights, reliability) -> None:
    """Issue #29, done when: the session's nights ran with the hostile files delivered beside the
    first day (tests/support/hostile.py: calendars of 0001-9999, dates not YYYYMMDD, a sheet with a
    cell at row 10,000,000, a ticketing file cut in a card serial) and a line nested 200,000 deep in
    that day's AVL file. Each file is quarantined once, naming its rule; the deep line is one invalid
    row; both operators' groups were published and reported both nights (the fixture asserts it);
    the scan above finds no card serial outside the pseudonymised columns."""
    import polars as pl

    from citylake.core.storage import open_storage
    from ingestion import manifest
    from tests.conftest import SIMULATED_START
    from tests.support import hostile

    rules = hostile.plant(lake_after_nights.base / "expected", SIMULATED_START - timedelta(days=1))
    storage = open_storage(lake_after_nights.settings())
    deliveries, steps = manifest.load(storage, "deliveries"), manifest.load(storage, "steps")
    for name, rule in rules.items():
        shas = deliveries.filter(pl.col("original_name") == name)["sha256"].unique()
        assert len(shas) == 1, name
        refused = steps.filter((pl.col("sha256") == shas[0]) & (pl.col("step") == "quarantined"))
        assert refused.height == 1 and rule in refused["detail"][0], (name, refused["detail"].to_list())
        assert steps.filter((pl.col("sha256") == shas[0]) & (pl.col("step") == "parsed")).is_empty(), name
    invalid = manifest.load(storage, "invalid_reasons")
    assert "line is not valid JSON" in invalid.filter(pl.col("feed") == "avl")["reason"].to_list()
    for night in lake_after_nights.nights:
        assert night.ok and not night.gate.refused_groups
    reliability(
        "hostile_night_published",
        len(rules) + 1,
        len(rules) + 1,
        0,
        f"{', '.join(sorted(rules))} delivered beside the first simulated day, and a line nested 200,000 deep in "
        "its AVL file: each file quarantined once naming its rule, the line an invalid row, both nights "
        "published and reported for both operators, no card serial outside the pseudonymised columns",
    )
