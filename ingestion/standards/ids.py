"""A producer's identifiers → the network's, as the operator's extract contract says (``file.ids``).

A standard feed names stops, journeys and lines with its producer's ids: NeTEx France ids
(``[codespace]:[type]:[technical id]:[LOC]``), SIRI refs (``STIF:StopPoint:Q:1239:``), or a
GTFS-RT built on another GTFS export (TUB's ``stop_id`` = SIRI code + 20000). The profile forbids
parsing ids in general (``standards_fr.md`` §2), so nothing here guesses: a contract states, for
one producer, how each kind of id maps, and ids that do not follow the stated rule are kept as
they are (the reference checks then name them)::

    file:
      ids:
        stop: {pattern: "^FR:SIM:ScheduledStopPoint:(?P<id>.+):$"}
        trip: {pattern: "^FR:SIM:ServiceJourney:(?P<id>.+):$"}
        line: {pattern: "^FR:SIM:Line:(?P<id>.+):$", add_prefix: ""}
        # also: vehicle, service (day types), agency; and per kind: offset (an integer added)

Each rule applies, in order: ``pattern`` (a regular expression; its group ``id``, else the whole
match, is kept; an id it does not match is kept whole and nothing else applies), ``offset`` (an
integer added to a numeric id), ``add_prefix``.
"""

from __future__ import annotations

import re

import polars as pl

#: which columns hold which kind of id, across the staged vocabularies and GTFS tables
COLUMNS = {
    "stop": ("stop_id", "parent_station"),
    "trip": ("trip_id",),
    "line": ("route_id",),
    "vehicle": ("vehicle_id",),
    "service": ("service_id",),
    "agency": ("agency_id",),
}
RULE_KEYS = {"pattern", "offset", "add_prefix"}


def check(spec: dict | None, where: str) -> None:
    """Raise ValueError naming what is wrong with a contract's ``file.ids`` block."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: file.ids must be a mapping of id kinds to rules")
    for kind, rule in spec.items():
        if kind not in COLUMNS:
            raise ValueError(f"{where}: file.ids kind {kind!r} is not one of {sorted(COLUMNS)}")
        if not isinstance(rule, dict) or set(rule) - RULE_KEYS:
            raise ValueError(f"{where}: file.ids.{kind} must be a mapping with keys among {sorted(RULE_KEYS)}")
        if "pattern" in rule:
            try:
                re.compile(rule["pattern"])
            except re.error as exc:
                raise ValueError(f"{where}: file.ids.{kind}.pattern is not a regular expression ({exc})") from None
        if "offset" in rule and not isinstance(rule["offset"], int):
            raise ValueError(f"{where}: file.ids.{kind}.offset must be an integer")


def _mapped(expr: pl.Expr, rule: dict) -> pl.Expr:
    out, follows = expr, pl.lit(True)
    if rule.get("pattern"):
        index = re.compile(rule["pattern"]).groupindex.get("id")
        pattern = rule["pattern"] if index else f"({rule['pattern']})"
        follows = expr.str.contains(rule["pattern"])
        out = expr.str.extract(pattern, index or 1)
    if rule.get("offset"):
        number = out.cast(pl.Int64, strict=False)
        out = pl.when(number.is_not_null()).then((number + rule["offset"]).cast(pl.Utf8)).otherwise(out)
    if rule.get("add_prefix"):
        out = pl.lit(rule["add_prefix"]) + out
    return pl.when(follows.fill_null(False)).then(out).otherwise(expr)


def apply(frame: pl.DataFrame, spec: dict | None) -> pl.DataFrame:
    """``frame`` with every id column of a kind the spec names mapped by that kind's rule."""
    if not spec:
        return frame
    exprs = [
        _mapped(pl.col(column), rule).alias(column)
        for kind, rule in spec.items()
        for column in COLUMNS[kind]
        if column in frame.columns and frame.schema[column] == pl.Utf8
    ]
    return frame.with_columns(exprs) if exprs else frame
