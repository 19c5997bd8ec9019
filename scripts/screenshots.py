"""Screenshots of the real app for the README: docs/img/{overview,map,rollout,data,public}.png.

Builds the demo store and its public snapshot if they are missing, starts `streamlit run serve.py` on a free
port, opens each page in headless Chromium (Debian's, /usr/bin/chromium or $CHROMIUM) and saves one PNG per
page, as tall as the page's content. Every request to another host than 127.0.0.1 is blocked, so it runs
offline: the map's basemap tiles stay blank, its layers are drawn all the same.

    .venv/bin/python scripts/screenshots.py        # or: make screenshots
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import ARGS, CHROMIUM, IDLE, streamlit_server  # noqa: E402  the browser tests' own server

OUT = ROOT / "docs" / "img"
DECK = "[data-testid='stDeckGlJsonChart'] canvas"
PLOT, TABLE = "[data-testid='stPlotlyChart']", "[data-testid='stDataFrame']"
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {  # file name -> (URL path, the elements to wait for)
    "overview": ("", ("[data-testid='stMetricValue']", TABLE, PLOT)),  # the default page lives at /
    "map": ("map", (DECK, TABLE)),
    "rollout": ("rollout?impact=true", (PLOT, DECK, TABLE)),  # with its impact section open
    "data": ("data", ("[data-testid='stFileUploader']", TABLE)),
    # Berlin: at whole-network zoom the public map's small hexagons hardly show
    "public": ("public?region=C-BER", ("[data-testid='stMetricValue']", PLOT, DECK)),
}


def shoot(page: Page, url: str, name: str) -> Path:
    """Open one page, wait until it has run and drawn its elements, and save it as docs/img/<name>.png."""
    path, selectors = PAGES[name]
    page.goto(f"{url}/{path}")
    for selector in selectors:
        page.locator(selector).first.wait_for(timeout=60_000)
    for _ in range(2):  # twice: a widget's first run can queue one more
        page.wait_for_selector(IDLE, timeout=60_000)
        page.wait_for_timeout(500)
    for bad in ("[data-testid='stException']", "[data-testid='stAlertContentError']", "[role='dialog']"):
        if page.locator(bad).count():  # an exception, an error, or Streamlit's "Page not found"
            raise RuntimeError(f"{name}: the page shows {page.locator(bad).first.inner_text()[:300]!r}")
    # the app scrolls inside its main element: make the viewport as tall as the content to get all of it
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(900, height)})
    page.wait_for_timeout(3000 if DECK in selectors else 1000)  # charts redraw at the new size
    png = OUT / f"{name}.png"
    page.screenshot(path=str(png), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    return png


def main() -> None:
    py = [sys.executable, "-m", "lib.cli"]
    subprocess.run([*py, "demo", "--if-missing"], cwd=ROOT, check=True)
    subprocess.run([*py, "publish", "--if-missing"], cwd=ROOT, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp(prefix="screenshots-")) / "server.log"
    with streamlit_server({}, log, target="serve.py") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(f"{url}/") else r.abort())
            for name in PAGES:
                path = shoot(page, url, name)
                print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
