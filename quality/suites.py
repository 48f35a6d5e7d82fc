"""Quality suites: Great Expectations 1.x expectations, built in code, each with a severity.

* **error** blocks the publication of the affected dependency group;
* **warning** publishes and is reported.

Each suite checks one frame that DuckDB computes from the candidate warehouse (a mart, or a
small aggregate of it: per-trip balances, daily volumes against history, referential joins).
GX's SQL datasource fails on DuckDB, so frames go through GX's pandas datasource. Frames of
date-grained marts hold the service dates being published only (what the night changed), those of
monthly marts (load profile, maintenance) the months of those dates: their size follows the night,
not the history; the others are small (registers, the contract's KPIs). Uniqueness over a whole
table is dbt's to test, in SQL.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

log = logging.getLogger("citylake.quality")

ERROR, WARNING = "error", "warning"
#: A vehicle's validations / APC ratio this many times its fleet's (or 1/this) flags its counter;
#: on 5 simulated days the vehicles stayed within ±1.3 % over a week, ±5 % on one day.
APC_DRIFT_FACTOR = 1.2
APC_DRIFT_MIN_BOARDINGS = 200


@dataclass(frozen=True)
class Check:
    """One expectation with its severity and a sentence saying what it protects."""

    expectation: Any  # a gx.expectations.Expectation
    severity: str
    why: str


@dataclass(frozen=True)
class Suite:
    name: str
    mart: str  # the mart checked: a blocking failure refuses the publication group it belongs to
    sql: str  # the frame the checks run on, over the warehouse
    checks: tuple[Check, ...]


@dataclass
class CheckResult:
    suite: str
    group: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    why: str
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    error: str | None = None
    examples: list | None = None  # a few of the values that broke the rule (GE's partial list)
    dates: str | None = None  # the batch's first and last dates, in a run of several batches


@dataclass
class SuiteRun:
    results: list[CheckResult] = field(default_factory=list)

    def blocking_failures(self, group: str | None = None) -> list[CheckResult]:
        return [
            r for r in self.results if not r.success and r.severity == ERROR and (group is None or r.group == group)
        ]

    def warnings(self, group: str | None = None) -> list[CheckResult]:
        return [
            r for r in self.results if not r.success and r.severity == WARNING and (group is None or r.group == group)
        ]


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # Great Expectations sets INFO on some of its own loggers (a temporary docs site, functions it
    # skips registering): its messages are for its developers, so only its errors are kept
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return gx


def build_suites(service_dates: list[date], load_factor_tolerance: float = 1.5) -> list[Suite]:
    """Return every suite, parameterised for the service dates being published."""
    gx = _gx()
    E = gx.expectations
    dates = sorted({d.isoformat() for d in service_dates})
    # row checks run on the service dates being published (what changed), never on all history:
    # a night's memory follows what it brings; the dates before passed when they were published
    changed = "service_date in (" + ", ".join(f"date '{d}'" for d in dates) + ")" if dates else "true"
    months = sorted({d[:7] + "-01" for d in dates})
    changed_months = "month in (" + ", ".join(f"date '{m}'" for m in months) + ")" if months else "true"

    def c(expectation, severity, why) -> Check:
        return Check(expectation, severity, why)

    suites = [
        Suite(
            "fct_stop_visit_loads",
            "fct_stop_visit_loads",
            f"select * from fct_stop_visit_loads where {changed}",
            (
                c(E.ExpectColumnValuesToNotBeNull(column="trip_id"), ERROR, "toute charge appartient à une course"),
                c(
                    E.ExpectCompoundColumnsToBeUnique(column_list=["service_date", "trip_id", "stop_sequence"]),
                    ERROR,
                    "une ligne par passage à l'arrêt (un doublon doublerait les montées)",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="load_estimated", min_value=-1e-6),
                    ERROR,
                    "une charge n'est jamais négative",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="boardings_estimated", min_value=0),
                    ERROR,
                    "les montées sont des effectifs (jamais négatives)",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(
                        column="load_factor", max_value=load_factor_tolerance, mostly=0.999
                    ),
                    ERROR,
                    f"charge estimée au plus {load_factor_tolerance:g} × la capacité (tolérance d'estimation) sur "
                    "99,9 % des passages",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="load_factor", max_value=1.0, mostly=0.995),
                    WARNING,
                    "charge estimée dans la capacité sur 99,5 % des passages",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="validation_rate", min_value=0.5, max_value=1.0),
                    ERROR,
                    "le taux de validation reste dans ses bornes (0,5 à 1)",
                ),
            )
            + (
                (
                    c(
                        E.ExpectColumnDistinctValuesToContainSet(column="service_date_text", value_set=dates),
                        ERROR,
                        "fraîcheur : chaque date de service publiée est couverte",
                    ),
                )
                if dates
                else ()
            ),
        ),
        Suite(
            # a counter that drifts: one vehicle's validations / APC boardings moving away from its
            # fleet's over the week to the night (the fleet's ratio is the reference, so a network
            # change in fraud or ridership moves every vehicle together and flags none)
            "apc_counter_drift",
            "fct_stop_visit_loads",
            f"""
            with last_day as (
                select max(service_date) as last from fct_stop_visit_loads where {changed}
            ),
            per_vehicle as (
                select vehicle_id, sum(validations)::double as v, sum(apc_boardings)::double as a
                from fct_stop_visit_loads, last_day
                where has_apc and service_date between last - 6 and last
                group by vehicle_id having sum(apc_boardings) >= {APC_DRIFT_MIN_BOARDINGS}
            ),
            fleet as (select sum(v) / sum(a) as r from per_vehicle)
            select vehicle_id, (v / a) / r as ratio_to_fleet,
                   case when abs(ln((v / a) / r)) > ln({APC_DRIFT_FACTOR})
                        then vehicle_id || ' (' || round((v / a) / r, 2) || ' × la flotte)' end as drifting_vehicle
            from per_vehicle, fleet""",
            (
                c(
                    E.ExpectColumnValuesToBeNull(column="drifting_vehicle"),
                    WARNING,
                    f"compteurs (APC) : sur les 7 jours jusqu'à la nuit, le rapport validations / montées comptées "
                    f"d'aucun véhicule ne s'écarte de plus de {APC_DRIFT_FACTOR:g} × (ou moins de "
                    f"1/{APC_DRIFT_FACTOR:g} ×) de celui de sa flotte : sinon un compteur dérive ou tombe en panne",
                ),
            ),
        ),
        Suite(
            "trip_balance",
            "fct_stop_visit_loads",
            # the one place of the load-conservation rule (issue #30: it was also a dbt test, with
            # another tolerance): ons equal offs to a millionth, never a negative load, empty at the end
            f"""
            select service_date, trip_id,
                   abs(sum(boardings_estimated) - sum(alightings_estimated))
                       / greatest(sum(boardings_estimated), 1) as imbalance,
                   min(load_estimated) as min_load,
                   arg_max(load_estimated, stop_position) as final_load
            from fct_stop_visit_loads where {changed} group by all""",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="imbalance", max_value=1e-6),
                    ERROR,
                    "conservation : par course, les descentes estimées égalent les montées (à 10⁻⁶ près)",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="min_load", min_value=-1e-6),
                    ERROR,
                    "la charge estimée n'est jamais négative",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="final_load", min_value=-1e-6, max_value=1e-6),
                    ERROR,
                    "chaque bus est vide à son terminus",
                ),
            ),
        ),
        Suite(
            "stops_in_network",
            "fct_stop_visit_loads",
            f"""
            select l.stop_id, s.stop_id as known_stop
            from (select distinct service_date, stop_id, feed_version from fct_stop_visit_loads where {changed}) l
            left join dim_stops s on s.stop_id = l.stop_id and s.feed_version = l.feed_version""",
            (
                c(
                    E.ExpectColumnValuesToNotBeNull(column="known_stop", mostly=0.999),
                    ERROR,
                    "intégrité référentielle : les arrêts existent dans la version du GTFS en vigueur",
                ),
            ),
        ),
        Suite(
            "daily_volume",
            "fct_stop_visit_loads",
            """
            with daily as (
                select l.service_date, c.day_type, sum(l.boardings_estimated) as boardings, count(*) as stop_visits
                from fct_stop_visit_loads l join dim_calendar c using (service_date) group by all
            )
            select *, boardings / nullif(median(boardings) over (partition by day_type), 0) as ratio_to_median,
                   count(*) over (partition by day_type) as comparable_days
            from daily""",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(
                        column="ratio_to_median",
                        min_value=0.5,
                        max_value=1.5,
                        row_condition="comparable_days >= 3",
                        condition_parser="pandas",
                    ),
                    WARNING,
                    "volume : montées à ±50 % de la médiane des jours du même type (les jours fériés sont un "
                    "type à part)",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(
                        column="ratio_to_median",
                        min_value=0.2,
                        max_value=5,
                        row_condition="comparable_days >= 3",
                        condition_parser="pandas",
                    ),
                    ERROR,
                    "volume : montées à moins d'un facteur 5 des jours semblables (sinon une livraison perdue "
                    "ou doublée)",
                ),
            ),
        ),
        Suite(
            "mart_bus_load_profile",
            "mart_bus_load_profile",
            f"select * from mart_bus_load_profile where {changed_months}",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="mean_load", min_value=-1e-6),
                    ERROR,
                    "les charges ne sont jamais négatives",
                ),
                c(
                    E.ExpectColumnValuesToBeInSet(
                        column="day_type", value_set=["weekday", "weekday_school_holiday", "saturday", "sunday_holiday"]
                    ),
                    ERROR,
                    "les types de jour sont ceux du calendrier",
                ),
            ),
        ),
        Suite(
            "mart_service_delivered",
            "mart_service_delivered",
            f"select * from mart_service_delivered where {changed}",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="offer_delivered_rate", min_value=0, max_value=1),
                    ERROR,
                    "les km réalisés ne dépassent jamais les km programmés",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="offer_delivered_rate", min_value=0.8, mostly=0.95),
                    WARNING,
                    "la plupart des lignes réalisent l'essentiel de leur offre (sinon la livraison SAE est suspecte)",
                ),
            ),
        ),
        Suite(
            "mart_parking_occupancy_daily",
            "mart_parking_occupancy_daily",
            f"select * from mart_parking_occupancy_daily where {changed}",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="mean_occupancy_rate", min_value=0, max_value=1),
                    ERROR,
                    "l'occupation des relevés exploitables est un taux (0 à 1)",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="peak_occupancy_rate", min_value=0, max_value=1),
                    ERROR,
                    "l'occupation ne dépasse jamais la capacité, anomalies écartées",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="completeness", min_value=0.5, mostly=0.95),
                    WARNING,
                    "la plupart des parcs livrent au moins la moitié de leurs relevés",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="completeness", min_value=0.01, mostly=0.9),
                    ERROR,
                    "un jour sans aucun relevé exploitable signale un flux en panne, pas un parc vide",
                ),
                c(
                    E.ExpectCompoundColumnsToBeUnique(column_list=["operator", "facility_id", "service_date"]),
                    ERROR,
                    "une ligne par parc et par jour",
                ),
            ),
        ),
        Suite(
            "dim_car_parks",
            "dim_car_parks",
            "select * from dim_car_parks",
            (
                c(E.ExpectColumnValuesToBeUnique(column="facility_id"), ERROR, "une ligne du référentiel par parc"),
                c(
                    E.ExpectColumnValuesToMatchRegex(
                        column="facility_id", regex=r"^([013-9]\d|2[AB1-9])\d{3}-P-\d{3}$", mostly=0.9
                    ),
                    WARNING,
                    "les identifiants suivent le schéma national (INSEE-P-NNN)",
                ),
            ),
        ),
        Suite(
            "mart_fleet_availability_daily",
            "mart_fleet_availability_daily",
            f"select * from mart_fleet_availability_daily where {changed}",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="fleet_size", min_value=1),
                    ERROR,
                    "un état du parc de véhicules a été livré",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="availability_rate", min_value=0, max_value=1),
                    ERROR,
                    "la disponibilité est un taux (0 à 1)",
                ),
                c(
                    E.ExpectColumnValuesToBeInSet(column="covers_peak_requirement", value_set=[True]),
                    WARNING,
                    "assez de véhicules à la pointe pour l'horaire",
                ),
            ),
        ),
        Suite(
            "mart_maintenance_monthly",
            "mart_maintenance_monthly",
            f"select * from mart_maintenance_monthly where {changed_months}",
            (
                c(
                    E.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "month"]),
                    ERROR,
                    "une ligne par véhicule et par mois",
                ),
                c(
                    E.ExpectColumnValuesToBeBetween(column="km", min_value=0),
                    ERROR,
                    "les compteurs kilométriques ne reculent jamais",
                ),
            ),
        ),
        Suite(
            "mart_contract_kpis",
            "mart_contract_kpis",
            "select *, abs(amount_eur) as abs_amount from mart_contract_kpis",
            (
                c(
                    E.ExpectColumnValuesToBeInSet(
                        column="status", value_set=["met", "tolerated", "missed", "not_computable"]
                    ),
                    ERROR,
                    "chaque indicateur a un statut",
                ),
                c(
                    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="cap_eur", column_B="abs_amount", or_equal=True),
                    ERROR,
                    "bonus et pénalités ne dépassent jamais leur plafond",
                ),
                c(
                    E.ExpectColumnValuesToNotBeNull(column="contract_version"),
                    ERROR,
                    "chaque chiffre nomme la version de son contrat",
                ),
            ),
        ),
        Suite(
            "contract_completeness",
            "mart_contract_kpis",
            """
            select k.operator, k.month, count(distinct k.kpi_code) as kpis, any_value(c.expected) as expected_kpis,
                   count(distinct k.kpi_code) - any_value(c.expected) as missing
            from mart_contract_kpis k
            join (select operator, count(distinct kpi_code) as expected from contract_kpis group by all) c using
            (operator)
            group by all""",
            (
                c(
                    E.ExpectColumnValuesToBeBetween(column="missing", min_value=0, max_value=0),
                    ERROR,
                    "complétude : chaque indicateur du contrat figure chaque mois (calculé, ou non calculable "
                    "avec son motif)",
                ),
            ),
        ),
        Suite(
            "kpis_not_computable",
            "mart_contract_kpis",
            "select * from mart_contract_kpis where status = 'not_computable'",
            (
                c(
                    E.ExpectColumnValuesToNotBeNull(column="not_computable_reason"),
                    ERROR,
                    "un indicateur non calculable dit pourquoi",
                ),
            ),
        ),
    ]
    return suites


def run_suites(
    warehouse, suites: list[Suite], groups: dict[str, str], progress: Callable[[str], None] | None = None
) -> SuiteRun:
    """Run every suite on frames computed from the warehouse; return each check's outcome.

    ``groups`` maps each mart to its publication group (from dbt's manifest)."""
    gx = _gx()
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    try:
        context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    except Exception:  # older/newer config shapes: progress bars are cosmetic
        pass
    source = context.data_sources.add_pandas("citylake")
    con = duckdb.connect(str(warehouse), read_only=True)
    run = SuiteRun()
    try:
        existing = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
        for suite in suites:
            if progress:
                progress(suite.name)
            group = groups[suite.mart]
            try:
                frame = con.sql(suite.sql).df()
                if "service_date" in frame.columns:
                    frame["service_date_text"] = frame["service_date"].astype(str)
            except duckdb.Error as exc:
                missing = [suite.mart] if suite.mart not in existing else []
                reason = f"the suite's data cannot be read: {str(exc).splitlines()[0]}" + (
                    f" (missing {missing})" if missing else ""
                )
                run.results.append(
                    CheckResult(
                        suite.name,
                        group,
                        "suite_data_readable",
                        None,
                        ERROR,
                        False,
                        "the suite could read its data",
                        error=reason,
                    )
                )
                continue
            asset = source.add_dataframe_asset(suite.name)
            batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
            gx_suite = gx.ExpectationSuite(name=suite.name)
            for check in suite.checks:
                gx_suite.add_expectation(
                    check.expectation.copy(update={"meta": {"severity": check.severity, "why": check.why}})
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = batch.validate(gx_suite, result_format="SUMMARY")
            for r in result.results:
                cfg = r.expectation_config
                meta = cfg.meta or {}
                res = r.result or {}
                run.results.append(
                    CheckResult(
                        suite=suite.name,
                        group=group,
                        expectation=cfg.type,
                        column=cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list", []) or []) or None,
                        severity=meta.get("severity", ERROR),
                        success=bool(r.success),
                        why=meta.get("why", ""),
                        observed=res.get("observed_value"),
                        unexpected_count=res.get("unexpected_count"),
                        unexpected_percent=res.get("unexpected_percent"),
                        examples=list(res.get("partial_unexpected_list") or [])[:5] or None,
                        error=(
                            str(r.exception_info.get("exception_message"))
                            if r.exception_info and r.exception_info.get("raised_exception")
                            else None
                        ),
                    )
                )
    finally:
        con.close()
    return run
