"""Shared fixtures: isolated settings, and the lake on both backends.

The S3 backend is exercised against a real HTTP endpoint: moto's server on 127.0.0.1 with a
free port, buckets created through the minio SDK.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, S3Storage, open_storage
from citylake.night.steps import NightResult, night_after, run_night
from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import parse_faults
from devtools.simulator.run import SimulationConfig, simulate

# Parallel workers (pytest-xdist, `make test`): each has its own dbt target and log folders, so
# that two in-process dbt runs never share a manifest or compiled SQL.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ.setdefault("DBT_TARGET_PATH", f"target-{_WORKER}")
    os.environ.setdefault("DBT_LOG_PATH", str(Path(__file__).resolve().parents[1] / "dbt_project" / f"logs-{_WORKER}"))

S3_ACCESS = "citylake-test-access"
S3_SECRET = "citylake-test-secret-key"
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def require_shared(relative: str) -> Path:
    """Return a file or folder of ../shared, or fail the test saying what is missing (never skip)."""
    path = SHARED / relative
    if not path.exists():
        pytest.fail(
            f"this test reads ../shared/{relative} (real public files, see ../shared/realdata/README.md), "
            f"which is not beside the checkout: {path} does not exist. Run the tests from a checkout that "
            "has the project's shared/ folder next to it, as CI does.",
            pytrace=False,
        )
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's CITYLAKE_*/AWS_* variables or a stray .env file."""
    import os

    for name in list(os.environ):
        if name.startswith(("CITYLAKE_", "AWS_")):
            monkeypatch.delenv(name)
    # The contract reports' PDFs and the docs of the marts are written and checked by the nights
    # of lake_after_nights (both on there); in other tests' nights they would cost Chromium's and
    # dbt's time (about 5 s a night) and check nothing
    monkeypatch.setenv("CITYLAKE_REPORT_PDF", "never")
    monkeypatch.setenv("CITYLAKE_DOCS_SITE", "false")
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


# -- the simulated operators and a lake after N nights, built once per session -----------------
SIMULATED_START = date(2026, 3, 30)  # a Monday and a Tuesday in term time
SIMULATED_DAYS = 2
PSEUDONYM_KEY = "session-test-pseudonym-key-0123456789"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> object:
    """Build a read-only session resource once per test run, not once per xdist worker.

    The first worker that needs it builds it in a folder every worker of this run sees (the parent
    of the workers' base temp folders) while holding a lock; the others wait for the lock and load
    what ``build(folder)`` returned (pickled). A build that fails leaves no mark, so the next worker
    tries again. Without xdist it is simply built."""
    if not _WORKER:
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its workers
    folder, done = root / name, root / f"{name}.pickle"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return pickle.loads(done.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # what a failed or killed build left
        folder.mkdir()
        value = build(folder)
        done.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="session")
def simulated_days(tmp_path_factory) -> Path:
    """The operators' deliveries of two simulated days (default faults) with the ground truth:
    every test that needs a drop copies or reads this one (never writes to it). Built once per run."""

    def build(drop: Path) -> Path:
        simulate(
            SimulationConfig(
                network=SAMPLE_NETWORK,
                start=SIMULATED_START,
                days=SIMULATED_DAYS,
                out=drop,
                faults=parse_faults("default"),
                seed=11,
                progress=False,
            )
        )
        return drop

    return built_once(tmp_path_factory, "simulated_days", build)


@dataclass(frozen=True)
class Nights:
    """A lake after N simulated nights: the drop (with its truth), the lake, the warehouse, each night's result."""

    base: Path
    drop: Path
    nights: tuple[NightResult, ...]

    @property
    def lake(self) -> Path:
        return self.base / "lake"

    @property
    def warehouse(self) -> Path:
        return self.base / "warehouse.duckdb"

    @property
    def last(self) -> NightResult:
        return self.nights[-1]

    def settings(self) -> Settings:
        """Settings reading this lake (tests' environments are cleaned, so nothing else points at it)."""
        return published_settings(self.base)

    def copy(self, dest: Path) -> Settings:
        """Copy the lake under ``dest`` (for a test that writes: the lake is shared, read-only, by
        every worker); return Settings reading the copy."""
        shutil.copytree(self.lake, dest / "lake")
        return published_settings(dest)

    def env(self, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """Point the environment at this lake, as a night would see it; return the Settings."""
        monkeypatch.setenv("CITYLAKE_LAKE_URI", self.lake.as_uri())
        monkeypatch.setenv("CITYLAKE_DROP_ROOT", self.drop.as_uri())
        monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", PSEUDONYM_KEY)
        monkeypatch.setenv("CITYLAKE_WAREHOUSE", str(self.warehouse))
        monkeypatch.setenv("CITYLAKE_REPORT_PDF", "always")
        monkeypatch.setenv("CITYLAKE_DOCS_SITE", "true")
        return Settings()


@pytest.fixture(scope="session")
def lake_after_nights(simulated_days, tmp_path_factory) -> Nights:
    """A lake after the two simulated days' nights, run as a city runs them (``run_night`` with the
    files delivered by 06:30 of the next day): published, reported, with two publications in the
    registry. Built once per run and shared, read-only, by the tests that read publications (API,
    open data, catalog, reports, dbt docs), on every worker: a test that writes to a lake (the
    fault suite, open-data exports, reports) copies it first."""

    def build(base: Path) -> tuple[Path, tuple[NightResult, ...]]:
        from zoneinfo import ZoneInfo

        from tests.support import hostile

        # issue #29: the hostile files delivered beside the first day, a deep line inside its AVL
        # file: the nights refuse each once with its rule and publish everything else
        drop = base / "drop"
        shutil.copytree(simulated_days, drop)
        first_evening = datetime.combine(SIMULATED_START, time(20), ZoneInfo("Europe/Paris"))
        hostile.plant(drop, SIMULATED_START - timedelta(days=1), first_evening)
        hostile.deepen(next((drop / "bus" / "avl").glob(f"*{SIMULATED_START.isoformat()}*.jsonl")))
        mp = pytest.MonkeyPatch()
        try:
            settings = Nights(base, drop, ()).env(mp)
            nights = []
            for day in range(SIMULATED_DAYS):
                as_of = night_after(SIMULATED_START + timedelta(days=day), settings.timezone)
                night = run_night(settings, as_of=as_of)
                assert night.ok, (night.gate.refused_groups if night.gate else None, night.ingest.lines())
                # the night writes each operator's month-to-date contract report from what it published
                # (HTML, and PDF printed by Chromium, which make test installs)
                assert night.contract_reports == [
                    f"reports/contract/operator={op}/month=2026-03/{night.gate.publication_id}.{ext}"
                    for op in ("bus", "parking")
                    for ext in ("html", "pdf")
                ]
                # and the documentation of the marts it published (dbt's docs site)
                assert night.docs_site == f"reports/docs/{night.gate.publication_id}/index.html", night.report_error
                nights.append(night)
            return base, tuple(nights)
        finally:
            mp.undo()

    base, nights = built_once(tmp_path_factory, "lake_after_nights", build)
    return Nights(base, base / "drop", nights)


def published_settings(base: Path) -> Settings:
    """Settings reading the lake under ``base`` (the environment is cleaned per test)."""
    return Settings.model_construct(
        lake_uri=(base / "lake").as_uri(),
        timezone="Europe/Paris",
        duckdb_threads=2,
        duckdb_memory_limit="4GB",
        api_tokens_file=str(base / "api_tokens.json"),
        warehouse=str(base / "warehouse.duckdb"),
    )


# -- the order the workers take the files in ---------------------------------------------------
#: The files that take the most time (seconds of test time measured on 2 cores, 2026-12-01), run
#: first: each worker starts with the longest ones and the short ones fill the end, so that the
#: two workers end together. (pytest-xdist would otherwise order files by their number of tests,
#: and leave a few long tests for the end; the Makefile passes --no-loadscope-reorder.)
LONGEST_FIRST = (  # each file's setup and calls on a fresh clone, 2026-12-06
    "tests/reliability/test_faults.py",  # 290 s
    "tests/publish/test_gate.py",  # 195 s
    "tests/night/test_dags.py",  # 130 s
    "tests/build/test_dbt_transit.py",  # 115 s
    "tests/night/test_city_end_to_end.py",  # 85 s
    "tests/night/test_batches.py",  # 80 s
    "tests/devtools/test_standard_formats.py",  # 55 s
    "tests/night/test_workers.py",  # 36 s
    "tests/consumers/test_api.py",  # 25 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (LONGEST_FIRST), every other file after them in its usual order."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable


# -- RELIABILITY.md: every row is written by the test that checks it ---------------------------
#: The rows of RELIABILITY.md, in order: key -> the fault, as the table names it.
RELIABILITY_ROWS = {
    "kill_ingest": "process killed at a random lake write during ingestion, then rerun",
    "kill_gate": "process killed at a random lake write during the gate and publication, then rerun",
    "kill_dbt": "process SIGKILLed at a random moment of the dbt build, then rerun",
    "kill_backfill": "a backfill killed inside a batch, the batch before it recorded, then resumed",
    "s3_5xx": "S3 answers 503 SlowDown to the first attempt of every request",
    "s3_slow": "S3 answers slowly (0.3 s added to every request)",
    "s3_restart": "S3 server stopped and restarted in the middle of a run",
    "s3_down": "S3 down for longer than the retry budget",
    "s3_cut": "an upload cut in the middle of its body, every attempt",
    "disk_full": "disk full (ENOSPC) while writing the local lake",
    "permission": "permission denied (EACCES) on the local lake",
    "two_nights": "two publications started at the same moment",
    "kill_vacuum": "a table commit killed after its data files; the vacuum killed after its first table",
    "readers_while_publishing": "API clients paging through marts while three publications switch",
    "dead_lock_owner": "the lock of a killed night left behind",
    "simulator_faults": "every simulator fault kind (missing, late, duplicate, truncated, drift, encoding, rows, "
    "DST, …)",
    "zip_bomb": "zip bomb delivered as a GTFS feed",
    "wide_csv": "CSV with 10^6 columns",
    "long_line": "CSV with one line far over the limit",
    "invalid_utf8": "invalid UTF-8 in a UTF-8 extract",
    "formula_injection": "formula injection (=, +, -, @ at cell start) in text fields of the exports",
    "path_traversal": "path traversal and hostile characters in delivered file names",
    "hostile_gtfs": "GTFS with a feed_version the lake refuses, dates not YYYYMMDD, calendars to year 9999",
    "deep_json": "a JSON line nested 200,000 levels deep",
    "feed_fails_alone": "an exception no rule foresaw in each reader and builder in turn",
    "personal_values": "card serials where they do not belong (cut rows, wrong columns)",
    "hostile_night": "the hostile files at once, the night's process capped in memory",
    "hostile_night_published": "the hostile files delivered beside a normal day, through to publication",
    "forged_mtime": "a delivery's modification time set back to look on time",
    "drop_links": "a drop folder that is a link; linked and hidden files; names with control characters",
    "operator_isolation": "one operator's data refused: the other operator's contract KPIs",
    "api_tokens": "an expired token, a rotated one, a link planted where the token register writes",
    "api_headers": "framing, caching and CDN scripts on the API's pages",
    "docs_page": "the docs of the marts without a token, with a tampered or expired link",
    "small_counts": "small counts given back by a derived column, an OD cell, a ';'-split spreadsheet",
}
_RELIABILITY: dict[str, dict] = {}


@pytest.fixture
def reliability(request):
    """Record a row of RELIABILITY.md: what was tried, how many times, survived, lost (must be 0)."""

    def record(key: str, tried: int, survived: int, lost: int, outcome: str) -> None:
        assert key in RELIABILITY_ROWS, key
        _RELIABILITY[key] = {
            "tried": tried,
            "survived": survived,
            "lost": lost,
            "outcome": outcome,
            "test": f"{request.node.path.name}::{request.node.name}",
        }

    return record


def pytest_testnodedown(node, error) -> None:
    """Under pytest-xdist, gather the rows each worker recorded (the controller writes the file)."""
    _RELIABILITY.update(getattr(node, "workeroutput", {}).get("reliability", {}))


def pytest_sessionfinish(session, exitstatus) -> None:
    """Rewrite RELIABILITY.md when every row's test ran and the whole session passed."""
    if hasattr(session.config, "workeroutput"):  # a worker hands its rows to the controller
        session.config.workeroutput["reliability"] = dict(_RELIABILITY)
        return
    if exitstatus != 0 or set(_RELIABILITY) != set(RELIABILITY_ROWS):
        return
    lines = [
        "# Reliability",
        "",
        "Written by `make test` (tests/conftest.py) from the fault-injection tests: each row is recorded by the",
        "test named in it, after its assertions passed, and the file is rewritten only when the whole suite passed.",
        "The faults are seeded: the same code gives the same table. *Lost* counts delivered files missing from raw,",
        "staged rows duplicated or missing, published marts half-written or mixed across versions: it must be 0.",
        "",
        "| fault | tried | survived | lost | what happens | test |",
        "|---|---|---|---|---|---|",
    ]
    for key, fault in RELIABILITY_ROWS.items():
        r = _RELIABILITY[key]
        lines.append(f"| {fault} | {r['tried']} | {r['survived']} | {r['lost']} | {r['outcome']} | `{r['test']}` |")
    total = sum(r["tried"] for k, r in _RELIABILITY.items() if k.startswith("kill_"))
    lines += ["", f"Kill points across ingestion, dbt, the gate and publication: {total}.", ""]
    (ROOT / "RELIABILITY.md").write_text("\n".join(lines))
