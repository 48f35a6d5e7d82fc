"""DuckDB and Polars over the lake, the same way for ``file://`` and ``s3://``.

DuckDB cannot download extensions here (nor in many locked-down city networks), so the
``httpfs``, ``ducklake`` and ``encodings`` (Windows-1252 CSVs) extensions come from their PyPI wheels
(``duckdb-extension-httpfs==1.5.5``...) and are installed from the file they ship.
``install_bundled_extensions`` does it once (``make install``); ``connect`` does it on demand.
"""

from __future__ import annotations

import fnmatch
import importlib
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb

from citylake.core.errors import LakeConfigError
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, ObjectInfo, S3Storage

BUNDLED_EXTENSIONS = ("httpfs", "ducklake", "encodings", "delta", "spatial")


def bundled_extension_file(name: str) -> Path:
    """Return the extension file shipped in the ``duckdb-extension-<name>`` wheel."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError as exc:
        raise LakeConfigError(
            f"DuckDB extension {name!r} is not installed: pip install duckdb-extension-{name}=={duckdb.__version__}"
        ) from exc
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise LakeConfigError(f"{path} missing: duckdb-extension-{name} must match duckdb {duckdb.__version__}")
    return path


def install_bundled_extensions(con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """Install the wheel-shipped extensions into DuckDB's extension directory; return their names."""
    con = con or duckdb.connect()
    for name in BUNDLED_EXTENSIONS:
        con.execute(f"INSTALL '{bundled_extension_file(name)}'")
    return list(BUNDLED_EXTENSIONS)


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD an extension, installing it from its wheel first when DuckDB does not have it."""
    try:
        con.execute(f"LOAD {name}")
    except duckdb.Error:
        con.execute(f"INSTALL '{bundled_extension_file(name)}'")
        con.execute(f"LOAD {name}")


def s3_secret_sql(storage: S3Storage, settings: Settings, name: str = "citylake_lake") -> str:
    """Return the CREATE SECRET statement that lets DuckDB read and write the lake's bucket."""
    access, secret = settings.s3_credentials()
    host = storage.endpoint.split("://", 1)[1]
    use_ssl = "true" if storage.endpoint.startswith("https") else "false"

    def q(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    return (
        f"CREATE OR REPLACE SECRET {name} (TYPE s3, KEY_ID {q(access)}, SECRET {q(secret)}, "
        f"REGION {q(storage.region)}, ENDPOINT {q(host)}, URL_STYLE 'path', USE_SSL {use_ssl}, "
        f"SCOPE {q('s3://' + storage.bucket)})"
    )


def connect(
    settings: Settings,
    storage: LakeStorage | None = None,
    database: str = ":memory:",
    *,
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection that reads the lake (and any S3 URL of its bucket)."""
    con = duckdb.connect(
        database,
        read_only=read_only,
        config={"threads": settings.duckdb_threads, "memory_limit": settings.duckdb_memory_limit},
    )
    con.execute(f"SET TimeZone = '{settings.timezone}'")
    if isinstance(storage, S3Storage):
        load_extension(con, "httpfs")
        con.execute(s3_secret_sql(storage, settings))
    return con


def copy_to_lake(
    con: duckdb.DuckDBPyConnection,
    query: str,
    storage: LakeStorage,
    key: str,
    *,
    overwrite: bool = False,
    params: list[Any] | None = None,
    compression: str = "zstd",
) -> ObjectInfo:
    """Write a query's result as one Parquet object at ``key``, atomically.

    DuckDB writes to a local temporary file first; the storage layer then puts it whole. A crash
    mid-write therefore leaves nothing under the key, never a broken Parquet file.
    """
    with tempfile.TemporaryDirectory(prefix="citylake-copy-") as tmp:
        local = Path(tmp) / "part.parquet"
        con.execute(
            f"COPY ({query}) TO '{local}' (FORMAT parquet, COMPRESSION {compression})",
            params or [],
        )
        return storage.put_file(key, local, overwrite=overwrite)


def polars_storage_options(settings: Settings, storage: LakeStorage) -> dict[str, str] | None:
    """Return Polars' ``storage_options`` for the lake (None for the local filesystem)."""
    if not isinstance(storage, S3Storage):
        return None
    access, secret = settings.s3_credentials()
    return {
        "aws_access_key_id": access,
        "aws_secret_access_key": secret,
        "aws_region": storage.region,
        "aws_endpoint_url": storage.endpoint,
        "aws_allow_http": "true" if storage.endpoint.startswith("http://") else "false",
    }


def scan_parquet(settings: Settings, storage: LakeStorage, key_or_glob: str, **kwargs: Any):
    """Return a Polars LazyFrame over Parquet objects of the lake (a key or a glob).

    On S3 the objects are read through Arrow's S3 filesystem (``pl.scan_pyarrow_dataset``), never
    Polars' own cloud reader: that reader starts a background thread that reads the process's
    environment every few milliseconds (``POLARS_LOG_CONCURRENCY``, Polars 2.1), and glibc's
    ``getenv`` is not safe against a ``setenv`` in another thread: a process that later sets an
    environment variable (the dbt build does, for dbt's ``env_var``) crashes in that thread
    (seen as a test worker spinning in SIGSEGV, 2026-12-06)."""
    import polars as pl

    if not isinstance(storage, S3Storage):
        return pl.scan_parquet(storage.url(key_or_glob), **kwargs)
    import pyarrow.dataset as ds
    from pyarrow import fs

    access, secret = settings.s3_credentials()
    endpoint = urlparse(storage.endpoint) if storage.endpoint else None
    s3 = fs.S3FileSystem(
        access_key=access,
        secret_key=secret,
        region=storage.region,
        endpoint_override=endpoint.netloc if endpoint else None,
        scheme=endpoint.scheme if endpoint else "https",
    )
    url = storage.url(key_or_glob).removeprefix("s3://")
    if "*" in url:  # a glob: the objects under its fixed part that match it ('**/' is any depth)
        root = url.partition("*")[0].rsplit("/", 1)[0]
        selector = fs.FileSelector(root, recursive=True)
        pattern = url.replace("**/", "*")
        files = sorted(i.path for i in s3.get_file_info(selector) if i.is_file and fnmatch.fnmatch(i.path, pattern))
    else:  # one object
        root, files = url.rsplit("/", 1)[0], [url]
    if set(kwargs) - {"hive_partitioning"}:
        raise TypeError(f"scan_parquet on S3 takes hive_partitioning only, not {sorted(kwargs)}")
    partitioning = "hive" if kwargs.get("hive_partitioning") else None
    dataset = ds.dataset(files, filesystem=s3, format="parquet", partitioning=partitioning, partition_base_dir=root)
    return pl.scan_pyarrow_dataset(dataset)
