"""The real app in headless Chromium: every page loads without an error, and a file upload shows its rejects.

A module fixture starts `streamlit run dashboard.py` on a free port against a copy of the demo
store. Screenshots of each page go to /tmp/shots/<page>.png for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from lib import store

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]
SHOTS = Path("/tmp/shots")
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGES = {"overview": ("", "[data-testid='stPlotlyChart']"), "data": ("data", "[data-testid='stFileUploader']")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_db, tmp_path_factory):
    """The app served by `streamlit run` on a free port, on a private copy of the demo store."""
    db = tmp_path_factory.mktemp("browser") / "store.duckdb"
    shutil.copy(demo_db, db)
    port = _free_port()
    log = (db.parent / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=os.environ | {store.DB_ENV: str(db)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {(db.parent / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: run scripts/ensure-chromium "
                    "(apt-get install chromium) or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1440, "height": 2000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def _settle(page: Page) -> None:
    """Wait until the script has run and no element is still marked stale."""
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=60_000)


def _assert_no_errors(page: Page) -> None:
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.all_inner_texts()
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.all_inner_texts()


def test_a_deep_link_opened_first_gets_the_whole_app(server, page):
    """The first request after a server start goes to /data, not / (see cache.ensure_routed)."""
    page.goto(f"{server}/data")
    page.wait_for_selector("[data-testid='stFileUploader']")
    _settle(page)
    nav = page.locator("[data-testid='stSidebarNav']")
    expect(nav.get_by_role("link")).to_have_text([re.compile("Overview$"), re.compile("Data$")])  # icon + title
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text("Data as of")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_have_count(1)
    _assert_no_errors(page)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_errors(server, page, name):
    path, marker = PAGES[name]
    page.goto(f"{server}/{path}")
    page.wait_for_selector(marker)
    _settle(page)
    _assert_no_errors(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if name == "overview":
        expect(page.locator("[data-testid='stMetricValue']").first).to_be_visible()
        expect(page.locator("[data-testid='stDataFrame']")).to_be_visible()
        expect(page.get_by_text("Data as of")).to_have_count(2)  # sidebar and page


def test_level_selector_updates_the_url(server, page):
    page.goto(server)
    page.wait_for_selector("[data-testid='stPlotlyChart']")
    _settle(page)
    page.get_by_role("radio", name="cluster", exact=True).click()
    page.wait_for_url("**/?level=cluster")
    _settle(page)
    expect(page.get_by_text("Complaints per 10,000 inhabitants by cluster")).to_be_visible()
    _assert_no_errors(page)


def test_upload_shows_the_rejected_row_and_its_reason(server, page, bad_complaints):
    page.goto(f"{server}/data")
    page.wait_for_selector("[data-testid='stFileUploader']")
    _settle(page)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": "browser_bad.csv", "mimeType": "text/csv", "buffer": bad_complaints}])
    expect(page.get_by_text("browser_bad.csv")).to_be_visible()
    _settle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    summary = page.locator("[data-testid='stAlertContentWarning']", has_text="browser_bad.csv")
    expect(summary).to_be_visible()
    _settle(page)
    expect(summary).to_contain_text("2 of 4 rows accepted")
    expect(summary).to_contain_text("2 rejected")
    grid = page.locator("[data-testid='stDataFrame']").first
    expect(grid).to_be_visible()
    # the grid draws on a canvas; its accessible table (role gridcell) holds the same values
    cells = grid.locator("td[role='gridcell']")
    expect(cells.filter(has_text="outside Germany (lon must be 5.8 to 15.1)")).to_have_count(1)
    expect(cells.filter(has_text="unknown category")).to_have_count(1)
    expect(cells.filter(has_text="weather")).to_have_count(1)
    expect(page.get_by_role("button", name="Download rejected rows (CSV)").first).to_be_visible()
    _assert_no_errors(page)
    page.screenshot(path=str(SHOTS / "data_after_import.png"), full_page=True)
