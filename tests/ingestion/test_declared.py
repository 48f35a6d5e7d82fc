"""The operator's monthly report (feed ``declared``): every row staged valid or refused with its rule.

The builder (ingestion.feeds.declared_figures) is checked against a plain-Python oracle of the
contract's rules on generated reports (Hypothesis): a figure unknown, in a unit not its own, of
another month, negative, a rate above 1, or given twice for a month and line is invalid with its
reason; every other row is staged in the city's unit.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.contracts import contract
from ingestion.declared import FIGURES
from ingestion.feeds import Context, Refs, dataset_of, date_from_name, to_staged
from ingestion.parsing import parse

REPORT = date(2026, 3, 31)
PARKING = contract("parking", "declared")
LABELS = dict(PARKING.column("figure_code").recode)  # operator's label -> code


def staged_report(rows: list[tuple[str, str, str, str]]) -> pl.DataFrame:
    """The parking operator's report with these (month, label, value, unit) rows, staged."""
    lines = ["Mois;Indicateur;Valeur;Unité"] + [";".join(r) for r in rows]
    data = ("\r\n".join(lines) + "\r\n").encode("cp1252")
    name = "rapport_mensuel_parcs_202603.csv"
    assert date_from_name(PARKING, name) == REPORT
    parsed = parse(PARKING, data, name, "Europe/Paris", REPORT)
    ctx = Context("parking", "sha", REPORT, "Europe/Paris", Refs())
    return to_staged(dataset_of(PARKING), parsed.frame, ctx).sort("source_row")


def test_a_report_stages_each_rule_with_its_reason() -> None:
    staged = staged_report(
        [
            ("2026-03", "Taux d'information d'occupation publiée", "98,50", "%"),
            ("2026-03", "Entrées de véhicules", "21157,00", "nombre"),
            ("2026-03", "Recettes", "1000,00", "€"),
            ("2026-03", "Entrées de véhicules", "20000,00", "nombre"),
            ("2026-02", "Taux d'information d'occupation publiée", "99,00", "%"),
            ("2026-03", "Taux d'information d'occupation publiée", "0,98", "km"),
        ]
    )
    reasons = dict(zip(staged["source_row"], staged["invalid_reason"], strict=True))
    assert reasons[2] is None
    first = staged.filter(pl.col("source_row") == 2).row(0, named=True)
    assert first["figure_code"] == "taux_information_occupation" and abs(first["value"] - 0.985) < 1e-12
    assert first["unit"] == "ratio" and first["unit_delivered"] == "%" and first["month"] == "2026-03"
    assert reasons[4] == "column 'Indicateur': 'Recettes' is not one of ['taux_information_occupation', 'entrees']"
    assert reasons[3] == reasons[5] == "entrees declared twice or more for the same month and line (rows 3, 5)"
    assert reasons[6] == "month 2026-02 in the report of 2026-03"
    assert reasons[7] == "taux_information_occupation is declared in 'ratio' or '%', not 'km'"


def test_a_month_named_file_is_dated_by_its_last_day() -> None:
    bus = contract("bus", "declared")
    assert date_from_name(bus, "rapport_mensuel_2026-02.xlsx") == date(2026, 2, 28)
    assert date_from_name(bus, "rapport_mensuel_2028-02_v2.xlsx") == date(2028, 2, 29)
    assert date_from_name(bus, "rapport_mensuel_2026-13.xlsx") is None
    assert date_from_name(PARKING, "rapport_mensuel_parcs_202612.csv") == date(2026, 12, 31)


_MONTHS = st.sampled_from(["2026-03", "2026-02"])
_LABELS = st.sampled_from([*LABELS, "Recettes"])
_UNITS = st.sampled_from(["%", "ratio", "nombre", "km", ""])
_VALUES = st.one_of(
    st.integers(-5, 30_000).map(lambda v: f"{v},00"),
    st.sampled_from(["0,50", "1,00", "99,99", "100,00", "101,00", "abc"]),
)


def oracle(rows: list[tuple[str, str, str, str]]) -> list[tuple[bool, float | None]]:
    """The contract's rules, one by one, in plain Python: (valid, staged value) per row."""
    out: list[tuple[bool, float | None, tuple | None]] = []
    for month, label, text, unit in rows:
        code = LABELS.get(label)
        try:
            value = float(text.replace(",", "."))
        except ValueError:
            value = None
        factors = dict(FIGURES[code].accepted) if code else {}
        ok = code is not None and value is not None and unit.lower() in factors and month == "2026-03"
        staged = value * factors[unit.lower()] if ok else None
        ok = ok and staged >= 0 and (FIGURES[code].maximum is None or staged <= FIGURES[code].maximum + 1e-9)
        out.append((ok, staged, (month, code) if ok else None))
    twice = Counter(key for _, _, key in out if key is not None)
    return [(ok and twice[key] == 1, staged) for ok, staged, key in out]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_MONTHS, _LABELS, _VALUES, _UNITS), min_size=1, max_size=8))
def test_the_builder_agrees_with_the_rules_on_any_report(rows) -> None:
    staged = staged_report(rows)
    assert staged.height == len(rows)  # every row staged, valid or not: nothing dropped
    expected = oracle(rows)
    for got, (ok, value) in zip(staged.iter_rows(named=True), expected, strict=True):
        assert got["is_valid"] == ok, (got, ok)
        assert ok == (got["invalid_reason"] is None)
        if ok:
            assert abs(got["value"] - value) < 1e-9 and got["unit"] == FIGURES[got["figure_code"]].unit


@given(st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31)), st.sampled_from(["", "_v2", " (1)"]))
def test_any_month_named_file_reads_back_as_its_months_last_day(day: date, suffix: str) -> None:
    """Whatever the month and however the operator suffixes a redelivery, both month forms of a
    name read back as the month's last day, and a day-dated name as its day."""
    from ingestion.feeds import month_end

    for c in (contract("bus", "declared"), PARKING):
        stem, ext = c.file_name(day).rsplit(".", 1)
        assert date_from_name(c, f"{stem}{suffix}.{ext}") == month_end(day)
    daily = contract("bus", "ticketing")
    assert date_from_name(daily, daily.file_name(day)) == day
