"""Coordinates to WGS84 (longitude, latitude), whatever projection a French file uses.

Real French files carry Lambert-93 (EPSG:2154) and Lambert II étendu (EPSG:27572) beside or
instead of WGS84 (``standards_fr.md``: the NeTEx France sample gives both, Nice's SIRI gives
Lambert-93 only). Any EPSG code pyproj knows is accepted, named the ways files name it
(``EPSG:2154``, ``urn:ogc:def:crs:EPSG::2154``, ``http://www.opengis.net/def/crs/EPSG/0/2154``).
"""

from __future__ import annotations

import re
from functools import cache

WGS84 = 4326


def epsg(srs: str) -> int:
    """The EPSG code a ``srsName`` names; ValueError when it names none."""
    m = re.search(r"EPSG(?::|/0/|::)+(\d+)\s*$", srs.strip(), flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"srsName {srs!r} names no EPSG code")
    return int(m.group(1))


@cache
def _transformer(code: int):
    from pyproj import Transformer
    from pyproj.exceptions import CRSError

    try:
        return Transformer.from_crs(f"EPSG:{code}", f"EPSG:{WGS84}", always_xy=True)
    except CRSError:
        raise ValueError(f"EPSG:{code} is not a coordinate system pyproj knows") from None


def to_wgs84(x: float, y: float, srs: str | int) -> tuple[float, float]:
    """(longitude, latitude) of a point given in ``srs`` (x = easting or longitude)."""
    code = srs if isinstance(srs, int) else epsg(srs)
    if code == WGS84:
        return x, y
    lon, lat = _transformer(code).transform(x, y)
    return float(lon), float(lat)
