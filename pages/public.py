"""Public: how the expansion goes in one region, read only from the published snapshot (German or English)."""

import logging

import streamlit as st

from lib import cache
from lib.public import i18n, regionview
from lib.public.snapshot import SnapshotError

LOG = logging.getLogger(__name__)


def set_param(name: str, key: str) -> None:
    """Callback: put a widget's value into the URL, so that a link shows the same view."""
    st.query_params[name] = st.session_state[key]


def go_to_place(p: regionview.Prepared) -> None:
    """Callback: the region of the place typed in becomes the chosen region."""
    rid = regionview.place_region(p, st.session_state["place"]) if st.session_state.get("place") else None
    if rid:
        st.session_state["region_pick"] = st.query_params["region"] = rid


cache.ensure_routed()
lang, bad_lang = i18n.language(st.query_params.get("lang"))
try:
    p = cache.public_snapshot()
except SnapshotError as exc:
    st.title(i18n.t("title", lang))
    st.info(i18n.t("no_snapshot", lang), icon=":material/hourglass_empty:")
    LOG.warning("public page without a snapshot: %s", exc)  # the reason, with its path, stays on the server
    st.stop()

# rows are horizontal containers, not columns: one element sent instead of one per column (every element sent
# costs each page run of every visitor, bench/load.py)
top = st.container(horizontal=True, vertical_alignment="bottom")
top.title(i18n.t("title", lang))
top.segmented_control(i18n.t("language", lang), i18n.LANGUAGES, format_func=i18n.NAMES.get, default=lang,
                      required=True, key="lang_pick", on_change=set_param, args=("lang", "lang_pick"))
if bad_lang:
    st.caption(i18n.t("bad_param", lang, name="lang", value=i18n.plain(st.query_params.get("lang")),
                      default=i18n.NAMES[lang]))
st.markdown(i18n.t("intro", lang))

wanted = st.query_params.get("region", regionview.NETWORK)
region = wanted if wanted in p.regions.index else regionview.NETWORK
if st.session_state.get("region_pick") not in p.regions.index:
    st.session_state["region_pick"] = region
cols = st.columns(2)  # columns: on a phone they stack, where a row would squeeze both boxes
cols[0].selectbox(i18n.t("region", lang), p.choices[st.session_state["region_pick"]], key="region_pick",
                  format_func=p.labels[lang].__getitem__, on_change=set_param, args=("region", "region_pick"),
                  help=i18n.t("region_help", lang) if p.state_districts else None)
cols[1].selectbox(i18n.t("place", lang), p.place_names, index=None, placeholder=i18n.t("place_hint", lang),
                  key="place", on_change=go_to_place, args=(p,))
if wanted != region:
    st.caption(i18n.t("bad_param", lang, name="region", value=i18n.plain(wanted), default=i18n.t("network", lang)))
region = st.session_state["region_pick"]
if st.session_state.get("place") in p.places:
    names = [regionview.region_label(p, r, lang) for r in p.places[st.session_state["place"]]]
    st.caption(i18n.t("place_in", lang, place=i18n.plain(st.session_state["place"]),
                      regions=i18n.plain(", ".join(names))))
st.caption(i18n.t("as_of", lang, date=i18n.date(p.snapshot.data_as_of, lang),
                  k=p.snapshot.k))

view = cache.public_region(region, lang)  # everything below but the texts is made once per snapshot and region
row = view.row
if row["upgrades_total"]:
    m = st.container(horizontal=True)
    m.metric(i18n.t("pct_done", lang), f"{i18n.number(row['pct_on_air'], lang, 1)} %", border=True,
             help=i18n.t("done_of", lang, done=int(row["upgrades_on_air"]), total=int(row["upgrades_total"])))
    m.metric(i18n.t("late", lang), i18n.number(row["upgrades_late"], lang), border=True,
             help=i18n.t("late_help", lang))
    if row["forecast"]:
        m.metric(i18n.t("forecast", lang), i18n.month(row["forecast"], lang), border=True,
                 help=i18n.t("forecast_help", lang, low=i18n.month(row["forecast_earliest"], lang),
                             high=i18n.month(row["forecast_latest"], lang)))
    else:
        m.metric(i18n.t("forecast", lang), i18n.t("no_forecast", lang), border=True,
                 help=i18n.t("no_forecast_help", lang))
    st.subheader(i18n.t("planned_title", lang))
    st.plotly_chart(view.planned_fig, key="planned_chart", config={"displayModeBar": False})
else:
    st.info(i18n.t("no_upgrades", lang))

st.subheader(i18n.t("map_title", lang))
if view.deck is not None:
    st.pydeck_chart(view.deck, height=regionview.MAP_HEIGHT, key="areas_map")
# the texts between the charts are one markdown element each, made once per snapshot, region and language
# (every element sent costs each page run of every visitor, bench/load.py); HTML only in the map's legend; the
# open-data files are links in the last one
st.markdown(view.after_map, unsafe_allow_html=True)
st.plotly_chart(view.trend_fig, key="trend_chart", config={"displayModeBar": False})
st.markdown(view.after_trend)
