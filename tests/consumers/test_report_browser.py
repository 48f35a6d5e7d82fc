"""The monthly contract report as a person sees it: rendered by headless Chromium (Debian's
package), no console message, and a screenshot in which the charts are drawn.

The screenshots are kept in ``test-artifacts/`` (not in git). ``make test`` installs Chromium
when it is missing; without it this test fails, it never skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

#: Colours the report's charts are drawn with (citylake/report.py).
SERPENT_BARS = (0x7A, 0xA7, 0xD6)
TREND_LINE = (0x1F, 0x5F, 0xA8)


def render(html: Path, png: Path, tmp_path: Path) -> list[str]:
    """Screenshot a page; return the console messages Chromium logged while loading it."""
    assert CHROMIUM is not None, "chromium is not installed: `make browser` (apt-get install chromium)"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1100,4200",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.exists(), f"no screenshot: {out.stderr[-2000:]}"
    return [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def count_pixels(png: Path, rgb: tuple[int, int, int], tolerance: int = 6) -> int:
    image = Image.open(png).convert("RGB")
    return sum(
        n
        for n, c in image.getcolors(maxcolors=1 << 24)
        if all(abs(a - b) <= tolerance for a, b in zip(c, rgb, strict=True))
    )


def coloured_pixels(png: Path) -> int:
    """Pixels that are neither grey nor white (heat-map cells, bars, lines)."""
    image = Image.open(png).convert("HSV")
    return sum(n for n, (_h, s, v) in image.getcolors(maxcolors=1 << 24) if s > 60 and v > 60)


@pytest.mark.parametrize("operator", ["bus", "parking"])
def test_contract_report_renders_in_chromium_with_its_charts(lake_after_nights, operator: str, tmp_path: Path) -> None:
    base, night = lake_after_nights.base, lake_after_nights.last
    key = f"reports/contract/operator={operator}/month=2026-03/{night.gate.publication_id}.html"
    html = base / "lake" / key
    page = html.read_text(encoding="utf-8")
    # self-contained: nothing to fetch, so nothing can fail to load when printed or mailed
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", page), "the report references an external resource"
    png = ARTIFACTS / f"contract_report_{operator}.png"
    console = render(html, png, tmp_path)
    assert console == [], "console messages while rendering:\n" + "\n".join(console)
    width, height = Image.open(png).size
    assert (width, height) == (1100, 4200)
    assert count_pixels(png, TREND_LINE) > 30, "the 12-month trend charts are not drawn (one point per month)"
    if operator == "bus":
        assert count_pixels(png, SERPENT_BARS) > 5000, "the serpent de charge bars are not drawn"
    else:
        assert coloured_pixels(png) > 20000, "the parking heat map is not drawn"
