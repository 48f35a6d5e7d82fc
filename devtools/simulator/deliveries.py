"""Write operators' deliveries exactly as their extract contracts say.

Frames arrive with canonical column names and native types (UTC datetimes, dates, floats,
booleans); each contract column says how its vendor writes it (local wall-clock text, ISO with
offset, decimal comma, Oui/Non, Excel date-times) and under which header.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from devtools.simulator.network import BaseNetwork
from ingestion.contracts import Contract


class Ids:
    """Tile-aware ids of the simulated network (tile 0 keeps the feed's ids)."""

    def __init__(self, net: BaseNetwork) -> None:
        self.trip_ids = net.trips["trip_id"]
        self.stop_ids = net.stops["stop_id"]
        self.route_ids = net.routes["route_id"]
        self.route_names = net.routes["short_name"]

    @staticmethod
    def _tiled(base: pl.Series, idx: np.ndarray, tile: np.ndarray) -> pl.Series:
        values = base.gather(idx)
        t = pl.Series("t", tile)
        return pl.select(
            pl.when(t == 0).then(values).otherwise(pl.lit("T") + t.cast(pl.Utf8) + pl.lit("-") + values)
        ).to_series()

    def trip(self, idx, tile) -> pl.Series:
        return self._tiled(self.trip_ids, idx, tile)

    def stop(self, idx, tile) -> pl.Series:
        return self._tiled(self.stop_ids, idx, tile)

    def route(self, idx, tile) -> pl.Series:
        return self._tiled(self.route_ids, idx, tile)

    def route_name(self, idx, tile) -> pl.Series:
        return self._tiled(self.route_names, idx, tile)


def _decimal_text(expr: pl.Expr, separator: str, digits: int = 2) -> pl.Expr:
    scaled = (expr * 10**digits).round(0).cast(pl.Int64)
    whole = (scaled.abs() // 10**digits).cast(pl.Utf8)
    frac = (scaled.abs() % 10**digits).cast(pl.Utf8).str.zfill(digits)
    sign = pl.when(scaled < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(expr.is_null()).then(pl.lit(None)).otherwise(sign + whole + pl.lit(separator) + frac)


def vendor_frame(contract: Contract, frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Return ``frame`` as the vendor writes it: headers, order and text forms of the contract."""
    as_text = contract.format == "csv"
    sep = contract.file.get("decimal_separator", ".")
    exprs = []
    for col in contract.columns:
        e = pl.col(col.canonical)
        t = col.type
        if col.scale and t in ("decimal", "integer"):  # the vendor's unit (metres, centimes…)
            e = e.cast(pl.Float64) / col.scale
            e = e.round(0).cast(pl.Int64) if t == "integer" else e
        if t == "datetime_local":
            e = e.dt.convert_time_zone(tz).dt.strftime(col.format)
        elif t == "datetime_offset":
            e = e.dt.convert_time_zone(tz).dt.strftime("%Y-%m-%dT%H:%M:%S%:z")
        elif t == "datetime_utc":
            e = e.dt.convert_time_zone("UTC").dt.strftime(col.format or "%Y-%m-%dT%H:%M:%SZ")
        elif t == "date" and col.format:
            e = e.dt.strftime(col.format)
        elif t == "decimal" and as_text:
            e = _decimal_text(e, sep, col.digits)
        elif t == "boolean" and col.values:
            e = pl.when(e).then(pl.lit(col.values[0])).otherwise(pl.lit(col.values[1]))
        elif t in ("datetime_excel",):
            e = e.dt.convert_time_zone(tz).dt.replace_time_zone(None)
        elif as_text:
            e = e.cast(pl.Utf8)
        exprs.append(e.alias(col.name))
    return frame.select(exprs)


def render(contract: Contract, vendor: pl.DataFrame) -> bytes:
    """Return the bytes of a delivery from its vendor frame."""
    fmt = contract.format
    if fmt == "csv":
        text = vendor.write_csv(
            separator=contract.file["delimiter"],
            line_terminator=contract.file.get("line_terminator", "\n"),
            quote_style="necessary",
        )
        return text.encode(contract.file["encoding"], errors="replace")
    if fmt == "jsonl":
        return vendor.write_ndjson().encode("utf-8")
    if fmt == "xlsx":
        return _xlsx(contract.file.get("sheet", "Sheet1"), vendor.columns, vendor.rows())
    raise ValueError(f"cannot render format {fmt!r}")


def _xlsx(sheet: str, headers: Sequence[str], rows: Sequence[tuple]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(list(headers))
    for row in rows:
        ws.append([v for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return _deterministic_zip(buf.getvalue())


def _deterministic_zip(data: bytes) -> bytes:
    """Rewrite a zip (xlsx) with fixed timestamps so the same content gives the same bytes."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                import re

                body = re.sub(rb"<dcterms:(created|modified)[^>]*>[^<]*</dcterms:\1>", b"", body)
            new = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            new.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(new, body)
    return out.getvalue()


def deliver(path: Path, data: bytes, delivered_at: datetime) -> Path:
    """Write a delivery and stamp it with the time the operator delivered it (its mtime)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    ts = delivered_at.timestamp()
    import os

    os.utime(path, (ts, ts))
    return path
