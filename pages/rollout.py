"""Rollout: how far the programme is, where, what is late or blocked, when it will be done; exports."""

import datetime as dt
from functools import partial

import pandas as pd
import streamlit as st

from lib import cache, export
from lib.views import mapdraw, report, rollout
from lib.views import rollout_charts as charts

LATE_COLUMNS = {
    "region": "Region", "upgrade_id": "Upgrade", "site_id": "Site", "site_name": "Site name", "kind": "Kind",
    "problem": "Problem",
    "days_late": st.column_config.NumberColumn("Days late", format="%d"), "on_air_planned": "On air planned",
    "link_id": "Transport link", "link_due": "Link due", "upgrade_owner": "Owner", "link_owner": "Link owner",
}

IMPACT_COLUMNS = {
    "name": st.column_config.TextColumn("Region"),
    "kind": st.column_config.TextColumn("Complaints"),
    "pct": st.column_config.TextColumn("Change", help="Complaints after relief against those expected without it"),
    "pct_low": st.column_config.TextColumn("95% from"),
    "pct_high": st.column_config.TextColumn("95% to"),
    "effect": st.column_config.TextColumn("Per area and week", help="Complaints per relieved area and week"),
    "n_treated": st.column_config.NumberColumn("Relieved areas"),
    "n_control": st.column_config.NumberColumn("Areas not yet relieved"),
    "note": st.column_config.TextColumn("No figure because"),
}

TABLE_COLUMNS = {
    "name": st.column_config.TextColumn("Region"),
    "pct_on_air": st.column_config.ProgressColumn("% on air", format="%.1f%%", min_value=0, max_value=100),
    "pct_change_pp": st.column_config.NumberColumn("pp in 30 days", format="%+.1f"),
    "trend": st.column_config.LineChartColumn("% on air, 12 months", y_min=0, y_max=100),
    "on_air": st.column_config.NumberColumn("On air", format="localized"),
    "total": st.column_config.NumberColumn("Planned", format="localized", help="Upgrades not cancelled"),
    "late": st.column_config.NumberColumn("Late", format="localized",
                                          help="Not on air, its planned on-air day has passed"),
    "due": st.column_config.NumberColumn("Due", format="localized",
                                         help="Not on air, planned for the day of these figures"),
    "blocked": st.column_config.NumberColumn("Blocked", format="localized", help="Blocked by transport"),
    "open_no_plan": st.column_config.NumberColumn("Hotspots, no plan", help="Open hotspots, no upgrade planned"),
    "forecast": st.column_config.DateColumn("Forecast"),
    "forecast_low": st.column_config.DateColumn("Earliest (90%)"),
    "forecast_high": st.column_config.DateColumn("Latest (90%)"),
    "forecast_note": st.column_config.TextColumn("No forecast because"),
    "last_planned": st.column_config.DateColumn("Plan ends", help="The latest planned on-air date"),
}

cache.ensure_routed()
st.title("Rollout")
con = cache.get_store()
info = cache.summary(con) if con is not None else None
if info is None or info.counts["upgrades"] == 0 or info.data_as_of is None:
    st.info("No upgrades in the store yet: build the demo data or import upgrades on the **Data** page.",
            icon=":material/database:")
    st.stop()

data_day = info.data_as_of.date()
levels = cache.levels(con) or ["state"]
c1, c2, c3 = st.columns([2, 3, 2])
if st.query_params.get("level", levels[0]) not in levels:
    st.warning(f"Unknown region level {st.query_params['level']!r} in the link: showing {levels[0]}.",
               icon=":material/link_off:")


def level_changed() -> None:
    """A region of one level is no region of another: the view and its link go back to the whole network."""
    st.session_state["region"] = rollout.ALL  # the bound link follows the widget


level = c1.segmented_control("Region level", levels, default=levels[0], required=True, key="level",
                             bind="query-params", on_change=level_changed)
regions = cache.query(con, "rollout_regions", level)
names = {rollout.ALL: rollout.NETWORK_NAME} | dict(zip(regions["region_id"], regions["name"], strict=True))
wanted = st.query_params.get("region")
if wanted is not None and wanted not in names.values():
    st.warning(f"Unknown region {wanted!r} in the link: showing the whole network.", icon=":material/link_off:")
region = c2.selectbox("Region", list(names), format_func=names.get, key="region", bind="query-params")
first_day = data_day - dt.timedelta(days=rollout.MAX_LOOKBACK_DAYS)
if not rollout.valid_day(st.query_params.get("as_of"), first_day, data_day):
    st.warning(f"Date {st.query_params['as_of']!r} in the link is not a day from {first_day} to {data_day}: "
               f"showing {data_day}.", icon=":material/link_off:")
as_of = c3.date_input("As of", value=data_day, max_value=data_day, min_value=first_day, key="as_of",
                      bind="query-params", help=f"The data's date is {data_day:%Y-%m-%d} (the newest actual date)")

table = cache.query(con, "rollout_table", level, as_of)
row = table.set_index("region_id").loc[region].to_dict() | {"region_id": region}
st.caption(f"Every figure on this page is as of **{as_of:%Y-%m-%d}** (data as of {data_day:%Y-%m-%d}).")
m = st.columns([1.1, 0.9, 1.3, 1.1, 1.5])  # wide enough for each label and value in full
some = row["total"] > 0
m[0].metric("Upgrades on air", f"{row['pct_on_air']:.1f}%" if some else "-",
            f"{row['pct_change_pp']:+.1f} pp in 30 days" if some else None, border=True,
            help=f"{row['on_air']:,} of {row['total']:,} planned upgrades (not cancelled)")
m[1].metric("Late", f"{row['late']:,}", border=True, help="Its planned on-air day has passed, and it is not on air")
m[2].metric("Blocked by transport", f"{row['blocked']:,}", border=True,
            help="Due or installed, but its transport link is late, undated or due after the upgrade")
m[3].metric("Hotspots, no plan", f"{row['open_no_plan']:,}", border=True,
            help=f"Open hotspots of capacity or coverage complaints (last {rollout.HOTSPOT_WINDOW_DAYS} days) that no "
                 "planned upgrade serves")
fc = row["forecast"]
m[4].metric("Forecast completion", f"{fc:%Y-%m-%d}" if fc else "-", border=True,
            delta=f"90%: {row['forecast_low']:%Y-%m-%d} to {row['forecast_high']:%Y-%m-%d}" if fc else None,
            delta_color="off", delta_arrow="off",
            help=(row["forecast_note"] or "From the pace of the last 90 days; the band from the paces of the last "
                  "30, 90, 180 and 365 days")
            + (f". The plan ends {row['last_planned']:%Y-%m-%d}." if row.get("last_planned") else ""))

st.subheader("Burn-up")
b1, b2 = st.columns([4, 1], vertical_alignment="bottom")
picked = b1.multiselect("Compare regions", list(names), default=[region], format_func=names.get,
                        key=f"compare_{region}", max_selections=len(charts.PALETTE))  # follows the region
scale_of = b2.segmented_control("Show", list(charts.BURNUP_SCALES), default="percent", required=True,
                                format_func=charts.BURNUP_SCALES.get, key="burnup", bind="query-params",
                                help="Percent of each region's plan, so that regions of any size compare; or counts")
if picked:
    series = cache.query(con, "rollout_series", tuple(picked), level)
    st.plotly_chart(charts.burnup(series, table, as_of, percent=scale_of == "percent"), key="burnup_chart")

st.subheader(f"Per {level}")
shown = table.assign(**{c: pd.to_datetime(table[c]) for c in ("forecast", "forecast_low", "forecast_high",
                                                                "last_planned")})
st.dataframe(shown, hide_index=True, column_config=TABLE_COLUMNS, column_order=list(TABLE_COLUMNS),
             key="region_table", height=min(38 + 35 * len(table), 640))
left, right = st.columns([3, 2], vertical_alignment="center")
shapes = cache.query(con, "rollout_shapes", level)
left.pydeck_chart(charts.region_map(shapes, table, as_of, region, height=charts.MAP_HEIGHT), key="region_map",
                  height=charts.MAP_HEIGHT)
left.html(mapdraw.TOOLTIP_STYLE)
with right:
    st.markdown(f"**Percent of planned upgrades on air per {level}**, as of {as_of:%Y-%m-%d}"
                + ("" if region == rollout.ALL else f"; {names[region]} outlined in black") + ".")
    st.html(charts.legend_html())
    lo, hi = charts.spread(table)
    st.caption(f"The {level}s range from {lo:.1f}% to {hi:.1f}%. Point at a region for its figure.")

late = cache.query(con, "rollout_late", level, as_of)
mine = late if region == rollout.ALL else late[late["region_id"] == region]
st.subheader(f"Late and blocked upgrades: {len(mine):,}")
st.caption("Late: not on air, its planned on-air day has passed (days late count from it). "
           "Blocked: due or installed while its link is late, undated or due after it. Most days late first"
           + (f"; the {rollout.LATE_SHOWN:,} most late are shown here, every one is in the exports below."
              if len(mine) > rollout.LATE_SHOWN else "."))
st.dataframe(rollout.readable_late(mine.head(rollout.LATE_SHOWN)), hide_index=True, key="late_list",
             column_config=LATE_COLUMNS, column_order=list(LATE_COLUMNS), height=min(38 + 35 * len(mine), 400))



def impact_and_channels() -> None:
    with st.spinner("Measuring complaints before and after relief..."):
        effects = cache.query(con, "rollout_impact", level, as_of)
    if effects["pct"].isna().all():
        st.info("Too few relieved areas with 8 weeks after relief yet: no effect to measure.")
    else:
        st.plotly_chart(charts.impact(effects, as_of), key="impact_chart")
        st.caption("Each site's serving area, 8 weeks before and after the site was relieved (its upgrades on air "
                   "with their transport), against the areas not yet relieved over the same weeks; capacity and "
                   "coverage complaints apart (an upgrade adds capacity: coverage complaints should not move). 95% "
                   "intervals from a bootstrap over the areas. Method: docs/figures.md.")
    st.dataframe(rollout.readable_impact(effects), hide_index=True, key="impact_table", column_config=IMPACT_COLUMNS,
                 column_order=list(IMPACT_COLUMNS))
    mix = cache.query(con, "rollout_channels", level, region, as_of)
    st.plotly_chart(charts.channel_mix(mix, names[region], as_of), key="channels")


# lazy: measured and drawn only while open (every page run pays for what it draws: 0.3 s and three charts and
# tables at 10M complaints); open or shut in the link
st.subheader("Impact and channels")
section = st.expander("Impact of relief on complaints, and complaints by channel", icon=":material/trending_down:",
                      key="impact", on_change="rerun", bind="query-params")
if section.open:
    with section:
        impact_and_channels()

st.subheader("Exports")
sheets = rollout.export_sheets(table, mine, as_of)  # files are written only when a button is clicked
e = st.columns(4)
e[0].download_button("Region table (CSV)", partial(export.csv_bytes, sheets["regions"]),
                     f"rollout-regions-{as_of}.csv", export.CSV_MIME, on_click="ignore", key="dl_regions_csv")
e[1].download_button("Late and blocked (CSV)", partial(export.csv_bytes, sheets["late_blocked"]),
                     f"rollout-late-{as_of}.csv", export.CSV_MIME, on_click="ignore", key="dl_late_csv")
e[2].download_button("Both (Excel)", partial(export.xlsx_bytes, sheets), f"rollout-{as_of}.xlsx",
                     export.XLSX_MIME, on_click="ignore", key="dl_xlsx")
one = cache.query(con, "rollout_series", (region,), level)
e[3].download_button("One-page report (HTML)", lambda: report.render(names[region], as_of, row, table, mine, one,
                                                                   data_day=data_day).encode("utf-8"),
                     f"rollout-report-{as_of}.html", "text/html",
                     on_click="ignore", key="dl_report", help="Print-ready; open it and print, or save as PDF")
