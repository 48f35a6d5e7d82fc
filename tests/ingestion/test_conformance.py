"""The conformance corpus: real files from operators and open-data portals, onboarded by YAML only,
each with values checked by hand against the raw file (issue #28, part 7).

A case is a YAML file in ``tests/ingestion/real/`` — or a ``<sample>.contract.yaml`` with a
``<sample>.expected.yaml`` beside a sample the city adds under ``../shared/realdata/`` — naming:
``sample`` (its path under shared/), ``delivered_as`` (the file's name in the drop), ``timezone``,
``contract`` (a configured ``operator/feed`` or the contract document itself), and ``expect``:
staged and valid row counts, and values by source_row (the line of a CSV record; a TIDES or
``standards`` reader numbers records) and column, each with where it was read
in the raw file. A reader change that alters a value fails here, naming the case and the line.
"""

from __future__ import annotations

import secrets
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from ingestion.contracts import _parse, contract
from ingestion.feeds import Context, Refs, dataset_of, date_from_name, to_staged
from ingestion.parsing import parse
from ingestion.pseudonym import Pseudonymiser
from tests.conftest import SHARED, require_shared

HERE = Path(__file__).parent / "real"


def _cases() -> list[tuple[str, dict]]:
    out = [(p.stem, yaml.safe_load(p.read_text(encoding="utf-8"))) for p in sorted(HERE.glob("*.yaml"))]
    realdata = SHARED / "realdata"
    for spec in sorted(realdata.rglob("*.contract.yaml")) if realdata.is_dir() else []:
        expected = spec.with_name(spec.name.replace(".contract.yaml", ".expected.yaml"))
        if expected.is_file():  # a sample the city added: its contract and its values beside it
            case = yaml.safe_load(expected.read_text(encoding="utf-8"))
            case.setdefault("contract", yaml.safe_load(spec.read_text(encoding="utf-8")))
            case.setdefault("sample", str(spec.with_name(spec.name.replace(".contract.yaml", "")).relative_to(SHARED)))
            out.append((f"shared:{spec.name}", case))
    return out


def stage_case(case: dict):
    """The staged rows of a case's sample, as the night would stage them (no lake: references
    are not checked), and the parse result."""
    spec = case["contract"]
    if isinstance(spec, str):
        c = contract(*spec.split("/"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{spec['operator']}__{spec['feed']}.v{spec['version']}.yaml"
            path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
            c = _parse(path)
    data = require_shared(case["sample"]).read_bytes()
    name, tz = case["delivered_as"], case["timezone"]
    partition_from = c.file.get("partition_from", "name")
    day = date_from_name(c, name) if partition_from == "name" else None
    parsed = parse(c, data, name, tz, day)
    dataset = dataset_of(c)
    pseudo = Pseudonymiser(secrets.token_hex(32)) if dataset.personal else None
    when = day or date.fromisoformat(str(case.get("delivered_on", "2026-01-01")))
    ctx = Context(c.operator, "corpus", when, tz, Refs(), pseudo, partition_from=partition_from)
    return to_staged(dataset, parsed.frame, ctx), parsed


def _text(value) -> object:
    """A staged value as the expectations write it: instants in UTC ISO 8601, dates ISO."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


CASES = _cases()


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_a_real_sample_is_read_right(name: str, case: dict) -> None:
    staged, parsed = stage_case(case)
    expect = case["expect"]
    assert staged.height == expect["staged_rows"], f"{name}: staged rows"
    assert int(staged["is_valid"].sum()) == expect["valid_rows"], f"{name}: valid rows"
    assert len(expect["values"]) >= 3, f"{name}: at least three values checked by hand"
    for item in expect["values"]:
        rows = staged.filter(pl.col("source_row") == item["source_row"])
        if "where" in item:
            rows = rows.filter(pl.all_horizontal(pl.col(k) == v for k, v in item["where"].items()))
        assert rows.height >= 1, f"{name}: no staged row from line {item['source_row']}"
        got = _text(rows[item["column"]][0])
        want = item["value"]
        where = f"{name}: source_row {item['source_row']} {item['column']} ({item['from']})"
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), where
        else:
            assert got == want, where
    for warning in expect.get("warnings", []):
        assert any(warning in w for w in parsed.warnings), f"{name}: warning {warning!r} not in {parsed.warnings}"


def test_the_corpus_covers_the_real_tabular_samples() -> None:
    assert len(CASES) >= 5
