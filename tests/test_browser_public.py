"""The public server in headless Chromium: public mode (NETZAUSBAU_PUBLIC=1, started through serve.py's st.App)
with NO store file, only a published snapshot. The page in German and English at phone width (375 px), the JSON
endpoint, and the internal pages out of reach. Screenshots go to /tmp/shots/public-*.png.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from lib import store
from lib.public import snapshot
from lib.views import publish
from tests.browser import SHOTS, assert_no_errors, settle

PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def public(demo_db, tmp_path_factory):
    """(base URL, snapshot path, the store path that must never appear): a public-mode server."""
    from tests.browser import ServerFailed, streamlit_server

    folder = tmp_path_factory.mktemp("public")
    db = folder / "store.duckdb"
    shutil.copy(demo_db, db)
    con = store.connect(db, read_only=True)
    try:
        snap = publish.publish(con, folder / "snapshot.json").path
    finally:
        con.close()
    db.unlink()  # the public machine has no store at all
    missing = folder / "no-store" / "netzausbau.duckdb"
    env = {snapshot.PUBLIC_ENV: "1", store.DB_ENV: str(missing), snapshot.SNAPSHOT_ENV: str(snap)}
    try:
        with streamlit_server(env, folder / "server.log", target="serve.py") as url:
            yield url, snap, missing
    except ServerFailed as exc:
        pytest.fail(str(exc))
    assert not missing.exists() and not missing.parent.exists(), "public mode must never create a store"


@pytest.fixture
def phone(browser):
    """A browser page the size of a phone screen."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid='stMetricValue']")
    settle(page)


def _fits(page) -> None:
    """Nothing is wider than the screen (no sideways scrolling)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_public_page_in_german_at_phone_width(public, phone):
    url, snap, _ = public
    doc = json.loads(snap.read_bytes())
    network = next(r for r in doc["tables"]["regions"] if r["region_id"] == "ALL")
    _open(phone, url)
    expect(phone.get_by_role("heading", name="Netzausbau in Ihrer Region")).to_be_visible()
    expect(phone.get_by_text("Datenstand 01.11.2026")).to_be_visible()
    pct = f"{network['pct_on_air']:.1f}".replace(".", ",") + " %"
    expect(phone.locator("[data-testid='stMetricValue']").first).to_have_text(pct)
    expect(phone.locator("[data-testid='stDeckGlJsonChart']")).to_be_visible()
    expect(phone.get_by_text("Meldungen des Netzbetreibers")).to_be_visible()
    expect(phone.locator("[data-testid='stSidebarNav']")).to_have_count(0)
    _fits(phone)
    assert_no_errors(phone)
    SHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SHOTS / "public-de-phone.png"), full_page=True)


def test_public_page_in_english_for_one_region(public, phone):
    url, snap, _ = public
    doc = json.loads(snap.read_bytes())
    berlin = next(r for r in doc["tables"]["regions"] if r["region_id"] == "C-BER")
    _open(phone, f"{url}/?lang=en&region=C-BER")
    expect(phone.get_by_role("heading", name="Network expansion in your region")).to_be_visible()
    expect(phone.get_by_text("Data as of 2026-11-01")).to_be_visible()
    expect(phone.locator("[data-testid='stMetricValue']").first).to_have_text(f"{berlin['pct_on_air']:.1f} %")
    expect(phone.get_by_text("new-generation hardware is being installed").first).to_be_visible()
    _fits(phone)
    assert_no_errors(phone)
    phone.screenshot(path=str(SHOTS / "public-en-phone.png"), full_page=True)


def test_switching_the_language_puts_it_into_the_url(public, phone):
    url, _, _ = public
    _open(phone, url)
    phone.get_by_role("radio", name="English", exact=True).click()
    phone.wait_for_url("**lang=en*")
    settle(phone)
    expect(phone.get_by_role("heading", name="Network expansion in your region")).to_be_visible()
    assert_no_errors(phone)


def test_a_bad_language_in_the_link_falls_back_to_german_with_a_note(public, phone):
    url, _, _ = public
    _open(phone, f"{url}/?lang=fr&region=nowhere")
    expect(phone.get_by_role("heading", name="Netzausbau in Ihrer Region")).to_be_visible()
    expect(phone.get_by_text("unbekannten Wert für „lang“")).to_be_visible()
    expect(phone.get_by_text("unbekannten Wert für „region“")).to_be_visible()
    assert_no_errors(phone)


def test_a_link_in_the_url_is_shown_as_text_not_as_a_link(public, phone):
    url, _, _ = public
    bait = urllib.parse.quote("[Phish](https://evil.example) <b>bold</b>")
    _open(phone, f"{url}/?region={bait}")
    note = phone.get_by_text("[Phish]", exact=False)
    expect(note).to_be_visible()  # shown as written (a zero-width space keeps the address from being linked)
    assert "[Phish](https://evil.example) <b>bold</b>" in note.inner_text().replace("\u200b", "")
    assert phone.locator("a[href*='evil.example']").count() == 0
    assert phone.locator("b", has_text="bold").count() == 0
    assert_no_errors(phone)


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_the_json_endpoint_serves_the_snapshot(public):
    url, snap, _ = public
    status, body, kind = _get(f"{url}/api/public/snapshot.json")
    assert status == 200 and kind.startswith("application/json")
    assert body == snap.read_bytes()
    status, body, _ = _get(f"{url}/api/public/regions/C-BER.json")
    doc = json.loads(body)
    assert status == 200 and doc["region"]["region_id"] == "C-BER"
    assert all("C-BER" in a["region_ids"] for a in doc["complaint_areas"]) and doc["notes"]
    status, body, _ = _get(f"{url}/api/public/regions/nowhere.json")
    assert status == 404 and json.loads(body)["error"] and b"nowhere" not in body  # nothing the client sent


@pytest.mark.parametrize("path", ["data", "overview", ""])
def test_internal_pages_are_not_reachable_in_public_mode(public, page, path):
    url, _, _ = public
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stMetricValue']")
    settle(page)
    expect(page.get_by_role("heading", name="Netzausbau in Ihrer Region")).to_be_visible()
    expect(page.locator("[data-testid='stFileUploader']")).to_have_count(0)
    expect(page.get_by_text("Import history")).to_have_count(0)
    expect(page.get_by_text("Store:")).to_have_count(0)
    expect(page.locator("[data-testid='stSidebarNav']")).to_have_count(0)


def test_a_deep_link_to_data_as_the_first_request_shows_only_the_public_page(public, browser, tmp_path):
    """Before any st.navigation has run, Streamlit would run pages/data.py on its own for /data: the page must
    still end up public (cache.ensure_routed runs dashboard.py, which in public mode routes to the public page)."""
    from tests.browser import streamlit_server

    _, snap, _ = public
    missing = tmp_path / "no-store" / "x.duckdb"
    env = {snapshot.PUBLIC_ENV: "1", store.DB_ENV: str(missing), snapshot.SNAPSHOT_ENV: str(snap)}
    with streamlit_server(env, tmp_path / "server.log", target="serve.py") as url:
        context = browser.new_context(viewport=PHONE)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        try:
            pg.goto(f"{url}/data")
            pg.wait_for_selector("[data-testid='stMetricValue']")
            settle(pg)
            expect(pg.get_by_role("heading", name="Netzausbau in Ihrer Region")).to_be_visible()
            expect(pg.locator("[data-testid='stFileUploader']")).to_have_count(0)
            expect(pg.get_by_role("heading", name="Data", exact=True)).to_have_count(0)
        finally:
            context.close()
    assert not missing.parent.exists()


def test_the_public_page_asks_no_other_host_for_anything(public, browser):
    """A visitor's IP address goes to no font, icon, map or script host: every request of a whole load and of
    choosing a region goes to this server (or is a data:/blob: URL made in the page)."""
    url, _, _ = public
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    context.route(lambda u: not u.startswith(url), lambda route: route.abort())  # offline all the same
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    try:
        _open(pg, url)
        pg.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas")
        pg.wait_for_timeout(2000)  # deck.gl and a basemap, if there were one, load after the element mounts
        pg.locator("[data-testid='stSelectbox']").first.click()
        pg.get_by_role("option", name=re.compile(r"^Berlin")).first.click()
        pg.wait_for_url("**region=*")
        settle(pg)
        pg.wait_for_timeout(2000)
        icon = pg.locator("link[rel~='icon']").first.get_attribute("href") or ""
    finally:
        context.close()
    foreign = [r for r in requests if not r.startswith((url, "data:", "blob:"))]
    assert foreign == [], foreign
    assert len(requests) > 10, requests  # the page, its scripts, styles, fonts and icon were seen
    assert icon and not icon.startswith(("http:", "https:", "//")) or icon.startswith(url), icon


@pytest.mark.parametrize("text, name", [("CSV (ZIP)", "netzausbau-open-data.zip"),
                                        ("GeoJSON", "netzausbau-areas.geojson"),
                                        ("JSON", "netzausbau-snapshot.json")])
def test_a_click_on_an_open_data_link_downloads_the_file(public, browser, tmp_path, text, name):
    """The downloads are links to /api/public/files/: a click saves the file under its name, with the bytes the
    open-data module makes from the published snapshot."""
    from lib.public import files

    url, snap, _ = public
    context = browser.new_context(viewport={"width": 1280, "height": 1600}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        _open(pg, url)
        link = pg.get_by_role("link", name=text, exact=True)
        expect(link).to_have_attribute("href", files.url(name))
        with context.expect_event("download") as got:
            link.click()
        download = got.value
        assert download.suggested_filename == name
        download.save_as(tmp_path / name)
    finally:
        context.close()
    assert (tmp_path / name).read_bytes() == files.FILES[name][2](snapshot.load(snap))
