"""``citylake`` command line: one subcommand per step of the flow, explicit partitions.

Each subcommand is a thin wrapper over a function of the package; the Airflow DAGs call the
same functions. Commands whose issue has not landed yet say so and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date as date_
from pathlib import Path

from citylake.core.errors import CitylakeError, ConfigError

log = logging.getLogger("citylake")

Handler = Callable[[argparse.Namespace], int]


def _settings():
    from citylake.core.settings import Settings

    return Settings()


def _storage(settings=None):
    from citylake.core.storage import open_storage

    return open_storage(settings or _settings())


# -- implemented commands ------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    """Print the effective settings (secrets masked) and where the lake is."""
    from citylake.night.airflow import nightly_cron
    from ingestion import registry

    settings = _settings()
    shown = settings.model_dump()
    for name in ("s3_access_key", "s3_secret_key", "pseudonym_key"):
        shown[name] = "set" if shown.get(name) else "not set"
    city = settings.city
    tz = city.timezone
    shown["city"] = {
        **city.model_dump(),
        "night": {"cron": nightly_cron(settings), "time_zone": tz},
        "feeds": {
            f"{c.operator}/{c.feed}": {
                "group": c.group,
                "deadline": str(due) if (due := registry.deadline_of(c, tz)) else c.file.get("deadline"),
                "personal_columns": [col.name for col in c.columns if col.personal],
            }
            for c in registry.feeds()
        },
    }
    print(json.dumps(shown, indent=2, default=str, ensure_ascii=False))
    return 0


def cmd_install_extensions(args: argparse.Namespace) -> int:
    """Install the DuckDB extensions shipped as wheels into DuckDB's extension directory."""
    from citylake.core.duck import install_bundled_extensions

    for name in install_bundled_extensions():
        print(f"installed DuckDB extension {name} (offline, from its wheel)")
    return 0


def cmd_install_vendor(args: argparse.Namespace) -> int:
    """Fetch the explorer's browser library (MapLibre GL JS) at its pinned version and integrity."""
    from citylake.consumers import vendor

    folder = vendor.install(args.registry)
    print(f"{vendor.PIN['package']} {vendor.PIN['version']} ({vendor.PIN['integrity'][:20]}…): {folder}")
    return 0


def cmd_lake_init(args: argparse.Namespace) -> int:
    """Create the lake (bucket on S3) and check it can be written and read by DuckDB."""
    from citylake.core.doctor import init_lake

    for line in init_lake(_settings()):
        print(line)
    return 0


def cmd_lake_migrate(args: argparse.Namespace) -> int:
    """Bring a lake written by an earlier version to this version's staged schema, in place."""
    from citylake.core.lock import lake_lock
    from citylake.night.steps import LOCK
    from ingestion.migrations import migrate_staged

    storage = _storage()
    with lake_lock(storage, LOCK, owner="citylake lake migrate"):
        done = migrate_staged(storage)
    print(
        f"staged files: {done.seen}; trip named trip_id (was trip_id_performed) in {len(done.rewritten)}"
        + ("" if done.rewritten else " (the lake is already at this version)")
    )
    return 0


def cmd_lake_ls(args: argparse.Namespace) -> int:
    storage = _storage()
    for info in storage.list(args.prefix):
        print(f"{info.size:>12}  {info.last_modified:%Y-%m-%d %H:%M:%S}  {info.key}")
    return 0


def cmd_lake_put(args: argparse.Namespace) -> int:
    storage = _storage()
    if args.dry_run:
        print(f"would put {args.path} at {storage.url(args.key)}")
        return 0
    info = storage.put_file(args.key, args.path, overwrite=args.overwrite)
    print(f"{storage.url(info.key)}  {info.size} bytes  sha256={info.sha256}")
    return 0


def cmd_lake_get(args: argparse.Namespace) -> int:
    storage = _storage()
    if args.dest:
        print(storage.download(args.key, args.dest))
    else:
        sys.stdout.buffer.write(storage.get_bytes(args.key))
    return 0


def cmd_lake_stat(args: argparse.Namespace) -> int:
    info = _storage().stat(args.key)
    print(
        json.dumps(
            {
                "key": info.key,
                "size": info.size,
                "last_modified": info.last_modified,
                "sha256": info.sha256,
                "metadata": dict(info.metadata),
            },
            indent=2,
            default=str,
        )
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Land, parse and stage operators' deliveries."""
    from ingestion.run import ingest

    report = ingest(
        _settings(),
        operator=args.operator,
        feed=args.feed,
        service_date=args.date,
        as_of=args.as_of,
        force=args.force,
        dry_run=args.dry_run,
        progress=not args.no_progress,
    )
    for line in report.lines():
        print(line)
    print(f"run {report.run_id}: manifest in control/manifest/ of the lake")
    return 0 if report.ok else 1


def cmd_contract_check(args: argparse.Namespace) -> int:
    """Parse a sample file against an extract contract and show what would be staged, before go-live.

    Exit 0: every row valid (warnings shown); 1: some rows invalid; 2: the contract or the file
    cannot be used (the message says what to change)."""
    import secrets
    from pathlib import Path

    from ingestion.contracts import contract, load_file
    from ingestion.feeds import Context, Refs, dataset_of, date_from_name, staging_warnings, to_staged
    from ingestion.parsing import Refused, parse
    from ingestion.pseudonym import Pseudonymiser

    settings = _settings()
    try:
        if args.contract.endswith((".yaml", ".yml")):
            c = load_file(Path(args.contract))
        else:
            operator, _, feed = args.contract.partition("/")
            c = contract(operator, feed)
        if c.format in ("gtfs", "netex"):
            return _check_offer(c, Path(args.file))
        dataset = dataset_of(c)
    except (KeyError, ValueError) as exc:
        print(f"citylake contract check: the contract cannot be used: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"citylake contract check: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{path.name} against {c.key} v{c.version} ({c.format}, staged as {dataset.name})")
    partition_from = c.file.get("partition_from", "name")
    day = date_from_name(c, path.name) if partition_from == "name" else None
    if day is None and partition_from == "name":
        print(
            f"  refused: the name does not match file.file_name {c.file['file_name']!r}, so its date is unknown "
            "(rename the sample as the operator will deliver it, or fix file.file_name)"
        )
        return 2
    try:
        parsed = parse(c, data, path.name, settings.timezone, day)
        # card serials of a sample are pseudonymised with a throwaway key: nothing is kept
        throwaway = Pseudonymiser(secrets.token_hex(32)) if dataset.personal else None
        ctx = Context(
            c.operator,
            "sample",
            day or _date_today(settings),
            settings.timezone,
            Refs(),
            throwaway,
            partition_from=partition_from,
        )
        staged = to_staged(dataset, parsed.frame, ctx)
        parsed.warnings += staging_warnings(dataset, staged, ctx)
    except Refused as exc:
        print(f"  refused (the file would go to quarantine): {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - a person reads this, never a traceback
        print(
            f"  refused: the file could not be read against this contract ({type(exc).__name__}); "
            "check file.format, the columns' types and the builder"
        )
        return 2
    _print_check(c, dataset, parsed, staged, settings.timezone, args.rows)
    return 0 if staged["is_valid"].all() else 1


def _print_check(c, dataset, parsed, staged, tz: str, preview: int) -> None:
    """Counts in one unit (staged rows), a preview of the first staged rows as typed (times in
    local time and UTC), the invalid rows grouped by rule with their lines, and the warnings."""
    import polars as pl

    from ingestion.run import generic_reason

    valid = int(staged["is_valid"].sum())
    unit = "readings" if c.file.get("layout") == "wide" else "rows"
    print(
        f"  staged {unit}: {staged.height:,} = {valid:,} valid + {staged.height - valid:,} invalid "
        f"(from {parsed.records:,} records of the file)"
    )
    print("  (ids are not checked against the network's references here: no lake is read)")
    for warning in parsed.warnings:
        print(f"  warning: {warning}")
    if staged.height and preview:
        print(f"  first {min(preview, staged.height)} staged {unit} ({dataset.name}), as typed:")
        shown = [col for col in staged.columns if col not in ("source_sha256", "operator")]
        for row in staged.head(preview).iter_rows(named=True):
            cells = []
            for col in shown:
                v = row[col]
                if hasattr(v, "tzinfo") and getattr(v, "tzinfo", None) is not None:
                    from zoneinfo import ZoneInfo

                    v = f"{v.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M:%S%z} local = {v:%Y-%m-%d %H:%M:%S} UTC"
                cells.append(f"{col}={v}")
            print("    " + ", ".join(cells))
    bad = staged.filter(~pl.col("is_valid"))
    by_rule: dict[str, list[tuple[int, str]]] = {}
    for row, reason in bad.select("source_row", "invalid_reason").iter_rows():
        by_rule.setdefault(generic_reason(reason), []).append((row, reason))
    for rule, rows in sorted(by_rule.items(), key=lambda kv: -len(kv[1])):
        lines = sorted({r for r, _ in rows})
        more = f" and {len(lines) - 10:,} more" if len(lines) > 10 else ""
        print(f"  {len(rows):>7,} × {rule}")
        print(f"           lines {', '.join(f'{n:,}' for n in lines[:10])}{more}; first: {rows[0][1]}")


def cmd_archive(args: argparse.Namespace) -> int:
    """Poll an operator's public real-time feed and deliver hourly batches into its drop."""
    from ingestion.archiver import from_config

    archiver = from_config(_settings(), args.operator, args.feed)
    print(f"archiving {archiver.url.split('?')[0]} every {archiver.interval_s:g} s into {archiver.drop.uri}")
    archiver.run(polls=args.polls, seconds=args.minutes * 60 if args.minutes else None)
    outcomes = {o: sum(p.outcome == o for p in archiver.polls) for o in ("new", "same", "error")}
    print(f"{len(archiver.polls)} polls: {outcomes['new']} new, {outcomes['same']} same, {outcomes['error']} errors")
    for where in archiver.delivered:
        print(f"delivered {where}")
    return 0 if outcomes["new"] else 1


def _check_offer(c, path) -> int:
    """A network's offer (GTFS zip or NeTEx): the tables it gives and the dates it covers."""
    from citylake.core.errors import DataError
    from ingestion import gtfs
    from ingestion.parsing import Refused
    from ingestion.standards import netex

    print(f"{path.name} against {c.key} v{c.version} ({c.format}, staged as the GTFS tables)")
    try:
        feed = (
            netex.read(path.read_bytes(), path.name, c.file.get("ids")) if c.format == "netex" else gtfs.read_feed(path)
        )
    except (Refused, DataError) as exc:
        print(f"  refused (the file would go to quarantine): {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - a person reads this, never a traceback
        print(f"  refused: the offer could not be read ({type(exc).__name__})")
        return 2
    for table, frame in sorted(feed.tables.items()):
        print(f"  {table}: {frame.height:,} rows")
    dates = sorted(gtfs.service_dates(feed))
    print(f"  service dates: {dates[0]} to {dates[-1]} ({len(dates)} days)" if dates else "  service dates: none")
    for problem in feed.problems:
        print(f"  not placed: {problem}")
    return 0 if dates and not feed.problems else 1


def _date_today(settings):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.timezone)).date()


def cmd_build(args: argparse.Namespace) -> int:
    """dbt build of the marts into the warehouse (candidate) for some or all service dates."""
    from citylake.build.dbt import build

    dates = [date_.fromisoformat(d) for d in args.dates.split(",")] if args.dates else []
    result = build(
        _settings(), service_dates=dates, full_refresh=args.full_refresh, select=args.select, unit_tests=args.unit_tests
    )
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"dbt build into {result.warehouse}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for r in result.failures:
        print(f"  {r['status']}: {r['node']}: {(r['message'] or '').strip()[:500]}", file=sys.stderr)
    return 0 if result.success else 1


def cmd_freshness(args: argparse.Namespace) -> int:
    """How old the newest staged day of each dated feed is, against the contracts' deadlines."""
    from citylake.build.dbt import run_dbt

    result = run_dbt(["source", "freshness"], _settings())
    worst = "pass"
    for r in sorted(result.results, key=lambda r: r["node"]):
        age = (
            f"newest service date {r['age_s'] / 3600:.0f} h old" if r.get("age_s") is not None else (r["message"] or "")
        )
        print(f"{r['status']:<6} {r['node'].removeprefix('source.citylake.')}: {age}")
        if r["status"] in ("error", "runtime error") or (r["status"] == "warn" and worst == "pass"):
            worst = "error" if r["status"] != "warn" else "warn"
    print(f"source freshness: {worst} (thresholds from the contracts' deadlines, from midnight on the city's clock)")
    return 1 if worst == "error" else 0


def _print_gate(gate, storage) -> None:
    print(
        f"published groups: {', '.join(gate.published_groups) or 'none'}"
        + (f" (publication {gate.publication_id})" if gate.publication_id else "")
    )
    through = (gate.record or {}).get("published_through", {})
    for g, reasons in gate.refused_groups.items():
        if g in through:  # a run of batches stopped: the group is published up to the batch before
            print(f"refused group {g} (published up to {through[g]}; the dates after keep their previous publication):")
        else:
            print(f"refused group {g} (the previous publication stays):")
        for r in reasons[:10]:
            print(f"  - {r}")
    for w in gate.warnings[:20]:
        print(f"warning: {w}")
    if gate.report_key:
        print(f"quality report: {storage.url(gate.report_key)}")


class StepProgress:
    """The progress of a long command on the terminal: a spinner on the step running, then one
    line per step done with its time (on stderr; a plain line per step when it is not a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, soft_wrap=True)
        self.status = self.console.status("", spinner="dots") if self.console.is_terminal else None
        self.step: str | None = None
        self.started = 0.0
        self.first = time.perf_counter()

    def __call__(self, step: str) -> None:
        self._done()
        self.step, self.started = step, time.perf_counter()
        if self.status is not None:
            self.status.update(f"{step} …")
            self.status.start()

    def _done(self) -> None:
        if self.step is not None:
            if self.status is not None:
                self.status.stop()
            took = time.perf_counter() - self.started
            self.console.print(f"  ✓ {self.step}  [dim]{took:.1f} s[/dim]", highlight=False)
            self.step = None

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._done()
        self.console.print(f"  [dim]in {time.perf_counter() - self.first:.0f} s[/dim]", highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    """The whole night in-process: ingest, build, audit, publish, report, notify."""
    from citylake.core.storage import open_storage
    from citylake.night.steps import run_night

    settings = _settings()
    with StepProgress() as progress:
        night = run_night(
            settings, service_date=args.date, as_of=args.as_of, full_refresh=args.full_refresh, progress=progress
        )
    return _print_night(night, ", ".join(d.isoformat() for d in night.service_dates), open_storage(settings))


def _print_night(night, dates: str, storage) -> int:
    """Print what a night (or a backfill) ingested, built and published; return the exit code."""
    for line in night.ingest.lines() if night.ingest else []:
        print(line)
    print(f"built service dates: {dates} (dbt {'ok' if night.build_ok else 'with failures'})")
    _print_gate(night.gate, storage)
    for k in night.contract_reports:
        print(f"contract report: {storage.url(k)}")
    if night.docs_site:
        print(
            f"docs of the marts: {storage.url(night.docs_site)}  "
            "(citylake serve: /docs/marts with a token, or the signed link /v1/docs/link answers)"
        )
    if night.report_error:
        print(f"error: {night.report_error}")
    return 0 if night.ok else 1


def _range_args(args: argparse.Namespace, command: str) -> None:
    if args.resume and (args.first or args.last):
        raise ConfigError(f"{command} --resume takes the interrupted run's dates: give no --from/--to with it")
    if not args.resume and not (args.first and args.last):
        raise ConfigError(f"{command}: give --from and --to (or --resume)")


def cmd_backfill(args: argparse.Namespace) -> int:
    """A range of service dates: ingest, build in batches, one audit, one publication."""
    from citylake.core.storage import open_storage
    from citylake.night.steps import backfill

    _range_args(args, "backfill")
    settings = _settings()
    with StepProgress() as progress:
        night = backfill(settings, args.first, args.last, progress=progress, resume=args.resume)
    first, last = night.range
    code = _print_night(night, f"{len(night.service_dates)} from {first} to {last}", open_storage(settings))
    _print_stopped(night, "backfill")
    return code


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Recompute a past range from what is staged, in batches; one audit, one publication."""
    from citylake.core.storage import open_storage
    from citylake.night.steps import rebuild

    _range_args(args, "rebuild")
    settings = _settings()
    with StepProgress() as progress:
        night = rebuild(settings, args.first, args.last, group=args.group, resume=args.resume, progress=progress)
    first, last = night.range
    code = _print_night(night, f"{len(night.service_dates)} from {first} to {last} (rebuilt)", open_storage(settings))
    _print_stopped(night, "rebuild")
    return code


def _print_stopped(night, command: str) -> None:
    if night.gate and night.gate.stopped or not night.build_ok:
        print(
            f"stopped: a batch was refused or failed; what passed before it is published. Fix the cause, "
            f"then `citylake {command} --resume` goes on from that batch."
        )


def cmd_publish(args: argparse.Namespace) -> int:
    """Audit the current warehouse and publish the groups that pass (no ingest, no build)."""
    from citylake.core.storage import open_storage
    from citylake.night.steps import publish_only

    settings = _settings()
    gate = publish_only(settings, args.date)
    _print_gate(gate, open_storage(settings))
    return 0 if gate.all_published else 1


def cmd_publications(args: argparse.Namespace) -> int:
    from citylake.core.storage import open_storage
    from citylake.publish.reader import current, registry

    storage = open_storage(_settings())
    now = current(storage).get("groups", {})
    for r in registry(storage):
        live = [g for g, e in now.items() if e.get("publication_id") == r["publication_id"]]
        print(
            f"{r['publication_id']}  {r['created_at']}  published: {','.join(r['groups_published']) or '-'}"
            f"  refused: {','.join(r['groups_refused']) or '-'}  dates: {len(r['service_dates'])}"
            f"  code {r['code_version']}" + (f"  [current: {','.join(live)}]" if live else "")
        )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """SQL over the published marts (as CURRENT.json says, or as of a publication or date)."""
    from citylake.core import duck
    from citylake.core.storage import open_storage
    from citylake.publish.reader import pointer_as_of, published_views

    settings = _settings()
    storage = open_storage(settings)
    con = duck.connect(settings, storage)
    names = published_views(con, storage, pointer_as_of(storage, args.as_of))
    if not names:
        print("citylake: nothing published yet", file=sys.stderr)
        return 1
    rel = con.sql(args.sql)
    if rel is not None:
        rel.show(max_rows=args.max_rows, max_width=200)
    return 0


def cmd_opendata(args: argparse.Namespace) -> int:
    """ODbL exports of what is published now (small counts suppressed, no identifiers)."""
    from citylake.consumers.opendata import export
    from citylake.core import duck
    from citylake.core.storage import open_storage
    from citylake.publish.reader import current, published_views

    settings = _settings()
    storage = open_storage(settings)
    pointer = current(storage)
    if not pointer.get("groups"):
        print("citylake: nothing published yet", file=sys.stderr)
        return 1
    con = duck.connect(settings, storage)
    published_views(con, storage, pointer)
    pub = max(e["publication_id"] for e in pointer["groups"].values())
    for k in export(storage, con, pub, args.k or settings.opendata_k):
        print(storage.url(k))
    return 0


def cmd_export_gis(args: argparse.Namespace) -> int:
    """Map layers of one month for the GIS team: GeoParquet, GeoPackage or GeoJSON, with QGIS styles."""
    from citylake.consumers.gis import GisExportError, export_gis
    from citylake.core import duck
    from citylake.core.storage import open_storage
    from citylake.publish.reader import pointer_as_of, published_views

    settings = _settings()
    storage = open_storage(settings)
    pointer = pointer_as_of(storage, args.as_of)
    if not pointer.get("groups"):
        print("citylake: nothing published yet", file=sys.stderr)
        return 1
    con = duck.connect(settings, storage)
    published_views(con, storage, pointer)
    month = None
    if args.month:
        try:
            month = date_.fromisoformat(args.month + "-01")
        except ValueError:
            print(f"citylake: --month {args.month!r} is not YYYY-MM", file=sys.stderr)
            return 2
    source = ", ".join(sorted({e["publication_id"] for e in pointer["groups"].values()}))
    try:
        files = export_gis(con, args.out.resolve(), args.format, args.crs, month, source=f"citylake {source}")
    except GisExportError as exc:
        print(f"citylake: {exc}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    """A DuckDB file of views over the published marts, for the DuckDB CLI, Python or a BI tool."""
    from citylake.consumers.opendata import write_catalog
    from citylake.core.storage import open_storage
    from citylake.publish.reader import pointer_as_of

    settings = _settings()
    storage = open_storage(settings)
    names = write_catalog(args.out.resolve(), settings, storage, pointer_as_of(storage, args.as_of))
    print(f"{args.out.resolve()}: {len(names)} views ({', '.join(names)})")
    print(f"open it read-only: duckdb -readonly {args.out}   or   duckdb.connect('{args.out}', read_only=True)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The monthly report of an operator, from one publication (now, or as of an id or date)."""
    from citylake.consumers.contract_report import write_report
    from citylake.core import duck
    from citylake.core.storage import open_storage
    from citylake.publish.reader import pointer_as_of, published_views

    settings = _settings()
    storage = open_storage(settings)
    pointer = pointer_as_of(storage, args.as_of)
    if "contract" not in pointer.get("groups", {}):
        print("citylake: no contract KPIs published yet", file=sys.stderr)
        return 1
    con = duck.connect(settings, storage)
    published_views(con, storage, pointer)
    if args.year:
        from citylake.consumers.contract_report import write_annual_check

        try:
            written_key = write_annual_check(storage, con, args.operator, args.year, pointer)
        except ValueError as exc:
            print(f"citylake: {exc}", file=sys.stderr)
            return 1
        print(storage.url(written_key))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(storage.get_bytes(written_key))
            print(args.out)
        return 0
    month = date_.fromisoformat(args.month + "-01")
    then = None
    if args.compare_as_of:  # the figures as published then, beside these (after a rebuild)
        earlier = pointer_as_of(storage, args.compare_as_of)
        if "contract" not in earlier.get("groups", {}):
            print(f"citylake: no contract KPIs published as of {args.compare_as_of}", file=sys.stderr)
            return 1
        then = (duck.connect(settings, storage), earlier)
        published_views(then[0], storage, earlier)
    written = [write_report(storage, con, args.operator, month, pointer, then)]
    if args.pdf:
        from citylake.consumers.contract_report import write_pdf

        written.append(write_pdf(storage, written[0], settings.chromium))
    for k in written:
        print(storage.url(k))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(storage.get_bytes(written[-1]))
        print(args.out)
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """Purge raw files of personal-data feeds past their retention period (RGPD)."""
    from ingestion.retention import purge_personal_raw

    settings = _settings()
    if args.scrub_messages:
        from ingestion.retention import scrub_personal_messages

        scrub = scrub_personal_messages(_storage(settings), dry_run=args.dry_run)
        verb = "would rewrite" if args.dry_run else "rewrote"
        for e in scrub["rewritten"]:
            print(f"{verb} {e['key']} ({e['rows']} row(s) held a card number)")
        record_key = scrub.get("record_key")
        print(f"{len(scrub['rewritten'])} object(s)" + (f"; record {record_key}" if record_key else ""))
        return 0
    record = purge_personal_raw(_storage(settings), settings, dry_run=args.dry_run)
    for e in record["purged"]:
        print(
            f"{'would purge' if args.dry_run else 'purged'} {e['key']}  (received {e['received_date']}, sha256 "
            f"{e['sha256']})"
        )
    print(
        f"{len(record['purged'])} file(s); cutoff {record['cutoff']} ({record['retention_days']} days)"
        + (f"; record {record['record_key']}" if record.get("record_key") else "")
    )
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    """Delete published table files that no kept publication reads (lake_layout.md section 5)."""
    from citylake.publish.retention import vacuum_published
    from ingestion.run import new_run_id

    settings = _settings()
    done = vacuum_published(settings, _storage(settings), dry_run=args.dry_run, owner=new_run_id())
    for table, files in done["removed"].items():
        if files:
            print(f"{'would delete' if args.dry_run else 'deleted'} {len(files)} file(s) of {table}")
    print(
        f"{sum(len(f) for f in done['removed'].values())} file(s) in {done['tables']} table(s); "
        f"{len(done['kept_publications'])} publication(s) kept reproducible "
        f"(CITYLAKE_PUBLICATION_RETENTION_DAYS={settings.publication_retention_days}, and every one a contract "
        "report names)"
    )
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {len(done['docs_removed'])} docs page(s) of the marts; {len(done['docs_kept'])} kept "
        f"(CITYLAKE_DOCS_RETENTION_DAYS={settings.docs_retention_days}, in force, "
        "or the newest of their code version)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The read-only HTTP API over the published marts (uvicorn)."""
    import uvicorn

    from citylake.consumers.api import TokenRegister, create_app

    settings = _settings()
    if not TokenRegister(settings.api_tokens_file).entries():
        print(
            f"citylake: no API token in {settings.api_tokens_file}: create one with "
            "'citylake api-token add NAME --role analyst|operator [--operator OP]'",
            file=sys.stderr,
        )
        return 1
    print(
        f"citylake API on http://{args.host}:{args.port}  (OpenAPI: /openapi.json, API docs: /docs, "
        "docs of the marts: /docs/marts)"
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info", access_log=True)
    return 0


def cmd_api_token(args: argparse.Namespace) -> int:
    """Manage the API's tokens; the register keeps sha256 hashes only."""
    from citylake.consumers.api import TokenRegister

    register = TokenRegister(_settings().api_tokens_file)
    if args.token_command == "add":
        token = register.add(args.name, args.role, args.operator, args.expires)
        print(token)
        print(
            f"token {args.name!r} ({args.role}{', operator ' + args.operator if args.operator else ''}) "
            f"added to {register.path}, valid {args.expires} days; it is shown once, only its hash is kept",
            file=sys.stderr,
        )
    elif args.token_command == "rotate":
        token = register.rotate(args.name, args.expires)
        print(token)
        print(f"token {args.name!r} replaced, valid {args.expires} days; the old one no longer works", file=sys.stderr)
    elif args.token_command == "revoke":
        register.revoke(args.name)
        print(f"token {args.name!r} revoked")
    else:
        from citylake.consumers.api import _expiry

        for e in register.entries():
            print(
                f"{e['name']:24} {e['role']:9} {e.get('operator') or '-':12} created {e['created_at']} "
                f"expires {_expiry(e).isoformat()}"
            )
    return 0


def cmd_api_spec(args: argparse.Namespace) -> int:
    """Write the API's OpenAPI document."""
    from citylake.consumers.api import write_openapi

    print(write_openapi(args.out))
    return 0


# -- parser --------------------------------------------------------------------------------
def _utc(text: str):
    from datetime import UTC, datetime

    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citylake",
        description="citylake: operators' extracts into the city's lake, modelled, checked, published.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log everything, the libraries' messages included (debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="show the effective settings and the city (secrets masked)")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "install-extensions", help="install DuckDB's httpfs/ducklake/encodings from their wheels (offline)"
    )
    p.set_defaults(func=cmd_install_extensions)

    p = sub.add_parser(
        "install-vendor", help="fetch MapLibre GL JS for the explorer from npm (pinned version and integrity)"
    )
    p.add_argument("--registry", default="https://registry.npmjs.org", help="an npm registry or mirror")
    p.set_defaults(func=cmd_install_vendor)
    lake = sub.add_parser("lake", help="the lake itself: init, ls, put, get, stat")
    lake_sub = lake.add_subparsers(dest="lake_command", metavar="ACTION")
    lake_sub.required = True
    p = lake_sub.add_parser("init", help="create the lake (bucket on S3) and check read/write with DuckDB")
    p.set_defaults(func=cmd_lake_init)
    p = lake_sub.add_parser("migrate", help="rewrite staged files of an earlier version to this one's schema")
    p.set_defaults(func=cmd_lake_migrate)
    p = lake_sub.add_parser("ls", help="list objects under a key prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.set_defaults(func=cmd_lake_ls)
    p = lake_sub.add_parser("put", help="store a local file at a key (zone rules apply)")
    p.add_argument("path", type=Path)
    p.add_argument("key")
    p.add_argument("--overwrite", action="store_true", help="replace a mutable object")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_lake_put)
    p = lake_sub.add_parser("get", help="print an object, or save it to DEST")
    p.add_argument("key")
    p.add_argument("dest", nargs="?", type=Path)
    p.set_defaults(func=cmd_lake_get)
    p = lake_sub.add_parser("stat", help="size, hash and metadata of an object")
    p.add_argument("key")
    p.set_defaults(func=cmd_lake_stat)

    from datetime import date as _date

    p = sub.add_parser("ingest", help="land, parse and stage operators' deliveries (raw, staged, manifest)")
    p.add_argument("--operator", help="only this operator (ingestion/operators.yaml)")
    p.add_argument("--feed", help="only this feed")
    p.add_argument("--date", type=_date.fromisoformat, help="only deliveries of this service date (registers always)")
    p.add_argument("--as-of", type=_utc, help="only files delivered by this time (replay a night), ISO 8601")
    p.add_argument("--force", action="store_true", help="parse and stage again what was already staged")
    p.add_argument("--dry-run", action="store_true", help="list what would be landed, write nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ingest)

    con = sub.add_parser("contract", help="extract contracts: check an operator's sample file before go-live")
    con_sub = con.add_subparsers(dest="contract_command", metavar="ACTION")
    con_sub.required = True
    p = con_sub.add_parser("check", help="parse FILE against a contract and list what is wrong, row by row")
    p.add_argument("file", help="the sample file the operator sent")
    p.add_argument("--contract", required=True, help="OPERATOR/FEED of a configured contract, or a contract YAML file")
    p.add_argument("--rows", type=int, default=5, help="how many staged rows to show (default 5)")
    p.set_defaults(func=cmd_contract_check)

    p = sub.add_parser("archive", help="poll an operator's public real-time feed (GTFS-RT, SIRI-Lite) into its drop")
    p.add_argument("--operator", required=True)
    p.add_argument("--feed", required=True, help="a feed with a realtime entry in operators.yaml")
    p.add_argument("--polls", type=int, help="stop after this many polls (default: run until stopped)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("build", help="dbt build of the marts into the warehouse (incremental by service date)")
    p.add_argument("--dates", help="comma list of service dates to (re)compute; default: all")
    p.add_argument("--full-refresh", action="store_true", help="rebuild every incremental model from scratch")
    p.add_argument("--select", help="dbt selection, e.g. 'marts.transit'")
    p.add_argument(
        "--unit-tests", action="store_true", help="also run dbt's unit tests (they test the code; the nights skip them)"
    )
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="the whole night in-process: ingest, build, audit, publish, report")
    p.add_argument("--date", type=_date.fromisoformat, help="also (re)build this service date")
    p.add_argument("--as-of", type=_utc, help="only files delivered by this time (replay a night)")
    p.add_argument("--full-refresh", action="store_true")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "backfill",
        help="ingest a range of service dates, build it in batches under CITYLAKE_BATCH_MEMORY, publish once",
    )
    p.add_argument("--from", dest="first", type=_date.fromisoformat, help="first service date")
    p.add_argument("--to", dest="last", type=_date.fromisoformat, help="last service date")
    p.add_argument("--resume", action="store_true", help="go on with the interrupted backfill")
    p.set_defaults(func=cmd_backfill)
    p = sub.add_parser(
        "rebuild",
        help="recompute a past range's marts from what is staged (no ingestion), in batches; publish once",
    )
    p.add_argument("--from", dest="first", type=_date.fromisoformat, help="first service date")
    p.add_argument("--to", dest="last", type=_date.fromisoformat, help="last service date")
    p.add_argument("--group", help="only this publication group's models (transit, parking, maintenance, contract…)")
    p.add_argument("--resume", action="store_true", help="go on with the interrupted rebuild")
    p.set_defaults(func=cmd_rebuild)
    p = sub.add_parser("freshness", help="age of the newest staged day of each dated feed vs the contracts' deadlines")
    p.set_defaults(func=cmd_freshness)
    p = sub.add_parser("publish", help="audit the warehouse and publish the groups that pass")
    p.add_argument("--date", type=_date.fromisoformat, help="the service date being published (freshness check)")
    p.set_defaults(func=cmd_publish)
    p = sub.add_parser("publications", help="list the registry of publications")
    p.set_defaults(func=cmd_publications)
    p = sub.add_parser("query", help="SQL over the published marts, optionally as of a publication or date")
    p.add_argument("sql")
    p.add_argument("--as-of", help="publication id or YYYY-MM-DD")
    p.add_argument("--max-rows", type=int, default=40)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "report", help="monthly contract report of an operator, or with --year its annual check (self-contained HTML)"
    )
    p.add_argument("--operator", required=True)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="YYYY-MM")
    when.add_argument(
        "--year", type=int, help="the city's annual check of the operator's declared figures (rapport annuel)"
    )
    p.add_argument("--as-of", help="publication id or YYYY-MM-DD (default: what is published now)")
    p.add_argument("--pdf", action="store_true", help="also print it to PDF beside the HTML (headless Chromium, A4)")
    p.add_argument("--out", type=Path, help="also copy the report (the PDF with --pdf) to this file")
    p.add_argument(
        "--compare-as-of",
        help="publication id or YYYY-MM-DD: show its KPIs (as published then) beside these (as recomputed now)",
    )
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("opendata", help="ODbL exports of the published marts (small counts suppressed, no ids)")
    p.add_argument("--k", type=int, default=None, help="suppress counts below k (default CITYLAKE_OPENDATA_K or 10)")
    p.set_defaults(func=cmd_opendata)
    exp = sub.add_parser("export", help="exports of the published marts for other tools")
    exp_sub = exp.add_subparsers(dest="what", required=True)
    p = exp_sub.add_parser(
        "gis", help="map layers of a month (stops, segment loads and speeds, car parks) with QGIS styles (.qml)"
    )
    p.add_argument("--format", choices=("geoparquet", "gpkg", "geojson"), default="geoparquet")
    p.add_argument("--crs", type=int, choices=(4326, 2154), default=4326, help="4326 (WGS84) or 2154 (Lambert-93)")
    p.add_argument("--month", help="YYYY-MM (default: the newest month published)")
    p.add_argument("--as-of", help="publication id or YYYY-MM-DD (default: what is published now)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_export_gis)
    p = sub.add_parser("catalog", help="a DuckDB file of views over the published marts, for analysts")
    p.add_argument("--out", type=Path, default=Path("build/citylake_published.duckdb"))
    p.add_argument("--as-of", help="publication id or YYYY-MM-DD (default: what is published now)")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser(
        "retention", help="purge raw files of personal-data feeds past CITYLAKE_RAW_PERSONAL_RETENTION_DAYS (RGPD)"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be purged, delete nothing")
    p.add_argument(
        "--scrub-messages",
        action="store_true",
        help="RGPD remediation: withhold card numbers quoted in the manifest and staged messages of personal-data "
        "feeds (lakes written before messages withheld values)",
    )
    p.set_defaults(func=cmd_retention)
    p = sub.add_parser(
        "vacuum",
        help=(
            "delete published table files no kept publication reads (CITYLAKE_PUBLICATION_RETENTION_DAYS), "
            "and old docs pages (CITYLAKE_DOCS_RETENTION_DAYS)"
        ),
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.set_defaults(func=cmd_vacuum)
    p = sub.add_parser("serve", help="read-only HTTP API over the published marts (bearer tokens per role)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
    tok = sub.add_parser("api-token", help="API tokens: add (printed once), rotate, revoke, list")
    tok_sub = tok.add_subparsers(dest="token_command", metavar="ACTION")
    tok_sub.required = True
    p = tok_sub.add_parser("add", help="create a token and print it (only its hash is stored)")
    p.add_argument("name")
    p.add_argument("--role", choices=["analyst", "operator"], required=True)
    p.add_argument("--operator", help="for an operator token: its id in ingestion/operators.yaml")
    p.add_argument("--expires", type=int, default=365, metavar="DAYS", help="days the token is valid (default 365)")
    p.set_defaults(func=cmd_api_token)
    p = tok_sub.add_parser("rotate", help="replace a token by a new one (same role), printed once")
    p.add_argument("name")
    p.add_argument("--expires", type=int, default=365, metavar="DAYS", help="days the new token is valid (default 365)")
    p.set_defaults(func=cmd_api_token)
    p = tok_sub.add_parser("revoke", help="revoke a token by name")
    p.add_argument("name")
    p.set_defaults(func=cmd_api_token)
    p = tok_sub.add_parser("list", help="list tokens (names and roles; tokens are never stored)")
    p.set_defaults(func=cmd_api_token)
    p = sub.add_parser("api-spec", help="write the API's OpenAPI document")
    p.add_argument("out", type=Path, nargs="?", default=Path("docs/openapi.json"))
    p.set_defaults(func=cmd_api_spec)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, log, run the subcommand; a citylake error is one line on stderr and exit 1, never a traceback."""
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    # citylake's own messages at INFO; the libraries' (Airflow, dbt, Great Expectations) only
    # their warnings, unless --verbose asks for everything
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for ours in ("citylake", "ingestion", "quality"):
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose and getattr(args, "func", None) in (cmd_run, cmd_backfill):
        # the progress display says what the night does; its INFO lines would interleave
        for ours in ("citylake", "ingestion", "quality"):
            logging.getLogger(ours).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except CitylakeError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
