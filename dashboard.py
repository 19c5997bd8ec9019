"""Netzausbau-Monitor: sign-in, routing and the shared sidebar only. Run: streamlit run serve.py (or dashboard.py)"""

from pathlib import Path

import streamlit as st

import shell
from lib import access, cache, icon
from lib.errors import NetzausbauError
from lib.public import snapshot

st.set_page_config(page_title="Netzausbau-Monitor", page_icon=icon.FAVICON, layout="wide")  # no icon-font CDN

if snapshot.public_mode():  # a public server: only the public page, from only the snapshot; no store at all
    cache.mark_routed()
    st.navigation([st.Page("pages/public.py", title="Öffentlich", icon=":material/public:", default=True)],
                  position="hidden").run()
    st.stop()

if why := access.refusal(st.get_option("server.address"), False, access.open_to_network() or shell.configured()):
    st.error(why, icon=":material/lock:")
    st.stop()

try:
    user = shell.current()
except access.AccessConfigError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()
if user is None or user.role is None:  # nobody signed in, or a person without a role: no page names, no data
    page = shell.sign_in_page if user is None else lambda: shell.no_role_page(user)
    st.navigation([st.Page(page, title="Sign in", icon=":material/login:", default=True)], position="hidden").run()
    st.stop()

HERE = Path(__file__).resolve().parent  # pages by absolute path: also when a page file was run alone first
PAGES = [  # path, title, icon, the right it needs (lib/access.py)
    ("pages/overview.py", "Overview", ":material/dashboard:", "read"),
    ("pages/map.py", "Planner map", ":material/map:", "read"),
    ("pages/rollout.py", "Rollout", ":material/trending_up:", "read"),
    ("pages/data.py", "Data", ":material/upload_file:", "data"),
    ("pages/public.py", "Public", ":material/public:", "read"),
]
page = st.navigation([st.Page(HERE / path, title=title, icon=icon, default=i == 0)
                      for i, (path, title, icon, right) in enumerate(PAGES) if user.may(right)])

try:
    con = cache.get_store()
except NetzausbauError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()
with st.sidebar:
    as_of = cache.summary(con).data_as_of if con is not None else None
    st.caption(f"Data as of **{as_of:%Y-%m-%d}**" if as_of else "No data yet")
    st.caption(f"Store: `{cache.store_name()}`")
    shell.sidebar(user)
    shell.enter_applies_dates()  # on every internal page: a typed date applies on Enter

cache.mark_routed()  # only a page this person may see runs with the mark (cache.ensure_routed)
page.run()
