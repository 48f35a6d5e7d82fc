"""Ingestion: land, parse, stage; every simulator fault gives its documented outcome."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from citylake.build.dbt import dbt_env
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, open_storage
from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import parse_faults
from devtools.simulator.run import SimulationConfig, simulate
from ingestion import manifest, registry
from ingestion.parsing import local_to_utc
from ingestion.pseudonym import Pseudonymiser, period_label
from ingestion.run import ingest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = SAMPLE_NETWORK
KEY = "test-pseudonym-key-0123456789"


def simulate_to(out: Path, start: date, days: int, faults: str | None) -> Path:
    simulate(
        SimulationConfig(
            network=SAMPLE, start=start, days=days, out=out, faults=parse_faults(faults), seed=3, progress=False
        )
    )
    return out


@pytest.fixture(scope="session")
def faulty_drop(tmp_path_factory) -> Path:
    return simulate_to(tmp_path_factory.mktemp("faulty_drop"), date(2026, 3, 28), 3, "all")


@pytest.fixture(scope="session")
def clean_drop(tmp_path_factory) -> Path:
    return simulate_to(tmp_path_factory.mktemp("clean_drop"), date(2026, 3, 30), 2, None)


def lake_env(monkeypatch, lake: Path, drop: Path, key: str | None = KEY) -> Settings:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", lake.as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    if key:
        monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", key)
    else:
        monkeypatch.delenv("CITYLAKE_PSEUDONYM_KEY", raising=False)
    return Settings()


def staged(storage: LakeStorage, dataset: str) -> pl.DataFrame:
    frames = [pl.read_parquet(io.BytesIO(storage.get_bytes(i.key))) for i in storage.list(f"staged/{dataset}/")]
    return pl.concat(frames) if frames else pl.DataFrame()


@pytest.fixture
def faulty_lake(faulty_drop, tmp_path, monkeypatch):
    settings = lake_env(monkeypatch, tmp_path / "lake", faulty_drop)
    report = ingest(settings)
    return settings, open_storage(settings), report


def test_every_fault_has_its_documented_outcome(faulty_lake, faulty_drop) -> None:
    settings, storage, report = faulty_lake
    faults = {r["kind"]: r for r in json.loads((faulty_drop / "truth" / "faults.json").read_text())}
    deliveries = manifest.load(storage, "deliveries")
    steps = manifest.load(storage, "steps")
    reasons = manifest.load(storage, "invalid_reasons")

    def step_of(name: str, step: str) -> pl.DataFrame:
        sha = deliveries.filter(pl.col("original_name") == name)["sha256"]
        return steps.filter(pl.col("sha256").is_in(sha.implode()) & (pl.col("step") == step))

    # truncated: quarantined with its reason, kept in raw and in quarantine
    truncated = faults["truncated_file"]["file"]
    q = step_of(truncated, "quarantined")
    assert q.height == 1 and "truncated" in q["detail"][0]
    assert storage.exists(q["staged_key"][0]) and storage.exists(q["staged_key"][0] + ".reason.json")
    assert json.loads(storage.get_bytes(q["staged_key"][0] + ".reason.json"))["reason"].startswith(truncated)
    # redelivery: the corrected file is what is staged for that day
    v2 = faults["redelivery"]["file"]
    day = date.fromisoformat(faults["redelivery"]["service_date"])
    ft = staged(storage, "fare_transactions")
    v2_sha = deliveries.filter(pl.col("original_name") == v2)["sha256"][0]
    assert ft.filter(pl.col("service_date") == day)["source_sha256"].unique().to_list() == [v2_sha]
    # schema drift: unknown schema, quarantined, naming the columns
    drift_day = date.fromisoformat(faults["schema_drift"]["service_date"])
    drift = step_of(f"VALIDATIONS_{drift_day:%Y%m%d}.csv", "quarantined")
    assert "missing columns ['Code arrêt']" in drift["detail"][0] and "Code_Arret" in drift["detail"][0]
    # missing day: nothing delivered, nothing staged for it
    missing = date.fromisoformat(faults["missing_day"]["service_date"])
    assert deliveries.filter((pl.col("feed") == "ticketing") & (pl.col("declared_date") == missing)).height == 0
    assert ft.filter(pl.col("service_date") == missing).height == 0
    # duplicate: recognised by hash, landed once
    dup = deliveries.filter(pl.col("original_name") == faults["duplicate_delivery"]["file"])
    assert dup["duplicate_of"][0] is not None
    assert len([i for i in storage.list("raw/operator=bus/feed=avl/") if dup["sha256"][0][:16] in i.key]) == 1
    # late: flagged against the contract deadline
    late = deliveries.filter(pl.col("original_name") == faults["late_delivery"]["file"])
    assert late["is_late"].to_list() == [True]
    assert deliveries.filter(pl.col("feed").is_in(["avl", "trips"]))["is_late"].to_list() == [False] * 7
    # wrong encoding: repaired with a warning
    enc = step_of(faults["wrong_encoding"]["file"], "parsed")
    assert enc["outcome"][0] == "warning" and "UTF-8" in enc["detail"][0]
    # row faults: counted per reason in the manifest, rows kept and marked
    text = " | ".join(reasons["reason"].to_list())
    for expected in (
        "is not a datetime local",
        "is not a decimal",
        "required value missing",
        "is not in GTFS version",
        "is not in the fleet register",
        "is below 0",
        "above capacity",
    ):
        assert expected in text, expected
    sv = staged(storage, "stop_visits")
    assert sv.filter(pl.col("vehicle_id") == "9999")["is_valid"].sum() == 0
    po = staged(storage, "parking_occupancy")
    assert po.filter(~pl.col("is_valid"))["invalid_reason"].str.contains("above capacity").all()
    # nothing silently dropped, one unit: the parsed step counts the staged rows it staged
    for row in steps.filter((pl.col("step") == "staged") & pl.col("partition_date").is_not_null()).iter_rows(
        named=True
    ):
        parsed = steps.filter((pl.col("step") == "parsed") & (pl.col("sha256") == row["sha256"]))
        assert row["rows_total"] == parsed["rows_total"][0]
        assert parsed["rows_valid"][0] + parsed["rows_invalid"][0] == parsed["rows_total"][0]
    # no feed error: every fault is a data outcome, not a crash
    assert report.ok


def test_dst_days_parse_to_continuous_utc(faulty_lake) -> None:
    _, storage, _ = faulty_lake
    po = staged(storage, "parking_occupancy").filter(pl.col("service_date") == date(2026, 3, 29))
    per = (
        po.sort("facility_id", "source_row")
        .group_by("facility_id", maintain_order=True)
        .agg(pl.len(), pl.col("observed_at").diff().dt.total_seconds().drop_nulls().unique().alias("steps"))
    )
    assert per["len"].unique().to_list() == [276]  # 23 local hours
    assert per["steps"].to_list() == [[300]] * per.height  # every 5 minutes in UTC, across 02:00 -> 03:00


def test_october_repeated_hour_is_resolved_by_order(tmp_path, monkeypatch) -> None:
    drop = simulate_to(tmp_path / "drop", date(2026, 10, 25), 1, None)
    settings = lake_env(monkeypatch, tmp_path / "lake", drop)
    ingest(settings, operator="parking")
    po = staged(open_storage(settings), "parking_occupancy")
    assert po["is_valid"].all()
    per = (
        po.sort("facility_id", "source_row")
        .group_by("facility_id", maintain_order=True)
        .agg(pl.len(), (pl.col("observed_at").diff().dt.total_seconds().drop_nulls() == 300).all().alias("regular"))
    )
    assert per["len"].unique().to_list() == [300] and per["regular"].all()


def test_local_time_rules() -> None:
    naive = pl.Series(
        "t",
        [
            "2026-10-25 01:50:00",
            "2026-10-25 02:10:00",
            "2026-10-25 02:55:00",
            "2026-10-25 02:05:00",
            "2026-10-25 02:12:00",
            "2026-10-25 02:10:00",
            "2026-10-25 03:10:00",
        ],
    ).str.to_datetime()
    frame = pl.DataFrame({"t": naive})
    utc, nonexistent = local_to_utc(pl.col("t"), "Europe/Paris")
    out = frame.select(utc.alias("u"), nonexistent.alias("n"))["u"].dt.strftime("%H:%M").to_list()
    # first pass in summer time (UTC+2), then winter time (UTC+1); a 2-minute disorder is not a rollback
    assert out == ["23:50", "00:10", "00:55", "01:05", "01:12", "01:10", "02:10"]
    spring = pl.DataFrame({"t": pl.Series(["2026-03-29 02:30:00"]).str.to_datetime()})
    u, n = local_to_utc(pl.col("t"), "Europe/Paris")
    assert spring.select(n).item() is True and spring.select(u).item() is None


def test_rerun_is_idempotent_and_byte_identical(faulty_lake, faulty_drop, tmp_path, monkeypatch) -> None:
    settings, storage, _ = faulty_lake
    before = {i.key: i.sha256 for i in storage.list("staged/")}
    n_manifest = len(storage.list("control/manifest/"))
    report = ingest(settings)
    assert all(f.landed == f.parsed == f.duplicates == 0 and not f.staged for f in report.feeds)
    assert {i.key: i.sha256 for i in storage.list("staged/")} == before
    assert len(storage.list("control/manifest/")) == n_manifest  # nothing to record
    other = lake_env(monkeypatch, tmp_path / "other", faulty_drop)
    ingest(other)
    assert {i.key: i.sha256 for i in open_storage(other).list("staged/")} == before


def test_corrected_redelivery_supersedes(clean_drop, tmp_path, monkeypatch) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(clean_drop, drop)
    settings = lake_env(monkeypatch, tmp_path / "lake", drop)
    ingest(settings, operator="bus", feed="trips")
    first = drop / "bus" / "trips" / "sae_courses_2026-03-30.jsonl"
    lines = first.read_text().splitlines()
    corrected = drop / "bus" / "trips" / "sae_courses_2026-03-30_v2.jsonl"
    corrected.write_text("\n".join(lines[:-1]) + "\n")
    mtime = first.stat().st_mtime + 86400
    os.utime(corrected, (mtime, mtime))
    report = ingest(settings, operator="bus", feed="trips")
    storage = open_storage(settings)
    steps = manifest.load(storage, "steps")
    assert report.feeds[0].staged and steps.filter(pl.col("step") == "superseded").height == 1
    tp = staged(storage, "trips_performed").filter(pl.col("service_date") == date(2026, 3, 30))
    assert tp.height == len(lines) - 1
    assert len(storage.list("raw/operator=bus/feed=trips/")) == 3  # both deliveries of the 30th kept


def test_no_clear_card_id_reaches_staged(faulty_lake, faulty_drop) -> None:
    _, storage, _ = faulty_lake
    raw = b"".join(p.read_bytes() for p in (faulty_drop / "bus" / "ticketing").glob("*.csv")).decode("cp1252")
    serials = {line.split(";")[1] for line in raw.splitlines()[1:] if line.count(";") >= 10 and line.split(";")[1]}
    assert len(serials) > 1000
    for info in storage.list("staged/"):
        frame = pl.read_parquet(io.BytesIO(storage.get_bytes(info.key)))
        for col in frame.columns:
            if frame[col].dtype == pl.Utf8:
                assert not set(frame[col].drop_nulls().unique().to_list()) & serials, f"{info.key}:{col}"


def test_pseudonyms_are_stable_within_a_period_and_rotate_across() -> None:
    p = Pseudonymiser(KEY)
    assert p.one("123456789012", date(2026, 1, 5)) == p.one("123456789012", date(2026, 3, 31))
    assert p.one("123456789012", date(2026, 3, 31)) != p.one("123456789012", date(2026, 4, 1))
    assert p.one("123456789012", date(2026, 1, 5)) != Pseudonymiser(KEY + "x").one("123456789012", date(2026, 1, 5))
    assert period_label(date(2026, 11, 22)) == "2026Q4"
    s = p.series(pl.Series(["a", None, "a", "b"]), date(2026, 1, 1))
    assert s[0] == s[2] != s[3] and s[1] is None
    # the batch path is RFC 2104 HMAC, the same as the standard library's, for any key length
    for key in (KEY, "k" * 100):
        q = Pseudonymiser(key)
        cards = ["123456789012", "P3742852440", "é-ünïcode", ""]
        assert q.series(pl.Series(cards), date(2026, 5, 1)).to_list() == [q.one(c, date(2026, 5, 1)) for c in cards]
    assert len(p.series(pl.Series([], dtype=pl.Utf8), date(2026, 1, 1))) == 0


def test_same_card_same_pseudonym_across_days(clean_drop, tmp_path, monkeypatch) -> None:
    settings = lake_env(monkeypatch, tmp_path / "lake", clean_drop)
    ingest(settings, operator="bus")
    ft = staged(open_storage(settings), "fare_transactions")
    per_day = (
        ft.filter(pl.col("fare_media_type") == "Carte").group_by("service_date").agg(pl.col("fare_media_id").unique())
    )
    a, b = (set(x) for x in per_day.sort("service_date")["fare_media_id"].to_list())
    assert len(a & b) > 0.3 * min(len(a), len(b)), "commuters' cards chain across days"


def test_missing_key_lands_raw_and_parses_later(clean_drop, tmp_path, monkeypatch) -> None:
    settings = lake_env(monkeypatch, tmp_path / "lake", clean_drop, key=None)
    report = ingest(settings, operator="bus")
    by_feed = {f.feed: f for f in report.feeds}
    assert by_feed["ticketing"].landed == 2 and by_feed["ticketing"].errors
    assert "CITYLAKE_PSEUDONYM_KEY" in by_feed["ticketing"].errors[0]
    assert by_feed["avl"].staged and not by_feed["avl"].errors  # the other feeds went on
    storage = open_storage(settings)
    assert not storage.list("staged/fare_transactions/")
    settings = lake_env(monkeypatch, tmp_path / "lake", clean_drop)
    report = ingest(settings, operator="bus", feed="ticketing")
    assert report.ok and len(report.feeds[0].staged) == 2


@pytest.mark.s3
def test_s3_drop_into_s3_lake(clean_drop, s3_settings, monkeypatch, moto_endpoint) -> None:
    from minio import Minio

    client = Minio(moto_endpoint.split("://")[1], access_key="a", secret_key="b", secure=False)
    lake = open_storage(s3_settings)
    client = lake.client
    client.make_bucket("operators-drop")
    for path in sorted(clean_drop.rglob("*")):
        rel = path.relative_to(clean_drop).as_posix()
        if path.is_file() and not rel.startswith(("truth", "simulation")):
            client.fput_object("operators-drop", f"incoming/{rel}", str(path))
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", "s3://operators-drop/incoming")
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    report = ingest(Settings())
    assert report.ok
    keys = [i.key for i in lake.list("staged/")]
    assert any("fare_transactions/operator=bus/service_date=2026-03-31" in k for k in keys)
    assert any("parking_occupancy" in k for k in keys)
    assert lake.list("raw/operator=bus/feed=ticketing/")


def test_sftp_drop_served_locally(clean_drop, tmp_path, monkeypatch) -> None:
    from tests.support.sftp_server import PASSWORD, USER, SFTPServer

    server = SFTPServer(clean_drop)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line())
        monkeypatch.setenv("CITYLAKE_SFTP_KNOWN_HOSTS", str(known))
        monkeypatch.setenv("BUS_SFTP_USER", USER)
        monkeypatch.setenv("BUS_SFTP_PASSWORD", PASSWORD)
        settings = lake_env(monkeypatch, tmp_path / "lake", tmp_path / "unused")
        config = {
            "bus": {
                "name": "bus",
                "feeds": ["gtfs", "fleet", "avl", "ticketing"],
                "drop": {
                    "type": "sftp",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "path": "/bus",
                    "username_env": "BUS_SFTP_USER",
                    "password_env": "BUS_SFTP_PASSWORD",
                },
            }
        }
        report = ingest(settings, config=config)
        assert report.ok, report.lines()
        assert {f.feed: len(f.staged) for f in report.feeds} == {"gtfs": 1, "fleet": 1, "avl": 2, "ticketing": 2}
        deliveries = manifest.load(open_storage(settings), "deliveries")
        src = clean_drop / "bus" / "avl" / "sae_passages_2026-03-30.jsonl"
        row = deliveries.filter(pl.col("original_name") == src.name)
        assert row["sha256"][0] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert row["delivered_at"][0] == datetime.fromtimestamp(int(src.stat().st_mtime), UTC)
        # a wrong password is a feed error, reported, not a crash
        monkeypatch.setenv("BUS_SFTP_PASSWORD", "wrong")
        report = ingest(settings, config=config)
        assert not report.ok and all("did not answer" in f.errors[0] for f in report.feeds)
    finally:
        server.stop()


def test_configuration_is_checked(tmp_path, monkeypatch) -> None:
    from citylake.core.errors import LakeConfigError

    settings = lake_env(monkeypatch, tmp_path / "lake", tmp_path / "drop")
    with pytest.raises(LakeConfigError, match="unknown operator 'nobody'"):
        ingest(settings, operator="nobody")
    assert set(registry.operators()) == {"bus", "parking", "montpellier"}
    # an empty drop is not an error: nothing delivered yet
    assert ingest(settings).ok


def test_the_manifest_reads_a_snapshot_and_only_the_objects_missing_from_it(file_settings) -> None:
    """A year of nights is thousands of manifest objects: a night reads the snapshot and the few
    objects written since, and the result is the same as reading every object."""
    storage = open_storage(file_settings)
    for i in range(manifest.COMPACT_AFTER + 3):
        records = manifest.RunRecords(f"20260101T0000{i:02d}Z-run{i:04d}", "bus", "avl")
        records.step(f"{i:064x}", "staged", partition_date=date(2026, 1, 1 + i % 28))
        records.write(storage)
    every = manifest.load(storage, "steps")  # folds the 53 objects into the snapshot
    assert every.height == manifest.COMPACT_AFTER + 3
    snapshot = manifest.snapshot_key("steps")
    assert storage.exists(snapshot)
    late = manifest.RunRecords("20260301T000000Z-late0000", "bus", "avl")
    late.step("f" * 64, "staged", partition_date=date(2026, 3, 1))
    written = late.write(storage)
    gets: list[str] = []
    real = storage.get_bytes
    storage.get_bytes = lambda k: gets.append(k) or real(k)
    after = manifest.load(storage, "steps")
    assert sorted(gets) == sorted([snapshot, *written])  # the snapshot and the one new object only
    expected = pl.concat([every, after.filter(pl.col("run_id").str.contains("late"))])
    assert after.height == every.height + 1
    assert after.sort("run_id").equals(expected.sort("run_id"))
    # what dbt's manifest source reads (the snapshot and the object not in it) is the same table
    keys = manifest.object_keys(storage, "steps")
    assert keys == [snapshot, *written]
    env = dbt_env(file_settings, storage, Path("unused.duckdb"))
    read = duckdb.sql(
        f"select * exclude (_key) from read_parquet({env['CITYLAKE_MANIFEST_STEPS']}, union_by_name = true)"
    ).pl()
    assert read.select(after.columns).cast(after.schema).sort("run_id").equals(after.sort("run_id"))


@pytest.fixture(scope="session")
def one_day_drop(tmp_path_factory) -> Path:
    return simulate_to(tmp_path_factory.mktemp("one_day_drop"), date(2026, 3, 30), 1, None)


def _staged_keys(report) -> dict[tuple[str, str], set[str]]:
    return {(f.operator, f.feed): set(f.staged) for f in report.feeds}


def _targets() -> list[tuple[str, str]]:
    from ingestion import registry

    used = {c.staged["builder"] for c in registry.feeds()}
    readers = [("reader", "read_csv_text"), ("reader", "read_jsonl_text"), ("reader", "read_xlsx_bytes")]
    return [("builder", b) for b in sorted(used - {"gtfs"})] + readers + [("reader", "read_feed")]


def test_an_exception_in_any_reader_or_builder_fails_its_feed_alone(
    one_day_drop, tmp_path, monkeypatch, reliability
) -> None:
    """Issue #29, part 1: each reader and builder in turn raises an exception no rule foresaw; the
    night's ingestion goes on, the affected deliveries are quarantined once with the error's kind
    (never its text), and every other feed stages what it staged in a clean run."""
    from ingestion import feeds, gtfs, parsing, registry

    settings = lake_env(monkeypatch, tmp_path / "clean", one_day_drop)
    clean = _staged_keys(ingest(settings))
    by_format = {"read_csv_text": "csv", "read_jsonl_text": "jsonl", "read_xlsx_bytes": "xlsx", "read_feed": "gtfs"}

    def boom(*args, **kwargs):
        raise RuntimeError("a secret value 123456789012 the message must not carry")

    for kind, name in _targets():
        with monkeypatch.context() as mp:
            if kind == "builder":
                mp.setitem(feeds.BUILDERS, name, boom)
            elif name == "read_feed":
                mp.setattr(gtfs, "read_feed", boom)
            else:
                mp.setattr(parsing, name, boom)
            settings = lake_env(mp, tmp_path / f"{kind}-{name}", one_day_drop)
            report = ingest(settings)
        hit = {
            (c.operator, c.feed)
            for c in registry.feeds()
            if (c.staged["builder"] == name if kind == "builder" else c.format == by_format[name])
        }
        assert hit, f"{name}: no configured feed uses it"
        for f in report.feeds:
            key_ = (f.operator, f.feed)
            if key_ in hit and clean[key_]:
                assert not f.staged and f.quarantined, f"{name}: {key_} should fail"
                assert all("(RuntimeError)" in q and "123456789012" not in q for q in f.quarantined)
            else:
                assert set(f.staged) == clean[key_], f"{name}: {key_} staged differently"
        storage = open_storage(settings)
        steps = manifest.load(storage, "steps")
        assert steps.filter(pl.col("step") == "quarantined").height == sum(len(f.quarantined) for f in report.feeds)
        assert not steps["detail"].str.contains("123456789012").any()
        # the next night does not read them again: they are quarantined once
        again = ingest(settings)
        assert not any(f.quarantined for f in again.feeds), name
    targets = _targets()
    reliability(
        "feed_fails_alone",
        len(targets),
        len(targets),
        0,
        f"a RuntimeError raised in each of {len(targets)} readers and builders in turn "
        f"({', '.join(n for _, n in targets)}): its deliveries quarantined once, naming the error's kind, "
        "never its text; every other feed staged what a clean night stages",
    )


def delivered_serials(drop: Path) -> set[str]:
    """Every card or ticket serial in the ticketing files of a drop (read as text, whatever the
    faults did to the files), by the contract's header."""
    import csv

    from ingestion.contracts import contract

    header = contract("bus", "ticketing").column("card_serial").name
    out: set[str] = set()
    for path in sorted((drop / "bus" / "ticketing").glob("*.csv")):
        text = path.read_bytes().decode("cp1252", errors="replace")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        if rows and header in rows[0]:
            i = rows[0].index(header)
            out |= {r[i] for r in rows[1:] if len(r) > i and len(r[i]) >= 8}
    return out


def _texts_of_lake(root: Path) -> list[tuple[str, str]]:
    """(where, text) of every string value in the lake's Parquet files (manifest, staged) and every
    JSON file (quarantine reasons, control records); the delivered files themselves (raw/,
    quarantine/) hold the serials by design and are purged on their schedule."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for col, dtype in frame.schema.items():
                if dtype == pl.Utf8:
                    out += [(f"{path.relative_to(root)}:{col}", v) for v in frame[col].drop_nulls().unique()]
        elif path.suffix == ".json":
            out.append((str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace")))
    return out


def test_no_card_serial_leaves_the_pseudonymised_columns(
    faulty_drop, tmp_path, monkeypatch, capsys, caplog, reliability
) -> None:
    """Issue #29, part 3: a night with every simulator fault, plus a ticketing file cut in the middle
    of a serial and one with serials in the stop and vehicle columns: no card serial in the manifest,
    the quarantine reasons, the staged rows (invalid_reason included), the logs or the CLI's output."""
    import logging

    from citylake.cli import main

    drop = tmp_path / "drop"
    shutil.copytree(faulty_drop, drop)
    ticketing = drop / "bus" / "ticketing"
    from ingestion.contracts import contract

    expected = ";".join(contract("bus", "ticketing").headers)
    texts = [p.read_bytes().decode("cp1252", errors="replace") for p in sorted(ticketing.glob("VALIDATIONS_*.csv"))]
    sample = next(t for t in texts if t.startswith(expected)).splitlines(keepends=True)  # a file of the contract
    header, rows = sample[0], [r for r in sample[1:5] if r.strip()][:3]
    serials = [r.split(";")[1] for r in rows]
    cut = (header + rows[0] + rows[1][: rows[1].index(serials[1]) + 7]).encode("cp1252")
    (ticketing / "VALIDATIONS_20260331.csv").write_bytes(cut)  # ends in the middle of a serial
    others = sorted(delivered_serials(faulty_drop) - set(serials))
    misplaced = [r.split(";") for r in rows]
    misplaced[0][7] = serials[0]  # a serial in the stop column (a shifted export), a card of this file
    misplaced[1][8] = others[0]  # in the vehicle column, a card of another day
    misplaced[2][10] = others[1] + "\r\n"  # in the amount column: not a decimal, and not to be shown
    (ticketing / "VALIDATIONS_20260401.csv").write_bytes(
        (header + "".join(";".join(r) for r in misplaced)).encode("cp1252")
    )
    settings = lake_env(monkeypatch, tmp_path / "lake", drop)
    caplog.set_level(logging.DEBUG)
    main(["ingest", "--no-progress"])
    out = capsys.readouterr()
    secrets = delivered_serials(drop) | set(serials)
    assert len(secrets) > 1000
    places = _texts_of_lake(tmp_path / "lake")
    places += [("stdout", out.out), ("stderr", out.err), ("log", caplog.text)]
    import re

    digits = re.compile(r"P?\d{9,}")
    leaks = [(where, m) for where, text in places for m in digits.findall(text) if m in secrets]
    assert leaks == [], leaks[:5]
    hostile = staged(open_storage(settings), "fare_transactions").filter(pl.col("service_date") == date(2026, 4, 1))
    assert hostile.height == 3 and hostile["is_valid"].sum() == 0  # the three rows staged, invalid, withheld
    assert "column stop_id: holds a card number (withheld)" in hostile["invalid_reason"].to_list()
    reliability(
        "personal_values",
        4,
        4,
        0,
        f"{len(secrets):,} card serials delivered over a night with every simulator fault, a file cut in the "
        "middle of a serial and serials in the stop, vehicle and amount columns: none in the manifest, "
        f"quarantine reasons, staged rows, logs or CLI output ({len(places):,} texts scanned); messages about a "
        "personal-data feed's rows name the row and rule, never the value",
    )


def test_an_amount_too_large_for_money_is_an_invalid_row_not_a_crash() -> None:
    from ingestion.contracts import contract
    from ingestion.parsing import parse

    c = contract("bus", "ticketing")
    row = "30/03/2026 07:00:00;123456789012;Carte;Abonnement;Validation;A;Aller;1;2;V1;99999999999999,00\r\n"
    parsed = parse(c, (";".join(c.headers) + "\r\n" + row).encode("cp1252"), "VALIDATIONS_20260330.csv")
    assert parsed.frame["invalid_reason"].to_list() == [
        "column 'Montant (€)': '<personal-data feed: value withheld>' is not a decimal"
    ]


def _hostile_files(drop: Path) -> dict[str, str]:
    """The small hostile files of issue #29 into a drop: {file: the feed it goes to}."""
    from ingestion.contracts import contract
    from tests.support.gtfs_feeds import CALENDAR, gtfs_zip
    from tests.support.hostile import DEEP_LINE, sparse_sheet

    out = {}
    forever = CALENDAR + "".join(f"S{i},1,1,1,1,1,1,1,00010101,99991231\n" for i in range(8))
    (drop / "bus" / "gtfs" / "gtfs_forever.zip").write_bytes(gtfs_zip(forever))
    out["gtfs_forever.zip"] = "bus/gtfs"
    c = contract("bus", "maintenance")  # no <dimension>, one cell at row 10,000,000
    (drop / "bus" / "maintenance" / "export_GMAO_20260331.xlsx").write_bytes(sparse_sheet(c.file["sheet"], c.headers))
    out["export_GMAO_20260331.xlsx"] = "bus/maintenance"
    (drop / "bus" / "avl" / "sae_passages_2026-03-31.jsonl").write_text(DEEP_LINE + "\n", encoding="utf-8")
    out["sae_passages_2026-03-31.jsonl"] = "bus/avl"
    return out


def test_a_night_of_hostile_files_under_a_memory_limit(one_day_drop, tmp_path, reliability) -> None:
    """Issue #29: every hostile file at once beside a normal day, ingested by `citylake ingest` in a
    process whose address space is capped (RLIMIT_AS 3 GiB): it ends, refuses each hostile file
    once with its rule, and stages every feed of the normal day."""
    import resource
    import subprocess
    import sys

    drop = tmp_path / "drop"
    shutil.copytree(one_day_drop, drop)
    hostile = _hostile_files(drop)
    budget = 3 * 1024**3

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYLAKE_")},
        "CITYLAKE_LAKE_URI": (tmp_path / "lake").as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_PSEUDONYM_KEY": KEY,
    }
    run = subprocess.run(
        [sys.executable, "-m", "citylake.cli", "ingest", "--no-progress"],
        env=env,
        preexec_fn=capped,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    storage = open_storage(Settings.model_construct(lake_uri=(tmp_path / "lake").as_uri()))
    deliveries = manifest.load(storage, "deliveries")
    steps = manifest.load(storage, "steps")
    for name in ("gtfs_forever.zip", "export_GMAO_20260331.xlsx"):
        sha = deliveries.filter(pl.col("original_name") == name)["sha256"]
        assert steps.filter(pl.col("sha256").is_in(sha.implode()) & (pl.col("step") == "quarantined")).height == 1
    keys = [i.key.split("/") for i in storage.list("staged/")]
    staged_days = {(k[1], k[3]) for k in keys if len(k) > 3 and k[3] == "service_date=2026-03-30"}
    for dataset in ("fare_transactions", "stop_visits", "trips_performed", "passenger_events", "parking_occupancy"):
        assert (dataset, "service_date=2026-03-30") in staged_days, dataset
    reliability(
        "hostile_night",
        len(hostile),
        len(hostile),
        0,
        f"{', '.join(hostile)} beside a normal day, `citylake ingest` capped at {budget // 1024**3} GiB of "
        "address space (RLIMIT_AS): the night ends, the calendar and the sheet are quarantined with their "
        "rule, the deep line is an invalid row, every feed of the normal day staged",
    )


FORGED_CONTRACT = """\
operator: forger
feed: apc
version: 1
title: Comptages
group: transit
staged: {dataset: passenger_events, partition: service_date, builder: passenger_events}
file:
  {format: csv, file_name: "comptages_{service_date:%Y%m%d}.csv", delimiter: ",", deadline: "D+1 06:00 Europe/Paris"}
columns:
  - {name: vehicle_id, canonical: vehicle_id, type: string}
  - {name: trip_id, canonical: trip_id, type: string}
  - {name: stop_id, canonical: stop_id, type: string}
  - {name: stop_sequence, canonical: stop_sequence, type: integer}
  - {name: arrival_utc, canonical: actual_arrival_at, type: datetime_utc}
  - {name: boardings, canonical: boardings, type: integer}
  - {name: alightings, canonical: alightings, type: integer}
"""


def test_an_operator_cannot_forge_an_on_time_delivery(tmp_path, monkeypatch, reliability) -> None:
    """Issue #29, part 4: a file delivered now with its modification time set back to the evening of
    its service day is late: a folder drop is judged on the inode change time (the kernel's), and
    the operator's mtime is kept as information only. A drop declared `clock: mtime` (simulated
    deliveries only) trusts it, and says so."""
    from tests.support.city import onboard

    body = (
        b"vehicle_id,trip_id,stop_id,stop_sequence,arrival_utc,boardings,alightings\n"
        b"290,T1,1239,1,2026-03-30T05:30:00Z,3,0\n"
    )
    entry = (
        "  forger:\n    name: Forger\n    drop: {type: root, path: forger}\n    feeds: [apc]\n"
        "  trusted:\n    name: Simulated\n    drop: {type: root, path: trusted, clock: mtime}\n    feeds: [apc]\n"
    )
    settings = onboard(
        tmp_path,
        monkeypatch,
        entry,
        {
            "forger__apc.v1.yaml": FORGED_CONTRACT,
            "trusted__apc.v1.yaml": FORGED_CONTRACT.replace("operator: forger", "operator: trusted"),
        },
        {"forger/apc/comptages_20260330.csv": body, "trusted/apc/comptages_20260330.csv": body},
    )
    forged = datetime(2026, 3, 30, 18, 0, tzinfo=UTC).timestamp()  # before the D+1 06:00 deadline
    for op in ("forger", "trusted"):
        os.utime(tmp_path / "drop" / op / "apc" / "comptages_20260330.csv", (forged, forged))
    report = ingest(settings)
    assert report.ok, report.lines()
    deliveries = manifest.load(open_storage(settings), "deliveries").sort("operator")
    forger = deliveries.filter(pl.col("operator") == "forger").row(0, named=True)
    assert forger["is_late"] is True and forger["judged_on"] == "inode"
    assert forger["delivered_at"] == datetime(2026, 3, 30, 18, 0, tzinfo=UTC)  # kept, as information
    assert forger["judged_at"] > datetime(2026, 12, 1, tzinfo=UTC)
    trusted = deliveries.filter(pl.col("operator") == "trusted").row(0, named=True)
    assert trusted["is_late"] is False and trusted["judged_on"] == "mtime"
    reliability(
        "forged_mtime",
        1,
        1,
        0,
        "a file delivered now with its mtime set back before the deadline: late, judged on the folder's inode "
        "change time (judged_on inode); the operator's mtime kept as information; S3 is judged on the server's "
        "LastModified, SFTP on the night's first sight",
    )
