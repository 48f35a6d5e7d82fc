"""The key model: one place builds lake paths, and refuses bad ones."""

from datetime import date, datetime

import pytest

from citylake.core.lake import Zone, key, parse_partitions, safe_filename, write_once_rule


def test_keys_are_hive_partitioned() -> None:
    k = key(Zone.STAGED, "fare_transactions", {"operator": "bus", "service_date": date(2026, 3, 29)}, "part-0.parquet")
    assert k == "staged/fare_transactions/operator=bus/service_date=2026-03-29/part-0.parquet"
    assert parse_partitions(k) == {"operator": "bus", "service_date": "2026-03-29"}
    assert key(Zone.RAW, "bus/ticketing") == "raw/bus/ticketing/"


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ({"dataset": "Fare Transactions"}, ValueError),
        ({"dataset": "../x"}, ValueError),
        ({"partitions": {"service_date": "2026/03/01"}}, ValueError),
        ({"partitions": {"service_date": datetime(2026, 3, 1, 4)}}, TypeError),
        ({"filename": "../../etc/passwd"}, ValueError),
    ],
)
def test_bad_parts_are_refused(parts, error) -> None:
    with pytest.raises(error):
        key(Zone.STAGED, **{"dataset": "x", **parts})


def test_write_once_rules() -> None:
    assert write_once_rule("raw/x/y.csv")
    assert write_once_rule("published/versions/p1/m.parquet")
    assert write_once_rule("published/CURRENT.json") is None
    assert write_once_rule("staged/x/y.parquet") is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("validations 2026-03-01 (1).csv", "validations_2026-03-01_1_.csv"),
        ("...", "unnamed"),
        ("Export_ÉTÉ.xlsx", "Export_ETE.xlsx"),
    ],
)
def test_delivered_names_become_one_safe_segment(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_no_lake_path_is_formatted_outside_the_key_builder() -> None:
    """Issue #30: every lake key comes from citylake.core.lake (key, Zone): a string or f-string in
    the runtime that starts with a zone and a slash ('staged/…', f"control/{x}…") is a path formatted
    by hand, which a layout change would leave behind (the RGPD purge once rebuilt raw keys so)."""
    import ast
    from pathlib import Path

    from citylake.core.lake import Zone

    root = Path(__file__).resolve().parents[2]
    zones = tuple(f"{z.value}/" for z in Zone)
    found = []
    for package in ("citylake", "ingestion", "quality", "dags"):
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "citylake" / "core" / "lake.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                text = None
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                    text = str(node.values[0].value)
                if text is not None and text.startswith(zones) and "\n" not in text and " " not in text:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {text!r}")
    assert found == [], "\n".join(found)
