"""The CSV reader of deliveries (Arrow's, behind ingestion.tabular and parsing.decode) against the
reference, Python's csv module, on generated files: quoted delimiters, quotes and line ends,
ragged rows, blank lines, BOM, CRLF or LF, encodings. Same records, same fields, same first line
of each record."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.contracts import load_file
from ingestion.parsing import Refused, decode, parse
from ingestion.tabular import read_records, read_records_chunked, record_boundaries

# letters, the French accents, the delimiters, quotes, spaces and line ends
ALPHABET = "ab1 é€;,|\t\"'\n"


def field() -> st.SearchStrategy[str]:
    return st.one_of(st.text(ALPHABET, max_size=6), st.sampled_from(["", '"', "\r\n", "a\r\nb", '""', ";", "x\ny"]))


@st.composite
def delimited_files(draw):
    delimiter = draw(st.sampled_from([";", ",", "|", "\t"]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    width = draw(st.integers(1, 5))
    header = [f"h{i}" for i in range(width)]
    rows = draw(
        st.lists(
            st.one_of(
                st.lists(field(), min_size=width, max_size=width),  # a record of the header's width
                st.lists(field(), min_size=1, max_size=width + 2),  # a ragged record
                st.just([]),  # a blank line
            ),
            max_size=12,
        )
    )
    rows = [r for r in rows if r != [""]]  # csv.writer writes [''] as a blank line, read back as []
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    for r in rows:
        writer.writerow(r)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "iso-8859-15"]))
    return out.getvalue(), delimiter, encoding


def reference(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(first line, fields) of each record after the header, per Python's csv module."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out, line = [], 0
    for fields in reader:
        if fields:
            out.append((line + 1, fields))
        line = reader.line_num
    return out[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delimited_files())
def test_the_reader_gives_the_records_fields_and_lines_of_pythons_csv(generated) -> None:
    text, delimiter, encoding = generated
    data = text.encode(encoding)
    contract = _contract(delimiter, encoding)
    decoded, _ = decode(contract, data, "generated.csv")
    assert decoded == text  # the BOM taken off, nothing else changed
    records = read_records(decoded, delimiter)
    # a record wider than the header keeps only the header's width of fields (it is invalid)
    got = [
        (line, fields[:n] if n <= records.width else None)
        for line, n, fields in zip(
            records.frame["line"],
            records.frame["n_fields"],
            records.frame.select(pl.concat_list(pl.all().exclude("line", "n_fields"))).to_series().to_list(),
            strict=True,
        )
    ]
    expected = reference(text, delimiter)
    assert [line for line, _ in got] == [line for line, _ in expected]
    assert list(records.frame["n_fields"]) == [len(f) for _, f in expected]
    for (_, fields), (_, ref) in zip(got, expected, strict=True):
        if fields is not None:
            assert fields == ref


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delimited_files(), st.integers(1, 40))
def test_reading_in_pieces_of_any_size_gives_the_records_of_one_read(generated, size) -> None:
    """Deliveries are read a piece at a time (bounded memory): cut after a line end that follows an
    even number of quotes, every size gives the same header, records, fields and lines as one read
    of the whole text, quoted line ends, blank lines and ragged rows included."""
    text, delimiter, encoding = generated
    text = text.removeprefix("\ufeff")
    whole = read_records(text, delimiter, first_line=3)
    cuts = record_boundaries(text, size)
    assert cuts[-1] == len(text) and cuts == sorted(set(cuts))
    pieces = list(read_records_chunked(text, delimiter, first_line=3, size=size))
    assert len(pieces) == len(cuts)
    assert all(p.header == whole.header for p in pieces)
    joined = pl.concat([p.frame for p in pieces], how="vertical")
    assert joined.equals(whole.frame)


GENERATED = """\
  - {name: h0, canonical: facility_id, type: string}
  - {name: h1, canonical: facility_name, type: string, optional: true}
  - {name: h2, canonical: capacity, type: integer, optional: true}
"""


def _contract(delimiter: str, encoding: str, columns: str = GENERATED):
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(
            "operator: gen\nfeed: facilities\nversion: 1\ntitle: generated\npersonal_data: false\ngroup: parking\n"
            "staged: {dataset: parking_facilities, partition: as_of_date, builder: parking_facilities}\n"
            f"file: {{format: csv, file_name: 'x_{{service_date:%Y%m%d}}.csv', encoding: {encoding}, "
            f"delimiter: {json.dumps(delimiter)}}}\ncolumns:\n{columns}",
            encoding="utf-8",
        )
        return load_file(path)


REGISTER = """\
  - {name: id, canonical: facility_id, type: string}
  - {name: nom, canonical: facility_name, type: string, required: false, optional: true}
  - {name: adresse, canonical: address, type: string, required: false}
  - {name: places, canonical: capacity, type: integer}
"""


def test_a_field_quoted_across_lines_is_one_record_and_rows_keep_their_first_line() -> None:
    """The register that gave ~15 % more rows than records: an address on two lines is one
    record; the next record's line number counts both lines."""
    data = (
        'id,adresse,places\r\nP1,"12 rue Foch\r\nBâtiment B",120\r\nP2,"1 place de la Comédie",80\r\n'
        'P3,"dit ""le Grand""",x\r\n'
    ).encode("cp1252")
    parsed = parse(_contract(",", "cp1252", REGISTER), data, "x_20260101.csv")
    frame = parsed.frame
    assert frame.height == 3
    assert frame["address"].to_list() == ["12 rue Foch\r\nBâtiment B", "1 place de la Comédie", 'dit "le Grand"']
    assert frame["source_row"].to_list() == [2, 4, 5]
    assert frame["is_valid"].to_list() == [True, True, False]
    assert frame["invalid_reason"][2] == "column 'places': 'x' is not a integer"


def test_a_ragged_record_is_an_invalid_row_in_its_place_never_dropped() -> None:
    data = b"id,adresse,places\nP1,a,1\nP2,b\n\nP3,c,3,extra\nP4,d,4\n"
    frame = parse(_contract(",", "utf-8", REGISTER), data, "x_20260101.csv").frame
    assert frame["source_row"].to_list() == [2, 3, 5, 6]
    assert frame["invalid_reason"].to_list() == [
        None,
        "row has 2 fields, header has 3",
        "row has 4 fields, header has 3",
        None,
    ]


def test_a_quote_never_closed_refuses_the_file_naming_its_line() -> None:
    data = b'id,adresse,places\nP1,a,1\nP2,"b,2\nP3,c,3\n'
    with pytest.raises(Refused, match=r"x_20260101.csv: a quote opened on line 3 is never closed"):
        parse(_contract(",", "utf-8", REGISTER), data, "x_20260101.csv")


def test_the_wrong_delimiter_is_named() -> None:
    data = b"id;adresse;places\nP1;a;1\n"
    with pytest.raises(Refused, match=r"seems delimited by ';', the contract says file.delimiter ','"):
        parse(_contract(",", "utf-8", REGISTER), data, "x_20260101.csv")


def test_a_truncated_file_is_refused_without_showing_its_last_row() -> None:
    data = b"id,adresse,places\nP1,a,1\nP2,secret-value"
    with pytest.raises(Refused) as refused:
        parse(_contract(",", "utf-8", REGISTER), data, "x_20260101.csv")
    assert "line 3 has no line end" in str(refused.value) and "secret-value" not in str(refused.value)


def test_a_mac_roman_file_read_as_windows_1252_is_flagged_with_the_codec_to_use() -> None:
    text = "id,adresse,places\nP1,Parking de la Comédie,1\nP2,Château d'Ô,2\nP3,Hôtel de Ville,3\n"
    parsed = parse(_contract(",", "cp1252", REGISTER), text.encode("mac_roman"), "x_20260101.csv")
    assert any("looks garbled" in w and "mac_roman" in w for w in parsed.warnings), parsed.warnings
    right = parse(_contract(",", "cp1252", REGISTER), text.encode("cp1252"), "x_20260101.csv")
    assert not any("garbled" in w for w in right.warnings)


def test_a_delivery_over_the_row_budget_is_refused_before_it_is_decoded(monkeypatch) -> None:
    from ingestion import parsing

    monkeypatch.setattr(parsing, "MAX_ROWS", 5)
    data = b"id,adresse,places\n" + b"P,a,1\n" * 6
    with pytest.raises(Refused, match=r"x_20260101.csv: 7 lines, over the 5 rows one delivery may have"):
        parse(_contract(",", "utf-8", REGISTER), data, "x_20260101.csv")


JSONL_COLUMNS = """\
  - {name: h0, canonical: facility_id, type: string}
  - {name: h1, canonical: facility_name, type: string, optional: true}
  - {name: h2, canonical: capacity, type: string, optional: true}
"""


def _json_value():
    """A JSON value and the text the reader gives for it (strings as they are, others as JSON)."""
    return st.one_of(
        st.text(ALPHABET, max_size=5).map(lambda v: (v, v)),
        st.integers(-(10**12), 10**12).map(lambda v: (v, str(v))),
        st.integers(-1000, 1000).map(lambda v: (v + 0.5, f"{v + 0.5}")),
        st.booleans().map(lambda v: (v, "true" if v else "false")),
        st.just((None, None)),
    )


@st.composite
def jsonl_files(draw):
    """JSON lines: objects over the contract's columns (and an extra one), blank lines, lines that
    are not JSON or not an object; LF or CRLF. Returns the text and, per record, its line and
    either the expected texts of h0..h2 or the reason it is invalid."""
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    lines, expected = [], []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["object", "object", "object", "blank", "broken", "array"]))
        number = len(lines) + 1
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "  "])))
        elif kind == "broken":
            lines.append('{"h0": "x"')
            expected.append((number, "line is not valid JSON"))
        elif kind == "array":
            lines.append("[1, 2]")
            expected.append((number, "line is not a JSON object"))
        else:
            keys = ["h0", *draw(st.lists(st.sampled_from(["h1", "h2", "extra"]), unique=True))]  # h0 is required
            pairs = {k: draw(_json_value()) for k in keys}
            lines.append(json.dumps({k: v for k, (v, _) in pairs.items()}))
            expected.append((number, tuple(pairs[h][1] if h in pairs else None for h in ("h0", "h1", "h2"))))
    return "".join(line + terminator for line in lines), expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jsonl_files(), st.integers(1, 60))
def test_json_lines_read_in_pieces_of_any_size_give_each_records_values_and_line(generated, size) -> None:
    """Differential against Python's json, line by line: each record keeps its line (a blank line
    is no record), the text of each value (the same whatever the other lines of its piece hold),
    and a line that is not a JSON object is an invalid row; cut into pieces of any size, the same."""
    from ingestion import parsing, tabular

    text, expected = generated
    contract = _contract(",", "utf-8", JSONL_COLUMNS)
    if not expected:  # no record at all: no column either, the file is refused (an unknown schema)
        return
    whole, _ = parsing.read_jsonl_text(contract, text, "x.jsonl")
    original = tabular.CHUNK_CHARS
    try:
        tabular.CHUNK_CHARS = size
        pieces, _ = parsing.read_jsonl_text(contract, text, "x.jsonl")
    finally:
        tabular.CHUNK_CHARS = original
    assert pieces.equals(whole)
    assert whole[parsing.SOURCE_ROW].to_list() == [n for n, _ in expected]
    for row, (_, want) in zip(whole.iter_rows(named=True), expected, strict=True):
        if isinstance(want, str):
            assert row["_shape_reason"] == want
        else:
            assert row["_shape_reason"] is None
            assert tuple(row.get(h) for h in ("h0", "h1", "h2")) == want
