"""The explorer as a person sees it (issue #34): ``citylake serve``'s /explore on a published lake,
in headless Chromium that can reach nothing but 127.0.0.1. The map canvas is drawn (not blank),
picking a line updates the map and the serpent beside it, clicking a stop shows its activity,
the speed view draws segments, no console message, and no request leaves the machine."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.support.browser import Browser, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BACKGROUND = (0xF4, 0xF4, 0xF1)  # the explorer's plain background (no basemap configured)


def drawn_pixels(png: Path, box: tuple[int, int, int, int]) -> int:
    """Pixels of the map's area that are not its background."""
    image = Image.open(png).convert("RGB").crop(box)
    far = [n for n, c in image.getcolors(1 << 24) if max(abs(a - b) for a, b in zip(c, BACKGROUND, strict=True)) > 12]
    return sum(far)


@pytest.fixture(scope="module")
def server(lake_after_nights, tmp_path_factory):
    import uvicorn

    from citylake.consumers.api import TokenRegister, create_app
    from citylake.core.storage import open_storage

    settings = lake_after_nights.settings()
    register = TokenRegister(tmp_path_factory.mktemp("explore") / "tokens.json")
    token = register.add("explorer", "analyst")
    app = create_app(settings, open_storage(settings), register)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True


def rendered(browser: Browser, renders: int) -> dict:
    value = browser.wait_for(
        f"(() => {{ if (!document.body) return null; const r = document.body.dataset.rendered; "
        f"return r && JSON.parse(r).renders >= {renders} ? r : "
        "document.body.dataset.error ? 'error:' + document.body.dataset.error : null })()"
    )
    assert not value.startswith("error:"), value
    return json.loads(value)


def test_the_explorer_draws_the_network_offline_and_follows_the_picks(server, tmp_path) -> None:
    base, token = server
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(f"{base}/explore#token={token}")
        first = rendered(browser, 1)
        assert first["view"] == "load" and first["features"] > 0 and first["bars"] > 0
        assert "token" not in browser.evaluate("location.hash"), "the token stays in the address bar"
        time.sleep(1.0)  # the canvas paints on the next frames
        shot = browser.screenshot(ARTIFACTS / "explore_load.png")
        width = Image.open(shot).size[0]
        map_box = (0, 120, width - 400, 860)
        assert drawn_pixels(shot, map_box) > 3000, "the map canvas is blank"
        lines = browser.evaluate("[...document.querySelectorAll('#line option')].map(o => o.value)")
        assert len(lines) >= 2
        bars_before = browser.evaluate("document.querySelectorAll('#serpent rect.bar').length")

        # pick another line as a person would (one that ran in this direction, day type and time
        # band): the map and the chart follow
        import httpx

        ran = httpx.get(
            f"{base}/v1/marts/mart_segment_loads/rows",
            params=[("filter", "direction_id:eq:0"), ("filter", "day_type:eq:weekday"), ("limit", "5000"),
                    ("filter", "time_band:eq:07-09 pointe du matin")],
            headers={"Authorization": f"Bearer {token}"},
        ).json()["rows"]  # fmt: skip
        other = next(line for line in lines if line != first["line"] and line in {r["route_short_name"] for r in ran})
        browser.evaluate(
            f"(() => {{ const s = document.getElementById('line'); s.value = {json.dumps(other)}; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        second = rendered(browser, 2)
        assert second["line"] == other and second["features"] > 0
        assert browser.evaluate("location.hash").find(f"line={other}") > 0
        serpent = browser.evaluate("document.getElementById('side-title').textContent")
        assert f"Ligne {other}" in serpent
        bars_after = browser.evaluate("document.querySelectorAll('#serpent rect.bar').length")
        assert bars_after == second["bars"] > 0 and (bars_after, other) != (bars_before, first["line"])
        time.sleep(1.0)
        assert drawn_pixels(browser.screenshot(ARTIFACTS / "explore_line.png"), map_box) > 3000

        # click a stop on the map: its activity appears beside it
        stop = browser.evaluate(
            "(() => { const m = window.citylakeMap; const f = m.queryRenderedFeatures({layers: ['stops']})[0]; "
            "const p = m.project(f.geometry.coordinates); const r = m.getCanvas().getBoundingClientRect(); "
            "return {id: f.properties.stop_id, x: p.x + r.left, y: p.y + r.top}; })()"
        )
        browser.click(stop["x"], stop["y"])
        assert browser.wait_for("document.body.dataset.stop") == stop["id"]
        assert browser.wait_for("document.querySelectorAll('#stop-hours rect').length") == 24

        # switch to speed by segment
        browser.evaluate("document.querySelector('input[name=view][value=speed]').click()")
        speed = rendered(browser, 3)
        assert speed["view"] == "speed" and speed["features"] > 0
        time.sleep(1.0)
        assert drawn_pixels(browser.screenshot(ARTIFACTS / "explore_speed.png"), map_box) > 3000

        browser.evaluate("1")  # the last events
        # Chromium's own note on its software GL when a screenshot reads the canvas back (not the page's)
        console = [m for m in browser.console if "GL Driver Message" not in m]
        assert console == [], "console messages:\n" + "\n".join(console)
        outside = [u for u in browser.requests if not u.startswith((base, "data:", "blob:"))]
        assert outside == [], f"requests left the machine: {outside}"
        assert any(u.startswith(f"{base}/explore/vendor/maplibre-gl.js") for u in browser.requests)
    finally:
        browser.close()


def test_the_explorer_is_a_page_without_data_and_its_files_are_served(server) -> None:
    import httpx

    base, _ = server
    page = httpx.get(f"{base}/explore")
    assert page.status_code == 200 and "maplibre-gl.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self';" in csp and "https:" not in csp  # no basemap: nothing but this API
    assert httpx.get(f"{base}/explore/config.json").json() == {"basemap_style": None}
    lib = httpx.get(f"{base}/explore/vendor/maplibre-gl.js")
    assert lib.status_code == 200 and lib.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{base}/explore/vendor/../../api.py").status_code == 404
    assert httpx.get(f"{base}/v1/marts/mart_segment_loads/rows").status_code == 401  # the data needs a token
