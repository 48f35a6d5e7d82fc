"""The conformance corpus: real files from operators and open-data portals, onboarded by YAML only,
each with values checked by hand against the raw file (issue #28, part 7).

A case is a YAML file in ``tests/ingestion/real/`` — or a ``<sample>.contract.yaml`` with a
``<sample>.expected.yaml`` beside a sample the city adds under ``../shared/realdata/`` — naming:
``sample`` (its path under shared/), ``delivered_as`` (the file's name in the drop), ``timezone``,
``contract`` (a configured ``operator/feed`` or the contract document itself), and ``expect``:
staged and valid row counts, and values by ``source_row`` (the line of a CSV record; a TIDES or
standard reader numbers records) or by ``where`` (column values that pick the row) and column,
each with where it was read in the raw file; an offer (GTFS, NeTEx) gives rows per table and
values by table. A reader change that alters a value fails here, naming the case and the line.
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


def _cases(shared: Path = SHARED) -> list[tuple[str, dict]]:
    out = [(p.stem, yaml.safe_load(p.read_text(encoding="utf-8"))) for p in sorted(HERE.glob("*.yaml"))]
    return out + _added_samples(shared)


def _added_samples(shared: Path) -> list[tuple[str, dict]]:
    """Samples the city put under shared/realdata with ``<sample>.contract.yaml`` and
    ``<sample>.expected.yaml`` beside them."""
    out = []
    realdata = shared / "realdata"
    for spec in sorted(realdata.rglob("*.contract.yaml")) if realdata.is_dir() else []:
        expected = spec.with_name(spec.name.replace(".contract.yaml", ".expected.yaml"))
        if expected.is_file():
            case = yaml.safe_load(expected.read_text(encoding="utf-8"))
            case.setdefault("contract", yaml.safe_load(spec.read_text(encoding="utf-8")))
            case.setdefault("sample", str(spec.with_name(spec.name.replace(".contract.yaml", "")).relative_to(shared)))
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
    if c.format in ("gtfs", "netex"):  # the network's offer: its GTFS tables
        return _offer(c, data, name), None
    partition_from = c.file.get("partition_from", "name")
    day = date_from_name(c, name) if partition_from == "name" else None
    parsed = parse(c, data, name, tz, day)
    dataset = dataset_of(c)
    pseudo = Pseudonymiser(secrets.token_hex(32)) if dataset.personal else None
    when = day or date.fromisoformat(str(case.get("delivered_on", "2026-01-01")))
    ctx = Context(c.operator, "corpus", when, tz, Refs(), pseudo, partition_from=partition_from)
    return to_staged(dataset, parsed.frame, ctx), parsed


def _offer(c, data: bytes, name: str) -> dict[str, pl.DataFrame]:
    from ingestion import gtfs
    from ingestion.standards import netex

    if c.format == "netex":
        return dict(netex.read(data, name, c.file.get("ids")).tables)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return dict(gtfs.read_feed(path).tables)


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
    if parsed is None:  # an offer: rows per table, values picked by table and where
        tables = staged
        assert {t: tables[t].height for t in expect["tables"]} == expect["tables"], f"{name}: rows per table"
        for item in expect["values"]:
            rows = tables[item["table"]].filter(pl.all_horizontal(pl.col(k) == v for k, v in item["where"].items()))
            assert rows.height == 1, f"{name}: {item['table']} {item['where']}: {rows.height} rows"
            assert rows[item["column"]][0] == item["value"], f"{name}: {item['table']} {item['where']} ({item['from']})"
        assert len(expect["values"]) >= 3, f"{name}: at least three values checked by hand"
        return
    assert staged.height == expect["staged_rows"], f"{name}: staged rows"
    assert int(staged["is_valid"].sum()) == expect["valid_rows"], f"{name}: valid rows"
    assert len(expect["values"]) >= 3, f"{name}: at least three values checked by hand"
    for item in expect["values"]:
        rows = staged.filter(pl.col("source_row") == item["source_row"]) if "source_row" in item else staged
        if "where" in item:
            rows = rows.filter(pl.all_horizontal(pl.col(k) == v for k, v in item["where"].items()))
        where = f"{name}: {item.get('source_row', item.get('where'))} {item['column']} ({item['from']})"
        assert rows.height >= 1, f"{where}: no staged row"
        got = _text(rows[item["column"]][0])
        want = item["value"]
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=item.get("tolerance", 1e-9)), where
        else:
            assert got == want, where
    for warning in expect.get("warnings", []):
        assert any(warning in w for w in parsed.warnings), f"{name}: warning {warning!r} not in {parsed.warnings}"


def test_the_corpus_covers_every_real_sample() -> None:
    """Every file of shared/realdata that a feed delivers has a case (the schema's JSON is no feed)."""
    realdata = require_shared("realdata")  # fails, never skips, when shared/ is not beside the checkout
    samples = {
        str(p.relative_to(SHARED))
        for p in realdata.rglob("*")
        if p.is_file() and p.suffix in (".csv", ".zip", ".pb", ".xml", ".json") and p.name != "schema.json"
    }
    assert samples - {case["sample"] for _, case in CASES} == set()


def test_a_sample_the_city_adds_with_its_contract_and_values_is_picked_up(tmp_path) -> None:
    folder = tmp_path / "realdata" / "parking"
    folder.mkdir(parents=True)
    (folder / "mine.csv").write_text("id\n", encoding="utf-8")
    (folder / "mine.csv.contract.yaml").write_text("operator: x\n", encoding="utf-8")
    (folder / "mine.csv.expected.yaml").write_text("delivered_as: mine.csv\n", encoding="utf-8")
    (folder / "other.csv.contract.yaml").write_text("operator: y\n", encoding="utf-8")  # no values: not a case
    assert _added_samples(tmp_path) == [
        (
            "shared:mine.csv.contract.yaml",
            {"delivered_as": "mine.csv", "contract": {"operator": "x"}, "sample": "realdata/parking/mine.csv"},
        )
    ]
