"""Overview: what the store holds, and the main figures per region."""

import plotly.graph_objects as go
import streamlit as st

from lib import cache
from lib.views import overview

EMPTY = """**The store is empty.** Build the demo data set, or import your own files:

- `make run` builds the demo store on first start, or run `python -m lib.cli demo` and reload this page;
- or import CSV, Excel, Parquet or GeoJSON files on the **Data** page (regions and sites first)."""

TILES = (("Regions", "regions"), ("Sites", "sites"), ("Upgrades", "upgrades"),
         ("Transport links", "transport_links"), ("Complaints", "complaints"))

COLUMNS = {
    "region_id": st.column_config.TextColumn("Id"),
    "name": st.column_config.TextColumn("Region"),
    "population": st.column_config.NumberColumn("Population", format="localized"),
    "sites": st.column_config.NumberColumn("Sites", format="localized"),
    "upgrades": st.column_config.NumberColumn("Upgrades", format="localized", help="Upgrades not cancelled"),
    "upgrades_on_air": st.column_config.NumberColumn("On air", format="localized"),
    "pct_on_air": st.column_config.ProgressColumn("% on air", format="%.1f%%", min_value=0, max_value=100),
    "transport_links": st.column_config.NumberColumn("Transport links", format="localized",
                                                     help="Links whose end A lies in the region"),
    "complaints": st.column_config.NumberColumn("Complaints", format="localized"),
    "complaints_per_10k": st.column_config.NumberColumn("Per 10k inh.", format="%.1f",
                                                        help="Complaints per 10,000 inhabitants"),
}

cache.ensure_routed()
st.title("Overview")
con = cache.get_store()
info = cache.summary(con) if con is not None else None
if info is None or info.empty:
    st.info(EMPTY, icon=":material/database:")
    st.stop()

for col, (label, name) in zip(st.columns(len(TILES)), TILES, strict=True):
    if name == "upgrades":  # the programme: cancelled upgrades are no part of it (as on every page)
        cancelled = info.counts[overview.CANCELLED]
        col.metric(label, f"{info.counts[name] - cancelled:,}", border=True,
                   help=f"Not cancelled; {cancelled:,} more are cancelled.")
    elif name == "regions":  # every level counted: say how many of each
        by_level = cache.query(con, "level_counts")
        col.metric(label, f"{info.counts[name]:,}", border=True,
                   help="Every level counted; by level: " + ", ".join(f"{lv} {n:,}" for lv, n in by_level.items()) + "."
                   if by_level else None)
    else:
        col.metric(label, f"{info.counts[name]:,}", border=True)

cols = st.columns(len(info.date_ranges) + 2)
for col, (label, (lo, hi)) in zip(cols, info.date_ranges.items(), strict=False):
    col.markdown(f"**{label}**  \n{lo:%Y-%m-%d} to {hi:%Y-%m-%d}" if lo else f"**{label}**  \nnone")
as_of, last = info.data_as_of, info.last_import
as_of_text = f"{as_of:%Y-%m-%d %H:%M}".removesuffix(" 00:00") if as_of else "-"
cols[-2].markdown(f"**Data as of**  \n{as_of_text}")
cols[-1].markdown(f"**Last import** #{last.import_id}  \n{last.file_name} ({last.table})  \n"
                  f"{last.imported_at:%Y-%m-%d %H:%M}" if last else "**Last import**  \nnone")

st.subheader("Per region")
options = cache.levels(con) or ["state"]
level = st.segmented_control("Region level", options, default=options[0], required=True, key="level",
                             bind="query-params")
table = cache.region_table(con, level)
if table.empty:
    st.info("No regions of this level yet: import regions (GeoJSON polygons) on the Data page.")
    st.stop()

st.dataframe(table, hide_index=True, column_config=COLUMNS, height=min(38 + 35 * len(table), 740))

rates = table.dropna(subset=["complaints_per_10k"]).sort_values("complaints_per_10k", ascending=False)
if rates.empty:
    st.caption("No population figures for these regions, so no complaint rates to chart.")
    st.stop()
fig = go.Figure(go.Bar(x=rates["name"], y=rates["complaints_per_10k"], marker_color="#5b6b7f",
                       hovertemplate="%{x}: %{y:.1f} per 10k<extra></extra>"))
fig.update_layout(title=f"Complaints per 10,000 inhabitants by {level}", height=380,
                  margin=dict(l=10, r=10, t=50, b=10), yaxis_title="per 10k inhabitants")
st.plotly_chart(fig, key="rate_chart")
