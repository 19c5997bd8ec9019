"""Netzausbau-Monitor: routing and the shared sidebar only. Run: streamlit run serve.py (or dashboard.py)"""

import streamlit as st

from lib import access, cache, icon
from lib.errors import NetzausbauError
from lib.public import snapshot

st.set_page_config(page_title="Netzausbau-Monitor", page_icon=icon.FAVICON, layout="wide")  # no icon-font CDN
cache.mark_routed()

if snapshot.public_mode():  # a public server: only the public page, from only the snapshot; no store at all
    st.navigation([st.Page("pages/public.py", title="Öffentlich", icon=":material/public:", default=True)],
                  position="hidden").run()
    st.stop()

if why := access.refusal(st.get_option("server.address"), False, access.open_to_network()):
    st.error(why, icon=":material/lock:")
    st.stop()

page = st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/map.py", title="Planner map", icon=":material/map:"),
    st.Page("pages/rollout.py", title="Rollout", icon=":material/trending_up:"),
    st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
    st.Page("pages/public.py", title="Public", icon=":material/public:"),
])

try:
    con = cache.get_store()
except NetzausbauError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()
with st.sidebar:
    as_of = cache.summary(con).data_as_of if con is not None else None
    st.caption(f"Data as of **{as_of:%Y-%m-%d}**" if as_of else "No data yet")
    st.caption(f"Store: `{cache.store_path()}`")

page.run()
