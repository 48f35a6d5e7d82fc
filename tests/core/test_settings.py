"""Every setting lives in Settings; ``citylake info`` shows them all, secrets masked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from citylake import cli
from citylake.core.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("citylake", "ingestion", "quality", "dags")


def test_no_setting_is_read_from_the_environment_outside_settings() -> None:
    """A CITYLAKE_ variable read anywhere else would be a setting `citylake info` cannot show."""
    offenders = []
    for pkg in RUNTIME:
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name == "settings.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"os\.(environ\.get|getenv|environ\[)\(?\s*[\"']CITYLAKE_", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_info_prints_every_setting_with_secrets_masked(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "a-secret-that-must-not-show-0123")
    monkeypatch.setenv("CITYLAKE_OPENDATA_K", "12")
    assert cli.main(["info"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == set(Settings.model_fields) | {"city"}
    assert shown["opendata_k"] == 12
    # the city (issue #30): its facts, the night's time and each feed's deadline and personal columns
    assert shown["city"]["timezone"] == shown["timezone"] and shown["city"]["night"]["cron"] == "30 6 * * *"
    assert shown["city"]["feeds"]["bus/ticketing"]["deadline"] == "D+1 06:00"
    assert shown["city"]["feeds"]["bus/ticketing"]["personal_columns"] == ["N° support"]
    assert shown["pseudonym_key"] == "set" and "a-secret" not in json.dumps(shown)
    assert all(shown[name] in ("set", "not set") for name in SECRET_FIELDS)


def test_the_configuration_table_names_every_setting() -> None:
    table = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`CITYLAKE_{name.upper()}`" not in table]
    assert not missing, f"docs/operations.md, section Configuration, does not name {missing}"
