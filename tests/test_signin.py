"""Sign-in and roles: who sees which page and may do what, checked on the server (lib/access.py, lib/signin.py,
dashboard.py, pages/data.py), and the audit trail of what they did (lib/audit.py).

The pages run through AppTest with a configured `[auth]` and `[roles]` and a seeded st.user, as a signed-in
session does; tests/test_browser_signin.py signs in for real, against an OpenID Connect provider.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import access, audit, cli, store
from lib.public import snapshot
from tests.test_pages import APP

ROOT = Path(__file__).resolve().parent.parent
DATA_PAGE = str(ROOT / "pages" / "data.py")

ROLES = {"claim": "groups", "viewer": ["netz-viewer"], "data_steward": ["netz-data"], "admin": ["netz-admin"],
         "admin_emails": ["Chef@Example.de"]}
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "monitor",
        "client_secret": "s", "server_metadata_url": "http://localhost:9400/.well-known/openid-configuration"}
VIEWER = {"is_logged_in": True, "email": "vera@example.de", "name": "Vera Viewer", "groups": ["netz-viewer"]}
STEWARD = {"is_logged_in": True, "email": "stefan@example.de", "name": "Stefan Steward", "groups": ["netz-data"]}
ADMIN = {"is_logged_in": True, "email": "ada@example.de", "name": "Ada Admin", "groups": ["netz-admin", "x"]}
NOBODY = {"is_logged_in": False}


# -- the role mapping ------------------------------------------------------------------------------------------

def role_map(**changes) -> access.RoleMap:
    return access.RoleMap.from_config(ROLES | changes)


@pytest.mark.parametrize(("claims", "role"), [
    ({"groups": ["netz-viewer"]}, "viewer"),
    ({"groups": ["netz-data"]}, "data_steward"),
    ({"groups": ["netz-viewer", "netz-admin", "netz-data"]}, "admin"),  # the highest
    ({"groups": "netz-data"}, "data_steward"),  # one value, not a list
    ({"groups": ["netz-viewers"]}, None),  # exact values only
    ({"groups": []}, None), ({}, None), ({"groups": None}, None),
    ({"email": "chef@example.de"}, "admin"),  # e-mail, case-insensitive
    ({"email": "chef@example.de", "email_verified": False}, None),  # never an unverified address
    ({"email": "chef@example.de.evil"}, None),
])
def test_a_role_comes_from_the_claim_or_the_email(claims, role):
    assert role_map().role_of(claims) == role


def test_a_dotted_claim_reads_nested_roles_as_keycloak_sends_them():
    keycloak = role_map(claim="realm_access.roles")
    assert keycloak.role_of({"realm_access": {"roles": ["offline_access", "netz-data"]}}) == "data_steward"
    assert keycloak.role_of({"realm_access": ["netz-data"]}) is None
    assert keycloak.role_of({"groups": ["netz-admin"]}) is None  # another claim counts for nothing


def test_a_star_gives_a_role_to_everyone_signed_in():
    everyone = role_map(viewer=["*"])
    assert everyone.role_of({"sub": "x"}) == "viewer" and everyone.role_of({"groups": ["netz-data"]}) == "data_steward"


@pytest.mark.parametrize(("section", "says"), [
    (None, "no role mapping"), ({}, "no role mapping"),
    ({"viewer": ["a"], "stewards": ["b"]}, "unknown key(s) stewards"),
    ({"viewer": "a", "claim": ""}, "name of a claim"),
    ({"viewer": [1, 2]}, "viewer in secrets.toml must be a list of strings"),
    ({"claim": "groups"}, "gives no role to anyone"),
])
def test_a_bad_role_mapping_is_named(section, says):
    with pytest.raises(access.AccessConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        access.RoleMap.from_config(section)


@pytest.mark.parametrize("right", sorted(access.RIGHTS))
def test_each_role_has_exactly_the_rights_of_its_rank(right):
    lowest = access.ROLES.index(access.RIGHTS[right])
    for rank, role in enumerate(access.ROLES):
        assert access.may(role, right) == (rank >= lowest)
    assert not access.may(None, right) and not access.may("superuser", right)


def test_the_rights_are_those_the_pages_need():
    assert [r for r in access.ROLES if access.may(r, "import")] == ["data_steward", "admin"]
    assert [r for r in access.ROLES if access.may(r, "publish")] == ["data_steward", "admin"]
    assert [r for r in access.ROLES if access.may(r, "settings")] == ["admin"]
    assert [r for r in access.ROLES if access.may(r, "read")] == list(access.ROLES)


def test_require_refuses_with_the_role_needed():
    viewer = role_map().user(VIEWER)
    with pytest.raises(access.Refused, match="Vera Viewer <vera@example.de> \\(Viewer\\) may not publish: that "
                                             "needs the Data steward role"):
        access.require(viewer, "publish")
    access.require(role_map().user(STEWARD), "publish")


# -- the pages, as a signed-in session runs them ---------------------------------------------------------------

def session(at: AppTest, user: dict, roles: dict | None = None) -> AppTest:
    at.secrets["auth"] = AUTH
    at.secrets["roles"] = ROLES if roles is None else roles
    at.user = dict(user)
    return at


def signed_in(user: dict, page: str | None = None, roles: dict | None = None) -> AppTest:
    at = session(AppTest.from_file(APP, default_timeout=60), user, roles)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_file_alone(page: str, user: dict) -> AppTest:
    """`page` run as Streamlit runs a page file asked for by its own URL (before any navigation is known)."""
    at = session(AppTest.from_file(str(ROOT / page), default_timeout=60), user)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def data_page_with_the_router_mark(user: dict) -> AppTest:
    """The Data page run as if the router had let it run: only the page's own check stands."""
    def script(page):
        import runpy

        import streamlit as st

        st.session_state["_routed_by_dashboard"] = True
        runpy.run_path(page, run_name="__main__")

    at = session(AppTest.from_function(script, default_timeout=60, args=(DATA_PAGE,)), user)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(markdown: str) -> str:
    """What a person reads of markdown whose text was escaped (a name from the provider is shown as written)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("title", "markdown", "caption", "error", "warning", "info")
                    for e in getattr(at, kind))


def test_a_visitor_not_signed_in_gets_the_sign_in_page_only(tiny_db):
    at = signed_in(NOBODY)
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["Netzausbau-Monitor"]
    assert not at.metric and not at.dataframe and not at.sidebar.caption  # no figure, no store path
    for page in ("pages/data.py", "pages/overview.py", "pages/rollout.py"):  # asked for by its URL: still nothing
        alone = page_file_alone(page, NOBODY)
        assert [b.label for b in alone.button] == ["Sign in"] and not alone.metric and not alone.dataframe
        assert not alone.get("file_uploader") and "Data as of" not in texts(alone)
    guarded = data_page_with_the_router_mark(NOBODY)
    assert not guarded.get("file_uploader") and any("Nobody is signed in" in e.value for e in guarded.error)


def test_a_viewer_reads_the_pages_but_never_runs_the_data_page(tiny_db):
    at = signed_in(VIEWER)
    assert [t.value for t in at.title] == ["Overview"] and at.metric
    assert "Signed in as **Vera Viewer** (Viewer)" in [c.value for c in at.sidebar.caption]
    assert "Sign out" in [b.label for b in at.sidebar.button]
    with pytest.raises(ValueError, match=r"Known pages: \[[^]]*overview.py', [^]]*map.py', [^]]*rollout.py', "
                                         r"[^]]*public.py'\]"):
        at.switch_page("pages/data.py")  # the viewer's navigation has no Data page
    alone = page_file_alone("pages/data.py", VIEWER)  # the Data page asked for by its URL: the router sends it home
    assert [t.value for t in alone.title] == ["Overview"] and not alone.get("file_uploader")
    guarded = data_page_with_the_router_mark(VIEWER)  # and were the router fooled, the page refuses itself
    assert not guarded.get("file_uploader") and not guarded.dataframe
    assert [b.key for b in guarded.button if b.key in ("import", "publish")] == []
    assert any("Vera Viewer <vera@example.de> (Viewer): this needs the Data steward role" in shown(e.value)
               for e in guarded.error)


def test_a_steward_imports_notes_and_publishes_and_the_audit_names_them(tiny_db, tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "snap.json"))
    at = signed_in(STEWARD, "pages/data.py")
    assert at.get("file_uploader")
    assert "setting_k" not in [n.key for n in at.number_input]  # settings are an admin's
    at.text_area(key="note_text").input("Berlin: 40 Standorte umgebaut")  # in a form: sent with its button
    [b for b in at.button if b.label == "Save note"][0].click().run()
    at.button(key="publish").click().run()
    assert not at.exception and (tmp_path / "snap.json").exists()
    with duckdb.connect(str(tiny_db)) as con:
        trail = audit.entries(con)
    mine = trail[trail["who"] == "Stefan Steward <stefan@example.de>"]
    assert mine["action"].tolist() == ["publish", "note"]  # newest first
    assert "k = 10" in mine["outcome"].iloc[0] and str(tmp_path / "snap.json") == mine["subject"].iloc[0]
    assert "status_notes" in mine["subject"].iloc[1] and "1 of 1 rows accepted" in mine["outcome"].iloc[1]
    shown = next(d.value for d in at.dataframe if "Who" in d.value.columns)
    assert shown["Who"].iloc[0] == "Stefan Steward <stefan@example.de>" and shown["Action"].iloc[0] == "publish"


def test_only_an_admin_changes_the_k_and_the_audit_says_from_what_to_what(tiny_db, tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "snap.json"))
    at = signed_in(ADMIN, "pages/data.py")
    at.number_input(key="setting_k").set_value(12)
    [b for b in at.button if b.label == "Save settings"][0].click().run()
    assert any("k is now 12" in s.value for s in at.success)
    at.button(key="publish").click().run()
    with duckdb.connect(str(tiny_db)) as con:
        assert store.setting(con, "public_k") == "12"
        trail = audit.entries(con)
    assert trail["action"].tolist()[:2] == ["publish", "setting"]
    assert trail["outcome"].iloc[1] == "default -> 12" and "k = 12" in trail["outcome"].iloc[0]
    assert all(w == "Ada Admin <ada@example.de>" for w in trail["who"].iloc[:2])


def test_a_person_without_a_role_sees_who_they_are_and_nothing_else(tiny_db):
    at = signed_in({"is_logged_in": True, "email": "eve@example.de", "name": "Eve", "groups": ["other"]})
    assert any("signed in as Eve <eve@example.de>, but have no role" in shown(w.value) for w in at.warning)
    assert [b.label for b in at.button] == ["Sign out"] and not at.metric and not at.dataframe
    alone = page_file_alone("pages/data.py", {"is_logged_in": True, "email": "eve@example.de", "groups": []})
    assert not alone.get("file_uploader") and not alone.dataframe and not alone.metric


def test_a_bad_role_mapping_stops_everything_with_its_reason(tiny_db):
    at = signed_in(ADMIN, roles={"viewers": ["x"]})
    assert any("unknown key(s) viewers" in e.value for e in at.error) and not at.metric and not at.dataframe


def test_with_sign_in_the_dashboard_may_serve_other_addresses(tiny_db, monkeypatch):
    import streamlit as st

    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda key: "0.0.0.0" if key == "server.address" else real(key))
    at = signed_in(VIEWER)
    assert not at.error and [t.value for t in at.title] == ["Overview"]


def test_without_sign_in_the_local_user_has_every_right_and_the_sidebar_says_so(tiny_db):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    assert at.get("file_uploader") and "setting_k" in [n.key for n in at.number_input]
    assert "No sign-in: this machine only" in [c.value for c in at.sidebar.caption]


# -- the audit trail -------------------------------------------------------------------------------------------

SITES = b"site_id,name,lat,lon,site_type\nS1,Eins,52.5,13.4,macro\n"


def test_every_import_is_recorded_with_who_also_a_refused_one_and_the_same_file_again(tmp_path):
    con = store.connect(tmp_path / "s.duckdb")
    store.import_file(con, SITES, file_name="sites.csv", by="anna")
    store.import_file(con, SITES, file_name="sites.csv", by="bert")
    with pytest.raises(Exception, match="cannot tell which table"):
        store.import_file(con, b"a;b\n1;2\n", file_name="x.csv", by="carl")
    trail = audit.entries(con)
    assert trail["who"].tolist() == ["carl", "bert", "anna"]
    assert trail["action"].tolist() == ["import refused", "import", "import"]
    assert trail["subject"].tolist() == ["x.csv", "sites.csv -> sites", "sites.csv -> sites (import #1)"]
    assert trail["outcome"].iloc[2] == "1 of 1 rows accepted, 0 rejected"
    assert trail["outcome"].iloc[1] == "identical to import #1; nothing changed"
    assert "cannot tell which table" in trail["outcome"].iloc[0]
    assert store.import_log(con)["imported_by"].tolist() == ["anna"]


def test_an_import_rolled_back_leaves_no_audit_row_of_its_own(tmp_path, monkeypatch):
    con = store.connect(tmp_path / "s.duckdb")

    def crash(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(store.derive, "refresh", crash)  # fails after the audit row was written
    with pytest.raises(RuntimeError):
        store.import_file(con, SITES, file_name="sites.csv", by="anna")
    assert audit.entries(con).empty and store.import_log(con).empty


def test_a_command_line_import_and_publish_name_the_login(demo_db, tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    monkeypatch.setattr(audit.getpass, "getuser", lambda: "ops")
    f = tmp_path / "sites.csv"
    f.write_bytes(SITES)
    assert cli.main(["--db", str(db), "import", str(f)]) == 0
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(tmp_path / "p.json")]) == 0
    with duckdb.connect(str(db)) as con:
        assert audit.entries(con)["who"].tolist() == ["cli:ops"]
    with duckdb.connect(str(demo_db)) as con:
        last = audit.entries(con, limit=1)
    assert last["who"].tolist() == ["cli:ops"] and last["action"].tolist() == ["publish"]


def test_the_audit_export_holds_every_row_with_readable_headings_and_no_formula(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    con = store.connect(db)
    audit.record(con, "=HYPERLINK(\"http://x\")", "setting", "k", "10 -> 12")
    audit.record(con, "anna", "publish", "/srv/snap.json", "data as of 2026-11-01")
    con.close()
    out = tmp_path / "audit.csv"
    assert cli.main(["--db", str(db), "audit", "--csv", str(out)]) == 0
    got = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(got.columns) == ["When (UTC)", "Who", "Action", "On", "Outcome"]
    assert got["Who"].tolist() == ["anna", "'=HYPERLINK(\"http://x\")"]
    assert got["Action"].tolist() == ["publish", "setting"] and got["Outcome"].tolist()[1] == "10 -> 12"
    assert cli.main(["--db", str(db), "audit"]) == 0 and "anna" in capsys.readouterr().out


def test_an_unknown_action_or_setting_is_refused(tmp_path):
    con = store.connect(tmp_path / "s.duckdb")
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(con, "x", "delete everything", "")
    with pytest.raises(Exception, match="unknown setting"):
        store.set_setting(con, "colour", "red", "x")
    assert audit.entries(con).empty


def test_the_example_secrets_are_a_working_configuration_and_the_real_file_stays_out_of_git():
    import subprocess
    import tomllib

    example = tomllib.loads((ROOT / ".streamlit" / "secrets.example.toml").read_text())
    required = {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"}
    assert required <= set(example["auth"])
    assert example["auth"]["redirect_uri"].endswith("/oauth2callback")
    mapping = access.RoleMap.from_config(example["roles"])
    assert mapping.role_of({"groups": ["netz-data"]}) == "data_steward"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=ROOT)
    assert ignored.returncode == 0
