"""The small hostile files of issue #29, planted in a copy of a simulated drop: each stopped every
operator's night or exhausted the machine before, and must now be refused alone, once, with its
rule, while the rest of the night is ingested and published."""

from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import date, datetime
from pathlib import Path

from tests.support.gtfs_feeds import CALENDAR, gtfs_zip

#: a line nested deeper than Python's stack (400 KB, under the line budget)
DEEP_LINE = "[" * 200_000 + "]" * 200_000
FEED_INFO = "feed_publisher_name,feed_publisher_url,feed_lang,feed_version,feed_start_date,feed_end_date\n"


def sparse_sheet(sheet: str, headers: list[str]) -> bytes:
    """An XLSX of a few KB with its header and one cell at row 10,000,000, and no <dimension>."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(headers)
    ws.cell(row=1_048_576, column=1, value="x")
    buf = io.BytesIO()
    wb.save(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename.startswith("xl/worksheets/"):
                body = re.sub(rb"<dimension[^>]*/>", b"", body).replace(b"1048576", b"10000000")
            z.writestr(info, body)
    return out.getvalue()


def plant(drop: Path, day: date, delivered: datetime | None = None) -> dict[str, str]:
    """Write the hostile files of ``day`` into ``drop`` (a simulated one: its ticketing files give
    the rows of the file cut in a serial); return {file name: the rule its refusal names}. Given
    ``delivered``, the files' modification time is set to it (a simulated drop's clock)."""
    from ingestion.contracts import contract

    week = CALENDAR + "WK,1,1,1,1,1,0,0,20260101,20261231\n"
    files: dict[Path, tuple[bytes, str]] = {
        drop / "bus/gtfs/gtfs_forever.zip": (
            gtfs_zip(CALENDAR + "".join(f"S{i},1,1,1,1,1,1,1,00010101,99991231\n" for i in range(8))),
            "5-year budget",
        ),
        drop / "bus/gtfs/gtfs_bad_start_date.zip": (
            gtfs_zip(week, FEED_INFO + "p,http://p,fr,v2,2026-01-01,20261231\n"),
            "feed_start_date",
        ),
        drop / "bus/gtfs/gtfs_bad_calendar_date.zip": (
            gtfs_zip(week, None, "service_id,date,exception_type\nWK,2026-13-45,1\n"),
            "calendar_dates",
        ),
    }
    c = contract("bus", "maintenance")
    files[drop / f"bus/maintenance/export_GMAO_{day:%Y%m%d}.xlsx"] = (
        sparse_sheet(c.file["sheet"], c.headers),
        "past Excel's own limit",
    )
    ticketing = sorted((drop / "bus/ticketing").glob("VALIDATIONS_*.csv"))
    if ticketing:  # a file cut in the middle of a card serial: refused without showing it
        expected = ";".join(contract("bus", "ticketing").headers)
        text = next(
            t for t in (p.read_bytes().decode("cp1252") for p in ticketing) if t.startswith(expected)
        ).splitlines(keepends=True)
        serial = text[2].split(";")[1]
        cut = text[0] + text[1] + text[2][: text[2].index(serial) + len(serial) // 2]
        files[drop / f"bus/ticketing/VALIDATIONS_{day:%Y%m%d}.csv"] = (cut.encode("cp1252"), "truncated")
    for path, (body, _) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        if delivered is not None:
            os.utime(path, (delivered.timestamp(), delivered.timestamp()))
    return {path.name: rule for path, (_, rule) in files.items()}


def deepen(avl_file: Path) -> None:
    """Add a line nested deeper than Python's stack to a delivered AVL file (keeping its mtime)."""
    st = avl_file.stat()
    with avl_file.open("a", encoding="utf-8") as out:
        out.write(DEEP_LINE + "\n")
    os.utime(avl_file, ns=(st.st_atime_ns, st.st_mtime_ns))
