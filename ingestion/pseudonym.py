"""Card ids become keyed pseudonyms at parse time; no clear id ever reaches the staged zone.

``pseudonym = HMAC-SHA256(period_key, serial)[:32 hex]`` with
``period_key = HMAC-SHA256(CITYLAKE_PSEUDONYM_KEY, period label)``. The period is the rotation
period of the service date (``CITYLAKE_PSEUDONYM_ROTATION``: ``month``, ``quarter`` (default) or
``year``): the same card has the same pseudonym within a period, so journeys chain across days,
and unlinkable pseudonyms across periods, so a leaked staged table cannot follow a card for
longer than a period. Without the master key nobody, the city included, can go back from a
pseudonym to a card. Rotating the master key itself (if it leaks) breaks linkage from then on.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import polars as pl

from citylake.core.errors import LakeConfigError

ROTATIONS = ("month", "quarter", "year")


def period_label(day: date, rotation: str = "quarter") -> str:
    """Return the rotation period of a service date, e.g. '2026Q1'."""
    if rotation == "month":
        return f"{day:%Y-%m}"
    if rotation == "quarter":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    if rotation == "year":
        return str(day.year)
    raise LakeConfigError(f"unknown pseudonym rotation {rotation!r}: {', '.join(ROTATIONS)}")


class Pseudonymiser:
    def __init__(self, master_key: str | None, rotation: str = "quarter") -> None:
        key = master_key
        if not key or len(key) < 16:
            raise LakeConfigError(
                "CITYLAKE_PSEUDONYM_KEY is not set (or shorter than 16 characters): card ids cannot be "
                "pseudonymised, so personal-data feeds are landed in raw but not parsed"
            )
        self._master = key.encode()
        self.rotation = rotation
        period_label(date(2000, 1, 1), self.rotation)  # validate

    def period_key(self, day: date) -> bytes:
        return hmac.new(self._master, period_label(day, self.rotation).encode(), hashlib.sha256).digest()

    def one(self, serial: str, day: date) -> str:
        return hmac.new(self.period_key(day), serial.encode(), hashlib.sha256).hexdigest()[:32]

    def series(self, serials: pl.Series, day: date) -> pl.Series:
        """Return the pseudonyms of a column of serials (nulls stay null), hashing each distinct value once."""
        uniques = serials.drop_nulls().unique()
        hashed = pl.Series(_hmac_sha256_hex32(self.period_key(day), uniques.to_list()), dtype=pl.Utf8)
        return serials.replace_strict(uniques, hashed, default=None, return_dtype=pl.Utf8)


def _hmac_sha256_hex32(key: bytes, values: list[str]) -> list[str]:
    """HMAC-SHA256 (RFC 2104) of many values under one key, first 32 hex digits of each.

    The same bytes as ``hmac.new(key, v, sha256)``, with the padded key's two hash states computed
    once and copied per value: 1.7× faster on the 500 k cards of a metro day (profiled)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner0 = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer0 = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for v in values:
        inner = inner0.copy()
        inner.update(v.encode())
        outer = outer0.copy()
        outer.update(inner.digest())
        out.append(outer.hexdigest()[:32])
    return out
