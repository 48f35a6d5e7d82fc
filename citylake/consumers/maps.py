"""Static SVG maps drawn from the published geometry (issue #34), for the contract report: offline,
self-contained, legible on paper (no basemap, no script; widths and labels in the page's units).

* :func:`load_map` — the busiest lines' load by segment: the network in light grey, each line's
  segments with a width proportional to the mean load, the segments whose 90th-percentile load
  reaches the vehicles' capacity outlined in red;
* :func:`slow_map` — the network's slowest segments at peak, numbered on the map as in the table
  beside it.

Coordinates are WGS84 (longitude, latitude) read from the marts' WKB as GeoJSON; the map is an
equirectangular projection around the network's mean latitude (a city spans far too little for
the difference with a conformal projection to show), with a scale bar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape as E

EARTH_M = 6_371_000.0
LINE_COLOURS = ("#1f5fa8", "#d9822b", "#2e8540")


def coordinates(geojson: str | None) -> list[tuple[float, float]]:
    """The (lon, lat) vertices of a GeoJSON LineString or Point."""
    if not geojson:
        return []
    geom = json.loads(geojson)
    coords = geom.get("coordinates") or []
    return [tuple(coords)] if geom.get("type") == "Point" else [tuple(c) for c in coords]


@dataclass(frozen=True)
class Frame:
    """Projects (lon, lat) into an SVG box around some points, north up."""

    lon0: float
    lat0: float
    scale: float  # SVG units per metre
    width: int
    height: int
    pad: int

    @classmethod
    def around(cls, points: Iterable[tuple[float, float]], width: int = 960, height: int = 560, pad: int = 24):
        pts = list(points)
        if not pts:
            pts = [(0.0, 0.0)]
        lons, lats = [p[0] for p in pts], [p[1] for p in pts]
        lat0 = (min(lats) + max(lats)) / 2
        kx = math.radians(1) * EARTH_M * math.cos(math.radians(lat0))
        ky = math.radians(1) * EARTH_M
        span_x = max((max(lons) - min(lons)) * kx, 1.0)
        span_y = max((max(lats) - min(lats)) * ky, 1.0)
        scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
        return cls((min(lons) + max(lons)) / 2, lat0, scale, width, height, pad)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        kx = math.radians(1) * EARTH_M * math.cos(math.radians(self.lat0))
        ky = math.radians(1) * EARTH_M
        return (
            self.width / 2 + (lon - self.lon0) * kx * self.scale,
            self.height / 2 - (lat - self.lat0) * ky * self.scale,
        )

    def path(self, coords: Sequence[tuple[float, float]]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in (self.xy(*c) for c in coords))

    def scale_bar(self) -> str:
        """A scale bar of a round length about a fifth of the map's width."""
        target = self.width / 5 / self.scale
        length = max(v for v in (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000) if v <= max(target, 100))
        w = length * self.scale
        x, y = self.pad, self.height - self.pad / 2
        label = f"{length // 1000} km" if length >= 1000 else f"{length} m"
        return (
            f'<line x1="{x}" x2="{x + w:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#1c2733" stroke-width="2"/>'
            f'<text x="{x + w / 2:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle">{label}</text>'
        )


def _open(frame: Frame, label: str) -> list[str]:
    return [
        f'<svg viewBox="0 0 {frame.width} {frame.height}" width="100%" role="img" aria-label="{E(label)}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fbfbf8">'
    ]


def _network(frame: Frame, network: Iterable[list[tuple[float, float]]]) -> list[str]:
    return [
        f'<polyline points="{frame.path(c)}" fill="none" stroke="#c9ced6" stroke-width="1.2" '
        'stroke-linecap="round" stroke-linejoin="round"/>'
        for c in network
        if len(c) >= 2
    ]


def load_map(network: list[list[tuple[float, float]]], segments: list[dict], lines: Sequence[str], title: str) -> str:
    """Line width ∝ mean load on each segment of ``lines``; red outline where the 90th-percentile
    load reaches capacity. ``segments``: dicts with line, coords, mean_load, p90_load, capacity."""
    frame = Frame.around(p for c in network + [s["coords"] for s in segments] for p in c)
    top = max((s["mean_load"] or 0 for s in segments), default=0) or 1
    parts = _open(frame, title) + _network(frame, network)
    colour = {line: LINE_COLOURS[i % len(LINE_COLOURS)] for i, line in enumerate(lines)}
    for s in sorted(segments, key=lambda s: s["mean_load"] or 0):
        width = 1.5 + 12 * (s["mean_load"] or 0) / top
        full = s["capacity"] and (s["p90_load"] or 0) >= s["capacity"]
        tip = (
            f"ligne {s['line']} : {s['from_name']} → {s['to_name']}, charge moyenne {s['mean_load'] or 0:.0f}, "
            f"90e centile {s['p90_load'] or 0:.0f}, capacité {s['capacity'] or 0:.0f}"
        )
        if full:
            parts.append(
                f'<polyline points="{frame.path(s["coords"])}" fill="none" stroke="#b3261e" '
                f'stroke-width="{width + 4:.1f}" stroke-linecap="round" stroke-linejoin="round"/>'
            )
        parts.append(
            f'<polyline points="{frame.path(s["coords"])}" fill="none" stroke="{colour.get(s["line"], "#1f5fa8")}" '
            f'stroke-width="{width:.1f}" stroke-opacity="0.85" stroke-linecap="round" stroke-linejoin="round">'
            f"<title>{E(tip)}</title></polyline>"
        )
    y = 18
    for line in lines:
        parts.append(
            f'<line x1="{frame.width - 230}" x2="{frame.width - 200}" y1="{y}" y2="{y}" stroke="{colour[line]}" '
            f'stroke-width="6"/><text x="{frame.width - 192}" y="{y + 4}" font-size="12">ligne {E(line)}</text>'
        )
        y += 18
    parts.append(
        f'<line x1="{frame.width - 230}" x2="{frame.width - 200}" y1="{y}" y2="{y}" stroke="#b3261e" '
        f'stroke-width="8"/><text x="{frame.width - 192}" y="{y + 4}" font-size="12">capacité atteinte (p90)</text>'
    )
    parts.append(frame.scale_bar() + "</svg>")
    return "".join(parts)


def slow_map(network: list[list[tuple[float, float]]], slow: list[dict], title: str) -> str:
    """The slowest segments in red, numbered as in the table beside the map (rank = list order)."""
    frame = Frame.around(p for c in network + [s["coords"] for s in slow] for p in c)
    parts = _open(frame, title) + _network(frame, network)
    for rank, s in enumerate(slow, start=1):
        tip = f"{rank}. ligne {s['line']} : {s['from_name']} → {s['to_name']}, {s['median_kmh']:.1f} km/h"
        parts.append(
            f'<polyline points="{frame.path(s["coords"])}" fill="none" stroke="#b3261e" stroke-width="5" '
            f'stroke-linecap="round" stroke-linejoin="round"><title>{E(tip)}</title></polyline>'
        )
    for rank, s in enumerate(slow, start=1):
        mid = s["coords"][len(s["coords"]) // 2]
        x, y = frame.xy(*mid)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="#fff" stroke="#b3261e" stroke-width="1.5"/>'
            f'<text x="{x:.1f}" y="{y + 3.5:.1f}" font-size="10" text-anchor="middle" font-weight="bold">{rank}</text>'
        )
    parts.append(frame.scale_bar() + "</svg>")
    return "".join(parts)
