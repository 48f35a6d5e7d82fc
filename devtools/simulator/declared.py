"""The operator's monthly report, from its own view of the truth, with the usual biases.

A real operator declares its figures every month (rapport mensuel d'exploitation) from its own
systems: the trips it says it ran, the losses it classes, the punctuality it computes, the
vehicles it counts available. The simulator keeps two books of each month: the **honest** one,
from what really happened, and the **declared** one, as the operator reports it once the biases
it was given (fault kinds ``declared_*``, devtools/simulator/faults.py) have bent it. The declared
book is delivered as the month's report (bus: an xlsx sheet; parking: a CSV); both books go to
``truth/declared_figures/`` with the biases that separate them, and every falsified trip to the
``declared_bias`` column of ``truth/trips/``, so the city's reconciliation is measured against
what the operator really did.

The biases and their shares are assumptions of the simulation (no published rate of falsified
declarations was found), each the shape of a finding of the audit chambers (issue #33):

* ``declared_run_not_run``: half of the trips lost for an internal cause are reported run (status
  REALISEE in the trips feed, their km counted run in the report); AVL has no trace of them;
* ``declared_external``: half of the other internal losses are classed external ("Aléa externe"),
  in the trips feed and in the report;
* ``declared_punctuality``: punctuality computed on a friendlier window (-2/+7 min instead of the
  contract's -1/+5);
* ``declared_availability``: half of the vehicles immobilised at peak by a work order counted
  available;
* ``declared_missing_month``: the parking operator's first monthly report is never delivered;
* ``declared_late``: the bus operator's reports arrive on the 12th of the next month at 15:00
  (due the 10th at noon).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

INTERNAL_CAUSES = ("Manque de véhicule", "Absence de personnel")
EXTERNAL_CAUSE = "Aléa externe"
#: the contract's punctuality window (dbt vars punctuality_early_s, punctuality_late_s) and the
#: friendlier one a biased operator uses
CONTRACT_WINDOW = (60, 300)
FRIENDLY_WINDOW = (120, 420)
RUN_NOT_RUN_SHARE = 0.5
EXTERNAL_SHARE = 0.5
AVAILABILITY_HIDDEN_SHARE = 0.5

LINE_FIGURES = (
    "km_programmes",
    "km_realises",
    "km_perdus_internes",
    "km_perdus_externes",
    "courses_programmees",
    "courses_perdues_internes",
    "courses_perdues_externes",
)


@dataclass(frozen=True)
class ReportedTrips:
    """The trips feed as the operator reports it, and which trips a bias bent."""

    status: np.ndarray  # REALISEE | DEVIEE | NON_REALISEE
    cause: pl.Series  # the cancel cause reported, null when reported run
    bias: pl.Series  # declared_run_not_run | declared_external | null


def report_trips(
    is_cancelled: np.ndarray,
    cause: pl.Series,
    is_detoured: np.ndarray,
    kinds: tuple[str, ...],
    rng: np.random.Generator,
) -> ReportedTrips:
    """What the operator reports of each scheduled trip of a day, its biases applied."""
    n = len(is_cancelled)
    internal = is_cancelled & cause.is_in(INTERNAL_CAUSES).fill_null(False).to_numpy()
    u = rng.random(n)  # drawn whatever the kinds, so the biases never move another draw
    run_not_run = internal & (u < RUN_NOT_RUN_SHARE) if "declared_run_not_run" in kinds else np.zeros(n, bool)
    v = rng.random(n)
    external = internal & ~run_not_run & (v < EXTERNAL_SHARE) if "declared_external" in kinds else np.zeros(n, bool)
    cancelled = is_cancelled & ~run_not_run
    status = np.where(cancelled, "NON_REALISEE", np.where(is_detoured, "DEVIEE", "REALISEE"))
    reported_cause = (
        pl.select(
            pl.when(pl.Series(run_not_run))
            .then(pl.lit(None, pl.Utf8))
            .when(pl.Series(external))
            .then(pl.lit(EXTERNAL_CAUSE))
            .otherwise(cause)
        )
        .to_series()
        .alias("cancel_cause")
    )
    bias = pl.Series(
        "declared_bias",
        [
            ("declared_run_not_run" if r else "declared_external" if e else None)
            for r, e in zip(run_not_run, external, strict=True)
        ],
        dtype=pl.Utf8,
    )
    return ReportedTrips(status, reported_cause, bias)


@dataclass
class Books:
    """The operator's running figures, month by month: honest and declared."""

    kinds: tuple[str, ...]
    #: (book, month, line or None, figure) -> value summed over the month's days
    sums: dict[tuple[str, str, str | None, str], float] = field(default_factory=lambda: defaultdict(float))
    #: the biases that touched each (month, line, figure)
    touched: dict[tuple[str, str | None, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def _add(self, book: str, month: str, line: str | None, figure: str, value: float) -> None:
        self.sums[(book, month, line, figure)] += float(value)

    def trips(self, day: date, lines: pl.Series, km: np.ndarray, truth_cancelled, truth_cause, reported) -> None:
        """A day's trips, per line: km and trips programmed, run and lost by cause class."""
        month = f"{day:%Y-%m}"
        frame = pl.DataFrame(
            {
                "line": lines,
                "km": km,
                "honest_lost": truth_cancelled,
                "honest_external": truth_cause.eq(EXTERNAL_CAUSE).fill_null(False),
                "declared_lost": reported.status == "NON_REALISEE",
                "declared_external": reported.cause.eq(EXTERNAL_CAUSE).fill_null(False),
                "bias": reported.bias,
            }
        )
        for book in ("honest", "declared"):
            lost, ext = pl.col(f"{book}_lost"), pl.col(f"{book}_external")
            per_line = frame.group_by("line", maintain_order=True).agg(
                pl.col("km").sum().alias("km_programmes"),
                pl.col("km").filter(~lost).sum().alias("km_realises"),
                pl.col("km").filter(lost & ~ext).sum().alias("km_perdus_internes"),
                pl.col("km").filter(lost & ext).sum().alias("km_perdus_externes"),
                pl.len().alias("courses_programmees"),
                (lost & ~ext).sum().alias("courses_perdues_internes"),
                (lost & ext).sum().alias("courses_perdues_externes"),
            )
            for row in per_line.iter_rows(named=True):
                for figure in LINE_FIGURES:
                    self._add(book, month, row["line"], figure, row[figure])
                    self._add(book, month, None, figure, row[figure])
        bent = frame.filter(pl.col("bias").is_not_null())
        for line, bias in bent.select("line", "bias").unique().iter_rows():
            figures = (
                ("km_realises", "km_perdus_internes", "courses_perdues_internes")
                if bias == "declared_run_not_run"
                else (
                    "km_perdus_internes",
                    "km_perdus_externes",
                    "courses_perdues_internes",
                    "courses_perdues_externes",
                )
            )
            for figure in (*figures, "taux_realisation_offre"):
                for where in (line, None):
                    if figure != "taux_realisation_offre" or where is None:
                        self.touched[(month, where, figure)].add(bias)

    def punctuality(self, day: date, delays_s: np.ndarray) -> None:
        """A day's departures at the stops served, judged on the contract's window (honest) and on
        the operator's (declared: the friendlier one when biased)."""
        month = f"{day:%Y-%m}"
        friendly = "declared_punctuality" in self.kinds
        for book, (early, late) in (
            ("honest", CONTRACT_WINDOW),
            ("declared", FRIENDLY_WINDOW if friendly else CONTRACT_WINDOW),
        ):
            self._add(book, month, None, "_departures", len(delays_s))
            self._add(book, month, None, "_on_time", ((delays_s >= -early) & (delays_s <= late)).sum())
        if friendly:
            self.touched[(month, None, "ponctualite")].add("declared_punctuality")

    def fleet(self, day: date, immobilised_at_peak: np.ndarray, rng: np.random.Generator) -> None:
        """A day's availability at peak: the vehicles not immobilised, over the fleet."""
        month = f"{day:%Y-%m}"
        hidden = immobilised_at_peak & (rng.random(len(immobilised_at_peak)) < AVAILABILITY_HIDDEN_SHARE)
        biased = "declared_availability" in self.kinds
        for book, down in (
            ("honest", immobilised_at_peak),
            ("declared", immobilised_at_peak & ~hidden if biased else immobilised_at_peak),
        ):
            self._add(book, month, None, "_fleet", len(down))
            self._add(book, month, None, "_available", (~down).sum())
        if biased and hidden.any():
            self.touched[(month, None, "disponibilite_parc")].add("declared_availability")

    def validations(self, day: date, count: int, revenue_eur: float) -> None:
        """A day's validations and the amounts they debited (the ticketing's own revenue)."""
        for book in ("honest", "declared"):
            self._add(book, f"{day:%Y-%m}", None, "validations", count)
            self._add(book, f"{day:%Y-%m}", None, "recettes", revenue_eur)

    def parking(self, day: date, readings_expected: int, readings_delivered: int, entries: int) -> None:
        """A day of the car parks, as the parking operator counts it: readings delivered over
        those due, and the vehicles that entered."""
        month = f"{day:%Y-%m}"
        for book in ("honest", "declared"):
            self._add(book, month, None, "_p_expected", readings_expected)
            self._add(book, month, None, "_p_delivered", readings_delivered)
            self._add(book, month, None, "entrees", entries)

    def month(self, month: str) -> pl.DataFrame:
        """The month's figures, one row per (operator, line or None, figure): honest and declared
        values in the staged units, and the biases between them."""
        rows = []
        for operator, figures in (("bus", _BUS), ("parking", _PARKING)):
            lines = sorted({k[2] for k in self.sums if k[1] == month and k[2] is not None}, key=str)
            for line in [None, *lines] if operator == "bus" else [None]:
                for figure in figures:
                    if line is not None and figure not in LINE_FIGURES:
                        continue
                    honest, declared = (
                        self._value("honest", month, line, figure),
                        self._value("declared", month, line, figure),
                    )
                    if honest is None:
                        continue
                    rows.append(
                        {
                            "operator": operator,
                            "month": month,
                            "route_short_name": line,
                            "figure_code": figure,
                            "honest_value": honest,
                            "declared_value": declared,
                            "biases": ",".join(sorted(self.touched.get((month, line, figure), ()))) or None,
                        }
                    )
        return pl.DataFrame(
            rows,
            schema={
                "operator": pl.Utf8,
                "month": pl.Utf8,
                "route_short_name": pl.Utf8,
                "figure_code": pl.Utf8,
                "honest_value": pl.Float64,
                "declared_value": pl.Float64,
                "biases": pl.Utf8,
            },
        )

    def _value(self, book: str, month: str, line: str | None, figure: str) -> float | None:
        s = self.sums

        def get(name: str) -> float | None:
            key = (book, month, line, name)
            return s[key] if key in s else None

        if figure == "taux_realisation_offre":
            prog, lost = get("km_programmes"), get("km_perdus_internes")
            return (prog - lost) / prog if prog else None
        if figure == "ponctualite":
            n = get("_departures")
            return get("_on_time") / n if n else None
        if figure == "disponibilite_parc":
            n = get("_fleet")
            return get("_available") / n if n else None
        if figure == "taux_information_occupation":
            n = get("_p_expected")
            return min(get("_p_delivered") / n, 1.0) if n else None
        return get(figure)


_BUS = (
    *LINE_FIGURES,
    "taux_realisation_offre",
    "ponctualite",
    "disponibilite_parc",
    "validations",
    "recettes",
)
_PARKING = ("taux_information_occupation", "entrees")
#: the figures that are rates (declared in %, as operators write them)
RATES = ("taux_realisation_offre", "ponctualite", "disponibilite_parc", "taux_information_occupation")
#: each bias of the figures, and the network figure its record quotes
BIASES = {
    "declared_run_not_run": "km_realises",
    "declared_external": "courses_perdues_externes",
    "declared_punctuality": "ponctualite",
    "declared_availability": "disponibilite_parc",
}
