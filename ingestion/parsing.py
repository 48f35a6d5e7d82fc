"""Parse a delivery against its extract contract into typed rows, each valid or not and why.

Three outcomes:

* the file is **refused** (:class:`Refused`, it goes to quarantine): bytes that are not text in
  any encoding we can repair, a file cut in the middle of a row, a header that lacks contract
  columns (unknown schema);
* it is **parsed with warnings** (UTF-8 delivered where Windows-1252 was promised, columns
  reordered or added: parsed by name);
* every row gets ``is_valid`` and ``invalid_reason`` (``column 'X': 'value' is not …``), and
  rows are never dropped.

Local wall-clock times become UTC: on the October DST day the repeated hour is resolved by the
file's chronological order (the first pass is summer time, the second winter time); a time
inside the March gap does not exist and makes its row invalid.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from citylake.core.errors import ConfigError, DataError
from ingestion.contracts import Column, Contract
from ingestion.masking import shown

SOURCE_ROW = "source_row"


class Refused(DataError):
    """The file cannot be parsed at all: it goes to quarantine with this reason."""


@dataclass
class Parsed:
    frame: pl.DataFrame  # canonical typed columns + source_row, is_valid, invalid_reason
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def records(self) -> int:
        """The file's records (a wide file's row holds several readings, each a row here)."""
        return self.frame["source_row"].n_unique() if self.frame.height else 0

    def invalid_counts(self) -> dict[str, int]:
        bad = self.frame.filter(~pl.col("is_valid"))
        if not bad.height:
            return {}
        reasons = (
            bad.select(pl.col("invalid_reason").str.replace(r": '.*' ", ": <value> ").alias("r")).group_by("r").len()
        )
        return {r: int(n) for r, n in reasons.sort("len", descending=True).iter_rows()}


# -- hostile input -------------------------------------------------------------------------
#: No row of any contract comes near these (a metro validation line is ~100 bytes, an AVL line
#: ~400); beyond them a file is refused before it is decoded or split, so a 2 GB line or a
#: million columns cannot take the parser's memory or time.
MAX_LINE_BYTES = 1024 * 1024
MAX_COLUMNS = 1000
#: Rows one text delivery may have: a metro's day of validations is ~1.5 M; a file of 20 M rows
#: is no daily extract (counted as line ends, before decoding).
MAX_ROWS = 20_000_000
#: Bytes one text delivery (CSV, JSON lines) may have: 6× a metro day of validations (170 MB).
#: Reading and typing it takes about 10× its size at peak (``make bench-memory``), so a worker
#: of 16 GiB reads any delivery the budget lets through.
MAX_TEXT_BYTES = 1024**3


def longest_line(data: bytes, chunk: int = 64 * 1024 * 1024) -> int:
    """Return the length in bytes of the longest line, scanning 64 MB at a time (numpy)."""
    import numpy as np

    longest, start = 0, 0  # start: offset where the current line began
    for base in range(0, len(data), chunk):
        view = np.frombuffer(memoryview(data)[base : base + chunk], dtype=np.uint8)
        ends = np.flatnonzero(view == 10) + base
        if len(ends):
            longest = max(longest, int(ends[0] - start), int(np.diff(ends).max(initial=0)) - 1 if len(ends) > 1 else 0)
            start = int(ends[-1]) + 1
    return max(longest, len(data) - start)


def check_shape(contract: Contract, data: bytes, name: str) -> None:
    """Refuse a text delivery of more than MAX_TEXT_BYTES bytes or MAX_ROWS lines, or whose
    longest line exceeds MAX_LINE_BYTES."""
    if len(data) > MAX_TEXT_BYTES:
        raise Refused(f"{name}: {len(data):,} bytes, over the {MAX_TEXT_BYTES:,} one text delivery may have")
    if len(data) > MAX_ROWS and (rows := data.count(b"\n")) > MAX_ROWS:
        raise Refused(f"{name}: {rows:,} lines, over the {MAX_ROWS:,} rows one delivery may have")
    if len(data) > MAX_LINE_BYTES and (n := longest_line(data)) > MAX_LINE_BYTES:
        raise Refused(
            f"{name}: a line of {n:,} bytes, over the {MAX_LINE_BYTES:,}-byte limit of any {contract.key} row"
        )


# -- decoding ------------------------------------------------------------------------------
def decode(contract: Contract, data: bytes, name: str) -> tuple[str, list[str]]:
    """Return the text of a delivery and warnings, or raise Refused."""
    expected = contract.file.get("encoding", "utf-8").lower()
    warnings: list[str] = []
    used = expected
    if b"\x00" in data[:65536] and not expected.startswith(("utf-16", "utf-32", "utf16", "utf32")):
        raise Refused(f"{name}: binary content (NUL bytes, e.g. UTF-16): not {expected} text")
    if expected in ("cp1252", "windows-1252"):
        try:
            text = data.decode("utf-8")
            used = "utf-8"
            if any(ord(ch) > 127 for ch in text[:200_000]):
                warnings.append(f"{name}: delivered in UTF-8 while the contract says Windows-1252; decoded as UTF-8")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError as exc:
                raise Refused(
                    f"{name}: not Windows-1252 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
                ) from None
    elif expected in ("utf-8", "utf8"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    else:  # any codec Python knows (latin-1, iso-8859-15, mac-roman, cp850, utf-16…), as the contract says
        import codecs

        try:
            codecs.lookup(expected)
        except LookupError:
            raise Refused(f"{name}: the contract's encoding {expected!r} is not a codec Python knows") from None
        try:
            text = data.decode(expected)
        except UnicodeDecodeError as exc:
            raise Refused(f"{name}: not {expected} text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    warnings += _mojibake(data, used, name)
    return text.removeprefix("\ufeff"), warnings


#: The codecs French operators' exports come in: what a wrong ``file.encoding`` is compared with.
_USUAL_CODECS = ("utf_8", "cp1252", "iso8859_15", "mac_roman", "cp850")


def _mojibake(data: bytes, expected: str, name: str) -> list[str]:
    """A warning when the contract's codec reads the text worse than another usual one does,
    as charset-normalizer ranks them (a Mac Roman file read as Windows-1252: 'ComŽdie')."""
    import codecs
    import re

    from charset_normalizer import from_bytes

    if data.isascii():  # nothing a codec could read two ways
        return []
    first = re.search(rb"[\x80-\xff]", data)
    if first is None:
        return []
    start = data.rfind(b"\n", 0, first.start()) + 1
    sample = data[start : start + 64 * 1024]
    sample = sample[: sample.rfind(b"\n") + 1] or sample
    ours = codecs.lookup(expected).name
    candidates = list(dict.fromkeys([ours, *(codecs.lookup(c).name for c in _USUAL_CODECS)]))
    try:
        ranked = list(from_bytes(sample, cp_isolation=candidates))
    except Exception:  # a library's failure to guess is no reason to refuse a file
        return []
    if not ranked:
        return []
    best = ranked[0]
    mine = next((m for m in ranked if codecs.lookup(m.encoding).name == ours), None)
    if codecs.lookup(best.encoding).name == ours or (mine is not None and mine.chaos <= best.chaos):
        return []
    try:
        if sample.decode(ours, errors="replace") == sample.decode(best.encoding):
            return []
    except UnicodeDecodeError:
        return []
    line = data.count(b"\n", 0, first.start()) + 1
    return [
        f"{name}: decoded as {expected} (file.encoding), the text from line {line:,} looks garbled; "
        f"charset-normalizer reads it as {best.encoding}: check the contract's file.encoding"
    ]


# -- reading into a frame of strings ---------------------------------------------------------
def _wide(contract: Contract) -> dict | None:
    """The wide layout of a contract (one column per car park, stop or vehicle), if it has one:
    ``{key: header naming the ids, value: header naming the cells, blank: no_reading|unchanged}``."""
    if contract.file.get("layout", "long") != "wide":
        return None
    wide = dict(contract.file.get("wide") or {})
    if (
        not wide.get("key")
        or not wide.get("value")
        or wide.get("blank", "no_reading") not in ("no_reading", "unchanged")
    ):
        raise ConfigError(
            f"extract contract {contract.key} v{contract.version}: layout wide needs "
            "wide: {key: …, value: …, blank: no_reading | unchanged}"
        )
    return wide


def _delimiter_hint(header: list[str], delimiter: str | None) -> str:
    """When a header reads as one column holding another usual delimiter: say so."""
    if delimiter is None or len(header) != 1:
        return ""
    for other in (";", ",", "\t", "|"):
        if other != delimiter and other in header[0]:
            return (
                f" (the header is one column holding {other!r}: the file seems delimited by {other!r}, "
                f"the contract says file.delimiter {delimiter!r})"
            )
    return ""


def _header_check(contract: Contract, header: list[str], name: str, delimiter: str | None = None) -> list[str]:
    wide = _wide(contract)
    expected = [h for h in contract.headers if not wide or h not in (wide["key"], wide["value"])]
    missing = [h for h in expected if h not in header]
    hint = _delimiter_hint(header, delimiter)
    if wide:
        if missing:
            raise Refused(
                f"{name}: unknown schema for {contract.key} v{contract.version}: missing columns {missing}{hint}"
            )
        if len(header) == len(expected):
            raise Refused(f"{name}: a wide file with no column of {wide['key']!r} beside {expected}")
        return []
    extra = [h for h in header if h not in expected]
    optional = [h for h in missing if contract.columns[contract.headers.index(h)].optional]
    missing = [h for h in missing if h not in optional]
    if missing:
        raise Refused(
            f"{name}: unknown schema for {contract.key} v{contract.version}: missing columns {missing}"
            + (f", unexpected columns {extra}" if extra else "")
            + hint
        )
    warnings = []
    if optional:
        warnings.append(f"{name}: optional columns {optional} absent: staged as empty")
    if extra:
        named = [h for h in extra if h.strip()]
        unnamed = len(extra) - len(named)  # a sheet's formatted but empty cells give hundreds
        listed = f"extra columns {named}" if named else ""
        if unnamed:
            listed += (" and " if named else "") + f"{unnamed:,} unnamed column(s)"
        warnings.append(f"{name}: schema drift tolerated: {listed} ignored")
    if [h for h in header if h in expected] != [h for h in expected if h not in optional]:
        warnings.append(f"{name}: schema drift tolerated: columns in another order, read by name")
    return warnings


def _skip_rows(contract: Contract) -> int:
    """Lines (rows of a sheet) before the header: a vendor's title, export date, blank line."""
    skip = contract.file.get("skip_rows", 0)
    if not isinstance(skip, int) or skip < 0:
        raise ValueError(f"extract contract {contract.key} v{contract.version}: file.skip_rows must be an integer >= 0")
    return skip


def read_csv_text(contract: Contract, text: str, name: str) -> tuple[pl.DataFrame, list[str]]:
    """Return the rows as strings (vendor headers) plus ``source_row`` (the first line of the
    record in the file, lines before the header included), and warnings. Records are read by an
    RFC 4180 reader (:mod:`ingestion.tabular`): quoted fields may hold delimiters, quotes and
    line ends."""
    from ingestion import tabular

    if not text:
        raise Refused(f"{name}: empty file, no header")
    if not text.endswith(("\n", "\r")):
        last = tabular.line_count(text)
        raise Refused(f"{name}: truncated, the file ends in the middle of a row (line {last:,} has no line end)")
    delim = contract.file["delimiter"]
    skip = _skip_rows(contract)
    body, skipped = tabular.skip_lines(text, skip)
    if skipped < skip or not body:
        raise Refused(f"{name}: {skipped} line(s), fewer than the {skip} the contract says come before the header")
    wide = _wide(contract)
    parts, warnings, keep = [], [], []
    try:
        # a piece at a time: the reader's working memory is a piece's (about 32 MB), the frames
        # of strings it leaves are kept (profiled on a metro day of validations: one read of the
        # whole 170 MB file took 0.9 GB more than the rows it gave)
        for records in tabular.read_records_chunked(body, delim, first_line=skip + 1, max_columns=MAX_COLUMNS):
            header = records.header
            if not parts:
                warnings = _header_check(contract, header, name, delim)
                keep = [h for h in header if wide or h in contract.headers]
            parts.append(
                records.frame.select(
                    *(pl.col(f"f{header.index(h)}").alias(h) for h in keep),
                    pl.col("line").alias(SOURCE_ROW),
                    pl.when(pl.col("n_fields") != len(header))
                    .then(pl.format("row has {} fields, header has " + str(len(header)), pl.col("n_fields")))
                    .otherwise(None)
                    .alias("_shape_reason"),
                )
            )
    except tabular.UnreadableText as exc:
        raise Refused(f"{name}: {exc}") from None
    except ValueError as exc:
        raise Refused(f"{name}: {exc} ({contract.key} expects {len(contract.headers)})") from None
    out = pl.concat(parts, how="vertical", rechunk=False)
    return (_unpivot(out, contract, wide) if wide else out), warnings


def _unpivot(frame: pl.DataFrame, contract: Contract, wide: dict) -> pl.DataFrame:
    """A wide file as long rows: one per (file row, wide column), the column's header as the key.
    A blank cell is no reading (dropped), or the previous value of that column (``unchanged``)."""
    fixed = [h for h in contract.headers if h in frame.columns and h not in (wide["key"], wide["value"])]
    index = [*fixed, SOURCE_ROW, "_shape_reason"]
    columns = [c for c in frame.columns if c not in index]
    long = frame.unpivot(index=index, on=columns, variable_name=wide["key"], value_name=wide["value"])
    value = pl.col(wide["value"]).str.strip_chars()
    long = long.with_columns(pl.when(value == "").then(None).otherwise(value).alias(wide["value"]))
    if wide.get("blank", "no_reading") == "unchanged":
        long = long.sort(SOURCE_ROW).with_columns(pl.col(wide["value"]).forward_fill().over(wide["key"]))
    order = {c: i for i, c in enumerate(columns)}
    return (
        long.filter(pl.col(wide["value"]).is_not_null())
        .with_columns(pl.col(wide["key"]).replace_strict(order, return_dtype=pl.Int64).alias("_order"))
        .sort(SOURCE_ROW, "_order")
        .drop("_order")
    )


def _ndjson_as_text(data: bytes, headers: list[str]) -> pl.DataFrame:
    """Polars' reading of whole JSON lines, the contract's columns as the text of their JSON values
    (``1``, ``1.5``, ``true``): the same text whatever the other lines hold, so a value reads the
    same in any piece of the file. Raises on a line that is not a JSON object."""
    # from bytes: polars reads a StringIO three times slower (profiled on a metro AVL day)
    try:
        return pl.read_ndjson(
            io.BytesIO(data), infer_schema_length=None, schema_overrides={h: pl.Utf8 for h in headers}
        )
    except pl.exceptions.PolarsError:  # a contract column no line carries, or an extra key of mixed types
        keys: dict[str, None] = {}
        for line in data.decode("utf-8").split("\n"):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("a line that is not a JSON object") from None
                keys.update(dict.fromkeys(obj))
        frame = pl.read_ndjson(io.BytesIO(data), schema={h: pl.Utf8 for h in headers if h in keys})
        return frame.with_columns(pl.lit(None, pl.Utf8).alias(k) for k in keys if k not in headers)


def _as_text(value) -> str | None:
    """A JSON value as ``_ndjson_as_text`` gives it, for the lines Polars cannot read."""
    return value if value is None or isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _jsonl_piece(piece: str, headers: list[str], first_line: int) -> pl.DataFrame:
    """The records of some whole lines of a JSON-lines file (the first is line ``first_line``):
    the contract's columns as text, ``source_row`` the record's line, ``_shape_reason`` for a line
    that is not a JSON object (kept as an invalid row). A blank line is no record."""
    lines = piece.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the piece's last line end
    numbered = [(first_line + i, ln) for i, ln in enumerate(lines) if ln.strip()]
    rows = pl.Series(SOURCE_ROW, [n for n, _ in numbered], dtype=pl.Int64)
    try:
        frame = _ndjson_as_text(piece.encode("utf-8"), headers)
        if frame.height != len(numbered):
            raise ValueError("polars and the line count disagree")
        return frame.with_columns(rows, pl.lit(None, pl.Utf8).alias("_shape_reason"))
    except Exception:  # noqa: BLE001 - a bad line somewhere: the good ones read alone, the bad kept as invalid rows
        pass
    good, bad = [], []
    for number, ln in numbered:
        try:
            obj = json.loads(ln)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            bad.append((number, "line is not valid JSON"))
            continue
        if isinstance(obj, dict):
            good.append((number, ln))
        else:
            bad.append((number, "line is not a JSON object"))
    parts = []
    if good:
        try:
            frame = _ndjson_as_text("\n".join(ln for _, ln in good).encode("utf-8"), headers)
        except Exception:  # noqa: BLE001 - objects Polars will not read (nested values…): Python's reading
            objects = [json.loads(ln) for _, ln in good]
            keys = list(dict.fromkeys(k for obj in objects for k in obj))
            frame = pl.DataFrame(
                {k: [_as_text(obj.get(k)) for obj in objects] for k in keys}, schema={k: pl.Utf8 for k in keys}
            )
        parts.append(
            frame.with_columns(
                pl.Series(SOURCE_ROW, [n for n, _ in good], dtype=pl.Int64),
                pl.lit(None, pl.Utf8).alias("_shape_reason"),
            )
        )
    if bad:  # empty in every column of the contract (a file of bad lines is invalid rows, not another schema)
        parts.append(
            pl.DataFrame(
                {
                    **{h: [None] * len(bad) for h in headers},
                    SOURCE_ROW: [n for n, _ in bad],
                    "_shape_reason": [r for _, r in bad],
                },
                schema={**{h: pl.Utf8 for h in headers}, SOURCE_ROW: pl.Int64, "_shape_reason": pl.Utf8},
            )
        )
    if not parts:
        return pl.DataFrame(schema={SOURCE_ROW: pl.Int64, "_shape_reason": pl.Utf8})
    return pl.concat(parts, how="diagonal_relaxed").sort(SOURCE_ROW)


def read_jsonl_text(contract: Contract, text: str, name: str) -> tuple[pl.DataFrame, list[str]]:
    """Return the rows of a JSON-lines file as strings plus ``source_row`` (its line), and
    warnings. Read a piece of whole lines at a time (about 32 MB: a JSON line holds no raw line
    end), so the parser's working memory is a piece's, not the file's; a property test cuts
    generated files at every size and compares with one read."""
    from ingestion import tabular

    last_end = text.rfind("\n", 0, len(text) - 1) + 1
    if text and not text.endswith("\n") and text[last_end:].strip():
        try:
            json.loads(text[last_end:])
        except (ValueError, RecursionError):
            lines = text.count("\n", 0, last_end) + 1
            raise Refused(f"{name}: truncated, the last line ({lines:,}) is not complete JSON") from None
    headers = list(contract.headers)
    parts, seen, first, start = [], {}, 1, 0  # seen: the keys met, in the order the lines give them
    while start < len(text):
        cut = text.find("\n", start + tabular.CHUNK_CHARS)
        cut = len(text) if cut < 0 else cut + 1
        piece = text[start:cut]
        frame = _jsonl_piece(piece, headers, first)
        seen.update((c, None) for c in frame.columns if c not in (SOURCE_ROW, "_shape_reason"))
        parts.append(
            frame.select(
                *(pl.col(h).cast(pl.Utf8) if h in frame.columns else pl.lit(None, pl.Utf8).alias(h) for h in headers),
                pl.col(SOURCE_ROW),
                pl.col("_shape_reason"),
            )
        )
        first += piece.count("\n")
        start = cut
    if not parts:
        return pl.DataFrame({h: pl.Series([], dtype=pl.Utf8) for h in headers}).with_columns(
            pl.Series(SOURCE_ROW, [], dtype=pl.Int64), pl.lit(None, pl.Utf8).alias("_shape_reason")
        ), []
    warnings = _header_check(contract, list(seen), name)
    frame = pl.concat(parts, how="vertical", rechunk=False)
    # a column no line carries is absent, as in the file: type_rows adds it, null, if optional
    return frame.drop([h for h in headers if h not in seen]), warnings


#: A sheet's rows are read from its cells as they stream (never from the ``<dimension>`` it
#: claims): past Excel's own limit, or after a run of empty rows this long, the file is refused
#: before the rows are kept; trailing empty rows are not rows.
MAX_SHEET_ROWS = 1_048_576
MAX_EMPTY_RUN = 10_000


def _check_sheet_extent(data: bytes, ws, name: str, sheet: str) -> None:
    """Read the rows' numbers from the sheet's XML as it streams (lxml), before openpyxl fills
    the gaps between them one empty row at a time (a cell at row 10,000,000 would take minutes):
    refuse a row past Excel's limit, or after a run of empty rows over MAX_EMPTY_RUN."""
    import zipfile

    from lxml import etree

    path = getattr(ws, "_worksheet_path", None)
    if not path:
        return
    previous = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open(path) as stream:
        for _, el in etree.iterparse(stream, events=("end",), tag="{*}row", huge_tree=False):
            try:
                number = int(el.get("r") or previous + 1)
            except ValueError:
                number = previous + 1
            if number > MAX_SHEET_ROWS:
                raise Refused(f"{name}: sheet {sheet!r} has a row {number:,}, past Excel's own limit")
            if number - previous - 1 > MAX_EMPTY_RUN and len(el):
                raise Refused(
                    f"{name}: sheet {sheet!r}: row {number:,} comes after {number - previous - 1:,} empty rows "
                    f"(over the {MAX_EMPTY_RUN:,} a sheet may have between its rows)"
                )
            previous = number
            el.clear()


def _sheet_rows(ws, name: str, sheet: str) -> list[tuple]:
    rows: list[tuple] = []
    empty = 0
    for i, row in enumerate(ws.iter_rows(values_only=True, max_col=MAX_COLUMNS), start=1):
        if i > MAX_SHEET_ROWS:
            raise Refused(f"{name}: sheet {sheet!r} has cells past row {MAX_SHEET_ROWS:,}, Excel's own limit")
        if all(v is None for v in row):
            empty += 1
            continue
        if empty > MAX_EMPTY_RUN:
            raise Refused(
                f"{name}: sheet {sheet!r}: a cell at row {i:,} after {empty:,} empty rows "
                f"(over the {MAX_EMPTY_RUN:,} a sheet may have between its rows)"
            )
        rows.extend([()] * empty)
        empty = 0
        rows.append(row)
    return rows


def read_xlsx_bytes(contract: Contract, data: bytes, name: str) -> tuple[pl.DataFrame, list[str]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise Refused(f"{name}: not a readable Excel workbook ({type(exc).__name__})") from None
    sheet = contract.file.get("sheet")
    if sheet not in wb.sheetnames:
        raise Refused(f"{name}: no sheet {sheet!r} (sheets: {wb.sheetnames})")
    skip = _skip_rows(contract)
    try:
        _check_sheet_extent(data, wb[sheet], name, sheet)
    except Refused:
        raise
    except Exception as exc:  # the XML itself is broken: openpyxl would fail on it too
        raise Refused(f"{name}: sheet {sheet!r} is not readable XML ({type(exc).__name__})") from None
    rows = _sheet_rows(wb[sheet], name, sheet)[skip:]
    if not rows:
        raise Refused(
            f"{name}: sheet {sheet!r} is empty, no header" + (f" after its first {skip} rows" if skip else "")
        )
    header = [str(h) if h is not None else "" for h in rows[0]]
    warnings = _header_check(contract, header, name)

    def text(v) -> str | None:
        if v is None:
            return None
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, date):
            return v.strftime("%Y-%m-%d")
        return str(v)

    idx = {h: i for i, h in enumerate(header)}
    body = rows[1:]
    frame = pl.DataFrame(
        {
            h: pl.Series([text(r[idx[h]]) if idx[h] < len(r) else None for r in body], dtype=pl.Utf8)
            for h in contract.headers
            if h in idx
        }
    )
    return frame.with_columns(
        pl.Series(SOURCE_ROW, range(skip + 2, skip + len(body) + 2), dtype=pl.Int64),
        pl.lit(None, pl.Utf8).alias("_shape_reason"),
    ), warnings


# -- typing ----------------------------------------------------------------------------------
def local_to_utc(naive: pl.Expr, tz: str, order_key: str | None = None) -> tuple[pl.Expr, pl.Expr]:
    """Return (UTC instant, is_nonexistent) for local wall-clock times in file order.

    Ambiguous times (the October repeated hour) are the earlier instant until the file's clock
    has gone back by more than 30 minutes inside that hour, the later one after: the order of a
    chronological export decides (within each ``order_key`` sequence, e.g. per car park).
    Small disorder (a validator a few minutes off) does not count as the clock going back.
    """
    earliest = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    latest = naive.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
    ambiguous = earliest != latest
    back = (naive < naive.cum_max().shift(1) - pl.duration(minutes=30)) & ambiguous
    if order_key:
        back = (naive < naive.cum_max().shift(1).over(order_key) - pl.duration(minutes=30)) & ambiguous
        went_back = back.fill_null(False).cum_sum().over(order_key) > 0
    else:
        went_back = back.fill_null(False).cum_sum() > 0
    chosen = pl.when(went_back).then(latest).otherwise(earliest)
    nonexistent = naive.is_not_null() & earliest.is_null()
    return chosen.dt.convert_time_zone("UTC"), nonexistent


def _mapped(col: Column, raw: pl.Expr) -> pl.Expr:
    """The text of an identifier column mapped to the network's ids, as its contract says."""
    if col.recode:
        raw = raw.replace(dict(col.recode))
    if col.strip_prefix:
        raw = raw.str.strip_prefix(col.strip_prefix)
    if col.offset is not None:
        raw = (raw.cast(pl.Int64, strict=False) + col.offset).cast(pl.Utf8)
    if col.add_prefix:
        raw = pl.lit(col.add_prefix) + raw
    return raw


def _day_start(tz: str, service_date: pl.Expr) -> pl.Expr:
    """The instant GTFS-style times of a service day count from: local noon minus 12 hours."""
    noon = service_date.cast(pl.Datetime("us")) + pl.duration(hours=12)
    return noon.dt.replace_time_zone(tz).dt.convert_time_zone("UTC") - pl.duration(hours=12)


def _typed(
    col: Column,
    tz: str,
    decimal_sep: str,
    order_key: str | None = None,
    raw: pl.Expr | None = None,
    day_start: pl.Expr | None = None,
    personal: bool = False,
) -> tuple[pl.Expr, pl.Expr | None]:
    """Return (typed expression, extra-invalid expression) for one contract column."""
    raw = pl.col(col.name).str.strip_chars() if raw is None else raw
    t = col.type
    extra = None
    if t in ("seconds_after_midnight", "minutes_after_midnight"):
        # times counted from the service day's start (noon - 12 h, local), past 24 h for night trips
        unit = 1000 if t == "seconds_after_midnight" else 60_000
        amount = raw.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
        start = day_start if day_start is not None else pl.lit(None, pl.Datetime("us", "UTC"))
        value = start + pl.duration(milliseconds=(amount * unit).round(0).cast(pl.Int64))
        if day_start is None:
            extra = pl.when(amount.is_not_null()).then(
                pl.lit(f"column '{col.name}': no service date to count the time from (file name or a date column)")
            )
    elif t == "datetime_local":
        naive = raw.str.strptime(pl.Datetime("us"), col.format, strict=False)
        value, nonexistent = local_to_utc(naive, tz, order_key)
        extra = pl.when(nonexistent).then(
            pl.format(f"column '{col.name}': '{{}}' does not exist in {tz} (DST gap)", shown(raw, personal))
        )
    elif t == "datetime_excel":
        naive = raw.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
        value = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    elif t == "datetime_offset":
        value = raw.str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us").dt.convert_time_zone("UTC")
    elif t == "datetime_utc":
        value = raw.str.strptime(
            pl.Datetime("us"), col.format or "%Y-%m-%dT%H:%M:%SZ", strict=False
        ).dt.replace_time_zone("UTC")
    elif t == "date":
        value = raw.str.strptime(pl.Date, col.format or "%Y-%m-%d", strict=False)
    elif t == "date_excel":
        value = raw.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    elif t == "integer":
        value = raw.str.replace(r"\.0$", "").cast(pl.Int64, strict=False)
        if col.scale is not None:  # an integer scaled stays a count only when it lands on one
            scaled = value.cast(pl.Float64) * col.scale
            value = pl.when(scaled == scaled.round(0)).then(scaled.round(0).cast(pl.Int64))
            extra = pl.when(raw.is_not_null() & (raw != "") & value.is_null() & scaled.is_not_null()).then(
                pl.format(f"column '{col.name}': '{{}}' × {col.scale:g} is not a whole number", shown(raw, personal))
            )
    elif t == "decimal":
        text = raw.str.replace(",", ".", literal=True) if decimal_sep == "," else raw
        value = text.cast(pl.Float64, strict=False)
        if col.scale is not None:
            value = value * col.scale
        if col.canonical.endswith("_eur"):  # money in Decimal(12, 2): a larger amount is no amount
            value = pl.when(value.abs() < 1e10).then(value).cast(pl.Decimal(12, 2), strict=False)
    elif t == "boolean" and col.values:
        value = pl.when(raw == col.values[0]).then(True).when(raw == col.values[1]).then(False).otherwise(None)
    elif t == "enum" and col.values:
        value = pl.when(raw.is_in(list(col.values))).then(raw).otherwise(None)
    else:
        value = raw
    if col.pattern:
        value = pl.when(value.str.contains(col.pattern)).then(value).otherwise(None)
    return value, extra


def _describe(col: Column) -> str:
    """Return the rule a value broke, as text safe inside a pl.format template."""
    return _rule(col).replace("{", "{{").replace("}", "}}")


def _rule(col: Column) -> str:
    if col.format:
        return f"a {col.type.replace('_', ' ')} '{col.format}'"
    if col.values:
        return f"one of {list(col.values)}"
    if col.pattern:
        return f"matching {col.pattern}"
    return f"a {col.type}"


def type_rows(contract: Contract, frame: pl.DataFrame, tz: str, service_date: date | None = None) -> pl.DataFrame:
    """Return canonical typed columns plus source_row, is_valid and invalid_reason.

    Three passes, each expression computed once (profiled on a metro day: evaluating the typed
    value again inside every rule made typing 2x slower): the stripped text of each column, then
    its typed value, then the canonical columns and the first broken rule of each row."""
    sep = contract.file.get("decimal_separator", ".")
    order_key = contract.file.get("order_key")
    cols = list(contract.columns)
    absent = [c.name for c in cols if c.name not in frame.columns]  # optional columns not delivered
    frame = frame.lazy().with_columns(pl.lit(None, pl.Utf8).alias(n) for n in absent)
    stripped = frame.with_columns(
        _mapped(c, pl.col(c.name).str.strip_chars()).alias(f"__raw{i}") for i, c in enumerate(cols)
    )
    # the service day times after midnight count from: a date column of the rows, else the file's
    dated = next((i for i, c in enumerate(cols) if c.canonical == "service_date" and c.type == "date"), None)
    if dated is not None:
        day = pl.col(f"__raw{dated}").str.strptime(pl.Date, cols[dated].format or "%Y-%m-%d", strict=False)
        day_start = _day_start(tz, day)
    else:
        day_start = _day_start(tz, pl.lit(service_date, pl.Date)) if service_date is not None else None
    typed, extras = [], {}
    for i, col in enumerate(cols):
        value, extra = _typed(
            col, tz, sep, order_key, raw=pl.col(f"__raw{i}"), day_start=day_start, personal=contract.personal_data
        )
        typed.append(value.alias(f"__val{i}"))
        if extra is not None:
            extras[i] = extra.alias(f"__extra{i}")
    stripped = stripped.with_columns(*typed, *extras.values())
    values, reasons = [], [pl.col("_shape_reason")]
    personal = contract.personal_data
    for i, col in enumerate(cols):
        raw, value = pl.col(f"__raw{i}"), pl.col(f"__val{i}")
        empty = raw.is_null() | (raw == "")
        values.append(pl.when(empty).then(None).otherwise(value).alias(col.canonical))
        if col.required:
            reasons.append(pl.when(empty).then(pl.lit(f"column '{col.name}': required value missing")))
        reasons.append(
            pl.when(~empty & value.is_null()).then(
                pl.format(f"column '{col.name}': '{{}}' is not {_describe(col)}", shown(raw, personal))
            )
        )
        if i in extras:
            reasons.append(pl.col(f"__extra{i}"))
        if col.min is not None:
            reasons.append(
                pl.when(value < col.min).then(
                    pl.format(f"column '{col.name}': '{{}}' is below {col.min:g}", shown(raw, personal))
                )
            )
    reason = pl.coalesce(reasons).alias("invalid_reason")
    return (
        stripped.select(pl.col(SOURCE_ROW), *values, reason)
        .with_columns(pl.col("invalid_reason").is_null().alias("is_valid"))
        .collect()
    )


def parse(
    contract: Contract, data: bytes, name: str, tz: str = "Europe/Paris", service_date: date | None = None
) -> Parsed:
    """Return the typed rows of a delivery, or raise Refused. ``service_date``, the file's (from
    its name), is what times counted after midnight count from when the rows carry no date."""
    fmt = contract.format
    from ingestion import standards  # the standards' readers import Refused from here

    if fmt in standards.FORMATS:
        frame, warnings = standards.read(contract, data, name, tz)
        return Parsed(frame, warnings)
    if fmt == "xlsx":
        frame, warnings = read_xlsx_bytes(contract, data, name)
    else:
        check_shape(contract, data, name)
        text, warnings = decode(contract, data, name)
        if fmt == "csv":
            frame, more = read_csv_text(contract, text, name)
        elif fmt == "jsonl":
            frame, more = read_jsonl_text(contract, text, name)
        else:
            raise ValueError(f"no row parser for format {fmt!r}")
        warnings += more
    return Parsed(type_rows(contract, frame, tz, service_date), warnings)
