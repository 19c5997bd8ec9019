"""What serves a hotspot, how much of it is relieved, and when it will be.

Serving (`lib.engine.serving`): each place (resolution-9 cell) with complaints is served by its nearest few
sites within reach, each carrying a share of its traffic. A hotspot's complaint weight on a site is the sum,
over the hotspot's places, of the place's complaints times the site's share there (`hotspot_sites`).

Relief (`relief`): the per-upgrade rules (`lib.engine.rules`, written once for Ibis and numpy) as of a date
tell, per site, whether all of its upgrades are on air with their transport in place. A hotspot's relieved
share is the share of its complaint weight on such sites; it is relieved at `RELIEVED_SHARE`, and its
expected relief date is the day the plan brings the share there. `upgrade_flags_expr` is the same rules as
an Ibis expression over the store (the rollout page lists late and blocked upgrades from it; it compiles for
DuckDB, PostgreSQL, Trino and Spark).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import cells, engine
from lib.engine import network, rules, serving

DEFAULT_RES = 8
"""Resolution of hotspot cells when none is given (edge about 461 m)."""

RELIEVED_SHARE = 0.8
"""A hotspot is relieved when at least this share of its complaint weight lies on relieved sites."""

PARTLY_SHARE = 0.25
"""A hotspot not relieved is partly relieved from this share on (unless late or blocked)."""

STATUSES = ("relieved", "partly_relieved", "on_track", "late", "blocked_by_transport", "no_upgrade_planned")
"""Relief statuses of a hotspot (see `relief` for the rules), the furthest along first."""

_SITES_COLUMNS = ["cell", "site_id", "share", "km", "rank"]
_RELIEF_COLUMNS = ["cell", "n_sites", "n_upgrades", "relief_share", "relief_date", "status", "blocking_link_id"]
_NEVER = np.iinfo("int64").max


def _hotspot_frame(hotspot_cells) -> pd.DataFrame:
    if isinstance(hotspot_cells, pd.DataFrame):
        if "cell" not in hotspot_cells.columns:
            raise ValueError("hotspot_cells needs a column 'cell'")
        hotspot_cells = hotspot_cells["cell"]
    return pd.DataFrame({"cell": np.unique(np.asarray(hotspot_cells, dtype="int64"))})


def _weights(net: network.Network, hot: np.ndarray, res: int, served: tuple[serving.Load, serving.Servers]):
    """The complaint weight of each hotspot (position in `hot`) on each serving site: (hotspot, site, weight)
    summed per pair and sorted by hotspot, and each hotspot's total weight (served or not).

    A hotspot's places are the resolution-9 cells with complaints inside it (`res` their parent); a hotspot
    without any weighs 1 at its centre."""
    load, servers = served
    parents = cells.parent(load.cells9, res) if res != cells.CELL_RES else load.cells9  # sorted, as cells9
    lo, hi = np.searchsorted(parents, hot, "left"), np.searchsorted(parents, hot, "right")
    row, place = rules.spans(lo, hi)
    total = np.bincount(row, weights=load.n[place].astype("float64"), minlength=hot.size)
    s_lo = np.searchsorted(servers.place, place, "left")
    s_hi = np.searchsorted(servers.place, place, "right")
    pair_row, at = rules.spans(s_lo, s_hi)
    hotspot, site = row[pair_row], servers.site[at]
    weight = load.n[place[pair_row]] * servers.share[at]
    bare = np.flatnonzero((hi == lo) & cells.valid(hot))  # no complaint inside: the centre, weight 1
    if bare.size:
        own = serving.serve(net, hot[bare])
        hotspot, site = np.r_[hotspot, bare[own.place]], np.r_[site, own.site]
        weight = np.r_[weight, own.share]
        total[bare] = 1.0
    width = max(net.cell.size, 1)  # one key per (hotspot, site) pair
    uniq, inverse = np.unique(hotspot * width + site, return_inverse=True)
    w = np.bincount(inverse, weights=weight, minlength=uniq.size)
    return uniq // width, uniq % width, w, total


def hotspot_sites(con, hotspot_cells, res: int = DEFAULT_RES) -> pd.DataFrame:
    """The sites that carry each hotspot's complaints: (cell, site_id, share, km, rank).

    share is the site's part of the hotspot's complaint weight (the hotspot's shares sum to at most 1: the
    rest lies where no site reaches); km the distance from the hotspot's centre; rank 1 the largest share
    (ties: the nearer, then the site id). Cells no site serves have no rows."""
    net = network.held(con)
    hot = _hotspot_frame(hotspot_cells)["cell"].to_numpy()
    hotspot, site, w, total = _weights(net, hot, res, serving.served_load(con, net))
    if hot.size == 0 or site.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(_SITES_COLUMNS, ("int64", "str", "float64", "float64", "int64"), strict=True)})
    sites = net.sites.iloc[site]
    km = serving.km_between(*cells.cells_to_latlng(hot[hotspot]), sites["lat"].to_numpy(), sites["lon"].to_numpy())
    out = pd.DataFrame({"cell": hot[hotspot], "site_id": sites["site_id"].to_numpy(), "share": w / total[hotspot],
                        "km": km})
    out = out.sort_values(["cell", "share", "km", "site_id"], ascending=[True, False, True, True], ignore_index=True)
    out["rank"] = out.groupby("cell").cumcount().astype("int64") + 1
    return out.astype({"cell": "int64", "site_id": "str"})[_SITES_COLUMNS]


def upgrade_flags_expr(con, as_of: dt.date | None = None, site_ids: ir.Column | None = None) -> ir.Table:
    """Per not-cancelled upgrade, its state as of `as_of` (default today) by the rules of `relief`; unexecuted.

    Columns: upgrade_id, site_id, on_air_planned, link_id, up_done, up_date, link_done, link_date,
    ready, blocked, late, undated (flags are 1 or 0), own_date (the later of up_date and link_date).
    The rules are `lib.engine.rules` (written once for Ibis and numpy): `relief` runs them in numpy over the held
    network, and the rollout page lists the late and blocked upgrades from this expression.
    """
    d = engine.date_value(dt.date.today() if as_of is None else as_of)
    j = network.upgrade_inputs_expr(con, site_ids)
    one, two = rules.expr_stages(j, d)
    ups = j.select("upgrade_id", "site_id", "on_air_planned", "link_id", **one)
    return ups.mutate(**two(ups))


def relief(con: duckdb.DuckDBPyConnection, hotspot_cells, res: int = DEFAULT_RES,
           as_of: dt.date | None = None) -> pd.DataFrame:
    """How far each hotspot is relieved, and when it will be, as of `as_of` (default today).

    Returns (cell, n_sites, n_upgrades, relief_share, relief_date, status, blocking_link_id), one row per
    distinct hotspot cell, sorted by cell. The hotspot's complaint weight lies on its serving sites
    (`hotspot_sites`, the model of `lib.engine.serving`); n_sites counts them and n_upgrades their upgrades
    that are not cancelled.

    Per upgrade, as of `as_of` (an actual date after it counts as not yet happened, so the same call replays
    any past day): on air when on_air_actual <= as_of; its link done when it has none or completion_actual
    <= as_of; ready when installed, on air or due (on_air_planned <= as_of); blocked when ready, its link not
    done, and the link's date unknown, passed or after the upgrade's own on_air_planned; late when not on air
    and on_air_planned < as_of (`lib.engine.rules`; the one meaning of late, docs/figures.md).

    A site is relieved when it has upgrades and every one is on air with its link done; its relief date is
    the latest of its upgrades' dates and their links' dates (actual when done, else planned; unknown when a
    link not done has no planned completion).

    relief_share: the share of the hotspot's complaint weight on relieved sites (weight no site reaches
    counts, and is never relieved). relief_date: the first day on which the relieved share reaches
    `RELIEVED_SHARE`, by the sites' relief dates (past for a relieved hotspot); empty when the plan never
    gets there (too little weight on sites with upgrades, or a needed site's date unknown). The sites it
    needs are those not yet relieved whose relief date is on or before it (every site with upgrades not yet
    relieved, when it is empty).

    status, the first rule that holds:

    1. relieved: relief_share >= `RELIEVED_SHARE`;
    2. no_upgrade_planned: the sites with upgrades carry less than `RELIEVED_SHARE` of the weight;
    3. blocked_by_transport: a needed site has a blocked upgrade; blocking_link_id is the link of a blocked
       upgrade of a needed site with the latest date (unknown first), ties by link id;
    4. late: a needed site has a late upgrade;
    5. partly_relieved: relief_share >= `PARTLY_SHARE`;
    6. on_track: otherwise.
    """
    net = network.held(con)
    return relief_of(net, hotspot_cells, res, as_of, serving.served_load(con, net))


def relief_of(net: network.Network, hotspot_cells, res: int, as_of: dt.date | None,
              served: tuple[serving.Load, serving.Servers]) -> pd.DataFrame:
    """`relief` over a held network and the complaint load with its servers (`serving.served_load`)."""
    p = _prepared(net, hotspot_cells, res, as_of, served)
    return _relief_per_cell(net, p.hot, p.hotspot, p.site, p.w, p.total, p.state)


@dataclass(frozen=True)
class _Prepared:
    """What relief and `waits_on` start from: the hotspots, the upgrades' flags and the sites' state as of the
    date, and the (hotspot, site, weight) pairs with the hotspots' total weights (`_weights`)."""

    hot: np.ndarray
    flags: dict
    state: dict
    hotspot: np.ndarray
    site: np.ndarray
    w: np.ndarray
    total: np.ndarray


def _prepared(net: network.Network, hotspot_cells, res: int, as_of: dt.date | None,
              served: tuple[serving.Load, serving.Servers]) -> _Prepared:
    hot = _hotspot_frame(hotspot_cells)["cell"].to_numpy()
    flags = rules.evaluate(net.u, dt.date.today() if as_of is None else as_of)
    state = rules.per_site(net.site, net.cell.size, flags, net.link)
    return _Prepared(hot, flags, state, *_weights(net, hot, res, served))


@dataclass(frozen=True)
class _Plan:
    """Per (hotspot, site) pair: whether the site has upgrades and is relieved, its date key (`_NEVER`: no
    date), whether it is needed for the relief; per hotspot: the relieved share, the share with upgrades and
    the key of the day the share reaches `RELIEVED_SHARE` (`_NEVER`: never by the plan)."""

    has_up: np.ndarray
    relieved: np.ndarray
    key: np.ndarray
    needed: np.ndarray
    share: np.ndarray
    planned: np.ndarray
    reached: np.ndarray


def _plan(n: int, hotspot: np.ndarray, site: np.ndarray, w: np.ndarray, total: np.ndarray, state: dict) -> _Plan:
    """The relief's plan from the (hotspot, site, weight) pairs, the hotspots' total weights and the sites'
    `rules.per_site` state (see `relief`)."""
    has_up = state["n_upgrades"][site] > 0
    relieved = has_up & (state["all_done"][site] == 1)
    date = state["relief_date"][site].astype("datetime64[D]")
    known = has_up & ~np.isnat(date) & ~(state["any_undated"][site] == 1)
    key = np.where(known | relieved, date.view("int64"), _NEVER)
    safe_total = np.where(total > 0, total, 1.0)
    share = np.bincount(hotspot, weights=np.where(relieved, w, 0.0), minlength=n) / safe_total
    planned = np.bincount(hotspot, weights=np.where(has_up, w, 0.0), minlength=n) / safe_total
    # the day the relieved share reaches the threshold: the sites in date order, weights summed per hotspot
    order = np.lexsort((key, hotspot))
    h, k, cum = hotspot[order], key[order], np.cumsum(w[order])
    first = np.r_[True, h[1:] != h[:-1]] if h.size else np.zeros(0, dtype=bool)
    before = np.maximum.accumulate(np.where(first, cum - w[order], 0.0)) if h.size else cum
    reaches = (cum - before) >= RELIEVED_SHARE * safe_total[h] * (1 - 1e-12)
    reached = np.full(n, _NEVER, dtype="int64")
    np.minimum.at(reached, h[reaches & (k != _NEVER)], k[reaches & (k != _NEVER)])
    needed = ~relieved & has_up & (key <= reached[hotspot])
    return _Plan(has_up, relieved, key, needed, np.where(total > 0, share, 0.0), planned, reached)


def _relief_per_cell(net: network.Network, hot: np.ndarray, hotspot: np.ndarray, site: np.ndarray, w: np.ndarray,
                     total: np.ndarray, state: dict) -> pd.DataFrame:
    """`relief`'s rows from the (hotspot, site, weight) pairs sorted by hotspot, the hotspots' total weights
    and the sites' `rules.per_site` state."""
    n = hot.size
    plan = _plan(n, hotspot, site, w, total, state)
    needed, share, reached = plan.needed, plan.share, plan.reached
    any_of = lambda flag: np.bincount(hotspot, weights=(needed & (state[flag][site] == 1)).astype("float64"),  # noqa: E731
                                      minlength=n) > 0
    blocked, late = any_of("any_blocked"), any_of("any_late")
    link = state["pick_link_id"][site]
    pick = rules.pick(hotspot, needed & (link >= 0), state["pick_date"][site], link, n)["pick_link_id"]
    status = np.select([share >= RELIEVED_SHARE - 1e-12, plan.planned < RELIEVED_SHARE - 1e-12, blocked, late,
                        share >= PARTLY_SHARE - 1e-12],
                       ["relieved", "no_upgrade_planned", "blocked_by_transport", "late", "partly_relieved"],
                       "on_track")
    shown = (status == "blocked_by_transport") & (pick >= 0)
    blocking_id = np.full(n, None, dtype=object)
    blocking_id[shown] = net.link_ids[pick[shown]]
    days = np.where(reached == _NEVER, np.datetime64("NaT", "D").view("int64"), reached).view("datetime64[D]")
    dates = np.where(np.isnat(days), None, days.astype(object))
    n_up = np.bincount(hotspot, weights=state["n_upgrades"][site], minlength=n).astype("int64")
    out = pd.DataFrame({"cell": hot.astype("int64"), "n_sites": np.bincount(hotspot, minlength=n),
                        "n_upgrades": n_up, "relief_share": share, "relief_date": pd.Series(dates, dtype=object),
                        "status": status, "blocking_link_id": pd.Series(blocking_id, dtype=object)})
    return out.astype({"n_sites": "int64", "n_upgrades": "int64", "status": "str"})[_RELIEF_COLUMNS]


WAITS_COLUMNS = ["cell", "site_id", "upgrade_id", "link_id", "date"]


def waits_on(net: network.Network, hotspot_cells, res: int, as_of: dt.date,
             served: tuple[serving.Load, serving.Servers]) -> pd.DataFrame:
    """What each hotspot not yet relieved waits on: every upgrade not done (on air with its transport) of the
    sites its relief needs (`relief`: those not yet relieved whose date is on or before its relief date, or
    every site with upgrades when it has none), with the transport link it waits on when that is not done.
    `WAITS_COLUMNS`, one row per hotspot and upgrade; date: the link's when it holds the upgrade back (not done,
    and undated, overdue or due after the upgrade's own date), else the upgrade's (None when unknown)."""
    p = _prepared(net, hotspot_cells, res, as_of, served)
    hot, flags, hotspot, site = p.hot, p.flags, p.hotspot, p.site
    plan = _plan(hot.size, hotspot, site, p.w, p.total, p.state)
    pairs = np.flatnonzero(plan.needed)
    row, up = rules.spans(np.searchsorted(net.site, site[pairs], "left"),  # the sites' upgrades (sorted by site)
                          np.searchsorted(net.site, site[pairs], "right"))
    open_up = (flags["up_done"][up] == 0) | (flags["link_done"][up] == 0)
    row, up = row[open_up], up[open_up]
    holds = (flags["link_done"][up] == 0) & (flags["blocked"][up] == 1)
    date = np.where(holds, flags["link_date"][up], flags["up_date"][up]).astype("datetime64[D]")
    link = np.where(holds & (net.link[up] >= 0), net.link[up], -1)
    out = pd.DataFrame({
        "cell": hot[hotspot[pairs][row]].astype("int64"),
        "site_id": net.sites["site_id"].to_numpy()[site[pairs][row]],
        "upgrade_id": net.upgrade_id[up],
        "link_id": pd.Series(np.where(link >= 0, net.link_ids[np.maximum(link, 0)] if net.link_ids.size else None,
                                      None), dtype=object),
        "date": pd.Series(np.where(np.isnat(date), None, date.astype(object)), dtype=object)})
    return out[WAITS_COLUMNS].sort_values(["cell", "upgrade_id"], ignore_index=True)
