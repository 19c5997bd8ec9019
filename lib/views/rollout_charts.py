"""Figures of the rollout page, built from `lib.views.rollout` frames (plotly graph objects, pydeck); no streamlit.

Plotly `go` traces, not plotly express (about 25 times quicker per figure, FIELD-NOTES).
The map is a pydeck GeoJsonLayer without a basemap unless one is configured (lib/basemap.py): it needs no network.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pydeck as pdk

from lib import baselayer, basemap
from lib.views import mapdraw, rollout

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
CHANNEL_COLOURS = {"hotline": "#d62728", "app": "#1f77b4", "crowd_list": "#ff7f0e", "social": "#2ca02c"}
BAND_OPACITY = 0.15
MAP_HEIGHT = 560
MAP_WIDTH = 560
MAP_MARGIN = 0.9
"""The region map's size in pixels (its column on a wide page); its view fits the regions into 90 % of it."""

RAMP = ((255, 255, 204), (161, 218, 180), (65, 182, 196), (44, 127, 184), (37, 52, 148))
"""Percent on air from 0 % (first) to 100 % (last), evenly spaced: ColorBrewer's YlGnBu, sequential and
colour-blind safe. The scale is always 0 to 100 %, so that a few points between regions look like a few."""

SELECTED_LINE = [0, 0, 0, 255]
"""Outline of the selected region (black: red means late on the other pages)."""

BURNUP_SCALES = {"percent": "% of plan", "count": "Counts"}
"""The burn-up's y axis: percent of each region's plan (regions of any size compare), or upgrades."""

SELECTED_WIDTH_M = 2500
"""Outline width of the selected region, metres (others: the 1-pixel minimum)."""


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, y_title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.15), hovermode="x unified")
    return fig


def burnup(series: pd.DataFrame, table: pd.DataFrame, as_of: dt.date, percent: bool = False) -> go.Figure:
    """Cumulative upgrades on air (to `as_of`) against the current plan and the baseline, per region of
    `series` (`rollout.series`), with each region's forecast (from `table`, `rollout.region_table`) and band;
    with `percent`, each region's lines in percent of its plan (its upgrades not cancelled, `total`)."""
    fig = go.Figure()
    cut = pd.Timestamp(as_of)
    rows = table.set_index("region_id")
    for i, (rid, s) in enumerate(series.groupby("region_id", sort=False)):
        colour, name = PALETTE[i % len(PALETTE)], rows.at[rid, "name"] if rid in rows.index else rid
        r = rows.loc[rid]
        per = 100.0 / r["total"] if percent and r["total"] else 1.0  # upgrades -> percent of plan
        done = s[s["date"] <= cut]
        fig.add_trace(go.Scatter(x=s["date"], y=s["planned_cum"] * per, name=f"{name}: plan", legendgroup=rid,
                                 line=dict(color=colour, dash="dash")))
        fig.add_trace(go.Scatter(x=s["date"], y=s["baseline_cum"] * per, name=f"{name}: baseline", legendgroup=rid,
                                 line=dict(color=colour, dash="dot", width=1.5), opacity=0.6))
        fig.add_trace(go.Scatter(x=list(done["date"]) + [cut], y=[v * per for v in [*done["on_air_cum"], r["on_air"]]],
                                 name=f"{name}: on air", legendgroup=rid, line=dict(color=colour, width=3)))
        if r["forecast"] is not None and not pd.isna(r["forecast"]):
            start, total = (cut, r["on_air"] * per), r["total"] * per
            fig.add_trace(go.Scatter(x=[start[0], r["forecast_low"], r["forecast_high"], start[0]],
                                     y=[start[1], total, total, start[1]], fill="toself", mode="lines",
                                     line=dict(width=0), fillcolor=_rgba(colour, BAND_OPACITY), legendgroup=rid,
                                     name=f"{name}: 90% band", hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=[start[0], r["forecast"]], y=[start[1], total], legendgroup=rid,
                                     name=f"{name}: forecast {r['forecast']:%Y-%m-%d}", mode="lines",
                                     line=dict(color=colour, dash="dashdot", width=2)))
    fig.add_vline(x=cut.timestamp() * 1000, line=dict(color="#888", width=1))
    if percent:
        _layout(fig, f"Upgrades on air, plan and baseline, in percent of each plan (as of {as_of:%Y-%m-%d})",
                "% of planned upgrades", 480)
        return fig.update_yaxes(range=[0, 105], ticksuffix="%")
    return _layout(fig, f"Upgrades on air, plan and baseline (as of {as_of:%Y-%m-%d})", "upgrades (cumulative)",
                   480)


def channel_mix(mix: pd.DataFrame, name: str, as_of: dt.date) -> go.Figure:
    """Monthly complaints per channel (`rollout.channel_mix`) as stacked areas."""
    fig = go.Figure()
    for ch in rollout.CHANNELS:
        s = mix[mix["channel"] == ch]
        fig.add_trace(go.Scatter(x=s["month"].tolist(), y=s["n"].tolist(), name=ch.replace("_", " "), stackgroup="one",
                                 line=dict(color=CHANNEL_COLOURS.get(ch))))
    return _layout(fig, f"Complaints per month by channel, {name} (to {as_of:%Y-%m-%d})", "complaints", 380)


IMPACT_COLOURS = {"capacity": "#b2182b", "coverage": "#2166ac"}


def impact(table: pd.DataFrame, as_of: dt.date) -> go.Figure:
    """The effect of relief on complaints per region, in percent with its 95% interval, capacity and coverage
    apart (`rollout.impact_table`); regions with too few relieved areas are left out (the table says why)."""
    fig = go.Figure()
    shown = table[table["pct"].notna()]
    for kind, colour in IMPACT_COLOURS.items():
        rows = shown[shown["kind"] == kind]
        fig.add_trace(go.Scatter(
            x=rows["name"], y=rows["pct"], mode="markers", name=f"{kind} complaints", marker=dict(color=colour, size=9),
            error_y=dict(type="data", symmetric=False, array=rows["pct_high"] - rows["pct"],
                         arrayminus=rows["pct"] - rows["pct_low"], color=colour),
            hovertemplate="%{x}: %{y:+.0f}%<extra>" + kind + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#555", width=1))
    _layout(fig, f"Change in complaints after a site is relieved, with 95% intervals (as of {as_of:%Y-%m-%d})",
            "change in complaints (%)", 420)
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10), hovermode="closest",
                      legend=dict(orientation="h", y=1.0, yanchor="bottom"))
    return fig


def colour(pct: float) -> list[int]:
    """RGBA of `pct` (0 to 100) on `RAMP`; grey when unknown."""
    if pct is None or np.isnan(pct):
        return [200, 200, 200, 160]
    t = min(max(pct / 100.0, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    a, b = RAMP[i], RAMP[i + 1]
    return [round(x + (y - x) * (t - i)) for x, y in zip(a, b, strict=True)] + [230]


def legend_html() -> str:
    """The map's legend: the colour ramp from 0 to 100 % with its ticks, and the grey of no upgrades."""
    stops = ", ".join(f"rgb{c}" for c in RAMP)
    ticks = "".join(f'<span style="position:absolute;left:{p}%;transform:translateX(-50%)">{p}%</span>'
                    for p in (0, 25, 50, 75, 100))
    return (f'<div role="img" aria-label="Colour scale: light yellow is 0 % on air, dark blue 100 %; grey: no '
            f'upgrades planned" style="max-width:320px;font-size:14px;color:#31333f">'
            f'<div style="height:14px;border:1px solid #999;background:linear-gradient(to right, {stops})"></div>'
            f'<div style="position:relative;height:20px;margin:2px 8px 0 8px">{ticks}</div>'
            f'<div style="margin-top:6px"><span style="display:inline-block;width:14px;height:14px;'
            f'background:rgb(200,200,200);border:1px solid #999;vertical-align:middle"></span> no upgrades planned'
            f'</div></div>')


def spread(table: pd.DataFrame) -> tuple[float, float]:
    """The lowest and highest percent on air of the regions (ALL left out), for the map's caption."""
    pct = table.loc[~table["region_id"].isin([rollout.ALL, rollout.OUTSIDE]), "pct_on_air"].dropna()
    return (float(pct.min()), float(pct.max())) if len(pct) else (0.0, 0.0)


def region_map(shapes: dict, table: pd.DataFrame, as_of: dt.date, selected: str | None = None,
               height: int = MAP_HEIGHT) -> pdk.Deck:
    """The regions of `shapes` (`rollout.shapes`) coloured by percent on air (`table`) on the fixed 0-100 %
    ramp, the selected one outlined, the view fitted to the regions."""
    rows = table.set_index("region_id")
    features = []
    for f in shapes["features"]:
        rid = f["properties"]["region_id"]
        pct = float(rows.at[rid, "pct_on_air"]) if rid in rows.index else float("nan")
        props = f["properties"] | {"pct": "-" if np.isnan(pct) else f"{pct:.1f}%", "fill": colour(pct),
                                   "line": SELECTED_LINE if rid == selected else [255, 255, 255, 255],
                                   "width": SELECTED_WIDTH_M if rid == selected else 0}
        features.append(f | {"properties": props})
    # width in metres with a 1-pixel floor: pydeck would turn a units string into an expression
    layer = pdk.Layer("GeoJsonLayer", {"type": "FeatureCollection", "features": features}, id="regions",
                      pickable=True, stroked=True, filled=True, get_fill_color="properties.fill",
                      get_line_color="properties.line", get_line_width="properties.width", line_width_min_pixels=1)
    tooltip = {"text": f"{{name}}: {{pct}} on air (as of {as_of:%Y-%m-%d})"}
    pixels = (round(MAP_WIDTH * MAP_MARGIN), round(height * MAP_MARGIN))
    view = baselayer.fit_view(baselayer.bounds(features), pixels) if features else mapdraw.view_state_of_germany()
    return pdk.Deck(layers=[layer], initial_view_state=view, tooltip=tooltip, **basemap.deck_args())
