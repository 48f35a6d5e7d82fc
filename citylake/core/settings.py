"""Settings in one place: environment variables prefixed ``CITYLAKE_``, plus an optional ``.env``.

Credentials (S3 keys, the pseudonymisation key) are read from the process environment only:
a ``.env`` file may set where the lake is, never the secrets to open it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from citylake.core.city import City, load_city
from citylake.core.errors import LakeConfigError

#: Settings that must never come from a file, only from the environment.
SECRET_FIELDS = frozenset({"s3_access_key", "s3_secret_key", "pseudonym_key"})


class _DotEnvWithoutSecrets(DotEnvSettingsSource):
    """A .env source that ignores secret fields, so credentials come from the environment only."""

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k not in SECRET_FIELDS}


class Settings(BaseSettings):
    """Every tunable of citylake; build one with ``Settings()`` at call time, never at import."""

    model_config = SettingsConfigDict(
        env_prefix="CITYLAKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    lake_uri: str = Field(
        default="file://./lake",
        description="Root of the lake: file://PATH (relative to the working directory) or s3://bucket[/prefix].",
    )
    drop_root: str = Field(
        default="file://./drop",
        description="Where operators deliver their extracts (the default drops for ingestion).",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3/MinIO endpoint URL, e.g. http://127.0.0.1:9000; empty means AWS.",
    )
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    timezone: str = Field(
        default="Europe/Paris",
        description="The city's time zone: city.yaml's `timezone` when the city folder has one (the two must agree).",
    )
    config_dir: str | None = Field(
        default=None,
        description="The city's folder: city.yaml (the city's facts), operators.yaml, contracts/ (docs/operations.md).",
    )
    pseudonym_key: SecretStr | None = None
    duckdb_threads: int = Field(default=2, ge=1)
    duckdb_memory_limit: str = "8GB"
    duckdb_max_temp: str | None = Field(
        default=None,
        description=(
            "The most a dbt build may spill to disk (DuckDB's max_temp_directory_size, e.g. 20GB); by default "
            "a quarter of the free space of the warehouse's disk when the build starts, so that a query that "
            "spills fails in its own right instead of filling the disk (DuckDB's own default is 90 %)."
        ),
    )
    batch_memory: str | None = Field(
        default=None,
        description=(
            "The memory one batch of a backfill or a rebuild may take (e.g. 6GiB): a batch holds as many "
            "dates as their staged rows allow at the measured cost per row (citylake.night.batches); by "
            "default a quarter of the machine's memory."
        ),
    )
    raw_personal_retention_days: int = Field(
        default=90,
        ge=1,
        description="Days raw files of personal-data feeds (ticketing) are kept before the retention job purges them.",
    )
    publication_retention_days: int = Field(
        default=5480,
        ge=1,
        description=(
            "Days a publication stays reproducible before `citylake vacuum` may delete files only it reads: "
            "a 10-year delegation contract plus the 5-year limitation period (Code civil art. 2224). "
            "Publications named by a contract report are kept whatever their age."
        ),
    )
    report_pdf: Literal["auto", "always", "never"] = Field(
        default="auto",
        description=(
            "Whether the night prints each contract report to PDF beside its HTML (headless Chromium): "
            "auto when a Chromium is found (CITYLAKE_CHROMIUM or the PATH), always (a missing browser is an "
            "error of the night), or never."
        ),
    )
    basemap_style: str | None = Field(
        default=None,
        description=(
            "The explorer's basemap (/explore): the URL of a MapLibre style, e.g. the IGN Géoplateforme's Plan IGN "
            "https://data.geopf.fr/annexes/ressources/vectorTiles/styles/PLAN.IGN/standard.json; none draws the "
            "network on a plain background and the page fetches nothing but this API."
        ),
    )
    docs_site: bool = Field(
        default=True,
        description="Whether each publication writes the docs of the marts (dbt's docs site, ~2.7 MB), reports/docs/.",
    )
    docs_retention_days: int = Field(
        default=92,
        ge=0,
        description=(
            "Days a publication's docs page (reports/docs/, ~2.7 MB) is kept before `citylake vacuum` deletes it. "
            "Kept whatever their age: the pages of the publications in force, and the newest page of each code "
            "version (the docs of the code behind any contract report)."
        ),
    )
    chromium: str | None = Field(
        default=None,
        description="The Chromium that prints the contract reports' PDFs (default: chromium on the PATH).",
    )
    api_tokens_file: str = Field(
        default="api_tokens.json",
        description="The HTTP API's token register: sha256 hashes of tokens with their role (never the tokens).",
    )
    warehouse: str = Field(
        default="build/warehouse.duckdb",
        description="The DuckDB file dbt builds the candidate marts into (relative to the working directory).",
    )
    pseudonym_rotation: str = Field(
        default="quarter",
        pattern="^(month|quarter|year)$",
        description="How often card pseudonyms change (the same card gets a new pseudonym each period).",
    )
    sftp_known_hosts: str | None = Field(
        default=None,
        description="known_hosts file for operators' SFTP drops; empty means ~/.ssh/known_hosts.",
    )
    opendata_k: int = Field(default=10, ge=1, description="Open-data exports suppress counts below this (k-anonymity).")
    notify_webhook_url: str | None = Field(default=None, description="Notifications: a URL that receives a JSON POST.")
    notify_smtp_host: str | None = Field(default=None, description="Notifications: the mail server.")
    notify_smtp_port: int = Field(default=25, description="Notifications: the mail server's port.")
    notify_email_to: str | None = Field(default=None, description="Notifications: comma list of recipients.")
    notify_email_from: str = Field(default="citylake@localhost", description="Notifications: the sender.")
    nightly_schedule: str = Field(
        default="auto",
        description=(
            "Cron of the nightly_refresh DAG in the city's time zone; 'auto': half an hour after the contracts' "
            "latest D+1 deadline (06:30 for D+1 06:00); 'none' for triggered nights only."
        ),
    )
    gate_crash_at: str | None = Field(
        default=None,
        description="Tests only: kill the process at this step of the publication gate (crash-safety tests).",
    )

    @field_validator("lake_uri", "drop_root")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlparse(value).scheme
        if scheme not in ("file", "s3", ""):
            raise ValueError(f"unsupported URI scheme {scheme!r} in {value!r}: use file:// or s3://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        dotenv = _DotEnvWithoutSecrets(
            settings_cls,
            env_file=settings_cls.model_config.get("env_file"),
            env_file_encoding=settings_cls.model_config.get("env_file_encoding"),
        )
        return (init_settings, env_settings, dotenv, file_secret_settings)

    _city: City | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _the_city(self) -> Settings:
        """Read the city's facts once (city.yaml), checked now: the time zone is then the city's."""
        self._city = self._load_city()
        self.timezone = self._city.timezone
        return self

    def _load_city(self) -> City:
        explicit = self.timezone if "timezone" in self.model_fields_set else None
        return load_city(Path(self.config_dir) if self.config_dir else None, explicit)

    @property
    def city(self) -> City:
        """The city (:mod:`citylake.core.city`): time zone, school zone, holidays, name."""
        if self._city is None:  # Settings.model_construct skips the validators
            self._city = self._load_city()
        return self._city

    def s3_credentials(self) -> tuple[str, str]:
        """Return (access key, secret key) from CITYLAKE_S3_* or AWS_* variables, or raise."""
        access = self.s3_access_key.get_secret_value() if self.s3_access_key else None
        secret = self.s3_secret_key.get_secret_value() if self.s3_secret_key else None
        access = access or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = secret or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            missing = [
                name
                for name, value in (
                    ("CITYLAKE_S3_ACCESS_KEY", access),
                    ("CITYLAKE_S3_SECRET_KEY", secret),
                )
                if not value
            ]
            raise LakeConfigError(
                f"S3 credentials missing: set {' and '.join(missing)} in the environment "
                "(or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); they are never read from files."
            )
        return access, secret


def warehouse_path(settings: Settings) -> Path:
    """Return the absolute path of the candidate warehouse (``CITYLAKE_WAREHOUSE``)."""
    return Path(settings.warehouse).expanduser().resolve()


def resolve_local_root(uri: str, base: Path | None = None) -> Path:
    """Return the absolute directory a file:// (or bare path) URI points to."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise LakeConfigError(f"not a filesystem URI: {uri!r}")
    raw = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.resolve()
