"""The figures an operator declares in its monthly report, in the city's vocabulary.

An operator's rapport mensuel d'exploitation names its figures its own way ("Km commerciaux
réalisés", "KCC", "Taux de ponctualité"); its extract contract recodes them to these codes
(``recode:`` on the figure column), as it maps any column to a canonical name. Each code has one
unit, the one staged; a figure delivered in another unit is converted when the conversion is
exact (a percentage to a ratio) and refused otherwise, naming the unit expected. Which figures
each operator must declare, with what tolerance and against which contract KPI, is the contract's
term: the seed ``contract_declared_figures`` (dbt_project/seeds/).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    #: the units a delivery may give it in, with the factor to the staged unit
    accepted: tuple[tuple[str, float], ...]
    #: the largest value the figure can take in its unit (a rate is at most 1)
    maximum: float | None = None


_KM = (("km", 1.0),)
_RATE = (("ratio", 1.0), ("%", 0.01))
_COUNT = (("nombre", 1.0),)
_EUR = (("eur", 1.0), ("€", 1.0))

FIGURES: dict[str, Figure] = {
    "km_programmes": Figure("km commerciaux programmés", "km", _KM),
    "km_realises": Figure("km commerciaux réalisés", "km", _KM),
    "km_perdus_internes": Figure("km perdus, causes internes", "km", _KM),
    "km_perdus_externes": Figure("km perdus, causes externes", "km", _KM),
    "courses_programmees": Figure("courses programmées", "nombre", _COUNT),
    "courses_perdues_internes": Figure("courses perdues, causes internes", "nombre", _COUNT),
    "courses_perdues_externes": Figure("courses perdues, causes externes", "nombre", _COUNT),
    "taux_realisation_offre": Figure("taux de réalisation de l'offre (hors causes externes)", "ratio", _RATE, 1.0),
    "ponctualite": Figure("ponctualité des départs", "ratio", _RATE, 1.0),
    "disponibilite_parc": Figure("disponibilité du parc à l'heure de pointe", "ratio", _RATE, 1.0),
    "validations": Figure("validations", "nombre", _COUNT),
    "recettes": Figure("recettes tarifaires (montants débités, TTC)", "EUR", _EUR),
    "taux_information_occupation": Figure("information d'occupation publiée", "ratio", _RATE, 1.0),
    "entrees": Figure("entrées de véhicules", "nombre", _COUNT),
}


def unit_rule(code: str, unit: str) -> tuple[float | None, str | None]:
    """The factor from ``unit`` to the staged unit of figure ``code``, or None and why not."""
    figure = FIGURES.get(code)
    if figure is None:
        return None, f"unknown figure code {code!r}"
    factors = dict(figure.accepted)
    given = unit.strip().lower() if unit else ""
    if given not in factors:
        units = " or ".join(repr(u) for u, _ in figure.accepted)
        return None, f"{code} is declared in {units}, not {unit!r}"
    return factors[given], None
