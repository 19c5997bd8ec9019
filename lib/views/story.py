"""The story of one hotspot or site beside the map: complaints over time, what serves it, when it is relieved.

Every figure comes from the engine (`lib.engine.linkage`, `lib.engine.impact`, `lib.engine.asof`); this module only
gathers one object's rows, as of the slider's date: an actual date after `as_of` counts as
not yet happened, as everywhere in the engine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import h3
import ibis
import ibis.expr.types as ir
import pandas as pd
import plotly.graph_objects as go

from lib import cells, engine
from lib.engine import asof, hotspots, impact, linkage, network, serving

HISTORY_WEEKS = 52
"""Weeks of complaints the story chart shows before the slider's date (at least)."""

MILESTONES = ("permit", "installed", "on_air")
"""Upgrade milestones, each with a planned and an actual date."""

UPGRADE_COLUMNS = ["site_id", "upgrade_id", "kind", *[f"{m}_{w}" for m in MILESTONES for w in ("planned", "actual")],
                   "delay_days", "transport_link_id", "owner"]
LINK_COLUMNS = ["link_id", "kind", "state", "completion_planned", "completion_actual", "owner"]


@dataclass
class Impact:
    """Mean weekly complaints in the `weeks` weeks before and after the relief week of one hotspot."""

    relieved_on: dt.date
    before: float
    after: float
    weeks: int
    complete: bool  # the after window has ended by as_of

    @property
    def change(self) -> float:
        return self.after - self.before

    @property
    def pct_change(self) -> float | None:
        return None if self.before == 0 else 100 * self.change / self.before


@dataclass
class HotspotStory:
    """One hotspot cell as of a date."""

    cell: int
    res: int
    as_of: dt.date
    relief: dict  # linkage.relief's row: n_sites, n_upgrades, relief_date, status, blocking_link_id
    weekly: pd.DataFrame  # week, n
    sites: pd.DataFrame  # hotspot_sites rows: site_id, share (of its complaints the site carries), km, rank
    upgrades: pd.DataFrame  # UPGRADE_COLUMNS of the serving upgrades (not cancelled), nearest site first
    links: pd.DataFrame  # LINK_COLUMNS of the links those upgrades wait on, the blocking one first
    impact: Impact | None  # only once relieved


@dataclass
class SiteStory:
    """One site as of a date."""

    site_id: str
    as_of: dt.date
    site: dict  # site_id, lat, lon, status (asof.sites_as_of), name (its display name; empty when it has none)
    upgrades: pd.DataFrame  # UPGRADE_COLUMNS
    links: pd.DataFrame  # LINK_COLUMNS: the site's own link and those its upgrades wait on
    served: pd.DataFrame  # SERVED_COLUMNS: the cells it carries complaints of, its share, their relief
    weekly: pd.DataFrame  # week, n: complaints of `kind` a week in the cells it covers
    relief: dict  # relief_date (its upgrades' latest on-air date) and status ("relieved" when all are on air)


SERVED_COLUMNS = ["cell", "share", "km", "complaints", "status", "relief_date"]


def _as_of_dates(frame: pd.DataFrame, columns: list[str], as_of: dt.date) -> pd.DataFrame:
    """Dates as `datetime.date` (None when empty); an actual date after as_of becomes None."""
    for c in columns:
        d = pd.to_datetime(frame[c])
        if c.endswith("_actual"):
            d = d.where(d <= pd.Timestamp(as_of))
        frame[c] = engine.as_dates(d)
    return frame


def upgrades_expr(con, site_ids) -> ir.Table:
    """The upgrades (not cancelled) of some sites: UPGRADE_COLUMNS but delay_days; unexecuted."""
    u = engine.backend(con).table("upgrades")
    ids = [str(s) for s in site_ids]
    u = u.filter(u.site_id.isin(ids) if ids else ibis.literal(False))
    u = u.filter(u.status.isnull() | (u.status != "cancelled"))
    return u.select(*[c for c in UPGRADE_COLUMNS if c != "delay_days"])


def upgrades_of(con, site_ids, as_of: dt.date) -> pd.DataFrame:
    """The upgrades (not cancelled) of some sites with their milestones as of `as_of`: UPGRADE_COLUMNS.

    delay_days: on_air_actual - on_air_planned when on air; else as_of - on_air_planned when that
    has passed (overdue, still counting); else empty.
    """
    out = upgrades_expr(con, site_ids).execute()
    dates = [c for c in out.columns if c.endswith(("_planned", "_actual"))]
    out = _as_of_dates(out, dates, as_of)
    day = pd.Timestamp(as_of)
    planned, actual = pd.to_datetime(out["on_air_planned"]), pd.to_datetime(out["on_air_actual"])
    delay = (actual - planned).dt.days.where(actual.notna(), (day - planned).dt.days.where(planned < day))
    out["delay_days"] = delay.astype("Int64")
    return out[UPGRADE_COLUMNS].sort_values(["site_id", "upgrade_id"], ignore_index=True)


def links_expr(con, link_ids) -> ir.Table:
    """Some transport links: link_id, kind, completion_planned, completion_actual, owner; unexecuted."""
    ids = sorted({str(i) for i in link_ids if i is not None and not pd.isna(i)})
    link = engine.backend(con).table("transport_links")
    link = link.filter(link.link_id.isin(ids) if ids else ibis.literal(False))
    return link.select("link_id", "kind", "completion_planned", "completion_actual", "owner")


def links_of(con, link_ids, as_of: dt.date) -> pd.DataFrame:
    """Transport links with their state as of `as_of` (`asof.links_as_of` rules): LINK_COLUMNS."""
    out = links_expr(con, link_ids).execute()
    states = asof.links_as_of(con, as_of).set_index("link_id")["state"]
    out["state"] = out["link_id"].map(states)
    out = _as_of_dates(out, ["completion_planned", "completion_actual"], as_of)
    return out[LINK_COLUMNS].sort_values("link_id", ignore_index=True)


def link(con, link_id: str, as_of: dt.date) -> pd.DataFrame:
    """One transport link's row of `links_of` (empty when there is no such link)."""
    return links_of(con, [link_id], as_of)


def hotspot_impact(weekly: pd.DataFrame, relief: dict, as_of: dt.date, weeks: int = impact.WEEKS) -> Impact | None:
    """Before/after means of one relieved hotspot's weekly complaints, on `impact.events`' windows."""
    if relief.get("status") != "relieved" or relief.get("relief_date") is None:
        return None
    ev = impact.events(pd.DataFrame([{"cell": 0, "relief_date": relief["relief_date"], "status": "relieved"}]),
                       weeks, as_of).iloc[0]
    w = pd.to_datetime(weekly["week"])
    before = weekly.loc[(w >= ev["before_start"]) & (w < ev["w0"]), "n"].sum() / weeks
    after = weekly.loc[(w > ev["w0"]) & (w < ev["after_end"]), "n"].sum() / weeks
    return Impact(relief["relief_date"], float(before), float(after), weeks, bool(ev["complete"]))


def hotspot(con, cell: int, res: int, as_of: dt.date, kind: str = "capacity", channels=None,
            weeks: int = impact.WEEKS) -> HotspotStory:
    """The story of hotspot `cell` (at `res`) as of `as_of`, counting complaints of `kind` and `channels`."""
    rel = linkage.relief(con, [cell], res, as_of)
    row = rel.iloc[0].to_dict() if len(rel) else {"status": "no_upgrade_planned", "relief_date": None}
    start = impact.week_start(as_of) - dt.timedelta(weeks=HISTORY_WEEKS)
    if row.get("status") == "relieved" and row.get("relief_date"):
        start = min(start, impact.week_start(row["relief_date"]) - dt.timedelta(weeks=weeks))
    weekly = impact.weekly_hotspot_complaints(con, [cell], res, start, as_of + dt.timedelta(days=1), kind,
                                              channels)[["week", "n"]]
    sites = linkage.hotspot_sites(con, [cell], res)[["site_id", "share", "km", "rank"]]
    ups = upgrades_of(con, sites["site_id"], as_of)
    ups = ups.assign(_r=ups["site_id"].map(dict(zip(sites["site_id"], sites["rank"], strict=True))))
    ups = ups.sort_values(["_r", "upgrade_id"], ignore_index=True).drop(columns="_r")
    ups.insert(1, "share", ups["site_id"].map(dict(zip(sites["site_id"], sites["share"], strict=True))))
    links = links_of(con, ups["transport_link_id"], as_of)
    blocking = row.get("blocking_link_id")
    if blocking:
        links = links.assign(_b=links["link_id"] != blocking).sort_values(["_b", "link_id"], ignore_index=True)
        links = links.drop(columns="_b")
    return HotspotStory(int(cell), res, as_of, row, weekly, sites, ups, links,
                        hotspot_impact(weekly, row, as_of, weeks))


def site(con, site_id: str, as_of: dt.date, kind: str = "capacity", channels=None,
         window_days: int = asof.WINDOW_DAYS) -> SiteStory | None:
    """The story of one site as of `as_of`; None when there is no such site.

    Besides its upgrades and links: the cells at `linkage.DEFAULT_RES` whose complaints it carries a share of
    (`lib.engine.serving`; the largest share first) with their complaints of `kind` in the `window_days` days
    up to `as_of` and their relief, and the weekly complaints in all of them, against its own on-air date."""
    s = asof.sites_as_of(con, as_of)
    s = s[s["site_id"] == str(site_id)]
    if s.empty:
        return None
    ups = upgrades_of(con, [site_id], as_of)
    t = engine.backend(con).table("sites")
    own = t.filter(t.site_id == ibis.literal(str(site_id))).select("transport_link_id", "site_type",
                                                                   "name").execute()
    links = links_of(con, [*own["transport_link_id"], *ups["transport_link_id"]], as_of)
    res = linkage.DEFAULT_RES
    carried = carried_cells(con, str(site_id), res)
    start, end = asof.window(as_of, window_days)
    counts = hotspots.cell_counts(con, res, start, end, hotspots.KINDS[kind], channels)
    served = carried.merge(counts.rename(columns={"n": "complaints"}), on="cell", how="left").fillna(
        {"complaints": 0})
    served = served.merge(linkage.relief(con, served[["cell"]], res, as_of)[["cell", "status", "relief_date"]],
                          on="cell", how="left")
    served = served.astype({"complaints": "int64"}).sort_values(["share", "complaints", "cell"],
                                                                ascending=[False, False, True], ignore_index=True)
    history = impact.week_start(as_of) - dt.timedelta(weeks=HISTORY_WEEKS)
    weekly = impact.weekly_hotspot_complaints(con, served[["cell"]], res, history, as_of + dt.timedelta(days=1),
                                              kind, channels)
    weekly = weekly.groupby("week", as_index=False)["n"].sum()[["week", "n"]]
    days = [a if a is not None else p for p, a in zip(ups["on_air_planned"], ups["on_air_actual"], strict=True)]
    done = len(ups) > 0 and all(a is not None for a in ups["on_air_actual"])
    relief = {"relief_date": max((d for d in days if d is not None), default=None),
              "status": "relieved" if done else ("no_upgrade_planned" if ups.empty else "planned")}
    served["cell"] = [h3.int_to_str(int(c)) for c in served["cell"]]
    name = own["name"].iloc[0] if len(own) and pd.notna(own["name"].iloc[0]) else ""
    return SiteStory(str(site_id), as_of, s.iloc[0].to_dict() | {"name": str(name)}, ups, links,
                     served[SERVED_COLUMNS], weekly, relief)


def carried_cells(con, site_id: str, res: int) -> pd.DataFrame:
    """The cells at `res` whose complaints a site carries a share of: cell, share (of the cell's complaint
    weight), km (from the cell's centre)."""
    net = network.held(con)
    ids = net.sites["site_id"].to_numpy()
    number = int(pd.Index(ids).get_indexer([site_id])[0])
    load, servers = serving.served_load(con, net)
    places = serving.site_places(servers, number)[0] if number >= 0 else []
    candidates = pd.unique(cells.parent(load.cells9[places], res)) if len(places) else []
    out = linkage.hotspot_sites(con, candidates, res)
    return out.loc[out["site_id"] == site_id, ["cell", "share", "km"]].reset_index(drop=True)


def weekly_figure(s: HotspotStory | SiteStory) -> go.Figure:
    """Weekly complaints of a hotspot (or of the cells a site serves), the relief date marked (dashed:
    planned; solid: relieved)."""
    fig = go.Figure(go.Scatter(x=pd.to_datetime(s.weekly["week"]), y=s.weekly["n"], mode="lines",
                               line=dict(color="#5b6b7f", width=2), name="complaints a week",
                               hovertemplate="week of %{x|%Y-%m-%d}: %{y}<extra></extra>"))
    day = s.relief.get("relief_date")
    if day is not None:
        done = s.relief.get("status") == "relieved"
        x = pd.Timestamp(day)
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper",
                      line=dict(color="#1a9641" if done else "#d7191c", dash="solid" if done else "dash"))
        fig.add_annotation(x=x, y=1, yref="paper", showarrow=False, yanchor="bottom",
                           text=f"{'relieved' if done else 'relief planned'} {day}")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="complaints a week",
                      showlegend=False)
    return fig
