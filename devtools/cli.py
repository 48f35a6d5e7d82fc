"""``python -m devtools``: the developers' commands, not installed with the runtime.

* ``simulate``: operators' daily deliveries from a real GTFS network, with the ground truth;
* ``evaluate``: accuracy of the transit marts against a simulator's ground truth.

``make demo``, ``make bench`` and ``make scaleout-check`` call the other tools of this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date as _date
from pathlib import Path

from citylake.core.settings import Settings
from devtools import SAMPLE_NETWORK


def _settings() -> Settings:
    return Settings()


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate operators' deliveries and the ground truth."""
    from devtools.simulator.faults import parse_faults
    from devtools.simulator.run import SimulationConfig, simulate

    try:
        kinds = parse_faults(args.faults)
    except ValueError as exc:
        print(f"python -m devtools: error: {exc}", file=sys.stderr)
        return 2
    from citylake.core.errors import ConfigError

    try:
        city = _settings().city  # the simulated city is the configured one (city.yaml)
    except ConfigError as exc:
        print(f"python -m devtools: error: {exc}", file=sys.stderr)
        return 2
    cfg = SimulationConfig(
        network=args.network,
        start=args.start,
        days=args.days,
        scale=args.scale,
        volume=args.volume,
        out=args.out,
        faults=kinds,
        seed=args.seed,
        tz=city.timezone,
        school_zone=city.school_zone,
        holidays=city.holidays,
        insee=args.insee or (city.insee_code if city.insee_code and len(city.insee_code) == 5 else "99999"),
        progress=not args.no_progress,
        formats=args.formats,
        avl_format=args.avl_format,
    )
    from citylake.core.errors import DataError

    try:
        summary = simulate(cfg)
    except (ValueError, DataError) as exc:
        print(f"python -m devtools: error: {exc}", file=sys.stderr)
        return 2
    total = sum(d["validations"] for d in summary["days"])
    print(
        f"simulated {len(summary['days'])} day(s) of {summary['network_name']} x{summary['tiles']} tile(s): "
        f"{total:,} validations, {summary['vehicles']} vehicles, {summary['car_parks']} car parks"
    )
    print(f"deliveries: {args.out.resolve()}/{{bus,parking}}/…  truth: {args.out.resolve()}/truth/")
    if args.formats == "standard":
        print(
            f"standard formats: offer NeTEx, ticketing TIDES, AVL {args.avl_format}; read them with "
            f"CITYLAKE_CONFIG_DIR={args.out.resolve()}/config"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Accuracy of the marts against a simulator output folder's ground truth."""
    import duckdb

    from citylake.build.dbt import warehouse_path
    from devtools.evaluate import evaluate

    settings = _settings()
    warehouse = args.warehouse or warehouse_path(settings)
    try:
        figures = evaluate(args.truth, warehouse)  # the simulated city's clock and calendar
    except (duckdb.Error, FileNotFoundError) as exc:
        print(f"python -m devtools: error: {warehouse}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    for name, value in figures.items():
        print(f"{name}: {value:.4f}" if not float(value).is_integer() else f"{name}: {int(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from devtools.simulator.faults import FAULT_KINDS

    p = sub.add_parser(
        "simulate",
        help="simulate operators' daily deliveries from a real GTFS network, with ground truth",
        description="Faults: " + "; ".join(f"{k} ({v})" for k, v in FAULT_KINDS.items()),
    )
    p.add_argument(
        "--network", type=Path, default=SAMPLE_NETWORK, help="GTFS zip or folder (default: the sample network)"
    )
    p.add_argument("--start", type=_date.fromisoformat, required=True, help="first service date, YYYY-MM-DD")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--scale", choices=["small", "metro"], default="small")
    p.add_argument(
        "--volume", type=float, default=1.0, help="multiply the scale's validations and trips (e.g. 0.25, 2)"
    )
    p.add_argument("--out", type=Path, default=Path("drop"))
    p.add_argument("--faults", default=None, help="comma list of fault kinds, or default, all, none")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--insee", default=None, help="commune code for car-park ids (INSEE-P-NNN; default: the city's, else 99999)"
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--formats",
        choices=["vendor", "standard"],
        default="vendor",
        help="vendor files as the shipped contracts say, or the offer in NeTEx, ticketing in TIDES and "
        "AVL in GTFS-RT or SIRI (with the city configuration that reads them, in OUT/config)",
    )
    p.add_argument("--avl-format", choices=["gtfs_rt", "siri"], default="gtfs_rt", help="AVL with --formats standard")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("evaluate", help="accuracy of the transit marts against a simulator's ground truth")
    p.add_argument("--truth", type=Path, required=True, help="a python -m devtools simulate output folder")
    p.add_argument("--warehouse", type=Path, help="DuckDB warehouse to evaluate (default: CITYLAKE_WAREHOUSE)")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from citylake.cli import run

    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
