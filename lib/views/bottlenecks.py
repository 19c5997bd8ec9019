"""For planners: what holds a map view's hotspots back, ranked by the pain that waits on it, and what moving one
transport link's or upgrade's date would change (a what-if, never saved).

The item a hotspot waits on is `lib.engine.linkage.waits_on` (the upgrade, or its transport link, whose date
sets the hotspot's relief date); pain is the map's (`maps.pain`: complaints in the window x days until relief).
A what-if recomputes the relief of the view's hotspots on a copy of the network with one date moved
(`network.with_plan`) and lists the hotspots whose relief changes.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from lib.engine import linkage, network, serving
from lib.views import maps

LINK_COLUMNS = ["link_id", "date", "hotspots", "complaints", "pain"]
UPGRADE_COLUMNS = ["upgrade_id", "site_id", "date", "hotspots", "complaints", "pain"]
CHANGE_COLUMNS = ["cell", "n", "status_before", "status_after", "relief_before", "relief_after", "pain_before",
                  "pain_after", "pain_change"]


def _waiting(con, p: maps.Params, hot: pd.DataFrame) -> pd.DataFrame:
    net = network.held(con)
    waits = linkage.waits_on(net, hot["cell"], p.resolution, p.as_of, serving.served_load(con, net))
    return waits.merge(hot[["cell", "n", "pain"]], on="cell")


def ranking(con, p: maps.Params, top: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transport links and the upgrades (those held back by no link) that the hotspots of the view `p`
    (`maps.view`: after its filters, pain-ranked) wait on, each with the hotspots, complaints and pain waiting on
    it, most pain first (ties by id); the `top` of each."""
    waits = _waiting(con, p, maps.view(con, p).hotspots)
    agg = dict(date=("date", "first"), hotspots=("cell", "size"), complaints=("n", "sum"), pain=("pain", "sum"))
    links = waits[waits["link_id"].notna()].groupby("link_id", as_index=False).agg(**agg)
    ups = waits[waits["link_id"].isna()].groupby(["upgrade_id", "site_id"], as_index=False).agg(**agg)
    links = links.sort_values(["pain", "link_id"], ascending=[False, True]).head(top).reset_index(drop=True)
    ups = ups.sort_values(["pain", "upgrade_id"], ascending=[False, True]).head(top).reset_index(drop=True)
    return links[LINK_COLUMNS], ups[UPGRADE_COLUMNS]


def what_if(con, p: maps.Params, planned: dt.date, link_id: str | None = None,
            upgrade_id: str | None = None) -> pd.DataFrame:
    """The hotspots of the view `p` whose relief changes when one link's planned completion or one upgrade's
    planned on-air date moves to `planned`: `CHANGE_COLUMNS`, the most pain saved first. Nothing is written."""
    hot = maps.view(con, p).hotspots
    held = network.held(con)
    moved = network.with_plan(held, planned, link_id, upgrade_id)
    after = linkage.relief_of(moved, hot["cell"], p.resolution, p.as_of, serving.served_load(con, held))
    after = maps.pain(hot[["cell", "n"]].merge(after, on="cell"), p.as_of).set_index("cell")
    before = hot.set_index("cell")
    both = before[["n", "status", "relief_date", "pain"]].join(
        after[["status", "relief_date", "pain"]].add_suffix("_after"), how="inner")
    was, now = pd.to_datetime(both["relief_date"]), pd.to_datetime(both["relief_date_after"])
    same_date = (was == now) | (was.isna() & now.isna())
    changed = (both["status"] != both["status_after"]) | ~same_date | (both["pain"] != both["pain_after"])
    out = both[changed].reset_index().rename(columns={
        "status": "status_before", "relief_date": "relief_before", "relief_date_after": "relief_after",
        "pain": "pain_before"})
    out["pain_change"] = out["pain_after"] - out["pain_before"]
    return out.sort_values(["pain_change", "cell"], ignore_index=True)[CHANGE_COLUMNS]
