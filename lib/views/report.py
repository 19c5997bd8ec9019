"""A one-page, print-ready HTML report of the rollout view for a meeting: self-contained (inline CSS,
the burn-up chart as inline SVG), no external fetch, with the date of the data on every part.

Text from the store is HTML-escaped. Print it from the browser (A4 landscape) or save it as PDF.
"""

from __future__ import annotations

import datetime as dt
import html

import pandas as pd

LATE_ROWS = 10
"""Late or blocked upgrades shown in the report (the most days late first)."""

SVG_W, SVG_H, PAD = 640, 300, 52
"""Burn-up chart size and inner margin, in SVG units (the chart is printed about 140 mm wide)."""

FONT = 15
"""Chart text size in SVG units: about 9 pt when printed, as the report's text."""

DIGIT_WIDTH = 0.62
"""Width of a digit or comma of the chart's text, as a share of FONT (a little generous)."""

CSS = """
@page { size: A4 landscape; margin: 10mm; }
body { font: 9pt/1.3 system-ui, sans-serif; color: #222; margin: 0; }
h1 { font-size: 14pt; margin: 0 0 1mm; } h2 { font-size: 10pt; margin: 3mm 0 1mm; }
.kpis { display: flex; gap: 2mm; } .kpi { border: 1px solid #ccc; border-radius: 2mm; padding: 1mm 2mm; }
.kpi b { display: block; font-size: 12pt; } table { border-collapse: collapse; width: 100%; font-size: 7.5pt; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3mm 1.2mm; text-align: left; white-space: nowrap; }
td.n { text-align: right; } svg { width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: 1.25fr 1fr; gap: 4mm; } .note { color: #555; font-size: 8pt; }
.key { display: inline-block; width: 7mm; height: 0; vertical-align: middle; margin: 0 1mm 0 3mm; }
"""


def _e(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.date):
        return f"{value:%Y-%m-%d}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    body = []
    for row in frame[list(columns)].itertuples(index=False):
        cells = "".join(f"<td class='n'>{_e(v)}</td>" if isinstance(v, int | float) and not pd.isna(v)
                        else f"<td>{_e(v)}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


PLAN, BASELINE, ON_AIR = "#1f77b4", "#666666", "#1a7f37"
"""Line colours of the burn-up: plan, baseline, on air (and forecast)."""


def _polyline(xs, ys, scale_x, scale_y, style: str) -> str:
    pts = " ".join(f"{scale_x(x):.1f},{scale_y(y):.1f}" for x, y in zip(xs, ys, strict=True))
    return f"<polyline points='{pts}' fill='none' {style}/>"


def burnup_svg(series: pd.DataFrame, row: dict, as_of: dt.date) -> str:
    """One region's burn-up (`rollout.series` rows of that region) as an inline SVG: plan, baseline,
    on air to `as_of`, and the forecast to completion with its band (from `row`)."""
    if series.empty:
        return "<p class='note'>No upgrades to chart.</p>"
    day = pd.Timestamp(as_of)
    ends = [series["date"].max()] + [pd.Timestamp(row[k]) for k in ("forecast_high", "forecast") if row.get(k)]
    x0, x1 = series["date"].min(), max(ends)
    top = max(float(series["planned_cum"].max()), float(series["baseline_cum"].max()), float(row["total"]), 1.0)
    span = max((x1 - x0).total_seconds(), 1.0)
    ticks = [(value, f"{value:,.0f}") for value in _count_ticks(top)]
    left = max(PAD, 10 + DIGIT_WIDTH * FONT * max(len(text) for _, text in ticks))  # room for the widest count

    def sx(x) -> float:
        return left + (pd.Timestamp(x) - x0).total_seconds() / span * (SVG_W - left - PAD)

    def sy(y) -> float:
        return SVG_H - PAD + -float(y) / top * (SVG_H - 2 * PAD)

    done = series[series["date"] <= day]
    parts = [f"<line x1='{left:.1f}' y1='{SVG_H - PAD}' x2='{SVG_W - PAD / 2}' y2='{SVG_H - PAD}' stroke='#666'/>"]
    for value, text in ticks:  # y ticks with light grid lines
        y = sy(value)
        parts.append(f"<line x1='{left:.1f}' y1='{y:.1f}' x2='{SVG_W - PAD / 2}' y2='{y:.1f}' stroke='#ddd'/>")
        parts.append(f"<text x='{left - 6:.1f}' y='{y + FONT / 3:.1f}' text-anchor='end' font-size='{FONT}'>"
                     f"{text}</text>")
    for tick in _date_ticks(x0, x1):
        x = sx(tick)
        parts.append(f"<line x1='{x:.1f}' y1='{SVG_H - PAD}' x2='{x:.1f}' y2='{SVG_H - PAD + 5}' stroke='#666'/>")
        parts.append(f"<text x='{x:.1f}' y='{SVG_H - PAD + 5 + FONT}' text-anchor='middle' font-size='{FONT}'>"
                     f"{tick:%Y-%m}</text>")
    parts += [
        f"<line x1='{sx(day):.1f}' y1='{PAD / 2}' x2='{sx(day):.1f}' y2='{SVG_H - PAD}' stroke='#999'/>",
        _polyline(series["date"], series["planned_cum"], sx, sy, f"stroke='{PLAN}' stroke-width='2' "
                                                                  "stroke-dasharray='8 4'"),
        _polyline(series["date"], series["baseline_cum"], sx, sy, f"stroke='{BASELINE}' stroke-width='2' "
                                                                   "stroke-dasharray='2 3'"),
        _polyline(list(done["date"]) + [day], list(done["on_air_cum"]) + [row["on_air"]], sx, sy,
                  f"stroke='{ON_AIR}' stroke-width='3.5'"),
    ]
    if row.get("forecast"):
        band = [(day, row["on_air"]), (row["forecast_low"], row["total"]), (row["forecast_high"], row["total"])]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in band)
        parts.append(f"<polygon points='{pts}' fill='{ON_AIR}' fill-opacity='0.15'/>")
        parts.append(_polyline([day, row["forecast"]], [row["on_air"], row["total"]], sx, sy,
                               f"stroke='{ON_AIR}' stroke-width='2' stroke-dasharray='10 4 2 4'"))
    keys = [("plan", PLAN, "dashed"), ("baseline", BASELINE, "dotted"), ("on air", ON_AIR, "solid"),
            ("forecast, shaded 90% band", ON_AIR, "dashed")]
    legend = "".join(f"<span class='key' style='border-top: 2px {style} {colour}'></span>{label}"
                     for label, colour, style in keys)
    return (f"<svg width='{SVG_W}' height='{SVG_H}' viewBox='0 0 {SVG_W} {SVG_H}' role='img' "
            f"aria-label='Upgrades on air against plan, as of {as_of:%Y-%m-%d}'>{''.join(parts)}</svg>"
            f"<p class='note'>Upgrades (cumulative): {legend}; grey line: {as_of:%Y-%m-%d}</p>")


def _count_ticks(top: float) -> list[float]:
    """Round counts from 0 to `top`: steps of 1, 2 or 5 times a power of ten, at most 6 ticks."""
    step = 1.0
    while top / step > 5:
        for m in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10 -> ...
            step *= m
            if top / step <= 5:
                break
    return [i * step for i in range(int(top // step) + 1)]


def _date_ticks(x0: pd.Timestamp, x1: pd.Timestamp) -> list[pd.Timestamp]:
    """Month starts between `x0` and `x1`, every 3, 6 or 12 months so that at most 7 are labelled."""
    months = pd.date_range(x0.to_period("M").to_timestamp(), x1, freq="MS")
    months = months[months >= x0]
    for step in (3, 6, 12, 24):
        picked = [m for m in months if (m.month - 1) % step == 0]
        if len(picked) <= 7:
            return picked
    return list(months[:: max(1, len(months) // 6)])


def render(name: str, as_of: dt.date, row: dict, table: pd.DataFrame, late: pd.DataFrame,
           series: pd.DataFrame, generated: dt.datetime | None = None, data_day: dt.date | None = None) -> str:
    """The report of region `name` (`row`: its `rollout.region_table` row) as one HTML document: figures as of
    `as_of`, from data whose newest date is `data_day` (default: as_of)."""
    generated = generated or dt.datetime.now().replace(microsecond=0)
    data_day = data_day or as_of
    dated = f"Data as of <b>{as_of:%Y-%m-%d}</b>" if data_day == as_of else (
        f"Figures as of <b>{as_of:%Y-%m-%d}</b>, replayed from data as of <b>{data_day:%Y-%m-%d}</b> (actual dates "
        f"after {as_of:%Y-%m-%d} count as not yet happened)")
    f = (f"{_e(row['forecast'])} (90%: {_e(row['forecast_low'])} to {_e(row['forecast_high'])})"
         if row.get("forecast") else _e(row.get("forecast_note") or "-"))
    if row.get("last_planned"):
        f += f"; plan ends {_e(row['last_planned'])}"
    kpis = [("Upgrades on air", f"{row['pct_on_air']:.1f}%" if pd.notna(row["pct_on_air"]) else "-"),
            ("Change in 30 days", f"{row['pct_change_pp']:+.1f} pp" if pd.notna(row["pct_change_pp"]) else "-"),
            ("On air / planned", f"{row['on_air']:,} / {row['total']:,}"), ("Late", f"{row['late']:,}"),
            ("Blocked by transport", f"{row['blocked']:,}"),
            ("Open hotspots, no upgrade planned", f"{row['open_no_plan']:,}"), ("Forecast completion", f)]
    tiles = "".join(f"<div class='kpi'>{html.escape(k)}<b>{v}</b></div>" for k, v in kpis)
    regions = _table(table, {"name": "Region", "pct_on_air": "% on air", "pct_change_pp": "pp in 30 d",
                             "on_air": "On air", "total": "Planned", "late": "Late", "blocked": "Blocked",
                             "forecast": "Forecast"})
    top = late.head(LATE_ROWS)
    lates = _table(top, {"upgrade_id": "Upgrade", "region": "Region", "problem": "Problem", "days_late": "Days late",
                         "link_id": "Link", "upgrade_owner": "Owner", "link_owner": "Link owner"})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Rollout report: {html.escape(name)}, {as_of:%Y-%m-%d}</title>
<style>{CSS}</style></head><body>
<h1>Network rollout: {html.escape(name)}</h1>
<p class="note">{dated}; report generated {generated:%Y-%m-%d %H:%M}. Netzausbau-Monitor.</p>
<div class="kpis">{tiles}</div>
<div class="grid"><div><h2>Burn-up</h2>{burnup_svg(series, row, as_of)}</div>
<div><h2>Regions (as of {as_of:%Y-%m-%d})</h2>{regions}</div></div>
<h2>Late and blocked upgrades: {len(late):,} (the {len(top)} most days late; as of {as_of:%Y-%m-%d})</h2>{lates}
</body></html>"""
