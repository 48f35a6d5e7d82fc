"""Fault injection: kills, S3 faults, full disks, concurrent nights, hostile files (issue #11).

Every test records its row of RELIABILITY.md (conftest.reliability) after its assertions: what
was tried, how many times, what survived and what was lost (always 0, or the test fails).

A *kill* inside the process is a lake storage whose n-th write, and every call after it, raises
``Killed`` (a BaseException no handler catches): the lake is left exactly as a process killed at
that write leaves it — nothing after it is written, not even the cleanup of ``finally`` blocks
(the lock of the night stays behind, as after ``kill -9``). dbt is killed for real (SIGKILL).
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from citylake.core.duck import load_extension
from citylake.core.errors import LakeError, TransientError
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, open_storage
from citylake.publish import gate
from citylake.publish.gate import run_gate
from citylake.publish.reader import current, mart_source, registry
from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import parse_faults
from devtools.simulator.run import SimulationConfig, simulate
from ingestion import manifest
from ingestion.run import ingest
from tests.support.gtfs_feeds import CALENDAR, gtfs_zip

ROOT = Path(__file__).resolve().parents[2]
KEY = "fault-suite-pseudonym-key-0123456789"
DAY = date(2026, 3, 30)
MUTATING = ("put_bytes", "put_file", "put_json", "delete", "rename", "_write_meta")


class Killed(BaseException):
    """The process is dead: nothing after this point happens."""


class KillingStorage:
    """A lake storage that dies at its n-th write (1-based); kill_at=None only counts writes."""

    def __init__(self, inner: LakeStorage, kill_at: int | None) -> None:
        self._inner, self.kill_at, self.writes, self.dead = inner, kill_at, 0, False
        real_meta = getattr(inner, "_write_meta", None)
        if real_meta is not None:  # between an object's bytes and its metadata (local lake)

            def write_meta(*a, **kw):
                self._tick()
                return real_meta(*a, **kw)

            inner._write_meta = write_meta

    def _tick(self) -> None:
        if self.dead:
            raise Killed()
        self.writes += 1
        if self.kill_at is not None and self.writes >= self.kill_at:
            self.dead = True
            raise Killed()

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if self.dead:
            raise Killed()
        if name in MUTATING and name != "_write_meta":

            def wrapped(*a, **kw):
                self._tick()
                return attr(*a, **kw)

            return wrapped
        return attr


def _env(monkeypatch, lake: Path, drop: Path | None = None, warehouse: Path | None = None) -> Settings:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", lake.as_uri())
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", KEY)
    if drop:
        monkeypatch.setenv("CITYLAKE_DROP_ROOT", drop.as_uri())
    if warehouse:
        monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(warehouse))
    return Settings()


@pytest.fixture(scope="module")
def small_drop(tmp_path_factory) -> Path:
    drop = tmp_path_factory.mktemp("fault_drop")
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=DAY,
            days=1,
            out=drop,
            volume=0.25,
            faults=parse_faults("default"),
            seed=11,
            progress=False,
        )
    )
    return drop


def _staged(storage: LakeStorage) -> dict[str, pl.DataFrame]:
    return {
        i.key: pl.read_parquet(io.BytesIO(storage.get_bytes(i.key)))
        for i in storage.list("staged/")
        if i.key.endswith(".parquet")
    }


def _drop_files(drop: Path) -> dict[str, str]:
    import hashlib

    return {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.name
        for p in drop.glob("*/*/*")
        if p.is_file() and p.relative_to(drop).parts[0] != "truth"
    }


def _lost_after_ingest(storage: LakeStorage, drop: Path, reference: dict[str, pl.DataFrame]) -> list[str]:
    """What a rerun did not recover: files missing from raw, staged partitions missing, different or duplicated."""
    lost = []
    raw = {i.sha256 for i in storage.list("raw/")}
    quarantined = {i.sha256 for i in storage.list("quarantine/")}
    lost += [f"{name} missing from raw" for sha, name in _drop_files(drop).items() if sha not in raw | quarantined]
    staged = _staged(storage)
    lost += [f"{k} missing" for k in reference if k not in staged]
    lost += [f"{k} unexpected" for k in staged if k not in reference]
    for k, frame in staged.items():
        if k in reference:
            try:
                assert_frame_equal(frame, reference[k])
            except AssertionError as exc:
                lost.append(f"{k} differs: {str(exc).splitlines()[0]}")
            keys = [c for c in ("source_sha256", "source_row", "event_type") if c in frame.columns]
            if "source_row" in keys and frame.select(keys).is_duplicated().any():
                lost.append(f"{k}: staged rows duplicated")
    deliveries = manifest.load(storage, "deliveries")
    landed = deliveries.filter(pl.col("duplicate_of").is_null())
    if landed.select("sha256").is_duplicated().any():
        lost.append("a delivery recorded as landed twice")
    return lost


def test_kill_points_in_ingestion(small_drop, tmp_path, monkeypatch, reliability) -> None:
    settings = _env(monkeypatch, tmp_path / "reference", small_drop)
    counter = KillingStorage(open_storage(settings), None)
    assert ingest(settings, storage=counter).ok
    reference = _staged(open_storage(settings))
    writes = counter.writes
    points = sorted(random.Random(20261122).sample(range(1, writes + 1), min(30, writes)))
    survived, lost_total = 0, 0
    for k in points:
        settings = _env(monkeypatch, tmp_path / f"lake-{k}", small_drop)
        storage = open_storage(settings)
        with pytest.raises(Killed):
            ingest(settings, storage=KillingStorage(storage, k))
        storage = open_storage(settings)  # a new process
        rerun = ingest(settings, storage=storage)
        lost = _lost_after_ingest(storage, small_drop, reference)
        assert rerun.ok and not lost, f"killed at write {k}/{writes}: {lost or rerun.lines()}"
        survived += 1
        shutil.rmtree(tmp_path / f"lake-{k}")
    assert len(points) >= 30
    reliability(
        "kill_ingest",
        len(points),
        survived,
        lost_total,
        f"seeded among the {writes} lake writes of a day's ingestion; the rerun lands what was missing, "
        "stages the same partitions (compared frame by frame with an uninterrupted run), nothing twice",
    )


def _pointer_is_whole(storage: LakeStorage, pointer: dict | None = None) -> list[str]:
    """Problems of a pointer (the current one by default): groups from a version without its
    registry record, or marts that do not read at the version it names."""
    problems = []
    ptr = pointer or current(storage)
    con = duckdb.connect()
    load_extension(con, "delta")
    for group, entry in ptr.get("groups", {}).items():
        if not storage.exists(f"published/registry/{entry['publication_id']}.json"):
            problems.append(f"{group}: publication {entry['publication_id']} has no registry record")
        for mart, where in entry["marts"].items():
            try:
                con.sql(f"select count(*) from {mart_source(storage, where)}").fetchone()
            except duckdb.Error as exc:
                problems.append(f"{group}/{mart}: does not read at its version: {exc}")
    con.close()
    return problems


def _commits_die_with(monkeypatch, counter: KillingStorage) -> None:
    """Table commits count as writes of the killing storage: killed before or after any commit."""
    real = gate.write_mart

    def write_mart(*a, **kw):
        counter._tick()
        version = real(*a, **kw)
        counter._tick()
        return version

    monkeypatch.setattr(gate, "write_mart", write_mart)


@pytest.fixture
def published_copy(lake_after_nights, tmp_path, monkeypatch):
    """A private copy of the session's published lake and its warehouse."""
    base, night = lake_after_nights.base, lake_after_nights.last
    shutil.copytree(base / "lake", tmp_path / "lake")
    shutil.copyfile(base / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    settings = _env(monkeypatch, tmp_path / "lake", lake_after_nights.drop, tmp_path / "warehouse.duckdb")
    return settings, open_storage(settings), tmp_path / "warehouse.duckdb", night


def test_kill_points_in_the_gate_and_publication(published_copy, reliability, monkeypatch) -> None:
    settings, storage, warehouse, night = published_copy
    before = current(storage)
    ids_before = {g["publication_id"] for g in before["groups"].values()}
    counter = KillingStorage(storage, None)
    _commits_die_with(monkeypatch, counter)
    run_gate(counter, warehouse, "fault-count", [DAY], settings=settings)
    writes = counter.writes
    points = sorted(random.Random(7).sample(range(1, writes + 1), min(20, writes)))
    survived = 0
    for i, k in enumerate(points):
        storage = open_storage(settings)
        killer = KillingStorage(storage, k)
        _commits_die_with(monkeypatch, killer)
        with pytest.raises(Killed):
            run_gate(killer, warehouse, f"fault-{i:02d}-{k}", [DAY], settings=settings)
        storage = open_storage(settings)
        problems = _pointer_is_whole(storage)
        ids = {g["publication_id"] for g in current(storage)["groups"].values()}
        assert not problems and len(ids) == 1, f"killed at write {k}/{writes}: {problems or ids}"
        survived += 1
    monkeypatch.undo()
    storage = open_storage(settings)
    final = run_gate(storage, warehouse, "fault-final", [DAY], settings=settings)
    assert final.all_published and not _pointer_is_whole(storage)
    assert {g["publication_id"] for g in current(storage)["groups"].values()} == {"fault-final"} != ids_before
    reliability(
        "kill_gate",
        len(points),
        survived,
        0,
        f"seeded among the {writes} lake writes and table commits of a publication (pending dates, each "
        "mart's Delta commit — killed before or after it —, registry, pointer switch, report); after each "
        "kill CURRENT.json names one version, registered, every mart reading at its version; a rerun publishes",
    )


def test_vacuum_killed_or_not_keeps_every_kept_publication_readable(published_copy, reliability) -> None:
    """A commit killed after its data files (orphan files, no log entry) is invisible; the vacuum,
    killed after its first table or run whole, leaves every kept publication readable as of its
    date, and deletes the files no kept version reads."""
    from citylake.publish.retention import vacuum_published

    settings, storage, warehouse, night = published_copy
    for i in range(2):  # two more publications: the load profile's month is rewritten each time
        assert run_gate(storage, warehouse, f"vacuum-{i}", [DAY], settings=settings).all_published
    table = current(storage)["groups"]["transit"]["marts"]["mart_bus_load_profile"]["table"]
    orphan = next(p for p in Path(storage.url(table)).rglob("*.parquet"))
    shutil.copyfile(orphan, orphan.with_name("part-killed-mid-commit.parquet"))
    assert not _pointer_is_whole(storage)
    records = registry(storage)
    env = {**os.environ, "CITYLAKE_LAKE_URI": settings.lake_uri, "CITYLAKE_GATE_CRASH_AT": "vacuum"}
    killed = subprocess.run(
        [sys.executable, "-m", "citylake.cli", "vacuum"], cwd=ROOT, env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    storage.delete("control/locks/nightly.json")  # the killed vacuum's lock, as after kill -9
    for r in records:
        assert not _pointer_is_whole(storage, r["current_after"]), r["publication_id"]
    # two days later with a retention of one day: only what is in force and what a contract report
    # names (the two nights') is kept; the gate's two extra publications have no report
    short = Settings(publication_retention_days=1)
    reported = {  # the pages (their annexes of evidence name no other publication)
        i.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for i in storage.list("reports/contract/")
        if i.key.endswith((".html", ".pdf"))
    }
    assert {r["publication_id"] for r in records} - reported == {"vacuum-0", "vacuum-1"}
    later = datetime.now(UTC) + timedelta(days=2)
    done = vacuum_published(short, storage, dry_run=False, owner="vacuum-test", now=later)
    assert set(done["kept_publications"]) == reported
    removed = sum(len(f) for f in done["removed"].values())
    assert removed > 0 and not orphan.with_name("part-killed-mid-commit.parquet").exists()
    assert storage.exists("control/vacuum/vacuum-test.json")
    for r in registry(storage):
        if (
            r["publication_id"] in reported
            or r["publication_id"] == current(storage)["groups"]["transit"]["publication_id"]
        ):
            assert not _pointer_is_whole(storage, r["current_after"]), r["publication_id"]
    reliability(
        "kill_vacuum",
        2,
        2,
        0,
        "a commit killed after its data files (an orphan file, no log entry) is invisible to readers; "
        "`citylake vacuum` killed after its first table leaves every publication readable as of its date; "
        f"a whole vacuum (retention 1 day) removed {removed} unread file(s), the orphan among them, and every "
        "publication in force or named by a contract report still reads",
    )


def test_readers_stay_consistent_while_publications_switch(published_copy, reliability) -> None:
    """Concurrent API clients page through marts on 127.0.0.1 while three publications switch:
    every request answers, every page of a walk names the publication its first page read."""
    import socket
    import statistics
    import urllib.request

    import uvicorn

    from citylake.consumers.api import TokenRegister, create_app

    settings, storage, warehouse, night = published_copy
    register = TokenRegister(settings.api_tokens_file)
    token = register.add("load-test", "analyst")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, storage, register), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    marts = ("fct_stop_visit_loads", "mart_stop_activity", "mart_bus_load_profile", "mart_contract_kpis")
    stop, lock = threading.Event(), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    walks = {"walks": 0, "pages": 0, "mixed": 0, "publications": set()}

    def get(url: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{url}", headers={"Authorization": f"Bearer {token}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = json.loads(answer.read())
        with lock:
            latencies.append(time.perf_counter() - started)
        return body

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            mart = marts[(n + i) % len(marts)]
            i += 1
            try:
                page = get(f"/v1/marts/{mart}/rows?limit=500")
                first, pages = page["publication_id"], 1
                while page["next_page"] and pages < 4:
                    page = get(page["next_page"])
                    pages += 1
                    if page["publication_id"] != first:
                        with lock:
                            walks["mixed"] += 1
                with lock:
                    walks["walks"] += 1
                    walks["pages"] += pages
                    walks["publications"].add(first)
            except Exception as exc:  # any failure of a request is what this test counts
                with lock:
                    errors.append(f"{mart}: {exc!r}")

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in clients:
        t.start()
    from citylake.core.lock import lake_lock

    published = []
    for i in range(3):
        time.sleep(1.0)
        with lake_lock(storage, "nightly", owner=f"switch-{i}"):
            published.append(run_gate(storage, warehouse, f"switch-{i}", [DAY], settings=settings).publication_id)
    time.sleep(2.0)
    stop.set()
    for t in clients:
        t.join(timeout=120)
    server.should_exit = True
    assert not errors, errors[:5]
    assert walks["mixed"] == 0 and walks["walks"] >= 12, walks
    assert len(walks["publications"]) >= 2, walks  # the readers did see publications switch
    q = statistics.quantiles(latencies, n=100)
    reliability(
        "readers_while_publishing",
        walks["walks"],
        walks["walks"],
        0,
        f"4 API clients on 127.0.0.1 walked {walks['walks']} paged reads ({walks['pages']} pages, "
        f"{len(latencies)} requests) of 4 marts while 3 publications switched: 0 errors, 0 pages from "
        f"another publication than their walk's first; latency p50 {q[49] * 1000:.0f} ms, "
        f"p99 {q[98] * 1000:.0f} ms (2-core machine, publications running beside)",
    )


def _kill_during(command: list[str], env: dict[str, str], delays: list[float]) -> int:
    """Run ``command`` once per delay, SIGKILLed after that many seconds; return how many runs
    were killed (the others finished first)."""
    killed = 0
    for delay in delays:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
    return killed


def test_kill_points_in_the_dbt_build(published_copy, reliability) -> None:
    settings, storage, warehouse, night = published_copy
    reference = duckdb.connect(str(warehouse), read_only=True)
    marts = ("fct_stop_visit_loads", "mart_stop_activity", "mart_contract_kpis", "mart_parking_occupancy_daily")
    # publication_id is the gate's run, not data: left out
    expected = {
        m: reference.sql(
            f"select * exclude (publication_id) from {m} order by all"
            if m == "mart_contract_kpis"
            else f"select * from {m} order by all"
        ).fetchall()
        for m in marts
    }
    reference.close()
    env = {**os.environ, "CITYLAKE_LAKE_URI": settings.lake_uri, "CITYLAKE_WAREHOUSE": str(warehouse)}
    command = [sys.executable, "-m", "citylake.cli", "build", "--dates", DAY.isoformat()]
    rng = random.Random(5)
    delays = [round(rng.uniform(2.5, 6.0), 2) for _ in range(3)]
    killed = _kill_during(command, env, delays)
    assert killed == len(delays), f"the build finished before its kill in {len(delays) - killed} trials ({delays})"
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    con = duckdb.connect(str(warehouse), read_only=True)
    lost = 0
    for m in marts:
        got = con.sql(
            f"select * exclude (publication_id) from {m} order by all"
            if m == "mart_contract_kpis"
            else f"select * from {m} order by all"
        ).fetchall()
        if len(got) != len(expected[m]):
            lost += 1
        else:
            for a, b in zip(got, expected[m], strict=True):
                same = all(
                    abs(x - y) < 1e-6 if isinstance(x, float) and isinstance(y, float) else x == y
                    for x, y in zip(a, b, strict=True)
                )
                if not same:
                    lost += 1
                    break
    con.close()
    assert lost == 0
    reliability(
        "kill_dbt",
        killed,
        killed,
        lost,
        f"SIGKILL after {min(delays):g}–{max(delays):g} s (seeded), three times in a row on the same warehouse; "
        "DuckDB recovers from its WAL and the next build's marts equal the uninterrupted ones",
    )


# -- S3 ---------------------------------------------------------------------------------------
@pytest.fixture
def s3_through_proxy(s3_settings, moto_endpoint, monkeypatch):
    from tests.support.fault_proxy import FaultProxy

    proxies = []

    def make(fault=None, delay: float = 0.5):
        proxy = FaultProxy(moto_endpoint, fault, delay).__enter__()
        proxies.append(proxy)
        monkeypatch.setenv("CITYLAKE_S3_ENDPOINT", proxy.url)
        return proxy, open_storage(Settings())

    yield make
    for p in proxies:
        p.__exit__(None, None, None)


def _s3_workload(storage: LakeStorage, tag: str) -> int:
    """Writes, reads, lists and deletes; returns the number of objects checked."""
    data = {f"staged/faults/{tag}/part-{i}.bin": os.urandom(1000 + i) for i in range(5)}
    for k, v in data.items():
        storage.put_bytes(k, v)
    storage.put_json(f"control/faults/{tag}.json", {"tag": tag}, overwrite=True)
    for k, v in data.items():
        assert storage.get_bytes(k) == v
    assert [i.key for i in storage.list(f"staged/faults/{tag}/")] == sorted(data)
    storage.delete(f"control/faults/{tag}.json")
    assert not storage.exists(f"control/faults/{tag}.json")
    return len(data)


def test_s3_5xx_and_slow_answers_are_retried(s3_through_proxy, reliability) -> None:
    proxy, storage = s3_through_proxy(lambda method, path, seen: "503" if seen == 1 else None)
    n = _s3_workload(storage, "5xx")
    assert proxy.injected["503"] >= 10
    reliability(
        "s3_5xx",
        proxy.injected["503"],
        proxy.injected["503"],
        0,
        "retried with exponential backoff by the S3 client (urllib3 Retry, 5 attempts); every object whole",
    )
    proxy, storage = s3_through_proxy(lambda method, path, seen: "slow", delay=0.3)
    assert _s3_workload(storage, "slow") == n
    reliability("s3_slow", proxy.injected["slow"], proxy.injected["slow"], 0, "waited for (timeouts are minutes)")


def test_s3_server_restarted_mid_run(s3_settings, monkeypatch, reliability) -> None:
    """The moto server itself is stopped in the middle of a run and started again on its port."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("CITYLAKE_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    storage = open_storage(Settings())  # its bucket exists: moto's state is per process, shared by both servers
    assert storage.list("") == []
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["n"] = sum(_s3_workload(storage, f"restart-{i}") for i in range(8))
        except BaseException as exc:  # noqa: BLE001 - reported below
            done["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.3)
    server.stop()  # mid-run: requests now fail to connect
    stopped_during_run = worker.is_alive()
    time.sleep(1.0)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    worker.join(timeout=120)
    server.stop()
    assert stopped_during_run and "error" not in done, done
    reliability(
        "s3_restart",
        1,
        1,
        0,
        f"requests refused while it was down retried with backoff; the run finished once it was back (1 s "
        f"later) and its {done['n']} objects read back whole (moto keeps its state in the process, as MinIO "
        "on its disks)",
    )


def test_s3_outage_beyond_the_retry_budget(s3_through_proxy, reliability) -> None:
    proxy, storage = s3_through_proxy()
    proxy.down = True
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer"):
        storage.put_bytes("staged/faults/down/part-0.bin", b"x" * 100)
    waited = time.monotonic() - started
    proxy.down = False
    assert not storage.exists("staged/faults/down/part-0.bin")
    assert 3 < waited < 60
    reliability(
        "s3_down",
        1,
        1,
        0,
        "clear TransientLakeError after the retry budget (5 attempts, about 6 s of backoff): “S3 endpoint … did "
        "not answer for 'staged/faults/down/part-0.bin'”; Airflow retries the task later; no object written",
    )


def test_s3_cut_upload_leaves_no_partial_object(s3_through_proxy, reliability) -> None:
    proxy, storage = s3_through_proxy(lambda method, path, seen: "cut" if method == "PUT" and "cut" in path else None)
    with pytest.raises(LakeError):
        storage.put_bytes("staged/faults/cut/part-0.bin", os.urandom(200_000))
    assert proxy.injected["cut"] >= 2  # retried, cut each time
    assert not storage.exists("staged/faults/cut/part-0.bin")
    assert [i.key for i in storage.list("staged/faults/cut/")] == []
    storage.put_bytes("staged/faults/ok/part-0.bin", b"fine")  # the lake goes on
    reliability(
        "s3_cut",
        proxy.injected["cut"],
        proxy.injected["cut"],
        0,
        "the server never stores a cut body: the object is absent, never partial; clear error after retries",
    )


# -- local disk -------------------------------------------------------------------------------
@pytest.mark.parametrize("code,key", [(errno.ENOSPC, "disk_full"), (errno.EACCES, "permission")])
def test_disk_full_and_permission_denied(code, key, small_drop, tmp_path, monkeypatch, reliability) -> None:
    import citylake.core.storage as storage_module

    settings = _env(monkeypatch, tmp_path / "lake", small_drop)
    storage = open_storage(settings)
    storage.put_bytes("staged/faults/existing.bin", b"before")
    real_copy = storage_module.shutil.copyfile
    failures = {"n": 0}

    def failing_copy(src, dst, *a, **kw):
        if "raw/" in str(dst) or "faults" in str(dst):
            failures["n"] += 1
            raise OSError(code, os.strerror(code), str(dst))
        return real_copy(src, dst, *a, **kw)

    monkeypatch.setattr(storage_module.shutil, "copyfile", failing_copy)
    with pytest.raises(LakeError, match=os.strerror(code)):
        storage.put_bytes("staged/faults/existing.bin", b"after", overwrite=True)
    assert storage.get_bytes("staged/faults/existing.bin") == b"before"  # not corrupted
    report = ingest(settings, storage=storage)  # the night goes on; every feed says why it failed
    errors = [e for f in report.feeds for e in f.errors]
    assert errors and all(os.strerror(code) in e for e in errors)
    leftovers = [p for p in (tmp_path / "lake").rglob(".tmp-*")]
    assert leftovers == [] and not list((tmp_path / "lake").glob("raw/**/*.csv"))
    monkeypatch.setattr(storage_module.shutil, "copyfile", real_copy)
    rerun = ingest(settings, storage=storage)  # space is back: nothing was lost
    assert rerun.ok and not _lost_after_ingest(storage, small_drop, _staged(storage))
    assert set(_drop_files(small_drop)) <= {i.sha256 for i in storage.list("raw/")}
    reliability(
        key,
        failures["n"],
        failures["n"],
        0,
        f"LakeError “cannot write … {os.strerror(code)}”, feed by feed; the existing object unchanged, no temp "
        "file left; the next run lands everything (injected: tests run as root, which ignores file modes)",
    )


# -- locks ------------------------------------------------------------------------------------
def test_two_publications_at_once_never_interleave(published_copy, reliability) -> None:
    from citylake.core.lock import LockHeld, lake_lock

    settings, storage, warehouse, night = published_copy
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def night_publication(run_id: str) -> None:
        barrier.wait()
        try:
            with lake_lock(open_storage(settings), "nightly", owner=run_id):
                outcome[run_id] = run_gate(open_storage(settings), warehouse, run_id, [DAY]).publication_id
        except LockHeld as exc:
            outcome[run_id] = exc
        except Exception as exc:  # anything else: kept, so that the assertion below shows it
            outcome[run_id] = (type(exc).__name__, str(exc))
            raise

    threads = [threading.Thread(target=night_publication, args=(r,)) for r in ("night-a", "night-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waited = [r for r, o in outcome.items() if isinstance(o, LockHeld)]
    published_ids = [o for o in outcome.values() if isinstance(o, str)]
    assert len(waited) == 1 and len(published_ids) == 1, outcome
    assert {g["publication_id"] for g in current(storage)["groups"].values()} == set(published_ids)
    assert not _pointer_is_whole(storage) and not storage.exists("control/locks/nightly.json")
    # the CLI's second run exits cleanly, naming who holds the lock
    with lake_lock(storage, "nightly", owner="night-c"):
        out = subprocess.run(
            [sys.executable, "-m", "citylake.cli", "publish"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "CITYLAKE_LAKE_URI": settings.lake_uri, "CITYLAKE_WAREHOUSE": str(warehouse)},
            timeout=300,
        )
    assert out.returncode == 1 and "another run holds control/locks/nightly.json: night-c" in out.stderr
    reliability(
        "two_nights",
        3,
        3,
        0,
        "the lake lock (control/locks/nightly.json) lets one publish; the other gets LockHeld (transient: "
        "Airflow retries it later; the CLI exits 1 naming the holder); the pointer names one version",
    )


def test_a_killed_nights_lock_is_taken_over(tmp_path, monkeypatch, reliability) -> None:
    import socket

    from citylake.core.lock import LockHeld, lake_lock

    storage = open_storage(_env(monkeypatch, tmp_path / "lake"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    storage.put_json(
        "control/locks/nightly.json",
        {
            "owner": "killed-night",
            "host": socket.gethostname(),
            "pid": dead.pid,
            "acquired_at": "2026-11-22T01:00:00+00:00",
            "expires_at": "2099-01-01T00:00:00+00:00",
        },
    )
    with lake_lock(storage, "nightly", owner="next-night") as body:
        assert storage.get_json("control/locks/nightly.json")["owner"] == body["owner"] == "next-night"
    alive = subprocess.Popen(["sleep", "30"])
    try:
        storage.put_json(
            "control/locks/nightly.json",
            {
                "owner": "running-night",
                "host": socket.gethostname(),
                "pid": alive.pid,
                "acquired_at": "2026-11-22T01:00:00+00:00",
                "expires_at": "2099-01-01T00:00:00+00:00",
            },
        )
        with pytest.raises(LockHeld, match="running-night"):
            with lake_lock(storage, "nightly", owner="next-night"):
                pass
    finally:
        alive.kill()
    reliability(
        "dead_lock_owner",
        1,
        1,
        0,
        "a lock whose process is gone from this host is taken over at once (a live one is respected; another "
        "host's until it expires)",
    )


# -- hostile files ----------------------------------------------------------------------------
def _ingest_hostile(
    monkeypatch, tmp_path, feed_dir: str, name: str, data: bytes, operator: str = "bus", feed: str = "ticketing"
):
    drop = tmp_path / "drop"
    (drop / feed_dir).mkdir(parents=True, exist_ok=True)
    (drop / feed_dir / name).write_bytes(data)
    settings = _env(monkeypatch, tmp_path / "lake", drop)
    storage = open_storage(settings)
    report = ingest(settings, operator=operator, feed=feed, storage=storage)
    return storage, report.feeds[0]


def _quarantined(storage: LakeStorage, data: bytes) -> dict:
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    files = [
        i
        for i in storage.list("quarantine/")
        if i.key.split("/")[-1].startswith(sha[:16]) and not i.key.endswith(".json")
    ]
    assert len(files) == 1 and storage.get_bytes(files[0].key) == data  # kept, byte for byte
    return storage.get_json(files[0].key + ".reason.json")


def test_zip_bomb_in_gtfs_is_quarantined(tmp_path, monkeypatch, reliability) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("stop_times.txt", "w") as fh:
            for _ in range(64):
                fh.write(b"0" * (1 << 20))
    data = buf.getvalue()
    storage, feed = _ingest_hostile(monkeypatch, tmp_path, "bus/gtfs", "gtfs_bomb.zip", data, feed="gtfs")
    reason = _quarantined(storage, data)
    assert reason["reason"].startswith("gtfs_bomb.zip: refused") and "zip bomb" in reason["reason"]
    assert not storage.list("staged/")
    reliability(
        "zip_bomb",
        1,
        1,
        0,
        f"quarantined before unpacking ({len(data) // 1024} kB → 64 MB declared): “{reason['reason'][:90]}…”",
    )


def test_hostile_gtfs_calendars_and_versions_fail_their_file_alone(tmp_path, monkeypatch, reliability) -> None:
    """Issue #29: files that stopped every operator's night (a version the key builder refused, dates
    not YYYYMMDD, year 9999, 0001-9999 calendars expanding to gigabytes) are quarantined with their
    rule, or staged under a safe version; the feed's failure is its own."""
    info = "feed_publisher_name,feed_publisher_url,feed_lang,feed_version,feed_start_date,feed_end_date\n"
    week = CALENDAR + "WK,1,1,1,1,1,0,0,20260101,20261231\n"
    cases = {
        "underscore_version": (gtfs_zip(week, info + "p,http://p,fr,_v1,20260101,20261231\n"), None),
        "bad_start_date": (gtfs_zip(week, info + "p,http://p,fr,v2,2026-01-01,20261231\n"), "feed_start_date"),
        "bad_calendar_date": (gtfs_zip(week, None, "service_id,date,exception_type\nWK,2026-13-45,1\n"), "line 2"),
        "year_9999": (gtfs_zip(CALENDAR + "WK,1,1,1,1,1,0,0,20260101,99991231\n"), "5-year budget"),
        "years_1_to_9999": (
            gtfs_zip(CALENDAR + "".join(f"S{i},1,1,1,1,1,1,1,00010101,99991231\n" for i in range(8))),
            "5-year budget",
        ),
    }
    reasons = []
    for name, (data, rule) in cases.items():
        storage, feed = _ingest_hostile(monkeypatch, tmp_path / name, "bus/gtfs", f"gtfs_{name}.zip", data, feed="gtfs")
        assert not feed.errors, (name, feed.errors)
        if rule is None:  # a version made safe: staged under it
            assert feed.staged and "feed_version=v1/" in feed.staged[0]
            continue
        reason = _quarantined(storage, data)["reason"]
        assert rule in reason, (name, reason)
        reasons.append(reason)
    reliability(
        "hostile_gtfs",
        len(cases),
        len(cases),
        0,
        "a feed_version starting with '_' staged under a safe one (v1); dates not YYYYMMDD and service periods "
        f"over 5 years (year 9999, 0001-9999) quarantined before the calendar is expanded: “{reasons[-1][:90]}…”",
    )


def test_a_json_line_nested_deeper_than_pythons_stack_is_an_invalid_row(tmp_path, monkeypatch, reliability) -> None:
    from ingestion.contracts import contract

    c = contract("bus", "avl")
    good = json.dumps({h: "1" for h in c.headers})
    deep = "[" * 200_000 + "]" * 200_000
    data = (good + "\n" + deep + "\n").encode()
    storage, feed = _ingest_hostile(monkeypatch, tmp_path, "bus/avl", "sae_passages_2026-03-30.jsonl", data, feed="avl")
    assert not feed.errors and not feed.quarantined and feed.staged
    staged = pl.read_parquet(io.BytesIO(storage.get_bytes(feed.staged[0])))
    assert staged.filter(pl.col("source_row") == 2)["invalid_reason"].to_list() == ["line is not valid JSON"]
    reliability(
        "deep_json",
        1,
        1,
        0,
        f"a {len(deep):,}-byte line nested 200,000 deep (under the line limit): an invalid row "
        "“line is not valid JSON”, the rest of the file staged",
    )


def test_wide_and_long_csv_are_quarantined(tmp_path, monkeypatch, reliability) -> None:
    from ingestion.contracts import contract

    c = contract("bus", "ticketing")
    header = ";".join(c.headers) + ";" + ";".join(f"x{i}" for i in range(1_000_000))
    wide = (header + "\r\n").encode("cp1252")
    storage, feed = _ingest_hostile(monkeypatch, tmp_path, "bus/ticketing", "VALIDATIONS_20260330.csv", wide)
    reason = _quarantined(storage, wide)
    assert "over the 1,048,576-byte limit" in reason["reason"]  # a million columns make a header line of 7.9 MB
    narrow_names = (";".join(c.headers) + ";" + ";".join("x" for _ in range(5000)) + "\r\n").encode("cp1252")
    storage, feed = _ingest_hostile(
        monkeypatch, tmp_path / "cols", "bus/ticketing", "VALIDATIONS_20260330.csv", narrow_names
    )
    reason_cols = _quarantined(storage, narrow_names)
    assert "5,011 columns in the header, over the 1,000" in reason_cols["reason"]
    reliability(
        "wide_csv",
        2,
        2,
        0,
        f"quarantined: “{reason['reason'][26:110]}…”; with short names (5,000 extra "
        f"columns), by the column rule: “{reason_cols['reason'][26:90]}…”",
    )
    long_line = (";".join(c.headers) + "\r\n" + "7" * (16 * 1024 * 1024) + "\r\n").encode("cp1252")
    storage, feed = _ingest_hostile(
        monkeypatch, tmp_path / "long", "bus/ticketing", "VALIDATIONS_20260331.csv", long_line
    )
    reason = _quarantined(storage, long_line)
    assert "over the 1,048,576-byte limit" in reason["reason"]
    reliability(
        "long_line",
        1,
        1,
        0,
        "quarantined before decoding (a chunked numpy scan, 64 MB at a time, so a 2 GB "
        f"line costs no more than reading it; tested with 16 MB): “{reason['reason'][:80]}…”",
    )


def test_invalid_utf8_is_quarantined(tmp_path, monkeypatch, reliability) -> None:
    from ingestion.contracts import contract

    c = contract("bus", "apc")
    data = (",".join(c.headers) + "\n").encode() + b"1071,trip\xff\xfe,750013,1,2026-03-30T05:03:32Z,0,0\n"
    storage, feed = _ingest_hostile(monkeypatch, tmp_path, "bus/apc", "comptages_20260330.csv", data, feed="apc")
    reason = _quarantined(storage, data)
    assert "UTF-8" in reason["reason"] or "utf-8" in reason["reason"]
    reliability("invalid_utf8", 1, 1, 0, f"quarantined, naming the byte: “{reason['reason'][:90]}”")


def test_hostile_file_names_stay_in_their_zone(tmp_path, monkeypatch, reliability) -> None:
    # (names starting with a dot are uploads in progress, by the drop convention: listed only once renamed)
    names = [
        "x\\..\\..\\..\\etc\\VALIDATIONS_20260330.csv",
        "VALIDATIONS_20260330.csv;rm -rf ~",
        "%2e%2e%2fVALIDATIONS\u202e.csv",
        "V" * 250 + ".csv",
        "\u00e9t\u00e9 \u2014 VALIDATIONS 2026.csv",
        "-VALIDATIONS_20260330.csv",
    ]
    drop = tmp_path / "drop" / "bus" / "ticketing"
    drop.mkdir(parents=True)
    for i, n in enumerate(names):
        (drop / n).write_bytes(f"not a real extract {i}\r\n".encode())
    settings = _env(monkeypatch, tmp_path / "lake", tmp_path / "drop")
    storage = open_storage(settings)
    ingest(settings, operator="bus", feed="ticketing", storage=storage)
    keys = [i.key for i in storage.list("")]
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and tmp_path / "lake" not in p.parents and tmp_path / "drop" not in p.parents
    ]
    assert outside == []
    for k in keys:
        assert ".." not in k.split("/") and "\\" not in k and all(ch.isascii() and ch.isprintable() for ch in k), k
    landed = [k for k in keys if k.startswith(("raw/", "quarantine/")) and not k.endswith(".json")]
    assert len([k for k in landed if k.startswith("raw/")]) == len(names)  # every file kept
    reliability(
        "path_traversal",
        len(names),
        len(names),
        0,
        "names reduced to one safe ASCII segment (citylake.core.lake.safe_filename) under raw/ and quarantine/; the "
        "original name kept in the manifest; nothing written outside the lake",
    )


def test_formula_injection_is_neutralised_in_exports(reliability) -> None:
    from citylake.consumers.opendata import neutralise_formulas

    payloads = ['=HYPERLINK("http://x")', "+33 1 23", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0", "\t=1", "\r=1"]
    frame = pl.DataFrame({"name": payloads, "n": list(range(len(payloads)))})
    out = neutralise_formulas(frame)
    for value in out["name"].to_list():
        assert value[0] not in "=+-@\t\r", value
    assert out["n"].to_list() == frame["n"].to_list()
    reliability(
        "formula_injection",
        len(payloads),
        len(payloads),
        0,
        "every text cell starting with = + - @ (or a tab/CR before one) is prefixed with ' in the CSV exports "
        "(open data); numbers untouched",
    )


def test_every_simulator_fault_kind_is_survived(tmp_path, monkeypatch, reliability) -> None:
    from devtools.simulator.faults import FAULT_KINDS

    drop = tmp_path / "drop"
    simulate(
        SimulationConfig(
            network=SAMPLE_NETWORK,
            start=date(2026, 3, 28),  # to the month's end: the monthly reports and their biases
            days=4,
            out=drop,
            volume=0.25,
            faults=parse_faults("all"),
            seed=3,
            progress=False,
        )
    )
    settings = _env(monkeypatch, tmp_path / "lake", drop)
    storage = open_storage(settings)
    report = ingest(settings, storage=storage)
    assert report.ok, report.lines()
    applied = {r["kind"] for r in json.loads((drop / "truth" / "faults.json").read_text())} | {"dst"}
    assert applied == set(FAULT_KINDS)
    assert set(_drop_files(drop)) <= {i.sha256 for i in storage.list("raw/")} | {
        i.sha256 for i in storage.list("quarantine/")
    }
    reliability(
        "simulator_faults",
        len(FAULT_KINDS),
        len(FAULT_KINDS),
        0,
        "each has its documented outcome (quarantine, repair with a warning, invalid rows with their reason, "
        "late flag, duplicate by hash, DST by file order: tests/ingestion/test_ingestion.py checks each); "
        "every delivered file kept",
    )


def test_kill_points_in_the_dbt_build_on_a_network_whose_trips_chain_at_termini(tmp_path) -> None:
    """Issue #19's case on a second network: every vehicle ends a trip at the very minute its next
    trip starts from the same stop. Three builds killed (SIGKILL) then a rerun give the marts of an
    uninterrupted build, value for value (ties broken by a total order, docs/transit_method.md)."""
    from tests.support.gtfs_feeds import FeedSpec, build

    # 5 stops 150 s apart: an outbound trip reaches its terminus 600 s after it starts, when the
    # same block's return trip leaves it
    feed = build(FeedSpec(routes=3, stops_per_route=5, weekday_trips=14, headway_s=1200), tmp_path / "feed.zip")
    drop = tmp_path / "drop"
    simulate(SimulationConfig(network=feed, start=DAY, days=1, out=drop, seed=19, progress=False))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYLAKE_")},
        "CITYLAKE_LAKE_URI": (tmp_path / "lake").as_uri(),
        "CITYLAKE_DROP_ROOT": drop.as_uri(),
        "CITYLAKE_PSEUDONYM_KEY": "kill-test-pseudonym-key-0123456789",
    }
    cli = [sys.executable, "-m", "citylake.cli"]
    assert subprocess.run([*cli, "ingest", "--no-progress"], cwd=ROOT, env=env, capture_output=True).returncode == 0
    marts = (
        "fct_stop_visit_loads",
        "mart_bus_load_profile",
        "mart_od_matrix",
        "mart_stop_activity",
        "mart_line_ridership_daily",
    )

    def build_into(name: str, kills: list[float]) -> tuple[dict, int]:
        wh = {**env, "CITYLAKE_WAREHOUSE": str(tmp_path / f"{name}.duckdb")}
        killed = _kill_during([*cli, "build"], wh, kills)
        done = subprocess.run([*cli, "build"], cwd=ROOT, env=wh, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        con = duckdb.connect(str(tmp_path / f"{name}.duckdb"), read_only=True)
        try:
            return {m: con.sql(f"select * from {m}").pl() for m in marts}, killed
        finally:
            con.close()

    reference, _ = build_into("uninterrupted", [])
    rng = random.Random(19)
    after_kills, killed = build_into("killed", [round(rng.uniform(3.0, 7.0), 2) for _ in range(3)])
    assert killed >= 2
    for m in marts:
        a, b = reference[m], after_kills[m]
        keys = [c for c, t in a.schema.items() if not t.is_float()]
        assert_frame_equal(a.sort(keys, nulls_last=True), b.sort(keys, nulls_last=True), rel_tol=1e-9, abs_tol=1e-9)
    # the network does chain at termini: vehicles reach a terminus at the minute their next trip leaves it
    visits = reference["fct_stop_visit_loads"]
    trips = visits.group_by("vehicle_id", "trip_id").agg(
        pl.col("scheduled_departure_at").min().alias("first"), pl.col("scheduled_departure_at").max().alias("last")
    )
    chained = trips.join(trips, left_on=["vehicle_id", "last"], right_on=["vehicle_id", "first"], suffix="_next")
    assert visits.height == 420 and chained.filter(pl.col("trip_id") != pl.col("trip_id_next")).height > 20


def test_links_hidden_files_and_control_characters_in_a_drop(tmp_path, monkeypatch, reliability) -> None:
    """Issue #29: a drop folder that is a symbolic link is refused (it could point anywhere on the
    machine, into write-once raw/); a linked or hidden file is passed over and recorded once; a name
    with a newline or an escape sequence is written escaped to the manifest and the logs."""
    from ingestion.contracts import contract

    c = contract("bus", "apc")
    body = (",".join(c.headers) + "\n").encode()
    drop = tmp_path / "drop"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "comptages_20260330.csv").write_bytes(body)
    (drop / "bus").mkdir(parents=True)
    (drop / "bus" / "apc").symlink_to(elsewhere, target_is_directory=True)
    settings = _env(monkeypatch, tmp_path / "lake", drop)
    report = ingest(settings, operator="bus", feed="apc")
    assert report.feeds[0].errors and "is a symbolic link: refused" in report.feeds[0].errors[0]
    assert not open_storage(settings).list("raw/")

    (drop / "bus" / "apc").unlink()
    (drop / "bus" / "apc").mkdir()
    (drop / "bus" / "apc" / ".hidden.csv").write_bytes(body)
    (drop / "bus" / "apc" / "comptages_20260331.csv").symlink_to(elsewhere / "comptages_20260330.csv")
    forged = "comptages_20260330.csv\n2026-12-06 INFO citylake: all good\x1b[2K"
    (drop / "bus" / "apc" / forged).write_bytes(body)
    for _ in range(2):  # the second night records nothing again
        report = ingest(settings, operator="bus", feed="apc")
    storage = open_storage(settings)
    steps = manifest.load(storage, "steps")
    skipped = sorted(steps.filter(pl.col("step") == "skipped")["detail"].to_list())
    assert skipped == [
        ".hidden.csv: skipped, a hidden file (a name starting with '.'), never read",
        "comptages_20260331.csv: skipped, a symbolic link, never followed",
    ]
    names = manifest.load(storage, "deliveries")["original_name"].to_list()
    assert names == ["comptages_20260330.csv\\n2026-12-06 INFO citylake: all good\\x1b[2K"]
    assert not any("\n" in d or "\x1b" in d for d in steps["detail"].drop_nulls().to_list())
    reliability(
        "drop_links",
        4,
        4,
        0,
        "a feed folder linked elsewhere refused (a feed error, nothing landed); a linked file and a hidden one "
        "passed over and recorded once (step skipped); a name with a newline and an escape sequence written "
        "escaped (\\n, \\x1b) to the manifest and the logs",
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.dates(), st.dates(min_value=date(9994, 1, 1)), st.text("0123456789-/ ", max_size=10)),
            st.one_of(st.dates(), st.just(date(9999, 12, 31)), st.text("0123456789-/ ", max_size=10)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_calendar_is_read_or_refused_with_its_line_never_a_crash(periods) -> None:
    """Issue #29, property: whatever start and end dates a calendar.txt holds (any year, text that
    is no date), the offer is read, or refused by a DataError naming calendar.txt and its line;
    a period over the budget never reaches the day-by-day expansion."""
    from citylake.core.errors import DataError
    from ingestion import gtfs

    def text(v) -> str:
        return v.strftime("%Y%m%d") if hasattr(v, "strftime") else v

    rows = "".join(f"S{i},1,1,1,1,1,1,1,{text(a)},{text(b)}\n" for i, (a, b) in enumerate(periods))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed.zip"
        path.write_bytes(gtfs_zip(CALENDAR + rows))
        try:
            feed = gtfs.read_feed(path)
        except DataError as exc:
            assert "calendar.txt line" in str(exc) or "service days" in str(exc)
            return
    days = gtfs.service_dates(feed)
    assert len(days) <= len(periods) * gtfs.MAX_SERVICE_YEARS * 366
