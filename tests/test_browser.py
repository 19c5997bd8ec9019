"""The real app in headless Chromium: every page loads without an error, and a file upload shows its rejects.

The `server` fixture (conftest.py) starts `streamlit run dashboard.py` on a free port against a copy of the demo
store. Screenshots of each page go to /tmp/shots/<page>.png for a person to look at.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser import SHOTS
from tests.browser import assert_no_errors as _assert_no_errors
from tests.browser import settle as _settle

PAGES = {"overview": ("", "[data-testid='stPlotlyChart']"), "data": ("data", "[data-testid='stFileUploader']")}


def test_a_deep_link_opened_first_gets_the_whole_app(server, page):
    """The first request after a server start goes to /data, not / (see cache.ensure_routed)."""
    page.goto(f"{server}/data")
    page.wait_for_selector("[data-testid='stFileUploader']")
    _settle(page)
    nav = page.locator("[data-testid='stSidebarNav']")
    for title in ("Overview", "Data"):  # each link is an icon and the title
        expect(nav.get_by_role("link").filter(has_text=re.compile(f"{title}$"))).to_have_count(1)
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
