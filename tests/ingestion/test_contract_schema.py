"""Extract contracts are typed documents checked when read (issue #28, classes 2 and 3), the row's
own date decides where it lands (class 4), one unit of count (class 5), and `contract check`
says what it read with exit codes a person can trust (class 7)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citylake.cli import main
from ingestion.contracts import load_file
from ingestion.contracts.schema import BUILDER_REQUIREMENTS, ContractError, json_schema, validate
from ingestion.feeds import BUILDERS, Context, Refs, dataset_of, to_staged
from ingestion.parsing import parse
from tests.support.city import ingested, onboard

APC = {
    "operator": "apcvendor",
    "feed": "apc",
    "version": 1,
    "title": "Comptages",
    "personal_data": False,
    "group": "transit",
    "staged": {"dataset": "passenger_events", "partition": "service_date", "builder": "passenger_events"},
    "file": {"format": "csv", "file_name": "comptages_{service_date:%Y%m%d}.csv", "delimiter": ","},
    "columns": [
        {"name": "vehicule", "canonical": "vehicle_id", "type": "string"},
        {"name": "course", "canonical": "trip_id", "type": "string"},
        {"name": "arret", "canonical": "stop_id", "type": "string"},
        {"name": "rang", "canonical": "stop_sequence", "type": "integer"},
        {"name": "heure", "canonical": "actual_arrival_at", "type": "datetime_local", "format": "%Y-%m-%d %H:%M:%S"},
        {"name": "montees", "canonical": "boardings", "type": "integer", "min": 0},
        {"name": "descentes", "canonical": "alightings", "type": "integer", "min": 0},
    ],
}
APC_FILE = (
    "vehicule,course,arret,rang,heure,montees,descentes\n"
    "290,T1,1239,1,2026-03-30 07:30:00,3,0\n"
    "290,T1,1240,2,2026-03-29 07:35:00,2,1\n"  # a row of the day before, in the 30th's file
)


def _write(tmp_path: Path, doc: dict, name: str = "apcvendor__apc.v1.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _with(path: str, value) -> dict:
    """APC with one key changed (or deleted: _DELETE), by a dotted path (list items by index)."""
    return _with_doc(json.loads(json.dumps(APC)), path, value)


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("columns.4.type", "datetim_local"), "columns[4].type: 'datetim_local' is not allowed; use 'string'"),
        (("file.delimitter", ";"), "file.delimitter: unknown key"),
        (("columns.0.requried", False), "columns[0].requried: unknown key"),
        (("file.format", "siri"), "format siri needs file.records in ['passages', 'positions'], not None"),
        (("columns.1", _DELETE), "builder passenger_events needs canonical column(s) ['trip_id']"),
        (("staged.dataset", "stop_visits"), "builder passenger_events builds dataset passenger_events"),
        (("staged.builder", "passenger_event"), "staged.builder: 'passenger_event' is not allowed"),
        (("file.ids", {"stops": {"pattern": "x"}}), "file.ids.stops"),
        (("file.ids", {"stop": {"pattern": "(unclosed"}}), "file.ids.stop.pattern: not a regular expression"),
        (("file.ids", {"stop": {"offset": "minus 20000"}}), "file.ids.stop.offset"),
        (("file.file_name", "x_{service_date:%d%m%Y}.csv"), "a name is dated by {service_date:%Y%m%d}"),
        (("columns.4.format", _DELETE), "type datetime_local needs format"),
        (("file.encoding", "latin-9x"), "'latin-9x' is not a codec Python knows"),
    ],
)
def test_a_wrong_contract_is_refused_when_read_naming_the_key_and_the_fix(tmp_path, change, expected) -> None:
    doc = _with(*change)
    with pytest.raises(ContractError) as refused:
        validate(doc, "apcvendor__apc.v1.yaml")
    assert expected in str(refused.value) and str(refused.value).startswith("apcvendor__apc.v1.yaml: ")
    # contract check: exit 2, the reason on stderr, no traceback
    (tmp_path / "comptages_20260330.csv").write_text(APC_FILE, encoding="utf-8")
    sample = str(tmp_path / "comptages_20260330.csv")
    code = main(["contract", "check", sample, "--contract", str(_write(tmp_path, doc))])
    assert code == 2


def test_every_shipped_contract_is_valid_and_the_published_schema_is_the_model() -> None:
    shipped = Path(__file__).resolve().parents[2] / "ingestion" / "contracts"
    for path in sorted(shipped.glob("*.yaml")):
        validate(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)
    published = Path(__file__).resolve().parents[2] / "docs" / "contract.schema.json"
    assert json.loads(published.read_text(encoding="utf-8")) == json_schema(), (
        "docs/contract.schema.json is stale: python -m ingestion.contracts.schema"
    )


def test_every_builder_states_what_it_needs() -> None:
    assert set(BUILDERS) | {"gtfs"} == set(BUILDER_REQUIREMENTS)


# -- no contract, valid or not, ends in a traceback ---------------------------------------------
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "x", "string", "integer", "rows", "passages", "csv", "siri", ";", "%Y", "{service_date}"]),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
    st.dictionaries(st.sampled_from(["stop", "pattern", "x"]), st.sampled_from(["^(?P<id>.+)$", "("]), max_size=2),
)
_PATHS = [
    "title",
    "group",
    "staged.builder",
    "staged.dataset",
    "staged.partition",
    "file.format",
    "file.delimiter",
    "file.encoding",
    "file.records",
    "file.partition_from",
    "file.skip_rows",
    "file.ids",
    "file.layout",
    "columns.0.type",
    "columns.3.canonical",
    "columns.4.format",
    "columns.5.min",
    "columns.6.values",
    "columns.2.optional",
    "file.wide",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_VALUES, st.just(_DELETE))), min_size=1, max_size=3),
    st.sampled_from([APC_FILE, APC_FILE.replace(",", ";"), APC_FILE[:40], "", "\ufeff" + APC_FILE]),
)
def test_no_contract_valid_or_not_ends_in_a_traceback(tmp_path_factory, changes, sample) -> None:
    doc = _mutated(changes)
    folder = tmp_path_factory.mktemp("generated")
    (folder / "comptages_20260330.csv").write_text(sample, encoding="utf-8")
    contract_file = _write(folder, doc)
    try:
        load_file(contract_file)
    except ContractError as exc:
        assert str(exc).startswith(str(contract_file))
    code = main(["contract", "check", str(folder / "comptages_20260330.csv"), "--contract", str(contract_file)])
    assert code in (0, 1, 2)


def _mutated(changes: list[tuple[str, object]]) -> dict:
    """APC with generated changes applied (a path that no longer exists is passed over)."""
    doc = json.loads(json.dumps(APC))
    for path, value in changes:
        try:
            doc = _with_doc(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def _with_doc(doc: dict, path: str, value) -> dict:
    keys = path.split(".")
    target = doc
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if isinstance(target, list):
        if value is _DELETE:
            del target[int(last)]
        else:
            target[int(last)] = value
    elif value is _DELETE:
        target.pop(last, None)
    else:
        target[last] = value
    return doc


def test_a_broken_city_contract_is_a_clear_error_of_ingest_never_a_traceback(tmp_path, monkeypatch) -> None:
    from citylake.core.errors import ConfigError
    from ingestion.run import ingest

    doc = _with("columns.4.type", "datetim_local")
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  apcvendor:\n    name: APC vendor\n    drop: {type: root, path: apcvendor}\n    feeds: [apc]\n",
        {"apcvendor__apc.v1.yaml": yaml.safe_dump(doc)},
        {"apcvendor/apc/comptages_20260330.csv": APC_FILE.encode()},
    )
    with pytest.raises(ConfigError, match=r"apcvendor__apc.v1.yaml: columns\[4\].type: 'datetim_local'"):
        ingest(settings, progress=False)


# -- the row's own date --------------------------------------------------------------------------
def test_a_row_of_another_day_in_a_dated_file_is_invalid_giving_both_dates(tmp_path, monkeypatch) -> None:
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  apcvendor:\n    name: APC vendor\n    drop: {type: root, path: apcvendor}\n    feeds: [apc]\n",
        {"apcvendor__apc.v1.yaml": yaml.safe_dump(APC)},
        {"apcvendor/apc/comptages_20260330.csv": APC_FILE.encode()},
    )
    staged = ingested(settings, "apcvendor", "passenger_events").sort("source_row")
    assert set(staged["service_date"]) == {date(2026, 3, 30)}
    bad = staged.filter(~pl.col("is_valid"))
    assert bad["source_row"].unique().to_list() == [3]
    assert bad["invalid_reason"][0] == (
        "event_timestamp 2026-03-29 07:35:00 local (2026-03-29 05:35:00 UTC) is on service day 2026-03-29, "
        "not the file's 2026-03-30 (a service day runs 02:00 to 30:00 local)"
    )


def test_rows_filed_by_their_own_date_land_under_it(tmp_path, monkeypatch) -> None:
    doc = _with("file.partition_from", "rows")
    doc["file"]["file_name"] = "comptages.csv"
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  apcvendor:\n    name: APC vendor\n    drop: {type: root, path: apcvendor}\n    feeds: [apc]\n",
        {"apcvendor__apc.v1.yaml": yaml.safe_dump(doc)},
        {"apcvendor/apc/comptages.csv": (APC_FILE + "290,T1,1241,3,,1,1\n").encode()},
    )
    staged = ingested(settings, "apcvendor", "passenger_events").sort("source_row", "event_type")
    by_row = {r: d for r, d in staged.select("source_row", "service_date").unique().iter_rows()}
    assert by_row[2] == date(2026, 3, 30) and by_row[3] == date(2026, 3, 29)
    assert staged.filter(pl.col("source_row") == 3)["is_valid"].all()
    # a row with no date of its own is kept, invalid, never dropped
    undated = staged.filter(pl.col("source_row") == 4)
    assert undated.height == 2 and not undated["is_valid"].any()


# -- one unit of count, over every builder --------------------------------------------------------
@pytest.mark.parametrize("builder", sorted(b for b, r in BUILDER_REQUIREMENTS.items() if r.needs))
def test_every_builder_honours_the_row_date_and_counts_in_one_unit(builder: str) -> None:
    """A synthetic delivery for each tabular builder, from its requirements: two rows of the file's
    day and one of the day before; valid + invalid = staged rows; the other day's row invalid
    (or, for builders of registers, no date rule)."""
    need = BUILDER_REQUIREMENTS[builder]
    columns = [*need.needs, *need.one_of[:1]]
    day = ["2026-03-30 07:30:00", "2026-03-30 07:31:00", "2026-03-29 07:32:00"]
    typed = {
        "service_date": ("date", ["2026-03-30", "2026-03-30", "2026-03-29"]),
        "local_date": ("date", ["2026-03-30", "2026-03-30", "2026-03-29"]),
        "local_time": ("string", ["07:30", "07:35", "07:40"]),
        "validated_at": ("datetime_local", day),
        "actual_arrival_at": ("datetime_local", day),
        "actual_departure_at": ("datetime_local", day),
        "observed_at": ("datetime_local", ["2026-03-30 07:30:00", "2026-03-30 07:35:00", "2026-03-29 23:55:00"]),
        "opened_at": ("datetime_local", ["2026-03-30 07:30:00", "2026-03-30 07:35:00", "2026-03-29 23:55:00"]),
        "closed_at": ("datetime_local", ["2026-03-30 09:30:00", "2026-03-30 09:35:00", "2026-03-30 01:55:00"]),
    }
    ints = {"stop_sequence", "boardings", "alightings", "seated_capacity", "standing_capacity", "capacity", "free"}
    ints |= {"occupied"}
    spec_columns, values = [], {}
    for c in columns:
        text = ["a", "b", "c"] if c == "facility_name" else [f"{c}-{i}" for i in range(3)]  # each column its own
        kind, vals = typed.get(c, ("integer", ["10", "11", "12"]) if c in ints else ("string", text))
        col = {"name": c, "canonical": c, "type": kind}
        if kind == "datetime_local":
            col["format"] = "%Y-%m-%d %H:%M:%S"
        spec_columns.append(col)
        values[c] = vals
    doc = {
        "operator": "gen",
        "feed": "feed",
        "version": 1,
        "title": builder,
        "personal_data": builder == "fare_transactions",
        "group": "transit",
        "staged": {"dataset": need.dataset, "partition": need.partition, "builder": builder},
        "file": {"format": "csv", "file_name": "f_{service_date:%Y%m%d}.csv", "delimiter": ","},
        "columns": spec_columns,
    }
    from ingestion.contracts import _parse

    with_path = Path(__import__("tempfile").mkdtemp()) / "gen__feed.v1.yaml"
    with_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    c = _parse(with_path)
    text = ",".join(columns) + "\n" + "".join(",".join(values[col][i] for col in columns) + "\n" for i in range(3))
    parsed = parse(c, text.encode(), "f_20260330.csv", "Europe/Paris", date(2026, 3, 30))
    dataset = dataset_of(c)
    from ingestion.pseudonym import Pseudonymiser

    pseudo = Pseudonymiser("k" * 32) if dataset.personal else None
    refs = Refs(facilities_by_name={"a": "P-A", "b": "P-B", "c": "P-C"})  # the register, for named readings
    staged = to_staged(dataset, parsed.frame, Context("gen", "sha", date(2026, 3, 30), "Europe/Paris", refs, pseudo))
    valid = int(staged["is_valid"].sum())
    assert valid + staged.filter(~pl.col("is_valid")).height == staged.height
    if need.row_date is None:
        return
    assert set(staged.filter(pl.col("source_row") < 4)["is_valid"]) == {True}, staged["invalid_reason"].to_list()
    other = staged.filter(pl.col("source_row") == 4)
    assert not other["is_valid"].any() and "2026-03-30" in other["invalid_reason"][0]
    assert "2026-03-29" in other["invalid_reason"][0]


# -- contract check ---------------------------------------------------------------------------------
def test_contract_check_shows_what_it_read_and_exits_0_when_every_row_is_valid(tmp_path, capsys) -> None:
    contract_file = _write(tmp_path, APC)
    sample = tmp_path / "comptages_20260330.csv"
    sample.write_text("\ufeff" + APC_FILE.splitlines(keepends=True)[0] + APC_FILE.splitlines(keepends=True)[1])
    assert main(["contract", "check", str(sample), "--contract", str(contract_file)]) == 0
    out = capsys.readouterr().out
    assert "staged rows: 2 = 2 valid + 0 invalid (from 1 records of the file)" in out
    assert "event_timestamp=2026-03-30 07:30:00+0200 local = 2026-03-30 05:30:00 UTC" in out
    assert "stop_id=1239" in out and "event_count=3" in out
    sample.write_text(APC_FILE)
    assert main(["contract", "check", str(sample), "--contract", str(contract_file)]) == 1
    out = capsys.readouterr().out
    assert "lines 3; first: event_timestamp 2026-03-29 07:35:00 local" in out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_VALUES, st.just(_DELETE))), min_size=1, max_size=3),
    st.sampled_from([APC_FILE, APC_FILE.replace(",", ";"), APC_FILE[:40], "\ufeff" + APC_FILE]),
)
def test_no_contract_valid_or_not_ends_in_a_traceback_of_ingest(tmp_path_factory, changes, sample) -> None:
    """`citylake ingest` with a generated city contract: exit 0 or 1 with its message, every time."""
    from ingestion import registry  # each example's city folder is new: the caches keyed by it start empty

    doc = _mutated(changes)
    root = tmp_path_factory.mktemp("city")
    config = root / "city"
    (config / "contracts").mkdir(parents=True)
    shipped = registry.CONFIG.read_text(encoding="utf-8")
    entry = "  apcvendor:\n    name: APC vendor\n    drop: {type: root, path: apcvendor}\n    feeds: [apc]\n"
    (config / "operators.yaml").write_text(shipped.rstrip() + "\n" + entry, encoding="utf-8")
    _write(config / "contracts", doc)
    drop = root / "drop" / "apcvendor" / "apc"
    drop.mkdir(parents=True)
    (drop / "comptages_20260330.csv").write_text(sample, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CITYLAKE_CONFIG_DIR", str(config))
        mp.setenv("CITYLAKE_LAKE_URI", (root / "lake").as_uri())
        mp.setenv("CITYLAKE_DROP_ROOT", (root / "drop").as_uri())
        assert main(["ingest", "--operator", "apcvendor", "--no-progress"]) in (0, 1)
