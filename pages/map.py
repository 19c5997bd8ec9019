"""Planner map: hotspots, sites and transport links as of a date, and the story of what relieves each hotspot."""

import time

import streamlit as st

from lib import cache, cells, export
from lib.engine import asof, hotspots, linkage
from lib.ingest import schema
from lib.views import mapdraw, maps, mapurl, places, story

PLAY_SECONDS = 2.0
ss = st.session_state
LABEL = mapdraw.words
WAIT_COLUMNS = {"link_id": "link", "upgrade_id": "upgrade", "site_id": "site",
                "date": st.column_config.DateColumn("date"),
                "pain": st.column_config.NumberColumn("pain waiting", format="localized"),
                "complaints": st.column_config.NumberColumn(format="localized")}
CHANGE_COLUMNS = {"n": st.column_config.NumberColumn("complaints"), "status_before": "status before",
                  "status_after": "status after", "relief_before": "relief before", "relief_after": "relief after",
                  "pain_before": st.column_config.NumberColumn("pain before", format="localized"),
                  "pain_after": st.column_config.NumberColumn("pain after", format="localized"),
                  "pain_change": st.column_config.NumberColumn("pain change", format="localized")}
STUDY_LABELS = {"near": "places with complaints", "country": "whole country"}
STUDY_TEXT = {"near": "the places with complaints in the window and their neighbours",
              "country": "every place of Germany"}
UPGRADE_COLUMNS = {
    "delay_days": st.column_config.NumberColumn("on air delay (days)", help="Actual minus planned on-air date; "
                                                "still open: days since the planned date"),
    "share": st.column_config.ProgressColumn("carries", format="percent", min_value=0, max_value=1,
                                             help="The site's share of the hotspot's complaints")}
TABLE_COLUMNS = {"rank": st.column_config.NumberColumn("rank"),
                 "place": st.column_config.TextColumn("near", help="The nearest town of 5,000 or more"),
                 "n": st.column_config.NumberColumn("complaints", format="localized"),
                 "status": st.column_config.TextColumn("relief status"),
                 "relief_share": st.column_config.ProgressColumn(
                     "relieved", format="percent", min_value=0, max_value=1,
                     help="Share of the hotspot's complaints whose serving sites are upgraded and on air with "
                          "their transport in place"),
                 "relief_date": st.column_config.TextColumn("relief date", help="The day 80 % of the hotspot's "
                                                            "complaints lie on relieved sites; empty: no date yet"),
                 "days_open": st.column_config.NumberColumn("days until relief"),
                 "pain": st.column_config.NumberColumn("pain", format="localized"),
                 "n_sites": st.column_config.NumberColumn("sites"), "n_upgrades": st.column_config.NumberColumn(
                     "upgrades"), "blocking_link_id": st.column_config.TextColumn("waits on link")}


def story_table(frame, column_config: dict | None = None, **kwargs) -> None:
    """A table of a story as people read it (`mapdraw.readable_story`), every column labelled, a missing number
    an empty cell."""
    shown = mapdraw.readable_story(frame)
    labels = {c: mapdraw.column_label(c) for c in shown.columns} | {"place": "near"} | (column_config or {})
    st.dataframe(shown, hide_index=True, column_config=labels, placeholder="", **kwargs)  # no number: empty


cache.ensure_routed()
st.title("Planner map")
con = cache.get_store()
info = cache.summary(con) if con is not None else None
if info is None or not info.counts.get("complaints"):
    st.info("No complaints in the store yet: build the demo data (`python -m lib.cli demo`) or import files on "
            "the **Data** page.", icon=":material/map:")
    st.stop()

first, last = mapurl.date_range(info)
names = cache.shared(con, "map_region_names")
if "map_date" not in ss:  # a new session: the URL seeds every widget
    url = mapurl.parse(st.query_params.to_dict(), first, last, names)
    ss.update(mapurl.widget_values(url), map_notes=url.notes)
for note in ss.pop("map_notes", []):
    st.warning(f"Link parameter ignored: {note}", icon=":material/link_off:")
if ss.pop("map_step", False):
    ss["map_date"] = mapurl.next_month(ss["map_date"], first, last)
    ss["map_play"] = ss["map_play"] and ss["map_date"] < last

c_date, c_sig, c_play = st.columns([6, 2, 1], vertical_alignment="bottom")
c_date.slider("Network as of", min_value=first, max_value=last, key="map_date", format="YYYY-MM-DD")
c_sig.toggle("Significant only", key="map_sig",
             help="On: only hotspots that stand out (Gi* hot or cold spots after FDR control). A place whose "
                  "complaints fell after its relief drops out of them: switch this off to see every place with "
                  "complaints, relieved ones included.")
c_play.toggle("Play", key="map_play", help="Step through the months",
              on_change=ss.update, kwargs={"map_ran": 0.0, "map_stepped": 0.0})  # pressed: the first step now


@st.fragment(run_every=PLAY_SECONDS if ss.get("map_play") else None)
def ticker() -> None:
    if ss.get("map_play") and mapurl.play_due(time.monotonic(), ss.get("map_stepped", 0.0), ss.get("map_ran", 0.0),
                                              PLAY_SECONDS):
        ss["map_stepped"], ss["map_step"] = time.monotonic(), True
        st.rerun(scope="app")


ticker()
f1, f2, f3, f4 = st.columns([3, 3, 3, 1])
f1.selectbox("Region", ["", *names], key="map_region", format_func=lambda r: names.get(r, "All of Germany"))
f2.segmented_control("Complaints", list(hotspots.KINDS), key="map_kind", required=True)
f3.segmented_control("Colour hotspots by", list(maps.COLOUR_MODES), key="map_colour", required=True)
f4.selectbox("H3 res.", ["auto", *hotspots.RESOLUTIONS], key="map_res", help="auto: 7 for Germany, 8 for a region")
with st.expander("Filters: channels, upgrades, statuses"):
    g1, g2, g3 = st.columns(3)
    g1.multiselect("Channels", schema.CHANNELS, key="map_ch", placeholder="All channels", format_func=LABEL,
                   help="Choose one or more to see only their complaints")
    g1.segmented_control("Compare each place with", list(hotspots.STUDY_AREAS), key="map_study", required=True,
                         format_func=STUDY_LABELS.get,
                         help="Gi*'s study area. Places with complaints: the cells with a complaint in the window "
                              "and their neighbours, so a place stands out against the populated places around "
                              "it (the default). Whole country: every cell of Germany, empty countryside included, "
                              "so any busy place stands out; at H3 resolution 7 and 8 only.")
    g2.multiselect("Upgrade kinds (sites)", schema.UPGRADE_KINDS, key="map_uk", placeholder="All kinds",
                   format_func=LABEL)
    g2.multiselect("Site status", asof.SITE_STATUSES, key="map_ss", format_func=LABEL)
    g3.multiselect("Hotspot relief status", linkage.STATUSES, key="map_rs", format_func=LABEL)
    g3.multiselect("Link state", asof.LINK_STATES, key="map_ls", format_func=LABEL)

p = mapurl.params_from(ss)
view = cache.shared(con, "map_view", p, spinner="Building the map...")  # read only: shared by every session
ranked, readable = cache.map_table(con, p, mapdraw.TABLE_ROWS)

# the newest selection wins: a click on the map, or a row of the ranked table
pick = mapurl.choose(ss, (ss.get(mapurl.chart_key(ss)) or {}).get("selection"),
                     ((ss.get("map_table") or {}).get("selection") or {}).get("rows"), ranked["cell"].array)
if pick and pick != ss.get("map_focus_pick"):  # a new selection: centre the map on it, until the area changes
    ss["map_focus_pick"], ss["map_focus"] = pick, (p.region, mapdraw.focus_of(pick, view))
focus = ss.get("map_focus", (None, None))
focus = focus[1] if focus[0] == p.region else None
st.query_params.from_dict(mapurl.query(mapurl.State(p, ss["map_colour"], pick), last))

left, right = st.columns([3, 2])
with left:
    st.pills("Layers", list(maps.LAYERS), key="map_layers", selection_mode="multi", label_visibility="collapsed")
    for note in view.capped_notes():
        st.caption(f":material/filter_alt: {note}")
    st.pydeck_chart(cache.map_deck(con, p, ss["map_colour"], pick, focus), on_select="rerun",
                    selection_mode="single-object", key=mapurl.chart_key(ss), height=620)
    st.html(mapdraw.TOOLTIP_STYLE)
    with st.container(key="map_legend"):
        st.html(mapdraw.legend_html(ss["map_colour"], p.layers, bool(p.region)))
        st.html(mapdraw.CLICK_TIMING, unsafe_allow_javascript=True)
    st.caption(f"Hotspots: Gi* over the {p.window_days} days up to {p.as_of} ({p.kind} complaints), "
               f"H3 resolution {p.resolution}, compared with {STUDY_TEXT[p.study_area]}"
               + (" (the whole country is studied at resolution 7 and 8 only)" if p.study_area != p.study else "")
               + ". Click a hotspot, site or link for its story."
               + (" Only significant hotspots are drawn: places relieved since, whose complaints fell, are not among "
                  "them (switch off *Significant only* to see them)." if p.significant_only else ""))

with right:
    if pick is None:
        st.info("Click a hotspot, site or link on the map, or a row of the table below, to see its story.",
                icon=":material/touch_app:")
    elif pick[0] == "hotspots":
        cell = cells.parse_cell(pick[1])
        res = cells.resolution(cell) if cell else 0
        if res not in hotspots.RESOLUTIONS:
            st.warning(f"{pick[1]} is not a hotspot cell at resolution 7 to 9.")
        else:
            s = cache.query(con, "hotspot_story", cell, res, p.as_of, p.kind, p.channels)
            row = view.hotspots[view.hotspots["cell"] == cell]
            st.subheader(f"Hotspot near {places.nearest_town(*cells.cells_to_latlng([cell]))[0]}")
            st.caption(f"H3 cell {pick[1]} (resolution {res})")
            m1 = m2 = st.container()  # one above the other: a status such as "blocked by transport" reads whole
            m1.metric("Complaints", f"{int(row['n'].iloc[0]):,}" if len(row) else "-", border=True,
                      help=f"{p.kind} complaints in the {p.window_days} days up to {p.as_of}")
            m2.metric("Relief status", LABEL(s.relief["status"]), border=True,
                      delta=f"{s.relief.get('relief_share', 0):.0%} of its complaints relieved", delta_color="off",
                      delta_arrow="off",
                      help="Share of the hotspot's complaints whose serving sites are upgraded, on air and with "
                           f"their transport in place; relieved from {linkage.RELIEVED_SHARE:.0%}.")
            line = f"**Relief date:** {s.relief.get('relief_date') or 'none'}"
            if len(row):
                line += (f" · rank {int(row['rank'].iloc[0]):,} by unrelieved pain: {int(row['n'].iloc[0]):,} "
                         f"complaints x {int(row['days_open'].iloc[0]):,} days = {int(row['pain'].iloc[0]):,}")
            st.markdown(line)
            if s.relief.get("blocking_link_id"):
                st.warning(f"Waits on transport link **{s.relief['blocking_link_id']}**.", icon=":material/cable:")
            st.plotly_chart(story.weekly_figure(s), key="story_chart")
            if s.impact is None:
                st.caption("Impact: not relieved yet.")
            else:
                im = s.impact
                pct = f" ({im.pct_change:+.0f}%)" if im.pct_change is not None else ""
                st.markdown(f"**Impact after relief** ({im.relieved_on}): {im.before:.1f} complaints a week in the "
                            f"{im.weeks} weeks before, {im.after:.1f} after{pct}"
                            + ("" if im.complete else f" (the {im.weeks} weeks after are not over yet)") + ".")
            st.markdown(f"**Serving sites and their upgrades** ({len(s.sites)} sites, the largest share of its "
                        "complaints first)")
            story_table(s.upgrades, UPGRADE_COLUMNS, height=220)
            st.markdown("**Transport links these upgrades wait on**")
            story_table(s.links, height=150)
    elif pick[0] == "sites":
        s = cache.query(con, "site_story", pick[1], p.as_of, p.kind, p.channels)
        if s is None:
            st.warning(f"No site {pick[1]} in the store.")
        else:
            st.subheader(f"Site {s.site['name'] or s.site_id}")
            if s.site["name"]:
                st.caption(f"Site id {s.site_id}")
            m1, m2 = st.columns(2)
            m1.metric("Upgrade status", LABEL(s.site["status"]), border=True)
            m2.metric("Complaints in its cells", f"{int(s.served['complaints'].sum()):,}", border=True,
                      help=f"{p.kind} complaints in the {p.window_days} days up to {p.as_of}, in the "
                           f"{len(s.served)} cells whose complaints it carries a share of (H3 resolution 8)")
            st.plotly_chart(story.weekly_figure(s), key="site_chart")
            st.markdown("**Cells it serves** (its largest share first), their complaints and relief")
            story_table(s.served, {
                "share": st.column_config.ProgressColumn("its share", format="percent", min_value=0, max_value=1),
                "km": st.column_config.NumberColumn("km", format="%.1f")}, height=180)
            st.markdown("**Upgrades: milestones planned and actual**")
            story_table(s.upgrades, UPGRADE_COLUMNS)
            st.markdown("**Transport links**")
            story_table(s.links)
    else:
        st.subheader(f"Transport link {pick[1]}")
        story_table(cache.query(con, "link_story", pick[1], p.as_of))
    if pick is not None:
        st.button("Clear selection", icon=":material/close:", on_click=mapurl.clear, args=(ss,))

st.subheader("Hotspots by unrelieved pain")
st.caption(f"Pain = complaints in the window x days until relief (relieved: 0; relief date passed: "
           f"{maps.OVERDUE_DAYS} days; no relief date: {maps.NO_DATE_DAYS} days or more, the worst case). "
           f"{len(view.hotspots):,} hotspots in this view" + (f", the top {mapdraw.TABLE_ROWS} listed." if len(
               view.hotspots) > mapdraw.TABLE_ROWS else "."))
st.dataframe(readable, hide_index=True, key="map_table", on_select="rerun",
             selection_mode="single-row", height=300,
             column_config=TABLE_COLUMNS, column_order=list(TABLE_COLUMNS))
d1, d2, _ = st.columns([1, 1, 3])
stem = f"hotspots-{p.as_of}-{p.region or 'DE'}"
hot = view.hotspots  # the exports are built when clicked
d1.download_button("Download CSV", lambda: export.csv_bytes(mapdraw.table(hot)), f"{stem}.csv", export.CSV_MIME,
                   icon=":material/download:", key="dl_csv", on_click="ignore")
d2.download_button("Download GeoJSON", lambda: mapdraw.geojson_bytes(hot), f"{stem}.geojson", "application/geo+json",
                   icon=":material/download:", key="dl_geojson", on_click="ignore")


def what_holds_back(p: maps.Params) -> None:
    """The links and upgrades this view's hotspots wait on, and a what-if of moving one planned date."""
    links, ups = cache.query(con, "map_bottlenecks", p)
    st.caption("The transport links and upgrades that the hotspots of this view wait on (those not yet on air, or "
               "whose transport is not in place, at the sites their relief needs), by the pain that waits on them: "
               "the hotspots' complaints x days until relief. A hotspot waiting on several counts for each.")
    b1, b2 = st.columns(2)
    b1.markdown("**Transport links**")
    b1.dataframe(links, hide_index=True, height=250, column_config=WAIT_COLUMNS)
    b2.markdown("**Upgrades** (not held back by a link)")
    b2.dataframe(ups, hide_index=True, height=250, column_config=WAIT_COLUMNS)
    items = [f"link {x}" for x in links["link_id"]] + [f"upgrade {x}" for x in ups["upgrade_id"]]
    if items:
        with st.form("what_if"):
            w1, w2, w3 = st.columns([2, 1, 1])
            w1.selectbox("Move the planned date of", items, key="wi_item")
            when = w2.date_input("to", value=p.as_of, key="wi_date", format="YYYY-MM-DD")
            asked = w3.form_submit_button("Show what changes", icon=":material/science:")
        if asked:
            ss["wi_asked"] = True
    if items and ss.get("wi_asked") and ss.get("wi_item") in items:
        kind, item_id = ss["wi_item"].split(" ", 1)
        changes = cache.query(con, "map_what_if", p, when, *((item_id, None) if kind == "link" else (None, item_id)))
        saved = -int(changes["pain_change"].sum())
        st.markdown(f"**What if {kind} {item_id} were planned for {when}** (nothing is saved): "
                    f"{len(changes):,} hotspots change, pain {'falls' if saved >= 0 else 'rises'} by {abs(saved):,}.")
        story_table(changes.assign(cell=[cells.to_str(int(c)) for c in changes["cell"]]), CHANGE_COLUMNS,
                    height=220)


# lazy: the rankings are queried and drawn only while the expander is open (every page run pays for what
# it draws)
holds = st.expander("What holds these hotspots back, and what if a date moved", icon=":material/call_split:",
                    key="map_holds", on_change="rerun")
if holds.open:
    with holds:
        what_holds_back(p)
ss["map_ran"] = time.monotonic()  # the page run ended: Play's next step waits its interval from here
