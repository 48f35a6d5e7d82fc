"""The monthly contract report and the docs of the marts as a person sees them: rendered by
headless Chromium (Debian's package), no console message, and a screenshot in which the charts
(the report's, the lineage graph) are drawn.

The screenshots are kept in ``test-artifacts/`` (not in git). ``make test`` installs Chromium
when it is missing; without it this test fails, it never skips.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

#: Colours the report's charts are drawn with (citylake/report.py).
SERPENT_BARS = (0x7A, 0xA7, 0xD6)
TREND_LINE = (0x1F, 0x5F, 0xA8)


def render(
    html: Path | str, png: Path, tmp_path: Path, size: str = "1100,4200", extra: tuple[str, ...] = ()
) -> list[str]:
    """Screenshot a page (a file or a URL); return the console messages Chromium logged loading it."""
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
            f"--window-size={size}",
            *extra,
            html.as_uri() if isinstance(html, Path) else html,
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


#: Colours of dbt's lineage graph: the operators' staged feeds (sources) and the models.
GRAPH_SOURCE = (0x5F, 0xB8, 0x25)
GRAPH_MODEL = (0x00, 0x94, 0xB3)
#: Chromium resolves no host but the test's server: a page that fetches from outside logs an error.
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--virtual-time-budget=15000")


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run (offline)."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *OFFLINE,
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return out.stdout


def test_docs_of_the_marts_served_offline_with_their_lineage(lake_after_nights, tmp_path: Path) -> None:
    """Each publication writes dbt's docs site; ``citylake serve`` serves the one in force at
    /docs/marts. Opened offline in Chromium: no console message, the overview names the
    publication, a mart's page lists its columns, and its lineage graph is drawn back to the
    operators' staged feeds."""
    import uvicorn

    from citylake.consumers.api import TokenRegister, create_app
    from citylake.core.storage import open_storage

    night = lake_after_nights.last
    publication = night.gate.publication_id
    assert night.docs_site == f"reports/docs/{publication}/index.html"
    for earlier in lake_after_nights.nights:
        assert (lake_after_nights.lake / earlier.docs_site).exists(), "a publication wrote no docs site"
    settings = lake_after_nights.settings()
    register = TokenRegister(tmp_path / "tokens.json")
    token = register.add("docs-reader", "analyst")
    app = create_app(settings, open_storage(settings), register)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    def link(as_of: str | None = None) -> str:
        """A signed link from the API (a browser sends no bearer token), as an analyst gets one."""
        import json
        import urllib.request

        query = f"?as_of={as_of}" if as_of else ""
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/docs/link{query}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return f"http://127.0.0.1:{port}" + json.load(answer)["url"]

    try:
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError, match="401"):  # no token, no signed link: no docs
            urllib.request.urlopen(f"http://127.0.0.1:{port}/docs/marts", timeout=30)
        base = link()
        pages = {
            "overview": f"{base}#!/overview",
            "mart": f"{base}#!/model/model.citylake.mart_bus_load_profile",
            "lineage": f"{base}#!/model/model.citylake.mart_bus_load_profile?g_v=1&g_i=%2Bmart_bus_load_profile",
        }
        shots = {}
        for name, url in pages.items():
            shots[name] = ARTIFACTS / f"docs_marts_{name}.png"
            console = render(url, shots[name], tmp_path / name, size="1400,1000", extra=OFFLINE)
            assert console == [], f"console messages on {url}:\n" + "\n".join(console)
        first = lake_after_nights.nights[0].gate.publication_id
        earlier = dump_dom(f"{link(first)}#!/overview", tmp_path / "dom-as-of")
        columns = dump_dom(pages["mart"], tmp_path / "dom-mart")
    finally:
        server.should_exit = True
    assert f"Publication <strong>{first}</strong>" in earlier, "as_of does not serve the earlier publication's docs"
    assert "Publication groups" in earlier, "the project's own overview (models/overview.md) is gone"
    # the mart's page: its grain, and its columns with their types (from the warehouse's catalog)
    assert "Grain: one row per (route_short_name" in columns
    for column in ("mean_load", "p90_load", "stop_sequence"):
        assert re.search(rf">\s*{column}\s*<", columns), f"column {column} not listed"
    assert "DOUBLE" in columns and "BIGINT" in columns, "column types (dbt's catalog) not shown"
    assert count_pixels(shots["lineage"], GRAPH_SOURCE) > 1000, "the lineage graph draws no staged feed"
    assert count_pixels(shots["lineage"], GRAPH_MODEL) > 5000, "the lineage graph draws no model"


@pytest.mark.parametrize("operator", ["bus", "parking"])
def test_the_night_prints_the_contract_report_to_pdf(lake_after_nights, operator: str) -> None:
    """The PDF a contract manager attaches to a letter: printed by the night beside the HTML, A4,
    its first page drawn (not blank: the title, the KPI table and coloured statuses), every page
    carrying text, and the lineage footer on the last one."""
    import pypdfium2 as pdfium

    night = lake_after_nights.last
    key = f"reports/contract/operator={operator}/month=2026-03/{night.gate.publication_id}.pdf"
    assert key in night.contract_reports
    pdf = pdfium.PdfDocument(lake_after_nights.lake / key)
    assert len(pdf) >= 1
    width, height = pdf[0].get_size()
    assert (round(width), round(height)) == (595, 842), "not A4 portrait"
    texts = [" ".join(page.get_textpage().get_text_range().split()) for page in pdf]
    assert f"Rapport mensuel — opérateur {operator} — 03/2026" in texts[0]
    assert "Indicateurs contractuels" in texts[0] and all(t.strip() for t in texts)
    assert f"Publication {night.gate.publication_id}" in texts[-1]
    png = ARTIFACTS / f"contract_report_{operator}_pdf_page1.png"
    pdf[0].render(scale=1.5).to_pil().save(png)
    image = Image.open(png).convert("L")
    dark = sum(n for n, v in image.getcolors(1 << 16) if v < 128)
    assert dark > 0.01 * image.width * image.height, "the PDF's first page is blank"
    assert coloured_pixels(png) > 200, "the PDF's first page has no colour (statuses, charts)"


def test_the_pdf_map_page_is_drawn(lake_after_nights) -> None:
    """The report's maps (issue #34) printed: the page that holds them, rendered to PNG, shows the
    network in grey, the busiest lines' loads in their colours and the slow segments in red."""
    import pypdfium2 as pdfium

    night = lake_after_nights.last
    pdf = pdfium.PdfDocument(
        lake_after_nights.lake / f"reports/contract/operator=bus/month=2026-03/{night.gate.publication_id}.pdf"
    )
    pages = [i for i, page in enumerate(pdf) if "Cartes du mois" in page.get_textpage().get_text_range()]
    assert pages, "no map page in the PDF"
    shots = []
    for i in range(pages[0], min(pages[0] + 2, len(pdf))):  # the maps may run onto the next page
        png = ARTIFACTS / f"contract_report_bus_pdf_maps_{i - pages[0] + 1}.png"
        pdf[i].render(scale=2).to_pil().save(png)
        shots.append(png)
    network = sum(count_pixels(p, (0xC9, 0xCE, 0xD6), 10) for p in shots)
    first_line = sum(count_pixels(p, (0x1F, 0x5F, 0xA8), 30) for p in shots)
    slow = sum(count_pixels(p, (0xB3, 0x26, 0x1E), 30) for p in shots)
    assert network > 2000, "the network is not drawn on the map page"
    assert first_line > 1000, "the busiest line's loads are not drawn"
    assert slow > 300, "the slow segments are not drawn"
