"""What a message may say about a row of a personal-data feed: which row and which rule, never the
value (a card serial in the wrong column would otherwise reach the manifest, the logs and the
warehouse, which the RGPD purge of ``raw/`` does not touch).

Every message about a row goes through :func:`shown`; a feed whose contract says
``personal_data: true`` gets :data:`WITHHELD` in place of each value.
"""

from __future__ import annotations

import polars as pl

WITHHELD = "<personal-data feed: value withheld>"


def shown(value: pl.Expr, personal: bool) -> pl.Expr:
    """The value as a message may show it: itself, or WITHHELD for a personal-data feed."""
    return pl.lit(WITHHELD) if personal else value.cast(pl.Utf8)


#: Staged columns of a personal-data feed that never hold a delivered value in clear.
KEPT = {"operator", "service_date", "as_of_date", "source_sha256", "source_row", "is_valid", "invalid_reason"}


def invalid_rows_withheld(staged: pl.DataFrame, pseudonymised: set[str]) -> pl.DataFrame:
    """A personal-data feed's invalid rows keep their line, reason and pseudonyms; their text values
    are withheld (null): a value that broke a rule may be a card number in the wrong column. The
    raw file, purged on its schedule, still holds them."""
    text = [c for c, t in staged.schema.items() if t == pl.Utf8 and c not in KEPT and c not in pseudonymised]
    return staged.with_columns(pl.when(pl.col("is_valid")).then(pl.col(c)).alias(c) for c in text)


def card_numbers_elsewhere(frame: pl.DataFrame, serial: str) -> pl.DataFrame:
    """Rows where a text column other than the card's holds one of the file's card numbers: the
    cell is withheld (null) and the row invalid, naming the column, never the number."""
    serials = frame[serial].drop_nulls().unique()
    if not serials.len():
        return frame
    for c, t in frame.schema.items():
        if c == serial or t != pl.Utf8 or c in KEPT:
            continue
        hit = pl.col(c).is_in(serials.implode())
        frame = frame.with_columns(
            pl.when(pl.col("is_valid") & hit.fill_null(False))
            .then(pl.lit(f"column {c}: holds a card number (withheld)"))
            .otherwise(pl.col("invalid_reason"))
            .alias("invalid_reason"),
            pl.when(hit.fill_null(False)).then(None).otherwise(pl.col(c)).alias(c),
        ).with_columns(pl.col("invalid_reason").is_null().alias("is_valid"))
    return frame
