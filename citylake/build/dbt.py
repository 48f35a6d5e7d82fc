"""``citylake build``: dbt build of the marts over the staged zone, in-process.

dbt reads the staged Parquet straight from the lake (a folder or S3) and builds into a DuckDB
file, the *warehouse* (``CITYLAKE_WAREHOUSE``, default ``build/warehouse.duckdb``): a working
copy that the publication gate (issue #7) audits and promotes; consumers never read it.
Incremental models recompute only the service dates asked for; ``--full-refresh`` rebuilds all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

from citylake.core.city import City
from citylake.core.errors import CitylakeError
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings, warehouse_path
from citylake.core.storage import LakeStorage, S3Storage, open_storage
from ingestion import manifest, registry

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
log = logging.getLogger("citylake.build")


#: beside dbt's manifest: the city vars it was made with (:func:`citylake.build.groups.load_manifest`)
VARS_STAMP = "citylake_vars.json"


def target_dir() -> Path:
    """Where dbt writes its manifest, compiled SQL and run results: ``dbt_project/target``, or
    ``DBT_TARGET_PATH`` (dbt's own variable; relative to the project) when set, so that two
    processes (the test suite's parallel workers) never share one."""
    configured = os.environ.get("DBT_TARGET_PATH")
    if not configured:
        return DBT_PROJECT / "target"
    path = Path(configured)
    return path if path.is_absolute() else DBT_PROJECT / path


class BuildFailed(CitylakeError):
    """dbt reported errors or failing tests."""


@dataclass
class BuildResult:
    success: bool
    warehouse: Path
    results: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if r["status"] in ("error", "fail", "runtime error")]

    @property
    def warnings(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "warn"]


def dbt_env(settings: Settings, storage: LakeStorage, warehouse: Path) -> dict[str, str]:
    """Return the environment dbt needs to read the lake and write the warehouse."""
    env = {
        "CITYLAKE_WAREHOUSE": str(warehouse),
        "CITYLAKE_STAGED_URL": storage.url(key(Zone.STAGED)).rstrip("/"),
        "CITYLAKE_MANIFEST_URL": storage.url(key(Zone.CONTROL, "manifest")).rstrip("/"),
        **{f"CITYLAKE_MANIFEST_{table.upper()}": _duckdb_list(storage, table) for table in ("deliveries", "steps")},
        **{f"CITYLAKE_STAGED_{name.upper()}": _optional_staged(storage, name) for name in OPTIONAL_STAGED},
        "CITYLAKE_TIMEZONE": settings.timezone,
        "CITYLAKE_DUCKDB_MEMORY_LIMIT": settings.duckdb_memory_limit,
        "CITYLAKE_DUCKDB_MAX_TEMP": settings.duckdb_max_temp or temp_budget(warehouse),
        "DBT_PROFILES_DIR": str(DBT_PROJECT),
    }
    if isinstance(storage, S3Storage):
        access, secret = settings.s3_credentials()
        env.update(
            {
                "CITYLAKE_S3_ACCESS_KEY": access,
                "CITYLAKE_S3_SECRET_KEY": secret,
                "CITYLAKE_S3_REGION": storage.region,
                "CITYLAKE_S3_ENDPOINT_HOST": urlparse(storage.endpoint).netloc,
                "CITYLAKE_S3_USE_SSL": "true" if storage.endpoint.startswith("https") else "false",
            }
        )
    return env


def temp_budget(warehouse: Path) -> str:
    """A quarter of the free space of the disk the warehouse (and DuckDB's temp folder beside it)
    is on, as DuckDB reads a size: what a build may spill before it fails (issue #32: three metro
    days once spilled 60 GB and filled the disk, and the night's other steps with it)."""
    folder = warehouse.parent if warehouse.parent.exists() else Path.cwd()
    return f"{shutil.disk_usage(folder).free // 4 // 10**6}MB"


#: Staged datasets a lake may not have (a feed not every city receives): read from an empty file
#: of the same schema (dbt_project/empty/) until the first delivery lands.
OPTIONAL_STAGED = ("manual_counts", "declared_figures", "gtfs_stop_distances", "gtfs_pattern_segments")


def _optional_staged(storage: LakeStorage, name: str) -> str:
    if any(i.key.endswith(".parquet") for i in storage.list(key(Zone.STAGED, name))):
        url = storage.url(key(Zone.STAGED, name)).rstrip("/") + "/**/*.parquet"
    else:
        url = str(DBT_PROJECT / "empty" / f"{name}.parquet")
    return "['" + url.replace("'", "''") + "']"


def _duckdb_list(storage: LakeStorage, table: str) -> str:
    """The objects holding a manifest table (its snapshot and what is not in it yet), as the DuckDB
    list dbt's source reads: a night reads a few objects, not one per run of the history."""
    urls = [storage.url(k) for k in manifest.object_keys(storage, table)] or [
        storage.url(key(Zone.CONTROL, f"manifest/{table}")).rstrip("/") + "/**/*.parquet"
    ]
    return "[" + ", ".join("'" + u.replace("'", "''") + "'" for u in urls) + "]"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _release_dbt_connection() -> None:
    """Close the DuckDB connection dbt-duckdb keeps open in-process, so others can open the file."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    conn = getattr(env, "conn", None)
    if conn is not None:
        conn.close()
        env.conn = None
    DuckDBConnectionManager.close_all_connections()


#: CPython before 3.11.8 can fail a compile() at random when threads compile at once (dbt's
#: threads compile Jinja): "SystemError: AST constructor recursion depth mismatch", python/cpython
#: gh-106905. Nothing is wrong with the project; the command is run once more.
_CPYTHON_AST_RACE = "AST constructor recursion depth mismatch"
_AST_RACE_POSSIBLE = sys.version_info < (3, 11, 8)


def run_dbt(
    args: Sequence[str], settings: Settings, storage: LakeStorage | None = None, warehouse: Path | None = None
) -> BuildResult:
    """Run a dbt command in-process against the lake; return its node results."""
    result = _run_dbt(args, settings, storage, warehouse)
    if _AST_RACE_POSSIBLE and any(_CPYTHON_AST_RACE in (r["message"] or "") for r in result.failures):
        log.warning("dbt %s hit CPython's gh-106905 (Python < 3.11.8): run once more", args[0])
        result = _run_dbt(args, settings, storage, warehouse)
    return result


def freshness_thresholds(tz: str) -> dict[str, dict[str, dict[str, int | str]]]:
    """dbt source freshness of each staged dataset, from its feeds' deadlines (the latest one when
    several feeds stage into it): a day due 'D+N HH:MM' is due 24 N + HH (+1 if minutes) hours
    after it starts, so its newest service date is at most that plus 24 hours old between two
    deadlines; one missed delivery warns, two error. A dataset without a dated feed has none."""
    due: dict[str, int] = {}
    for (operator, feed), deadline in registry.deadlines(tz).items():
        dataset = registry.contract(operator, feed).staged["dataset"]
        hours = 24 * deadline.days + deadline.at.hour + (1 if deadline.at.minute else 0)
        due[dataset] = max(due.get(dataset, 0), hours)
    return {
        dataset: {
            "warn_after": {"count": hours + 24, "period": "hour"},
            "error_after": {"count": hours + 48, "period": "hour"},
        }
        for dataset, hours in sorted(due.items())
    }


def city_vars(city: City) -> dict:
    """Every dbt var the city's configuration sets: its own facts (time zone, school zone,
    holidays) and the source freshness its contracts' deadlines give."""
    return {**city.dbt_vars(), "freshness": freshness_thresholds(city.timezone)}


def rules_version(settings: Settings) -> str:
    """A fingerprint of every rule a build applies besides the code: the city's dbt vars, the
    project's vars (method parameters), its seeds (contract targets, holidays) and the city's
    folder (city.yaml, operators.yaml, contracts/), else the packaged operators and contracts.
    A publication's registry record carries it beside the code version (issue #32): two
    publications of the same dates with different fingerprints were computed under different rules."""
    import hashlib

    from ingestion import registry

    digest = hashlib.sha256(json.dumps(city_vars(settings.city), sort_keys=True, default=str).encode())
    folder = Path(settings.config_dir) if settings.config_dir else Path(registry.__file__).parent
    project = [DBT_PROJECT / "dbt_project.yml", *sorted((DBT_PROJECT / "seeds").glob("*.csv"))]
    files = [(DBT_PROJECT, p) for p in project]
    files += [(folder, p) for p in sorted(folder.rglob("*.y*ml")) if p.is_file()]
    for root, path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def with_city_vars(args: Sequence[str], city: City) -> list[str]:
    """``args`` with the city's dbt vars (:func:`city_vars`) in ``--vars``: every dbt call gets
    them from :class:`~citylake.core.city.City` and the contracts, none is read from
    dbt_project.yml (which has no value for them: a call without them fails to compile, never
    falls back)."""
    args = list(args)
    if "--vars" in args:
        i = args.index("--vars") + 1
        args[i] = json.dumps({**json.loads(args[i]), **city_vars(city)})
    else:
        args += ["--vars", json.dumps(city_vars(city))]
    return args


def _run_dbt(
    args: Sequence[str], settings: Settings, storage: LakeStorage | None = None, warehouse: Path | None = None
) -> BuildResult:
    from dbt.cli.main import dbtRunner

    storage = storage or open_storage(settings)
    warehouse = warehouse or warehouse_path(settings)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    env = dbt_env(settings, storage, warehouse)
    args = with_city_vars(args, settings.city)
    stamp, written = target_dir() / VARS_STAMP, target_dir() / "manifest.json"
    stamp.unlink(missing_ok=True)  # the manifest this call writes is made with these vars
    before = written.stat().st_mtime_ns if written.exists() else None
    with _environment(env):
        try:
            res = dbtRunner().invoke(
                [*args, "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT), "--quiet"]
            )
        finally:
            _release_dbt_connection()
    if written.exists() and written.stat().st_mtime_ns != before:
        stamp.write_text(json.dumps(city_vars(settings.city), sort_keys=True), encoding="utf-8")
    results = []
    for r in getattr(res.result, "results", None) or []:
        depends = list(getattr(getattr(r.node, "depends_on", None), "nodes", []) or [])
        results.append(
            {
                "node": r.node.unique_id,
                "path": str(getattr(r.node, "original_file_path", "") or ""),
                "depends_on": depends,
                "status": str(r.status).lower().split(".")[-1],
                "message": r.message,
                "failures": getattr(r, "failures", None),
                "execution_time": round(r.execution_time or 0, 3),
                "age_s": getattr(r, "age", None),  # source freshness: seconds since the newest row
            }
        )
    if res.exception is not None and not results:
        raise BuildFailed(f"dbt {' '.join(args)} failed: {res.exception}")
    return BuildResult(bool(res.success), warehouse, results)


def build(
    settings: Settings,
    *,
    service_dates: Sequence[date] = (),
    full_refresh: bool = False,
    select: str | None = None,
    storage: LakeStorage | None = None,
    warehouse: Path | None = None,
    extra_vars: dict | None = None,
    indirect_selection: str | None = None,
    unit_tests: bool = False,
) -> BuildResult:
    """dbt seed + build (models and tests) for the given service dates (all when empty).

    dbt's unit tests run only with ``unit_tests=True`` (make test, ``citylake build --unit-tests``):
    their inputs are static, so they test the code, not the night's data, and dbt Labs recommends
    running them in development and CI only (docs.getdbt.com/docs/build/unit-tests, "When to run
    unit tests"). The nights leave them out."""
    dates = sorted({d.isoformat() for d in service_dates})
    vars_ = json.dumps({"service_dates": dates, **(extra_vars or {})})
    args = ["build", "--vars", vars_]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *select.split()]
    if indirect_selection:
        args += ["--indirect-selection", indirect_selection]
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    return run_dbt(args, settings, storage, warehouse)


def staged_dates(storage: LakeStorage, dataset: str = "stop_visits") -> list[date]:
    """Return the service dates present in a staged dataset."""
    out = set()
    for info in storage.list(key(Zone.STAGED, dataset)):
        for part in info.key.split("/"):
            if part.startswith("service_date="):
                out.add(date.fromisoformat(part.split("=", 1)[1]))
    return sorted(out)


def generate_docs(settings: Settings, storage: LakeStorage | None = None, warehouse: Path | None = None) -> Path:
    """``dbt docs generate`` over the warehouse as built (the manifest the build wrote, plus the
    catalog of its tables and columns); return the folder holding ``index.html``, ``manifest.json``
    and ``catalog.json``. The build's compiled SQL is reused (``--no-compile``): about a second."""
    result = run_dbt(["docs", "generate", "--no-compile"], settings, storage, warehouse)
    folder = target_dir()
    missing = [n for n in ("index.html", "manifest.json", "catalog.json") if not (folder / n).exists()]
    if not result.success or missing:
        raise BuildFailed(f"dbt docs generate failed (missing in {folder}: {', '.join(missing) or 'nothing'})")
    return folder
