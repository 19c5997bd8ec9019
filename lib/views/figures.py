"""The headline figures of one region as the pages show them, in one place: for `python -m lib.cli figures`,
for scripts and reports, and for the tests that reconcile the pages against it.

Every figure comes from the function the pages use (docs/figures.md): the Rollout page's region table
(`rollout.region_table`: upgrades, late, blocked, open hotspots with no plan, forecast), the relief of the
hot cells (`linkage.relief`) and the impact table (`rollout.impact_table`, the event study of
`lib.engine.eventstudy` with its intervals).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from lib import cells
from lib.engine import asof, hotspots, linkage, progress
from lib.views import overview, rollout

ALL = progress.ALL
HOTSPOT_KIND = "capacity"
"""The complaints whose hotspots are counted by relief status (as the Planner map opens)."""


class UnknownRegion(ValueError):
    """The region asked for is not among the regions of the level."""


def data_date(con) -> dt.date | None:
    """The store's data date (the newest actual date in it), as every page defaults to."""
    t = overview.summary(con).data_as_of
    return None if t is None else pd.Timestamp(t).date()


def _plain(value):
    """A value as JSON takes it: dates as ISO text, numpy numbers as Python's, NaN as None."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def hotspot_relief(con, as_of: dt.date, region_id: str = ALL) -> dict:
    """The hot cells (Gi*, the 90 days up to `as_of`, capacity complaints, resolution 8) of a region by relief
    status, and their relieved share: the mean over the cells and the complaint-weighted share."""
    window = asof.window(as_of, rollout.HOTSPOT_WINDOW_DAYS)
    res = cells.REGION_RES
    hot = hotspots.hotspots(con, res, *window, HOTSPOT_KIND)
    hot = hot.loc[hot["hot"], ["cell", "n"]]
    if region_id != ALL:
        with con.cursor() as cur:
            mine = cur.execute("SELECT DISTINCT cell FROM region_cells WHERE region_id = ?", [region_id]).df()
        hot = hot[hot["cell"].isin(mine["cell"].astype("int64"))]
    rel = linkage.relief(con, hot[["cell"]], res, as_of).merge(hot, on="cell")
    by_status = {s: int((rel["status"] == s).sum()) for s in linkage.STATUSES}
    weighted = float((rel["relief_share"] * rel["n"]).sum() / rel["n"].sum()) if rel["n"].sum() > 0 else None
    return {"hot_cells": len(rel), "by_status": by_status,
            "relieved_share_mean": float(rel["relief_share"].mean()) if len(rel) else None,
            "relieved_share_of_complaints": weighted}


def headline(con, as_of: dt.date | None = None, region_id: str = ALL, level: str = "state",
             with_impact: bool = True) -> dict:
    """Every headline figure of one region (ALL: the whole network) as of `as_of` (default: the data date)."""
    day = as_of or data_date(con)
    if day is None:
        raise UnknownRegion("the store holds no dated records yet")
    table = rollout.region_table(con, level, day)
    rows = table[table["region_id"] == region_id]
    if rows.empty:
        raise UnknownRegion(f"unknown region {region_id!r} at level {level!r} (known: "
                            f"{', '.join(table['region_id'].astype(str))})")
    row = rows.iloc[0]
    out = {
        "as_of": day.isoformat(), "region_id": region_id, "name": row["name"], "level": level,
        "upgrades": {k: _plain(row[k]) for k in ("total", "on_air", "pct_on_air", "pct_change_pp", "late", "due",
                                                 "blocked")} | {"ahead": int(row["total"] - row["on_air"]
                                                                             - row["late"] - row["due"])},
        "open_hotspots_no_plan": int(row["open_no_plan"]),
        "hotspots": hotspot_relief(con, day, region_id),
        "forecast": {"date": _plain(row["forecast"]), "earliest_90": _plain(row["forecast_low"]),
                     "latest_90": _plain(row["forecast_high"]), "plan_ends": _plain(row["last_planned"]),
                     "no_forecast_because": row["forecast_note"] or None},
    }
    if with_impact:
        imp = rollout.impact_table(con, level, day)
        mine = imp[imp["region_id"] == region_id]
        out["impact"] = {row["kind"]: {k: _plain(v) for k, v in row.drop(labels=["name", "region_id", "kind"]).items()}
                         for _, row in mine.iterrows()}
    return out


def text(fig: dict) -> str:
    """The figures as lines for a person."""
    u, h, f = fig["upgrades"], fig["hotspots"], fig["forecast"]
    pct = "-" if u["pct_on_air"] is None else f"{u['pct_on_air']:.1f} %"
    lines = [f"{fig['name']} ({fig['region_id']}), as of {fig['as_of']}",
             f"  upgrades on air      {pct} ({u['on_air']:,} of {u['total']:,}), "
             f"{u['pct_change_pp']:+.1f} pp in 30 days",
             f"  late                 {u['late']:,}",
             f"  due on this day      {u['due']:,}",
             f"  planned ahead        {u['ahead']:,}",
             f"  blocked by transport {u['blocked']:,}",
             f"  hotspots, no plan    {fig['open_hotspots_no_plan']:,}",
             f"  hot cells (capacity) {h['hot_cells']:,}: "
             + ", ".join(f"{n:,} {s.replace('_', ' ')}" for s, n in h["by_status"].items() if n)]
    if h["relieved_share_of_complaints"] is not None:
        lines.append(f"  relieved share       {h['relieved_share_mean']:.1%} mean over the hot cells, "
                     f"{h['relieved_share_of_complaints']:.1%} of their complaints")
    lines.append(f"  forecast completion  {f['date']} (90 %: {f['earliest_90']} to {f['latest_90']}); plan ends "
                 f"{f['plan_ends']}" if f["date"] else f"  forecast completion  - ({f['no_forecast_because']})")
    for kind, imp in (fig.get("impact") or {}).items():
        if imp["pct"] is None:
            lines.append(f"  impact, {kind:<9} -  ({imp['note']})")
        else:
            lines.append(f"  impact, {kind:<9} {imp['pct']:+.0f} % (95 %: {imp['pct_low']:+.0f} to "
                         f"{imp['pct_high']:+.0f} %), {imp['n_treated']:,} relieved areas against "
                         f"{imp['n_control']:,} not yet relieved")
    return "\n".join(lines)
