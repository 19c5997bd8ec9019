"""Figures of the rollout page, built from `lib.views.rollout` frames (plotly graph objects, pydeck); no streamlit.

Plotly `go` traces, not plotly express (about 25 times quicker per figure, FIELD-NOTES).
The map is a pydeck GeoJsonLayer without a basemap: it needs no network at all.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pydeck as pdk

from lib import basemap
from lib.views import rollout

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
CHANNEL_COLOURS = {"hotline": "#d62728", "app": "#1f77b4", "crowd_list": "#ff7f0e", "social": "#2ca02c"}
BAND_OPACITY = 0.15
MAP_VIEW = pdk.ViewState(latitude=51.2, longitude=10.4, zoom=4.9)
"""Germany in view."""

LOW, HIGH = (255, 255, 204), (37, 52, 148)
"""Map colours of the lowest and highest percent on air shown (light yellow to dark blue)."""

SELECTED_LINE = [214, 39, 40, 255]
"""Outline of the selected region."""

SELECTED_WIDTH_M = 2500
"""Outline width of the selected region, metres (others: the 1-pixel minimum)."""


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, y_title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.15), hovermode="x unified")
    return fig


def burnup(series: pd.DataFrame, table: pd.DataFrame, as_of: dt.date) -> go.Figure:
    """Cumulative upgrades on air (to `as_of`) against the current plan and the baseline, per region of
    `series` (`rollout.series`), with each region's forecast (from `table`, `rollout.region_table`) and band."""
    fig = go.Figure()
    cut = pd.Timestamp(as_of)
    rows = table.set_index("region_id")
    for i, (rid, s) in enumerate(series.groupby("region_id", sort=False)):
        colour, name = PALETTE[i % len(PALETTE)], rows.at[rid, "name"] if rid in rows.index else rid
        done = s[s["date"] <= cut]
        fig.add_trace(go.Scatter(x=s["date"], y=s["planned_cum"], name=f"{name}: plan", legendgroup=rid,
                                 line=dict(color=colour, dash="dash")))
        fig.add_trace(go.Scatter(x=s["date"], y=s["baseline_cum"], name=f"{name}: baseline", legendgroup=rid,
                                 line=dict(color=colour, dash="dot", width=1.5), opacity=0.6))
        fig.add_trace(go.Scatter(x=list(done["date"]) + [cut], y=list(done["on_air_cum"]) + [rows.at[rid, "on_air"]],
                                 name=f"{name}: on air", legendgroup=rid, line=dict(color=colour, width=3)))
        r = rows.loc[rid]
        if r["forecast"] is not None and not pd.isna(r["forecast"]):
            start, total = (cut, r["on_air"]), r["total"]
            fig.add_trace(go.Scatter(x=[start[0], r["forecast_low"], r["forecast_high"], start[0]],
                                     y=[start[1], total, total, start[1]], fill="toself", mode="lines",
                                     line=dict(width=0), fillcolor=_rgba(colour, BAND_OPACITY), legendgroup=rid,
                                     name=f"{name}: 90% band", hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=[start[0], r["forecast"]], y=[start[1], total], legendgroup=rid,
                                     name=f"{name}: forecast {r['forecast']:%Y-%m-%d}", mode="lines",
                                     line=dict(color=colour, dash="dashdot", width=2)))
    fig.add_vline(x=cut.timestamp() * 1000, line=dict(color="#888", width=1))
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


def colour(pct: float, lo: float, hi: float) -> list[int]:
    """RGBA of `pct` on the scale from `lo` (LOW) to `hi` (HIGH); grey when unknown."""
    if pct is None or np.isnan(pct):
        return [200, 200, 200, 160]
    t = 0.5 if hi <= lo else min(max((pct - lo) / (hi - lo), 0.0), 1.0)
    return [round(a + (b - a) * t) for a, b in zip(LOW, HIGH, strict=True)] + [220]


def scale(table: pd.DataFrame) -> tuple[float, float]:
    """The map's colour range: lowest and highest percent on air of the regions (ALL left out)."""
    pct = table.loc[table["region_id"] != rollout.ALL, "pct_on_air"].dropna()
    return (float(pct.min()), float(pct.max())) if len(pct) else (0.0, 100.0)


def region_map(shapes: dict, table: pd.DataFrame, as_of: dt.date, selected: str | None = None) -> pdk.Deck:
    """The regions of `shapes` (`rollout.shapes`) coloured by percent on air (`table`), selected one outlined."""
    rows, (lo, hi) = table.set_index("region_id"), scale(table)
    features = []
    for f in shapes["features"]:
        rid = f["properties"]["region_id"]
        pct = float(rows.at[rid, "pct_on_air"]) if rid in rows.index else float("nan")
        props = f["properties"] | {"pct": "-" if np.isnan(pct) else f"{pct:.1f}%", "fill": colour(pct, lo, hi),
                                   "line": SELECTED_LINE if rid == selected else [255, 255, 255, 255],
                                   "width": SELECTED_WIDTH_M if rid == selected else 0}
        features.append(f | {"properties": props})
    # width in metres with a 1-pixel floor: pydeck would turn a units string into an expression
    layer = pdk.Layer("GeoJsonLayer", {"type": "FeatureCollection", "features": features}, id="regions",
                      pickable=True, stroked=True, filled=True, get_fill_color="properties.fill",
                      get_line_color="properties.line", get_line_width="properties.width", line_width_min_pixels=1)
    tooltip = {"text": f"{{name}}: {{pct}} on air (as of {as_of:%Y-%m-%d})"}
    return pdk.Deck(layers=[layer], initial_view_state=MAP_VIEW, tooltip=tooltip, **basemap.deck_args())
