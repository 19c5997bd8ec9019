"""The network as it stood on a date, for the map's time slider.

Every rule reads dates only: an actual date after `as_of` counts as not yet happened,
so any past day can be replayed from today's store. Sites and links are Ibis
expressions on the store (portable; `*_expr` gives them unexecuted); hotspots reuse
`lib.engine.hotspots.hotspots` and `lib.engine.linkage.relief`.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import engine
from lib.engine import hotspots, linkage, network, rules, stores

SITE_STATUSES = ("no_upgrade", "planned", "permit", "installed", "on_air", "late")
"""Site statuses of `sites_as_of` (see there for the rules)."""

STAGES = ("planned", "permit", "installed", "on_air")
"""Milestones of an upgrade in order; an upgrade's stage is the latest one reached."""

LINK_STATES = ("no_expansion", "planned", "late", "done")
"""Transport link states of `links_as_of`."""

WINDOW_DAYS = 90
"""Default length of the hotspot window ending on the slider's date."""

LINK_STATES_SORTED = tuple(sorted(LINK_STATES))

SITE_COLUMNS = ["site_id", "lat", "lon", "cell", "status"]
LINK_COLUMNS = ["link_id", "a_lat", "a_lon", "b_lat", "b_lon", "kind", "state"]


def _date(as_of) -> ir.DateScalar:
    """`engine.date_value` of `as_of`, today when None."""
    return engine.date_value(as_of if isinstance(as_of, ir.Expr) else _as_of(as_of))


def _as_of(as_of) -> dt.date:
    return dt.date.today() if as_of is None else pd.Timestamp(as_of).date()


def sites_as_of_expr(con, as_of=None) -> ir.Table:
    """The unexecuted expression of `sites_as_of` (on engines other than the DuckDB store)."""
    b = engine.backend(con)
    d = _date(as_of)
    s, u = b.table("sites"), b.table("upgrades")
    u = u.filter(u.status.isnull() | (u.status != "cancelled"))
    per = u.group_by("site_id").agg(**{k: getattr(v, f)() for (k, v), f in zip(
        rules.site_stage(u, d, rules.IbisOps).items(), ("min", "max"), strict=True)})
    j = s.left_join(per, s.site_id == per.site_id)
    status = ibis.cases((per.stage.isnull(), "no_upgrade"), (per.late == 1, "late"),
                        *[(per.stage == i, name) for i, name in enumerate(STAGES)])
    return j.select(s.site_id, s.lat, s.lon, s.cell, status=status).order_by("site_id")


def sites_as_of(con, as_of=None) -> pd.DataFrame:
    """Every site with the state of its upgrades on `as_of` (default today): site_id, lat, lon, cell, status.

    Cancelled upgrades are left out. An upgrade's stage is its latest milestone whose
    ACTUAL date is <= as_of (on_air, installed, permit; none reached: planned), checked
    from on_air down, so a missing earlier date does not hold a later one back. It is
    late when it is not on air by as_of and its on_air_planned < as_of (`rules.site_stage`).

    status of a site: no_upgrade (none, or all cancelled); late when any upgrade is
    late; else the least advanced stage among its upgrades (a site is on_air only when
    every upgrade is).

    On the DuckDB store the rules run in numpy over the network held per store content
    (`lib.engine.network`); elsewhere as `sites_as_of_expr`.
    """
    if not stores.holds(con):
        out = engine.run_dated(con, ("asof.sites",), _as_of(as_of), lambda d: sites_as_of_expr(con, d))
        return out.astype({"site_id": "str", "status": "str"})[SITE_COLUMNS].reset_index(drop=True)
    return sites_of(network.held(con), as_of)


def sites_of(net: network.Network, as_of=None) -> pd.DataFrame:
    """`sites_as_of` over a held network: the rules in numpy."""
    flags = rules.site_stage(net.u, rules.day(_as_of(as_of)), rules.NumpyOps)
    per = rules.grouped(net.site, len(net.sites))
    n_up = np.bincount(net.site, minlength=len(net.sites))
    stage = per(np.minimum, flags["stage"].astype("int64"), 0)
    late = per(np.maximum, flags["late"].astype("int64"), 0)
    code = np.where(n_up == 0, 0, np.where(late == 1, 1, stage + 2))
    out = net.sites[["site_id", "lat", "lon", "cell"]].copy()
    out["status"] = rules.named(code, ("no_upgrade", "late", *STAGES))
    return out[SITE_COLUMNS]


def links_as_of_expr(con, as_of=None) -> ir.Table:
    """The unexecuted expression of `links_as_of` (on engines other than the DuckDB store)."""
    link = engine.backend(con).table("transport_links")
    return link.select(*LINK_COLUMNS[:-1], state=rules.link_state(link, _date(as_of), rules.IbisOps)).order_by(
        "link_id")


def links_as_of(con, as_of=None) -> pd.DataFrame:
    """Every transport link with its expansion state on `as_of` (default today).

    state: done when completion_actual <= as_of; no_expansion when neither a planned nor
    an actual completion is given; late when not done and completion_planned < as_of;
    else planned (also when only a completion after as_of is known) (`rules.link_state`). Columns
    `LINK_COLUMNS`; endpoints are empty for links given as a path only. On the DuckDB store the rule runs in
    numpy over the held network (`lib.engine.network`), elsewhere as `links_as_of_expr`.
    """
    if not stores.holds(con):
        out = engine.run_dated(con, ("asof.links",), _as_of(as_of), lambda d: links_as_of_expr(con, d))
        return out.astype({"link_id": "str", "kind": "str", "state": "str"})[LINK_COLUMNS].reset_index(drop=True)
    return links_of(network.held(con), as_of)


def links_of(net: network.Network, as_of=None) -> pd.DataFrame:
    """`links_as_of` over a held network: the rule in numpy."""
    state = np.broadcast_to(rules.link_state(net.link_dates, rules.day(_as_of(as_of)), rules.NumpyOps),
                            len(net.links))
    out = net.links[LINK_COLUMNS[:-1]].copy()
    out["state"] = rules.named(np.searchsorted(LINK_STATES_SORTED, state), LINK_STATES_SORTED)
    return out[LINK_COLUMNS]


def window(as_of=None, window_days: int = WINDOW_DAYS) -> tuple[dt.date, dt.date]:
    """[start, end) of the `window_days` days ending with `as_of` (inclusive)."""
    if window_days < 1:
        raise ValueError(f"window_days must be 1 or more, not {window_days}")
    end = _as_of(as_of) + dt.timedelta(days=1)
    return end - dt.timedelta(days=window_days), end


def hotspots_as_of(con, as_of=None, window_days: int = WINDOW_DAYS, res: int = hotspots.DEFAULT_RES,
                   kind: str = "capacity", channels=None) -> pd.DataFrame:
    """Hotspots of the `window_days` days ending with `as_of`, with their relief as of that day.

    The cells `lib.engine.hotspots.hotspots` returns for complaints received in `window` (every
    cell with complaints, and significant hot cells; hottest first), joined with
    `lib.engine.linkage.relief` as of `as_of`: cell, n, z, p, significant, hot, n_sites,
    n_upgrades, relief_date, status, blocking_link_id. `channels` (None: all) counts the
    complaints of those channels only.
    """
    day = _as_of(as_of)
    start, end = window(day, window_days)
    hot = hotspots.hotspots(con, res, start, end, kind, channels=channels)
    rel = linkage.relief(con, hot[["cell"]], res, day)
    return hot.merge(rel, on="cell", how="left")
