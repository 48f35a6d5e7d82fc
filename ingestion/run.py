"""``citylake ingest``: pull every operator's deliveries into the lake.

For each operator feed of ``ingestion/operators.yaml``, in order:

1. **land**: every file not seen before is copied byte for byte to ``raw/`` (write-once, keyed
   by its hash) and recorded in the manifest; the same bytes under another name are recorded
   as a *duplicate* and not landed again;
2. **parse**: each landed delivery is parsed against its extract contract; a file that cannot
   be parsed at all goes to ``quarantine/`` with its reason; rows are typed, checked, card ids
   pseudonymised;
3. **stage**: for each service date, the newest parsed delivery becomes the staged partition
   (written whole, atomically); an older one it replaces is recorded as *superseded*.

A feed's failure (an SFTP server down, a missing key) is recorded and the other feeds go on.
Re-running changes nothing: known files are skipped, staged partitions are only rewritten when
a newer delivery wins, and the same input gives byte-identical Parquet.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from citylake.core.errors import (
    CitylakeError,
    ConfigError,
    DataError,
    LakeConfigError,
    TransientError,
)
from citylake.core.lake import RECEIVED, Zone, key, safe_filename
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, open_storage, sha256_bytes
from ingestion import geometry, gtfs, manifest, registry
from ingestion.connectors import DeliveredFile, open_drop, printable
from ingestion.contracts import Contract, contract
from ingestion.feeds import Context, Refs, dataset_of, date_from_name, staging_warnings, to_staged
from ingestion.parsing import Refused, parse
from ingestion.pseudonym import Pseudonymiser

log = logging.getLogger("citylake.ingest")
GTFS_TABLES = ("agency", "stops", "routes", "trips", "stop_times", "calendar", "calendar_dates", "shapes", "feed_info")
#: Optional GTFS columns added as nulls when a feed lacks them, so staged tables keep one schema.
GTFS_OPTIONAL = {
    "stops": ("stop_name", "stop_lat", "stop_lon", "zone_id", "parent_station", "location_type"),
    "routes": ("route_short_name", "route_long_name", "route_type", "route_color", "agency_id"),
    "trips": ("direction_id", "block_id", "shape_id", "trip_headsign"),
    "stop_times": ("arrival_time", "departure_time", "pickup_type", "drop_off_type", "shape_dist_traveled"),
}


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def deadline(c: Contract, day: date | None, tz: str) -> datetime | None:
    """Return when a dated file for service date ``day`` is due (UTC), from its contract's
    'D+1 06:00' in the city's time (:class:`citylake.core.city.Deadline`)."""
    due = registry.deadline_of(c, tz)
    return None if due is None or day is None else due.due(day, tz)


def arrival(clock: str, f: DeliveredFile, received: datetime) -> tuple[str, datetime]:
    """When a file arrived, by the clock its drop can be trusted for (connectors.CLOCKS): never a
    time the operator sets alone. A folder's file is judged on its inode change time (a
    modification time set back by hand moves it forward), an S3 object on the server's
    LastModified, an SFTP file on when the city's night first saw it."""
    if clock == "server":
        return "server", f.delivered_at.replace(microsecond=0)
    if clock == "inode" and f.changed_at is not None:
        return "inode", max(f.delivered_at, f.changed_at).replace(microsecond=0)
    if clock == "mtime":
        return "mtime", f.delivered_at.replace(microsecond=0)
    return "received", received


def generic_reason(reason: str) -> str:
    """Return a row's invalid reason without its value, to count rows per rule."""
    m = re.match(r"^(column '[^']*'): '.*' ((is|does) .*)$", reason)
    if m:
        return f"{m.group(1)}: <value> {m.group(2)}"
    if re.match(r"^column '[^']*': required value missing$", reason):
        return reason
    return re.sub(r"\b\d[\d:.\-+ ]*\d\b|\b\d\b", "N", re.sub(r"'[^']*'", "<value>", reason))


@dataclass
class FeedReport:
    operator: str
    feed: str
    landed: int = 0
    duplicates: int = 0
    parsed: int = 0
    quarantined: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: per error: "config" (fix, never retry), "internal" (an exception no rule foresaw: never
    #: retried either) or "transient"
    error_kinds: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows_invalid: int = 0

    def fail(self, message: str, exc: BaseException) -> None:
        """Record an error that stopped (part of) the feed, keeping its kind."""
        self.errors.append(message)
        self.error_kinds.append("config" if isinstance(exc, ConfigError) else "transient")


@dataclass
class IngestReport:
    run_id: str
    feeds: list[FeedReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.errors for f in self.feeds)

    def errors(self, kind: str | None = None) -> list[str]:
        """Return the feeds' errors as "operator/feed: message", of one kind ("config", "transient") or all."""
        return [
            f"{f.operator}/{f.feed}: {e}"
            for f in self.feeds
            for e, k in zip(f.errors, f.error_kinds, strict=True)
            if kind is None or k == kind
        ]

    def lines(self) -> list[str]:
        out = []
        for f in self.feeds:
            out.append(
                f"{f.operator}/{f.feed}: {f.landed} landed, {f.duplicates} duplicate, {f.parsed} parsed, "
                f"{len(f.quarantined)} quarantined, {len(f.staged)} partition(s) staged, {f.rows_invalid} invalid rows"
            )
            out += [f"  quarantined: {q}" for q in f.quarantined]
            out += [f"  warning: {w}" for w in f.warnings]
            out += [f"  error: {e}" for e in f.errors]
        return out


class Ingestion:
    def __init__(self, settings: Settings, storage: LakeStorage | None = None) -> None:
        self.settings = settings
        self.storage = storage or open_storage(settings)
        self.tz = settings.timezone
        self.run_id = new_run_id()
        self.deliveries = manifest.load(self.storage, "deliveries")
        self.steps = manifest.load(self.storage, "steps")
        self._refs: dict = {}
        self._schedules: dict[str, pl.DataFrame] = {}
        self._pseudo: Pseudonymiser | None | str = "unset"

    # -- references ------------------------------------------------------------------------
    def _read(self, k: str) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.storage.get_bytes(k)))

    def _parquet(self, prefix: str) -> list[str]:
        """The Parquet objects under a staged dataset's prefix."""
        return [i.key for i in self.storage.list(prefix) if i.key.endswith(".parquet")]

    def refs(self, day: date) -> Refs:
        if day in self._refs:
            return self._refs[day]
        refs = Refs()
        versions = self._parquet(key(Zone.STAGED, "gtfs_feed_versions"))
        if versions:
            v = pl.concat([self._read(k) for k in versions])
            inforce = v.filter((pl.col("valid_from") <= day) & (pl.col("valid_to") >= day)).sort("delivered_at")
            if inforce.height:
                version = inforce["feed_version"][-1]
                stops = self._read(key(Zone.STAGED, "gtfs_stops", {"feed_version": version}, "part-0.parquet"))
                refs.stops, refs.gtfs_version = set(stops["stop_id"].to_list()), version
                refs.schedule_loader = lambda version=version: self._schedule(version)
        facilities = self._parquet(key(Zone.STAGED, "parking_facilities"))
        if facilities:
            from ingestion.feeds import normalise_name

            frame = pl.concat([self._read(k) for k in facilities], how="diagonal_relaxed").filter(
                pl.col("is_valid") & (pl.col("as_of_date") <= day)
            )
            latest = frame.sort("as_of_date").unique(["operator", "facility_id"], keep="last")
            refs.facilities_by_name = {
                normalise_name(n): i for n, i in latest.select("facility_name", "facility_id").iter_rows() if n
            }
            refs.capacities = {
                i: int(c) for i, c in latest.select("facility_id", "capacity").iter_rows() if i and c is not None
            }
        registers = self._parquet(key(Zone.STAGED, "vehicles"))
        if registers:
            frame = pl.concat([self._read(k) for k in registers]).filter(pl.col("as_of_date") <= day)
            if frame.height:
                latest = frame.filter(pl.col("as_of_date") == pl.col("as_of_date").max())
                refs.vehicles = set(latest["vehicle_id"].drop_nulls().to_list())
        self._refs[day] = refs
        return refs

    def _schedule(self, version: str) -> pl.DataFrame:
        """The GTFS version's stop times with their line and direction (what real-time feeds
        leave out), times as seconds after the service day start; read once per version."""
        cache = self._schedules
        if version not in cache:

            def table(name: str) -> pl.DataFrame:
                return self._read(key(Zone.STAGED, f"gtfs_{name}", {"feed_version": version}, "part-0.parquet"))

            def seconds(col: str) -> pl.Expr:
                parts = pl.col(col).str.split(":")
                return (
                    parts.list.get(0, null_on_oob=True).cast(pl.Int64, strict=False) * 3600
                    + parts.list.get(1, null_on_oob=True).cast(pl.Int64, strict=False) * 60
                    + parts.list.get(2, null_on_oob=True).cast(pl.Int64, strict=False)
                )

            trips = table("trips").select("trip_id", "route_id", pl.col("direction_id").cast(pl.Int64, strict=False))
            routes = table("routes").select("route_id", "route_short_name")
            cache[version] = (
                table("stop_times")
                .select(
                    "trip_id",
                    pl.col("stop_sequence").cast(pl.Int64, strict=False),
                    "stop_id",
                    seconds("arrival_time").alias("arrival_secs"),
                    seconds("departure_time").alias("departure_secs"),
                )
                .join(trips, on="trip_id", how="left")
                .join(routes, on="route_id", how="left")
                .select(
                    "trip_id",
                    "stop_sequence",
                    "stop_id",
                    "route_short_name",
                    "direction_id",
                    "arrival_secs",
                    "departure_secs",
                )
            )
        return cache[version]

    def pseudonymiser(self) -> Pseudonymiser:
        if self._pseudo == "unset":
            try:
                self._pseudo = Pseudonymiser(
                    self.settings.pseudonym_key.get_secret_value() if self.settings.pseudonym_key else None,
                    self.settings.pseudonym_rotation,
                )
            except LakeConfigError as exc:
                self._pseudo = None
                self._pseudo_error = str(exc)
        if self._pseudo is None:
            raise LakeConfigError(self._pseudo_error)
        return self._pseudo

    # -- one feed --------------------------------------------------------------------------
    def feed(
        self,
        operator: str,
        feed: str,
        spec: dict,
        *,
        service_date: date | None = None,
        as_of: datetime | None = None,
        force: bool = False,
        dry_run: bool = False,
        aliases: dict[str, str] | None = None,
    ) -> FeedReport:
        report = FeedReport(operator, feed)
        rec = manifest.RunRecords(self.run_id, operator, feed)
        try:
            return self._feed(report, rec, operator, feed, spec, service_date, as_of, force, dry_run, aliases)
        except CitylakeError:
            raise
        except Exception as exc:  # noqa: BLE001 - one feed's unforeseen failure never stops the others
            log.exception("%s/%s failed", operator, feed)
            message = f"ingestion failed ({type(exc).__name__}); what was landed is kept and recorded"
            report.errors.append(message)
            report.error_kinds.append("internal")
            rec.step(None, "error", "error", message)
            if not dry_run:
                rec.write(self.storage)
            return report

    def _feed(self, report, rec, operator, feed, spec, service_date, as_of, force, dry_run, aliases) -> FeedReport:
        c = contract(operator, feed)
        try:
            drop = open_drop(self.settings, spec, feed)
            files = drop.list()
        except (TransientError, LakeConfigError) as exc:
            report.fail(str(exc), exc)
            rec.step(None, "error", "error", f"drop not readable: {exc}")
            if not dry_run:
                rec.write(self.storage)
            return report
        recorded = set(
            self.steps.filter(
                (pl.col("operator") == operator) & (pl.col("feed") == feed) & (pl.col("step") == "skipped")
            )["detail"].to_list()
        )
        for name, why in getattr(drop, "skipped", []):  # every entry passed over leaves a trace, once
            detail = f"{printable(name)}: skipped, {why}"
            if detail not in recorded and not dry_run:
                rec.step(None, "skipped", "warning", detail)
                report.warnings.append(detail)
        if as_of is not None:
            files = [f for f in files if f.delivered_at <= as_of]
        if service_date is not None:
            files = [f for f in files if date_from_name(c, f.label) in (None, service_date)]

        mine = self.deliveries.filter((pl.col("operator") == operator) & (pl.col("feed") == feed))
        seen = {(n, d, s) for n, d, s in mine.select("original_name", "delivered_at", "size_bytes").iter_rows()}
        raw_by_sha = dict(mine.filter(pl.col("duplicate_of").is_null()).select("sha256", "raw_key").iter_rows())
        to_parse: list[tuple[str, bytes, DeliveredFile, datetime]] = []
        for f in files:
            if (f.label, f.delivered_at.replace(microsecond=0), f.size) in seen or (
                f.label,
                f.delivered_at,
                f.size,
            ) in seen:
                continue
            if dry_run:
                print(f"would land {drop.uri.rstrip('/')}/{f.label} ({f.size} bytes)")
                continue
            data = drop.read(f)
            sha = sha256_bytes(data)
            received = manifest.now()
            declared = date_from_name(c, f.label)
            due = deadline(c, declared, self.tz)
            judged_on, judged_at = arrival(drop.clock, f, received)
            row = {
                "run_id": self.run_id,
                "operator": operator,
                "feed": feed,
                "original_name": f.label,
                "raw_key": None,
                "size_bytes": len(data),
                "sha256": sha,
                "delivered_at": f.delivered_at.replace(microsecond=0),
                "received_at": received,
                "contract_version": c.version,
                "declared_date": declared,
                "deadline_at": due,
                "is_late": (judged_at > due) if due else None,
                "duplicate_of": None,
                "judged_at": judged_at,
                "judged_on": judged_on,
            }
            if sha in raw_by_sha:
                row["duplicate_of"] = raw_by_sha[sha]
                rec.deliveries.append(row)
                rec.step(sha, "duplicate", "warning", f"{f.label}: same bytes as {raw_by_sha[sha]}, not landed again")
                report.duplicates += 1
                continue
            raw_key = key(
                Zone.RAW,
                None,
                {"operator": operator, "feed": feed, RECEIVED: received.date()},
                f"{sha[:16]}__{safe_filename(f.label)}",
            )
            self.storage.put_bytes(
                raw_key,
                data,
                metadata={
                    "operator": operator,
                    "feed": feed,
                    "original-name": f.label.encode("ascii", "replace").decode(),
                    "delivered-at": f.delivered_at.isoformat(),
                },
            )
            row["raw_key"] = raw_key
            raw_by_sha[sha] = raw_key
            rec.deliveries.append(row)
            rec.step(sha, "landed", "ok", f"{f.label} -> {raw_key}")
            report.landed += 1
            to_parse.append((sha, data, f, received))
        if dry_run:
            return report

        # Deliveries landed earlier but never parsed (e.g. no pseudonym key then), or forced.
        done = set(
            self.steps.filter(
                pl.col("step").is_in(["parsed", "quarantined"])
                & (pl.col("operator") == operator)
                & (pl.col("feed") == feed)
            )["sha256"].to_list()
        )
        pending = mine.filter(pl.col("duplicate_of").is_null() & ~pl.col("sha256").is_in(list(done)))
        if force:
            pending = mine.filter(pl.col("duplicate_of").is_null())
        if service_date is not None:
            pending = pending.filter(pl.col("declared_date").is_null() | (pl.col("declared_date") == service_date))
        queued = {s for s, *_ in to_parse}
        for row in pending.iter_rows(named=True):
            if row["sha256"] in queued:
                continue
            data = self.storage.get_bytes(row["raw_key"])
            item = DeliveredFile(row["original_name"], row["size_bytes"], row["delivered_at"], row["raw_key"])
            to_parse.append((row["sha256"], data, item, row["received_at"]))

        if c.format in ("gtfs", "netex"):  # the network's offer: staged as GTFS tables per version
            for sha, data, f, _ in to_parse:
                self._gtfs(rec, report, sha, data, f, c, force)
        else:
            self._parse_and_stage(rec, report, c, to_parse, force, aliases)
        rec.write(self.storage)
        return report

    def _quarantine(self, rec, report, operator, feed, sha, data, f: DeliveredFile, c: Contract, reason: str) -> None:
        base = key(
            Zone.QUARANTINE,
            None,
            {"operator": operator, "feed": feed, RECEIVED: manifest.now().date()},
            f"{sha[:16]}__{safe_filename(f.label)}",
        )
        self.storage.put_bytes(base, data)
        self.storage.put_json(
            base + ".reason.json",
            {
                "reason": reason,
                "sha256": sha,
                "original_name": f.label,
                "delivered_at": f.delivered_at,
                "contract": f"{c.key} v{c.version}",
                "run_id": self.run_id,
            },
        )
        rec.step(sha, "quarantined", "error", reason, staged_key=base)
        report.quarantined.append(reason)
        log.warning("quarantined %s: %s", f.label, reason)

    def _parse_and_stage(self, rec, report, c: Contract, to_parse, force: bool, aliases: dict | None = None) -> None:
        operator, feed = c.operator, c.feed
        dataset = dataset_of(c)
        candidates: dict[date, list[tuple[datetime, datetime, str, pl.DataFrame]]] = {}
        partition_from = c.file.get("partition_from", "name")
        for sha, data, f, received in to_parse:
            declared = date_from_name(c, f.label)
            if partition_from == "delivered":
                declared = f.delivered_at.astimezone(ZoneInfo(self.tz)).date()
            elif partition_from == "rows":
                declared = f.delivered_at.astimezone(ZoneInfo(self.tz)).date()  # references as of delivery
            if declared is None:
                self._quarantine(
                    rec,
                    report,
                    operator,
                    feed,
                    sha,
                    data,
                    f,
                    c,
                    f"{f.label}: the name does not match {c.file['file_name']!r}, so its date is unknown",
                )
                continue
            try:
                pseudo = self.pseudonymiser() if dataset.personal else None
            except LakeConfigError as exc:
                rec.step(sha, "error", "error", f"{f.label}: {exc}")
                report.fail(f"{f.label}: {exc}", exc)
                continue
            try:
                parsed = parse(c, data, f.label, self.tz, date_from_name(c, f.label))
                refs = self.refs(declared)
                ctx = Context(operator, sha, declared, self.tz, refs, pseudo, aliases, partition_from=partition_from)
                staged = to_staged(dataset, parsed.frame, ctx)
                parsed.warnings += [f"{f.label}: {w}" for w in staging_warnings(dataset, staged, ctx)]
            except Refused as exc:
                self._quarantine(rec, report, operator, feed, sha, data, f, c, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a file no rule foresaw fails alone, kept for a fix
                log.exception("%s/%s: %s could not be read", operator, feed, f.label)
                reason = (
                    f"{f.label}: could not be read against {c.key} v{c.version} ({type(exc).__name__}); "
                    "kept in quarantine for a fix of the contract or the code"
                )
                self._quarantine(rec, report, operator, feed, sha, data, f, c, reason)
                continue
            # one unit everywhere: staged rows (a wide file's readings, an APC row's two events)
            total = staged.height
            valid = int(staged["is_valid"].sum())
            invalid_reasons = staged.filter(~pl.col("is_valid")).group_by("invalid_reason").len()
            reasons: dict[str, int] = {}
            for reason, n in invalid_reasons.iter_rows():
                generic = generic_reason(reason)
                reasons[generic] = reasons.get(generic, 0) + n
            for reason, n in sorted(reasons.items()):
                rec.invalid.append(
                    {
                        "run_id": self.run_id,
                        "operator": operator,
                        "feed": feed,
                        "sha256": sha,
                        "reason": reason,
                        "rows": n,
                    }
                )
            outcome = "warning" if parsed.warnings or valid < total else "ok"
            rec.step(
                sha,
                "parsed",
                outcome,
                "; ".join([f"{total:,} staged rows from {parsed.records:,} records", *parsed.warnings]),
                rows_total=total,
                rows_valid=valid,
                dataset=dataset.name,
                partition_date=None if partition_from == "rows" else declared,
            )
            report.parsed += 1
            report.rows_invalid += total - valid
            report.warnings += parsed.warnings
            if partition_from == "rows":  # one delivery, many service dates
                for (day,), part in staged.partition_by(dataset.partition, as_dict=True, maintain_order=True).items():
                    if day is not None:
                        candidates.setdefault(day, []).append((f.delivered_at, received, sha, part))
            else:
                candidates.setdefault(declared, []).append((f.delivered_at, received, sha, staged))

        history = self.steps.filter((pl.col("operator") == operator) & (pl.col("feed") == feed))
        parsed_ok = history.filter(pl.col("step") == "parsed").join(
            self.deliveries.filter(pl.col("duplicate_of").is_null()).select("sha256", "delivered_at", "received_at"),
            on="sha256",
        )
        staged_steps = history.filter(pl.col("step") == "staged").sort("at")
        for day, new in sorted(candidates.items()):
            prior = parsed_ok.filter(pl.col("partition_date") == day)
            contenders = [(d, r, s, frame) for d, r, s, frame in new]
            contenders += [
                (d, r, s, None)
                for s, d, r in prior.select("sha256", "delivered_at", "received_at").iter_rows()
                if s not in {x[2] for x in new}
            ]
            contenders.sort(key=lambda x: (x[0], x[1], x[2]))
            winner = contenders[-1]
            current = staged_steps.filter(pl.col("partition_date") == day)
            current_sha = current["sha256"][-1] if current.height else None
            if winner[3] is None or (winner[2] == current_sha and not force):
                continue  # an earlier delivery still wins, or it is already staged
            k = key(Zone.STAGED, dataset.name, {"operator": operator, dataset.partition: day}, "part-0.parquet")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "part-0.parquet"
                winner[3].write_parquet(path, compression="zstd")
                self.storage.put_file(k, path, overwrite=True)
            rec.step(
                winner[2],
                "staged",
                "ok",
                f"{winner[3].height} rows",
                rows_total=winner[3].height,
                dataset=dataset.name,
                partition_date=day,
                staged_key=k,
            )
            report.staged.append(k)
            self._refs.clear()  # a register or network just changed: references are read again
            if current_sha and current_sha != winner[2]:
                rec.step(
                    current_sha,
                    "superseded",
                    "ok",
                    f"replaced in {k} by a newer delivery {winner[2][:16]}",
                    dataset=dataset.name,
                    partition_date=day,
                    staged_key=k,
                )

    def _gtfs(self, rec, report, sha, data, f: DeliveredFile, c: Contract, force: bool) -> None:
        """Read and stage one offer; whatever goes wrong with it is that file's, kept in quarantine."""
        try:
            feed = self._read_offer(data, f, c)
            self._stage_offer(rec, report, sha, feed, f, c)
        except (Refused, DataError) as exc:
            self._quarantine(rec, report, c.operator, c.feed, sha, data, f, c, str(exc))
        except Exception as exc:  # noqa: BLE001 - a file no rule foresaw fails alone, kept for a fix
            log.exception("%s/%s: %s could not be read", c.operator, c.feed, f.label)
            reason = (
                f"{f.label}: could not be read against {c.key} v{c.version} ({type(exc).__name__}); "
                "kept in quarantine for a fix of the contract or the code"
            )
            self._quarantine(rec, report, c.operator, c.feed, sha, data, f, c, reason)

    def _read_offer(self, data: bytes, f: DeliveredFile, c: Contract) -> gtfs.Feed:
        if c.format == "netex":
            from ingestion.standards import netex

            feed = netex.read(data, f.label, c.file.get("ids"))
            gtfs.check_calendar(feed)
            return feed
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feed.zip"
            path.write_bytes(data)
            try:
                if not zipfile.is_zipfile(path):
                    raise DataError(f"{f.label}: not a zip archive")
                return gtfs.read_feed(path)
            except DataError as exc:  # named by the delivered file, not the temporary copy
                raise DataError(str(exc).replace(str(path), f.label)) from None

    def _put_staged(self, dataset: str, version: str, frame: pl.DataFrame) -> str:
        """Write one network version's table to the staged zone whole; return its key."""
        k = key(Zone.STAGED, dataset, {"feed_version": version}, "part-0.parquet")
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "part.parquet"
            frame.write_parquet(p, compression="zstd")
            self.storage.put_file(k, p, overwrite=True)
        return k

    def _stage_offer(self, rec, report, sha, feed: gtfs.Feed, f: DeliveredFile, c: Contract) -> None:
        dates = sorted(gtfs.service_dates(feed))
        info = feed.get("feed_info")
        version = (
            info["feed_version"][0] if info is not None and "feed_version" in info.columns and info.height else None
        ) or sha[:12]
        # a partition value starts with a letter or digit and holds no separator: the producer's
        # version made safe, else the file's hash
        version = re.sub(r"[^A-Za-z0-9_.:+\-]", "_", str(version)).lstrip("_.:+-")[:120] or sha[:12]

        def info_date(column: str, fallback: date | None) -> date | None:
            if info is None or column not in info.columns or not info.height or not info[column][0]:
                return fallback
            try:
                return gtfs.parse_date(str(info[column][0]))
            except ValueError:
                raise DataError(f"{f.label}: feed_info.txt {column} is not a YYYYMMDD date") from None

        start = info_date("feed_start_date", dates[0] if dates else None)
        end = info_date("feed_end_date", dates[-1] if dates else None)
        written = 0
        for table in GTFS_TABLES:
            frame = feed.get(table)
            if frame is None or frame.width == 0:
                continue
            missing = [col for col in GTFS_OPTIONAL.get(table, ()) if col not in frame.columns]
            frame = frame.with_columns(*(pl.lit(None, pl.Utf8).alias(col) for col in missing))
            frame = frame.with_columns(pl.lit(c.operator).alias("operator"), pl.lit(sha).alias("source_sha256"))
            self._put_staged(f"gtfs_{table}", version, frame)
            written += 1
        # where each trip's stops lie along its shape, and the segments between them (issue #34)
        distances, segments = geometry.stop_distances(feed)
        for table, frame in (("gtfs_stop_distances", distances), ("gtfs_pattern_segments", segments)):
            frame = frame.with_columns(pl.lit(c.operator).alias("operator"), pl.lit(sha).alias("source_sha256"))
            self._put_staged(table, version, frame)
            written += 1
        # the calendar made explicit (calendar.txt and calendar_dates.txt resolved), one row per service and date
        service_dates = pl.DataFrame(
            [{"service_id": sid, "date": d} for d, sids in gtfs.service_dates(feed).items() for sid in sorted(sids)],
            schema={"service_id": pl.Utf8, "date": pl.Date},
        ).with_columns(pl.lit(c.operator).alias("operator"), pl.lit(sha).alias("source_sha256"))
        self._put_staged("gtfs_service_dates", version, service_dates)
        versions = pl.DataFrame(
            {
                "operator": [c.operator],
                "feed_version": [version],
                "valid_from": [start],
                "valid_to": [end],
                "source_sha256": [sha],
                "delivered_at": [f.delivered_at],
                "original_name": [f.label],
            }
        )
        k = self._put_staged("gtfs_feed_versions", version, versions)
        rows = feed["stop_times"].height
        rec.step(
            sha,
            "parsed",
            "warning" if feed.problems else "ok",
            f"{c.format.upper() if c.format == 'netex' else 'GTFS'} {version} valid {start}..{end}"
            + (f"; {len(feed.problems)} not placed: {'; '.join(feed.problems[:5])}" if feed.problems else ""),
            rows_total=rows,
            rows_valid=rows,
            dataset="gtfs",
        )
        rec.step(sha, "staged", "ok", f"{written} tables", dataset="gtfs", staged_key=k)
        report.parsed += 1
        report.staged.append(k)
        self._refs.clear()


def ingest(
    settings: Settings,
    *,
    operator: str | None = None,
    feed: str | None = None,
    service_date: date | None = None,
    as_of: datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    storage: LakeStorage | None = None,
    progress: bool = False,
    config: dict | None = None,
) -> IngestReport:
    """Pull, land, parse and stage every configured operator feed (or the ones named).

    ``config`` replaces the registry's operators (same shape: operator -> drop, feeds).
    References (registers) are ingested first: dated feeds are checked against them."""
    from tqdm import tqdm

    config = config or registry.operators()
    if operator and operator not in config:
        raise LakeConfigError(f"unknown operator {operator!r}: {', '.join(config)}")
    job = Ingestion(settings, storage)
    report = IngestReport(job.run_id)
    todo = []
    for op, spec in config.items():
        if operator and op != operator:
            continue
        feeds = sorted(spec["feeds"], key=lambda f, op=op: not contract(op, f).reference)
        for fd in feeds:
            if feed and fd != feed:
                continue
            todo.append((op, fd, spec["drop"], spec.get("aliases")))
    if feed and not todo:
        raise LakeConfigError(f"no feed {feed!r} configured" + (f" for {operator}" if operator else ""))
    for op, fd, drop, aliases in tqdm(todo, desc="ingest", unit="feed", disable=not progress):
        try:
            report.feeds.append(
                job.feed(
                    op, fd, drop, service_date=service_date, as_of=as_of, force=force, dry_run=dry_run, aliases=aliases
                )
            )
        except (CitylakeError, ValueError) as exc:  # one feed's failure never stops the others
            log.error("%s/%s failed: %s", op, fd, exc)
            failed = FeedReport(op, fd)
            failed.fail(str(exc), exc)
            report.feeds.append(failed)
    return report


def summary_json(report: IngestReport) -> str:
    return json.dumps([f.__dict__ for f in report.feeds], indent=2, default=str)
