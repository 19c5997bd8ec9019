"""Sign-in for real: a Streamlit server with `[auth]` against an OpenID Connect provider on loopback
(oidc-provider-mock), a user in each role signed in through headless Chromium, and a viewer's own session
cookie used to ask the server for the Data page with crafted websocket messages.
"""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import oidc_provider_mock
import pytest
import websockets
from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.util import calc_hash

from lib import store
from lib.public import snapshot
from tests.browser import ServerFailed, free_port, settle, streamlit_server
from tests.test_browser_a11y import violations

USERS = {
    "vera@example.de": {"email": "vera@example.de", "name": "Vera Viewer", "groups": ["netz-viewer"]},
    "stefan@example.de": {"email": "stefan@example.de", "name": "Stefan Steward", "groups": ["netz-data"]},
    "ada@example.de": {"email": "ada@example.de", "name": "Ada Admin", "groups": ["netz-admin"]},
    "eve@example.de": {"email": "eve@example.de", "name": "Eve Elsewhere", "groups": ["marketing"]},
}
INTERNAL = ("Overview", "Planner map", "Rollout", "Data")

SITES = b"site_id,name,lat,lon,site_type\nS-NEW-1,Neubau,52.52,13.40,macro\n"


@pytest.fixture(scope="module")
def provider():
    """An OpenID Connect provider on loopback knowing one user in each role (and one without)."""
    with oidc_provider_mock.run_server_in_thread() as server:
        url = f"http://localhost:{server.server_port}"
        for sub, claims in USERS.items():
            assert httpx.put(f"{url}/users/{quote(sub)}", json=claims).status_code == 204
        yield url


@pytest.fixture(scope="module")
def signed_server(provider, tiny_world, tmp_path_factory):
    """The dashboard with sign-in configured, on a private copy of the tiny store; yields (url, store path)."""
    folder = tmp_path_factory.mktemp("signin")
    db = folder / "store.duckdb"
    shutil.copy(tiny_world.template, db)
    port = free_port()
    url = f"http://localhost:{port}"
    secrets = folder / "secrets.toml"
    secrets.write_text(f'''
[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "a-long-random-test-secret-0123456789abcdef"
client_id = "netzausbau-monitor"
client_secret = "test-client-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[roles]
claim = "groups"
viewer = ["netz-viewer"]
data_steward = ["netz-data"]
admin = ["netz-admin"]
''')
    env = {store.DB_ENV: str(db), snapshot.SNAPSHOT_ENV: str(folder / "snapshot.json")}
    try:
        with streamlit_server(env, folder / "server.log", target="serve.py", port=port,
                              extra=["--secrets.files", str(secrets)]) as _:
            yield url, db
    except ServerFailed as exc:
        pytest.fail(str(exc))


def sign_in(browser, url: str, sub: str):
    """A new browser context signed in as `sub` through the provider's form; returns (context, page)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    settle(page)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/**")
    settle(page)
    return context, page


def nav_labels(page) -> list[str]:
    """The page links in the sidebar, without their icons' ligature names."""
    return [t.strip().split("\n")[-1] for t in page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()]


def test_an_anonymous_visitor_gets_the_sign_in_page_only(browser, signed_server):
    url, _ = signed_server
    context = browser.new_context()
    page = context.new_page()
    for path in ("/", "/data", "/rollout", "/map?region=11"):
        page.goto(url + path)
        settle(page)
        body = page.locator("body").inner_text()
        assert page.get_by_role("button", name="Sign in").count() == 1
        assert not any(name in body for name in INTERNAL), body
        assert page.locator("[data-testid='stMetric'], [data-testid='stFileUploader']").count() == 0
    assert violations(page) == []  # the sign-in page passes WCAG 2.1 AA too
    context.close()


def test_a_viewer_signed_in_reads_the_pages_but_never_the_data_page(browser, signed_server):
    url, _ = signed_server
    context, page = sign_in(browser, url, "vera@example.de")
    assert "Signed in as Vera Viewer (Viewer)" in page.locator("[data-testid='stSidebar']").inner_text()
    assert page.locator("h1").first.inner_text() == "Overview"
    assert nav_labels(page) == ["Overview", "Planner map", "Rollout", "Public"]
    page.goto(url + "/data")  # typed by hand: the Data page is not among the viewer's pages
    settle(page)
    assert page.locator("[data-testid='stFileUploader']").count() == 0
    assert "Import history" not in page.locator("body").inner_text()
    context.close()


def test_a_viewer_cannot_reach_the_data_page_with_crafted_websocket_messages(browser, signed_server):
    url, _ = signed_server
    context, page = sign_in(browser, url, "vera@example.de")
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    context.close()
    assert any(name.startswith("_streamlit_user") for name in cookies)
    for crafted in ({"page_name": "data"}, {"page_script_hash": calc_hash("data")},
                    {"page_name": "data", "page_script_hash": calc_hash("data"), "query_string": "page=data"}):
        with ThreadPoolExecutor(1) as thread:  # Playwright's own loop runs in this thread
            seen = thread.submit(asyncio.run, rerun_over_websocket(url, cookies, crafted)).result()
        assert "Signed in as" in seen  # the session is the viewer's own, signed in
        assert "Import history" not in seen and "Files to import" not in seen and "Publish snapshot" not in seen
        assert "Overview" in seen  # the router answered with a page the viewer may see


async def rerun_over_websocket(url: str, cookies: dict[str, str], fields: dict) -> str:
    """Every text the server sends for one crafted `rerun_script`, in the session of `cookies`."""
    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    protocols = ["streamlit", cookies["_streamlit_xsrf"]] if "_streamlit_xsrf" in cookies else ["streamlit"]
    texts: list[str] = []
    async with websockets.connect(ws_url, subprotocols=protocols, additional_headers={"Cookie": header},
                                  origin=url, max_size=None, open_timeout=30) as ws:
        msg = BackMsg()
        for name, value in fields.items():
            setattr(msg.rerun_script, name, value)
        await ws.send(msg.SerializeToString())
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
            texts.append(str(fwd))
            if fwd.WhichOneof("type") == "script_finished":
                return "\n".join(texts)


def test_a_steward_imports_and_the_audit_names_them(browser, signed_server):
    url, _ = signed_server
    context, page = sign_in(browser, url, "stefan@example.de")
    assert nav_labels(page) == ["Overview", "Planner map", "Rollout", "Data", "Public"]
    page.get_by_role("link", name="Data").click()
    page.wait_for_selector("[data-testid='stFileUploader']")
    settle(page)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": "sites-new.csv", "mimeType": "text/csv", "buffer": SITES}])
    expect(page.get_by_text("sites-new.csv")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("[data-testid='stAlertContentSuccess']", has_text="1 of 1 rows accepted")).to_be_visible()
    settle(page)
    assert page.get_by_role("heading", name="Settings").count() == 0  # an admin's
    trail = page.locator("[data-testid='stDataFrame']").last  # the audit trail, newest first
    trail.scroll_into_view_if_needed()
    expect(trail).to_be_visible()
    cells = trail.locator("td[role='gridcell']")  # the grid's accessible table holds the values it draws
    expect(cells.filter(has_text="Stefan Steward <stefan@example.de>")).to_have_count(1)
    expect(cells.filter(has_text="sites-new.csv -> sites (import #")).to_have_count(1)
    context.close()


def test_an_admin_sees_the_settings_and_a_person_without_a_role_sees_nothing(browser, signed_server):
    url, _ = signed_server
    context, page = sign_in(browser, url, "ada@example.de")
    page.get_by_role("link", name="Data").click()
    settle(page)
    assert page.get_by_role("heading", name="Settings").count() == 1
    assert page.get_by_role("heading", name="Audit trail").count() == 1
    context.close()
    context, page = sign_in(browser, url, "eve@example.de")
    body = page.locator("body").inner_text()
    assert "signed in as Eve Elsewhere <eve@example.de>, but have no role" in body
    assert not any(name in body for name in INTERNAL) and nav_labels(page) == []
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_timeout(1000)
    page.goto(url)
    settle(page)
    assert page.get_by_role("button", name="Sign in").count() == 1
    context.close()
