"""RFC 4180 records of a delimited text file, read by Apache Arrow's CSV reader.

What the reader gives that splitting lines by hand does not: fields quoted across lines (an
address on several lines), doubled quotes, CRLF, LF or CR line ends, delimiters inside quotes.
What this module adds around it:

* each record's **first line number** in the file (a record quoted across three lines takes
  three), so an invalid-row message points at the line an editor shows;
* records with another number of fields than the header (*ragged*) are kept, in their place,
  with their field count: the caller makes them invalid rows, never drops them;
* blank lines are not records (Python's ``csv`` module yields ``[]`` for them), but count as
  lines.

It is proven against Python's ``csv`` module on generated files (``tests/ingestion/
test_tabular.py``): same records, same fields, same line numbers.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

#: A line end as Python's csv module and Arrow's reader both see one.
LINE_END = re.compile(r"\r\n|\r|\n")


class UnreadableText(ValueError):
    """The text cannot be split into records (a quote never closed); the message says where."""


@dataclass
class Records:
    header: list[str]
    #: one row per record after the header: ``f0`` … ``f{n-1}`` (strings, null where a ragged
    #: record has fewer fields), ``line`` (its first line, 1-based, in the whole file) and
    #: ``n_fields`` (how many fields the record has)
    frame: pl.DataFrame
    header_line: int

    @property
    def width(self) -> int:
        return len(self.header)


def field_names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def _line_ends(text: str) -> int:
    """Line ends as LINE_END counts them (CRLF once), by counting characters: no list of matches."""
    lf = text.count("\n")
    return lf + text.count("\r") - text.count("\r\n") if "\r" in text else lf


def read_records(
    text: str, delimiter: str, first_line: int = 1, max_columns: int | None = None, header: list[str] | None = None
) -> Records:
    """Return the header and records of ``text`` (its first record is the header, on line
    ``first_line`` of the file). Raises UnreadableText, or ValueError for more than
    ``max_columns`` header fields. Given ``header``, the text has none: every record is data and
    the first starts on line ``first_line``."""
    with_header = header is None
    if header is None:
        try:
            header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        except StopIteration:
            header = []
        except csv.Error as exc:
            raise UnreadableText(f"the header (line {first_line}) cannot be read: {exc}") from None
        if not header:
            raise UnreadableText(f"no header: line {first_line} is blank")
    if max_columns is not None and len(header) > max_columns:
        raise ValueError(f"{len(header):,} columns in the header, over the {max_columns:,} any file may have")
    n = len(header)
    names = field_names(n)
    bad: list[tuple[int, str]] = []

    def invalid(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UnreadableText(f"not delimited text: {exc}") from None
    valid = pl.from_arrow(table)
    assert isinstance(valid, pl.DataFrame)
    total = valid.height + len(bad)
    # Arrow numbers an invalid record among all records (the header is 1): the valid ones fill
    # the other places, in order
    bad_numbers = [number for number, _ in bad]
    if any(b is None for b in bad_numbers):  # only a threaded read leaves them unknown
        raise RuntimeError("Arrow's CSV reader gave an invalid row without its number")
    taken = pl.Series("_rec", bad_numbers, dtype=pl.Int64)
    places = pl.int_range(1, total + 1, eager=True, dtype=pl.Int64).alias("_rec")
    valid = valid.with_columns(places.filter(~places.is_in(taken.implode())), pl.lit(n, pl.Int64).alias("n_fields"))
    # as many line ends as records: no record spans lines, nothing to count (the usual case)
    one_line_each = _line_ends(text) == total and text.endswith(("\n", "\r"))
    breaks = (
        pl.lit(0, pl.UInt32)
        if one_line_each
        else pl.sum_horizontal(pl.col(names).str.count_matches(LINE_END.pattern)).cast(pl.UInt32)
    )
    valid = valid.with_columns(breaks.alias("_breaks"))
    parts = [valid]
    if bad:
        rows = []
        for number, raw in bad:
            fields = next(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter), [])
            rows.append(
                {
                    **{c: (fields[i] if i < len(fields) else None) for i, c in enumerate(names)},
                    "_rec": number,
                    "n_fields": len(fields),
                    "_breaks": len(LINE_END.findall(raw)),
                }
            )
        schema = {**{c: pl.Utf8 for c in names}, "_rec": pl.Int64, "n_fields": pl.Int64, "_breaks": pl.UInt32}
        parts.append(pl.DataFrame(rows, schema=schema, orient="row"))
    frame = pl.concat(parts, how="vertical_relaxed").sort("_rec")
    if frame.height and frame["_rec"][-1] != total:
        raise RuntimeError("records out of place after merging Arrow's valid and invalid rows")
    span = pl.col("_breaks").cast(pl.Int64) + 1
    frame = frame.with_columns((pl.lit(first_line, pl.Int64) + span.cum_sum() - span).alias("line"))
    last = frame.tail(1)
    if last.height and (last["n_fields"][0] != n or last["_breaks"][0] > 0) and _unclosed(text):
        raise UnreadableText(
            f"a quote opened on line {last['line'][0]:,} is never closed: the rest of the file would be one field"
        )
    # a blank line is no record: Arrow gives it as empty fields, like a line of bare delimiters
    empty = pl.all_horizontal(pl.col(names).fill_null("") == "") & (pl.col("_breaks") == 0)
    candidates = frame.filter(empty)
    if candidates.height:
        lines = LINE_END.split(text)
        blank = [ln for ln in candidates["line"].to_list() if lines[ln - first_line] == ""]
        frame = frame.filter(~pl.col("line").is_in(pl.Series(blank, dtype=pl.Int64).implode()))
    if with_header:
        frame = frame.slice(1)  # the header
    return Records(header, frame.select(*names, "line", "n_fields"), first_line)


#: characters of text read at a time by :func:`read_records_chunked` (about 32 MB of ASCII)
CHUNK_CHARS = 32 * 1024 * 1024


def record_boundaries(text: str, size: int = CHUNK_CHARS) -> list[int]:
    """Offsets that cut ``text`` into pieces of about ``size`` characters, each cut just after a
    line end that ends a record: one after an even number of quotes since the start (in RFC 4180
    a quote inside a quoted field is doubled, so a line end inside quotes follows an odd count).
    The last offset is ``len(text)``; a quote never closed leaves the rest as one piece."""
    cuts, pos, n = [], 0, len(text)
    while pos < n:
        target = pos + max(size, 1)
        if target >= n:
            break
        quotes, counted = text.count('"', pos, target), target
        cut = n
        while (match := LINE_END.search(text, counted)) is not None:
            quotes += text.count('"', counted, match.start())
            counted = match.end()
            if quotes % 2 == 0:
                cut = match.end()
                break
        if cut >= n:
            break
        cuts.append(cut)
        pos = cut
    return [*cuts, n]


def read_records_chunked(
    text: str, delimiter: str, first_line: int = 1, max_columns: int | None = None, size: int = CHUNK_CHARS
):
    """Yield the records of ``text`` as :func:`read_records` gives them, a piece of about ``size``
    characters at a time, cut between records (:func:`record_boundaries`): the reader's working
    memory is a piece's, not the file's. The same header, records, fields and lines as one read
    (a property test cuts generated files at every size)."""
    start, line, header = 0, first_line, None
    for cut in record_boundaries(text, size):
        piece = text[start:cut]
        records = read_records(piece, delimiter, first_line=line, max_columns=max_columns, header=header)
        header = records.header
        yield records
        line += _line_ends(piece)
        start = cut


def _unclosed(text: str) -> bool:
    """Whether the text ends inside a quoted field (an odd count of quotes overall)."""
    return text.count('"') % 2 == 1


def skip_lines(text: str, count: int) -> tuple[str, int]:
    """Return the text after its first ``count`` lines, and how many lines there were to skip
    (fewer than ``count`` when the text is shorter)."""
    if count <= 0:
        return text, 0
    pos, seen = 0, 0
    for match in LINE_END.finditer(text):
        seen += 1
        pos = match.end()
        if seen == count:
            return text[pos:], seen
    return "", seen


def line_count(text: str) -> int:
    """How many lines the text has (a last line without a line end counts)."""
    ends = _line_ends(text)
    return ends + (1 if text and not text.endswith(("\n", "\r")) else 0)
