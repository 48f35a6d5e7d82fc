"""A city's own configuration folder (CITYLAKE_CONFIG_DIR) for onboarding tests: the shipped
operators plus one more, its contracts, and files in its drop — YAML only, no Python."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from citylake.core.settings import Settings
from ingestion import registry


def onboard(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operator_entry: str,
    contracts: dict[str, str],
    drop: dict[str, bytes] | None = None,
) -> Settings:
    """Write the city's folder (shipped operators.yaml + ``operator_entry``, ``contracts`` by
    file name), put ``drop`` files (path under the drop root -> bytes), point the settings at a
    fresh lake; return them."""
    config = tmp_path / "city"
    (config / "contracts").mkdir(parents=True)
    shipped = registry.CONFIG.read_text(encoding="utf-8")
    (config / "operators.yaml").write_text(shipped.rstrip() + "\n" + operator_entry, encoding="utf-8")
    for name, text in contracts.items():
        (config / "contracts" / name).write_text(text, encoding="utf-8")
    for relative, data in (drop or {}).items():
        path = tmp_path / "drop" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    monkeypatch.setenv("CITYLAKE_CONFIG_DIR", str(config))
    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CITYLAKE_DROP_ROOT", (tmp_path / "drop").as_uri())
    return Settings()


def ingested(settings: Settings, operator: str, dataset: str) -> pl.DataFrame:
    """Ingest one operator's drop (the report must be ok) and return a staged dataset's rows."""
    from citylake.core.storage import open_storage
    from ingestion.run import ingest

    report = ingest(settings, operator=operator, progress=False)
    assert report.ok, report.lines()
    storage = open_storage(settings)
    keys = [i.key for i in storage.list(f"staged/{dataset}/") if i.key.endswith(".parquet")]
    return pl.concat([pl.read_parquet(io.BytesIO(storage.get_bytes(k))) for k in keys], how="diagonal_relaxed")
