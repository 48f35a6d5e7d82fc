"""Readers for the standard formats operators and the national access point deliver.

Each reader turns one delivered file into rows of the staged vocabulary (the TIDES names the
vendor formats already map to), so every mart works unchanged whatever the source:

* :mod:`.gtfs_rt`: GTFS-Realtime TripUpdates and VehiclePositions (protobuf; one snapshot, gzip,
  or an hourly zip of snapshots) → observed stop passages and vehicle positions;
* :mod:`.siri`: SIRI ET / VM / SM, SOAP or bare, XML or JSON → observed passages and positions;
* :mod:`.datex2`: DATEX II parking status and parking table (v2 and v3) → occupancy and register;
* :mod:`.tides`: TIDES CSV tables (1.0 and pre-1.0 column names) → the staged tables;
* :mod:`.geo`: Lambert-93 and Lambert II étendu → WGS84.

Well-kept libraries do the decoding (gtfs-realtime-bindings, lxml); these modules only map. A
file that cannot be read raises :class:`ingestion.parsing.Refused` with the file and the rule.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

#: ``file.format`` values an extract contract may name for a standard, and what ``file.records``
#: (or ``file.table`` for TIDES) selects among the rows the format carries.
FORMATS = {
    "gtfs_rt": ("passages", "positions"),
    "siri": ("passages", "positions"),
    "datex2": ("parking_status", "parking_table"),
    "tides": ("vehicle_locations", "stop_visits", "trips_performed", "passenger_events", "fare_transactions"),
}


def read(contract, data: bytes, name: str, tz: str) -> tuple[pl.DataFrame, list[str]]:
    """Rows (source_row, canonical columns, is_valid, invalid_reason) and warnings of a delivery in
    a standard format, as its extract contract says (``file.format`` and ``file.records``), with
    the producer's ids mapped to the network's (``file.ids``, :mod:`.ids`) and coded values
    recoded (``file.recode``: column -> {delivered value: staged value})."""
    from ingestion.standards import ids

    where = f"extract contract {contract.key} v{contract.version}"
    ids.check(contract.file.get("ids"), where)
    recode = contract.file.get("recode") or {}
    if not isinstance(recode, dict) or not all(isinstance(v, dict) for v in recode.values()):
        raise ValueError(f"{where}: file.recode must map columns to {{delivered value: staged value}}")
    frame, warnings = _read(contract, data, name, tz)
    frame = ids.apply(frame, contract.file.get("ids"))
    unknown = [c for c in recode if c not in frame.columns]
    if unknown:
        raise ValueError(f"{where}: file.recode names column(s) {unknown} that {contract.format} rows do not have")
    frame = frame.with_columns(
        pl.col(c).cast(pl.Utf8).replace({str(k): str(v) for k, v in table.items()}).alias(c)
        for c, table in recode.items()
    )
    return frame, warnings


def _read(contract, data: bytes, name: str, tz: str) -> tuple[pl.DataFrame, list[str]]:
    from ingestion.parsing import Refused  # the parsing module imports this one

    fmt = contract.format
    what = contract.file.get("table" if fmt == "tides" else "records")
    if what not in FORMATS.get(fmt, ()):
        raise ValueError(
            f"extract contract {contract.key} v{contract.version}: format {fmt} needs "
            f"file.{'table' if fmt == 'tides' else 'records'} in {list(FORMATS.get(fmt, ()))}, not {what!r}"
        )
    if fmt == "gtfs_rt":
        from ingestion.standards import gtfs_rt

        snaps = gtfs_rt.snapshots(data, name)
        kinds = {
            field: sum(e.HasField(field) for s in snaps for e in s.feed.entity)
            for field in ("trip_update", "vehicle", "alert")
        }
        wanted = "trip_update" if what == "passages" else "vehicle"
        if not kinds[wanted] and any(kinds.values()):
            raise Refused(
                f"{name}: file.records is {what!r}, but the feed holds no {wanted} entity; it holds "
                + ", ".join(f"{n:,} {k}" for k, n in kinds.items() if n)
            )
        reader = gtfs_rt.observed_passages if what == "passages" else gtfs_rt.vehicle_positions
        return reader(snaps, tz), []
    if fmt == "siri":
        from ingestion.standards import siri

        docs = siri.documents(data, name)
        kinds = siri.record_kinds(docs)
        wanted = ("VehicleActivity",) if what == "positions" else siri.RECORDS
        if kinds and not any(k in kinds for k in wanted):
            raise Refused(
                f"{name}: file.records is {what!r}, but the file holds no {' or '.join(wanted)}; it holds "
                + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
            )
        reader = siri.observed_passages if what == "passages" else siri.vehicle_positions
        return reader(docs, tz), []
    if fmt == "datex2":
        from ingestion.standards import datex2
        from ingestion.standards.containers import members

        if what == "parking_table":
            return pl.concat([datex2.parking_table(p, m) for m, p in members(data, name, (".xml",))]), []
        stale = timedelta(minutes=float(contract.file.get("stale_after_min", datex2.STALE_AFTER.total_seconds() / 60)))
        frames = [datex2.parking_status(p, m, stale) for m, p in members(data, name, (".xml",))]
        # a reading repeated by later snapshots counts once
        frame = pl.concat(frames).unique(["facility_id", "observed_at"], keep="first", maintain_order=True)
        return frame.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("source_row")), []
    from ingestion.standards import tides

    return tides.read(what, data, name, tz)
