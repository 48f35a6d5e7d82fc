"""Read and write GTFS feeds (zip or folder) as Polars frames of strings.

Real feeds are messy: a BOM before the header, optional files (calendar.txt or only
calendar_dates.txt, no shapes, no block_id, no agency_id), times past 24:00:00. This module reads
every column as text and leaves typing to the caller, and refuses archives that would expand to
absurd sizes (zip bombs).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from citylake.core.errors import DataError

REQUIRED = ("stops", "routes", "trips", "stop_times")
#: The text an offer may expand to, refused before unpacking: a metro network's GTFS is 0.1-0.5 GB
#: of text (the simulated metro's 109 MB); staging it takes about 7× the text at peak (``make
#: bench-memory``), so 1 GiB is what a 16 GiB worker takes (docs/ingestion.md).
MAX_UNCOMPRESSED_BYTES = 1024**3
MAX_COMPRESSION_RATIO = 200


@dataclass
class Feed:
    """A GTFS feed: table name (without .txt) -> frame of strings."""

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    source: str = ""
    problems: list[str] = field(default_factory=list)  # what a converter (NeTEx) could not place

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tables and self.tables[name].height > 0

    def get(self, name: str) -> pl.DataFrame | None:
        return self.tables.get(name)


def _read_table(data: bytes, name: str, source: str) -> pl.DataFrame:
    text = data.decode("utf-8-sig", errors="replace")
    if not text.strip():
        return pl.DataFrame()
    try:
        frame = pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{source}: {name}.txt is not a readable CSV: {exc}") from exc
    return frame.rename({c: c.strip() for c in frame.columns}).with_columns(
        pl.col(c).str.strip_chars() for c in frame.columns
    )


def read_feed(path: Path | str) -> Feed:
    """Return the feed at ``path`` (a .zip or a folder); raise DataError when it is not GTFS."""
    path = Path(path)
    raw: dict[str, bytes] = {}
    if path.is_dir():
        for txt in sorted(path.glob("*.txt")):
            raw[txt.stem] = txt.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".txt") and not i.is_dir()]
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos) or 1
            if total > MAX_UNCOMPRESSED_BYTES or total / packed > MAX_COMPRESSION_RATIO:
                raise DataError(
                    f"{path}: refused, the archive would expand to {total:,} bytes "
                    f"({total / packed:.0f}x its size): zip bomb rule"
                )
            for info in infos:
                name = info.filename.rsplit("/", 1)[-1][:-4]
                if name.startswith("._"):  # macOS resource forks
                    continue
                raw[name] = zf.read(info)
    else:
        raise DataError(f"{path}: not a GTFS folder nor a zip archive")
    missing = [t for t in REQUIRED if t not in raw]
    if missing:
        raise DataError(f"{path}: not a GTFS feed, missing {', '.join(t + '.txt' for t in missing)}")
    if "calendar" not in raw and "calendar_dates" not in raw:
        raise DataError(f"{path}: not a GTFS feed, needs calendar.txt or calendar_dates.txt")
    feed = Feed({name: _read_table(data, name, str(path)) for name, data in raw.items()}, str(path))
    check_calendar(feed)
    return feed


def write_feed(feed: Feed, path: Path | str) -> Path:
    """Write ``feed`` as a zip archive (deterministic: fixed timestamps, sorted names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(feed.tables):
            frame = feed.tables[name]
            info = zipfile.ZipInfo(f"{name}.txt", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, frame.write_csv())
    return path


def time_to_seconds(col: pl.Expr) -> pl.Expr:
    """Return seconds since the service day's noon-minus-12h for 'H:MM:SS' (hours may pass 24)."""
    parts = col.str.split(":")
    return (
        parts.list.get(0, null_on_oob=True).cast(pl.Int32, strict=False) * 3600
        + parts.list.get(1, null_on_oob=True).cast(pl.Int32, strict=False) * 60
        + parts.list.get(2, null_on_oob=True).cast(pl.Int32, strict=False)
    )


def parse_date(text: str) -> date:
    """Return the date of a GTFS YYYYMMDD string."""
    return datetime.strptime(text, "%Y%m%d").date()


#: A service period longer than this is no timetable (GTFS feeds cover weeks to a year): refused
#: before the calendar is expanded day by day, which 0001-9999 would make take gigabytes.
MAX_SERVICE_YEARS = 5
#: (service, date) pairs one feed may define after expansion: a metro's year is ~100,000.
MAX_SERVICE_DATES = 5_000_000


def check_calendar(feed: Feed) -> None:
    """Raise DataError naming the table, row and rule when a calendar date is not YYYYMMDD, a
    service period is longer than MAX_SERVICE_YEARS, or the expanded calendar would exceed
    MAX_SERVICE_DATES."""
    where = feed.source
    total = 0
    if "calendar" in feed:
        for i, row in enumerate(feed["calendar"].iter_rows(named=True), start=2):
            try:
                start, end = parse_date(str(row.get("start_date"))), parse_date(str(row.get("end_date")))
            except ValueError:
                raise DataError(f"{where}: calendar.txt line {i}: start_date/end_date are not YYYYMMDD dates") from None
            days = (end - start).days + 1
            if days > MAX_SERVICE_YEARS * 366:
                raise DataError(
                    f"{where}: calendar.txt line {i}: service {row.get('service_id')!r} runs {start} to {end}, "
                    f"over the {MAX_SERVICE_YEARS}-year budget of a service period"
                )
            total += max(days, 0)
    if "calendar_dates" in feed:
        for i, value in enumerate(feed["calendar_dates"]["date"].to_list(), start=2):
            try:
                parse_date(str(value))
            except ValueError:
                raise DataError(f"{where}: calendar_dates.txt line {i}: date is not a YYYYMMDD date") from None
        total += feed["calendar_dates"].height
    if total > MAX_SERVICE_DATES:
        raise DataError(f"{where}: the calendar defines {total:,} service days, over the {MAX_SERVICE_DATES:,} budget")


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def service_dates(feed: Feed) -> dict[date, set[str]]:
    """Return every date the feed defines with the service_ids active on it."""
    active: dict[date, set[str]] = {}
    if "calendar" in feed:
        for row in feed["calendar"].iter_rows(named=True):
            start, end = parse_date(row["start_date"]), parse_date(row["end_date"])
            for offset in range((end - start).days + 1):  # counted, never stepped past 9999-12-31
                day = start + timedelta(days=offset)
                if row.get(_WEEKDAYS[day.weekday()]) == "1":
                    active.setdefault(day, set()).add(row["service_id"])
    if "calendar_dates" in feed:
        for row in feed["calendar_dates"].iter_rows(named=True):
            day = parse_date(row["date"])
            if row["exception_type"] == "1":
                active.setdefault(day, set()).add(row["service_id"])
            elif row["exception_type"] == "2":
                active.get(day, set()).discard(row["service_id"])
    return {d: s for d, s in sorted(active.items()) if s}


def _hms(seconds: pl.Expr) -> pl.Expr:
    return pl.format(
        "{}:{}:{}",
        (seconds // 3600).cast(pl.Utf8).str.zfill(2),
        (seconds % 3600 // 60).cast(pl.Utf8).str.zfill(2),
        (seconds % 60).cast(pl.Utf8).str.zfill(2),
    )


def expand_frequencies(feed: Feed) -> Feed:
    """The feed with ``frequencies.txt`` made explicit: each frequency-based trip becomes one trip
    per departure (``start_time`` + k × ``headway_secs`` before ``end_time``), its stop times
    shifted from the template's, ids ``<trip_id>@<HH:MM:SS>``. Trips without a frequency, and
    feeds without ``frequencies.txt``, are unchanged. A headway that is not a positive number of
    seconds leaves its template trip as it is."""
    freqs = feed.get("frequencies")
    if (
        freqs is None
        or freqs.height == 0
        or not {"trip_id", "start_time", "end_time", "headway_secs"} <= set(freqs.columns)
    ):
        return feed
    windows = freqs.select(
        "trip_id",
        time_to_seconds(pl.col("start_time")).alias("start"),
        time_to_seconds(pl.col("end_time")).alias("end"),
        pl.col("headway_secs").cast(pl.Int64, strict=False).alias("headway"),
    ).filter(pl.col("start").is_not_null() & pl.col("end").is_not_null() & (pl.col("headway") > 0))
    if windows.height == 0:
        return feed
    departures = (
        windows.with_columns(pl.int_ranges("start", "end", "headway").alias("departure"))
        .explode("departure")
        .drop_nulls("departure")
        .select("trip_id", "departure")
    )
    stop_times = feed["stop_times"].with_columns(
        time_to_seconds(pl.col("arrival_time")).alias("_arr"),
        time_to_seconds(pl.col("departure_time")).alias("_dep"),
    )
    first = stop_times.group_by("trip_id").agg(
        pl.min_horizontal(pl.col("_arr").min(), pl.col("_dep").min()).alias("_first")
    )
    templated = set(departures["trip_id"].unique().to_list())
    new_id = pl.format("{}@{}", pl.col("trip_id"), _hms(pl.col("departure")))
    expanded_times = (
        stop_times.join(first, on="trip_id")
        .join(departures, on="trip_id")
        .with_columns(
            pl.when(pl.col("_arr").is_not_null())
            .then(_hms(pl.col("_arr") - pl.col("_first") + pl.col("departure")))
            .alias("arrival_time"),
            pl.when(pl.col("_dep").is_not_null())
            .then(_hms(pl.col("_dep") - pl.col("_first") + pl.col("departure")))
            .alias("departure_time"),
            new_id.alias("trip_id"),
        )
        .select(feed["stop_times"].columns)
    )
    expanded_trips = (
        feed["trips"].join(departures, on="trip_id").with_columns(new_id.alias("trip_id")).select(feed["trips"].columns)
    )
    is_template = pl.col("trip_id").is_in(pl.Series(sorted(templated), dtype=pl.Utf8).implode())
    tables = dict(feed.tables)
    tables["trips"] = pl.concat([feed["trips"].filter(~is_template), expanded_trips])
    tables["stop_times"] = pl.concat([feed["stop_times"].filter(~is_template), expanded_times])
    tables.pop("frequencies")
    return Feed(tables, source=feed.source, problems=feed.problems)
