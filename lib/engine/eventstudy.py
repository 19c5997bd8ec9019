"""The impact of upgrades on complaints, with its uncertainty: a stacked event study of sites' serving areas.

Unit: a site's best-server area, the places (resolution-9 cells) whose best server it is (`lib.engine.serving`:
the nearest site within reach). Outcome: the complaints of one kind received there per calendar week (weeks
start on Monday); capacity and coverage complaints are estimated apart (an upgrade adds capacity: coverage
complaints are the check that should not move). Event: the day the site is relieved (every upgrade not
cancelled on air, with the transport link it waits on done: `lib.engine.rules`), in its event week g.

Estimator: a stacked event study with clean, not-yet-treated controls (Cengiz, Dube, Lindner & Zipperer 2019,
QJE; see Baker, Larcker & Wang 2022, JFE, on staggered designs, and Callaway & Sant'Anna 2021, J. Econometrics),
on the ratio scale of a Poisson difference in differences (Wooldridge 2023, Econometrics Journal), so that a
trend common to all areas in proportion to their complaints (the growth of the campaign, a season) cancels
out whatever an area's level. For each cohort g: the treated are the sites relieved in week g whose `WEEKS`
weeks after are over by the date; the controls are the sites in the programme (with an upgrade not cancelled)
of the same region not relieved by the end of week g + `WEEKS`. Windows: weeks g-WEEKS .. g-1 before and
g+1 .. g+WEEKS after (the event week is left out). The treated's complaints after, had they not been relieved,
are their complaints before times the controls' after / before of the same weeks; the effect in percent is
100 x (seen - expected) / expected summed over the cohorts, and in complaints per area and week
(seen - expected) / (treated x WEEKS).

Uncertainty: a cluster bootstrap over units (each site redrawn with a Poisson(1) weight, `DRAWS` draws from a
fixed seed, so the same data give the same interval), the interval the central `CONFIDENCE` share of the
draws. With fewer than `MIN_TREATED` treated areas the figure is not given, with the reason.

Speed: the weekly complaints per site are built once per import and network (from the complaints held in
memory, about a pass over them per kind); a new date then costs the rules per site and a few matrix products (the
bootstrap's weights are drawn once per number of units, `bootstrap_weights`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from lib import cells, engine
from lib.engine import heldcounts, hotspots, impact, network, rules, serving, stores
from lib.ingest import schema

ALL = "ALL"
KINDS = ("capacity", "coverage")
WEEKS = 8
"""Weeks before and after the event week."""
MIN_TREATED = 30
"""Fewer treated areas than this: too few to say."""
MIN_BEFORE = 100
"""Fewer complaints than this in the treated areas before relief: too few to say (a percentage of a handful
of complaints swings with each one)."""
DRAWS = 199
CONFIDENCE = 0.95
SEED = 2_026_12
EPOCH = np.datetime64("1970-01-05", "D")
"""A Monday: week numbers count from it."""
_WEEK_US = 7 * 86_400 * 1_000_000

COLUMNS = ["region_id", "kind", "n_treated", "n_control", "before", "effect", "effect_low", "effect_high", "pct",
           "pct_low", "pct_high", "note"]


def week_of(day) -> int:
    """The number of the calendar week (from Monday) holding `day`, counted from `EPOCH`."""
    return int((np.datetime64(pd.Timestamp(day).date(), "D") - EPOCH).astype("int64") // 7)


def too_few(n: int) -> str:
    return f"too few relieved areas to say ({n}; at least {MIN_TREATED} with {WEEKS} weeks after relief)"


def too_quiet(n: float) -> str:
    return f"too few complaints before relief to say ({n:.0f}; at least {MIN_BEFORE})"


@dataclass(frozen=True)
class Outcome:
    """Complaints of one kind per site (rows: the network's site numbers) and calendar week (columns from
    `first_week` on), as prefix sums along the weeks: prefix[:, j] = complaints in the weeks before j."""

    first_week: int
    prefix: np.ndarray

    @property
    def weeks(self) -> int:
        return self.prefix.shape[1] - 1


def _best_server(servers: serving.Servers, n_places: int) -> np.ndarray:
    """Each place's best server (the first, nearest, of its servers): a site number, -1 where none reaches."""
    out = np.full(n_places, -1, dtype="int64")
    first = np.r_[True, servers.place[1:] != servers.place[:-1]] if servers.place.size else np.zeros(0, bool)
    out[servers.place[first]] = servers.site[first]
    return out


def _from_counts(n_sites: int, site: np.ndarray, week: np.ndarray, n: np.ndarray) -> Outcome:
    if site.size == 0:
        return Outcome(0, np.zeros((n_sites, 1)))
    first, last = int(week.min()), int(week.max())
    width = last - first + 1
    counts = np.bincount(site * width + (week - first), weights=n, minlength=n_sites * width)
    prefix = np.zeros((n_sites, width + 1))
    np.cumsum(counts.reshape(n_sites, width), axis=1, out=prefix[:, 1:])
    prefix.setflags(write=False)
    return Outcome(first, prefix)


def _held_outcome(held: heldcounts.Held, best: np.ndarray, n_sites: int, kind: str) -> Outcome:
    epoch_us = int(EPOCH.astype("datetime64[us]").astype("int64"))
    sites, weeks = [], []
    for category in hotspots.KINDS[kind]:
        i = schema.CATEGORIES.index(category)
        a, b = held.starts[i], held.starts[i + 1]
        site = best[held.cell[a:b]]
        served = site >= 0
        sites.append(site[served])
        weeks.append((held.at[a:b][served] - epoch_us) // _WEEK_US)
    site, week = np.concatenate(sites), np.concatenate(weeks)
    return _from_counts(n_sites, site, week, np.ones(site.size))


def _sql_outcome(con, best: np.ndarray, cells9: np.ndarray, n_sites: int, kind: str) -> Outcome:
    """The same from weekly counts per resolution-9 cell in SQL (engines without held complaints)."""
    weekly = impact.complaint_weeks_expr(con, cells.CELL_RES, kind=kind).execute()
    place = np.searchsorted(cells9, weekly["cell"].to_numpy(dtype="int64"))
    site = best[np.minimum(place, cells9.size - 1)]
    ok = (site >= 0) & (cells9[np.minimum(place, cells9.size - 1)] == weekly["cell"].to_numpy(dtype="int64"))
    week = ((pd.to_datetime(weekly["week"]).to_numpy().astype("datetime64[D]") - EPOCH).astype("int64") // 7)
    return _from_counts(n_sites, site[ok], week[ok], weekly["n"].to_numpy(dtype="float64")[ok])


def outcome(con, net: network.Network, kind: str) -> Outcome:
    """The weekly complaints of `kind` in each site's best-server area, built once per complaints and network."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose one of {list(KINDS)})")
    load, servers = serving.served_load(con, net)
    n_sites = net.cell.size
    if not stores.holds(con):
        return _sql_outcome(con, _best_server(servers, load.cells9.size), load.cells9, n_sites, kind)
    held = heldcounts.held(con)
    return serving.with_network(held, net, f"eventstudy.outcome.{kind}", lambda: _held_outcome(
        held, _best_server(servers, load.cells9.size), n_sites, kind))


def relief_weeks(net: network.Network, as_of: dt.date) -> np.ndarray:
    """Each site's relief week as of `as_of` (float): inf where it is in the programme (has upgrades not
    cancelled) but not relieved by then, NaN where it has no upgrade (outside the programme: no unit)."""
    flags = rules.evaluate(net.u, as_of)
    state = rules.per_site(net.site, net.cell.size, flags, net.link)
    relieved = (state["n_upgrades"] > 0) & (state["all_done"] == 1)
    day = state["relief_date"].astype("datetime64[D]")
    out = np.where(state["n_upgrades"] > 0, np.inf, np.nan)
    out[relieved] = ((day[relieved] - EPOCH).astype("int64") // 7).astype("float64")
    return out


@lru_cache(maxsize=128)
def bootstrap_weights(n: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """The weights of `n` units: a row of ones (the estimate itself), then `draws` rows of Poisson(1) draws from
    `seed`; as uint8 (a Poisson(1) draw above 255 does not occur) and read only. Kept by size: they depend on
    nothing else, and drawing them was most of a new date's cost (0.2 s for 30,000 areas, per region and kind)."""
    w = np.vstack([np.ones(n, dtype="int64"), np.random.default_rng(seed).poisson(1.0, (draws, n))])
    if w.max(initial=0) > np.iinfo(np.uint8).max:
        raise OverflowError("a bootstrap weight above 255")
    w = w.astype(np.uint8)
    w.setflags(write=False)
    return w


def estimate(out: Outcome, relief_week: np.ndarray, units: np.ndarray, now_week: int, weeks: int = WEEKS,
             draws: int = DRAWS, seed: int = SEED) -> dict:
    """The effect on the `units` (site numbers; those outside the programme are left out) as of the week
    `now_week`: n_treated, n_control, before, effect (complaints per area and week) and pct with their
    intervals, or a note when there are too few (see the module's docstring)."""
    empty = {"n_treated": 0, "n_control": 0, "before": None, "effect": None, "effect_low": None,
             "effect_high": None, "pct": None, "pct_low": None, "pct_high": None}
    units = units[~np.isnan(relief_week[units])]  # the sites in the programme
    pre = out.prefix[units]
    g = relief_week[units] - out.first_week  # the event week as a column (inf: not relieved)
    finite = np.isfinite(g)
    gi = np.where(finite, g, -1).astype("int64")
    treated = finite & (gi - weeks >= 0) & (gi + weeks + 1 <= out.weeks) & (gi + out.first_week + weeks < now_week)
    cohorts = np.unique(gi[treated])
    # each unit's complaints in each cohort's windows, and whether it may stand as that cohort's control
    before_c = pre[:, cohorts] - pre[:, cohorts - weeks]  # units x cohorts
    after_c = pre[:, cohorts + weeks + 1] - pre[:, cohorts + 1]
    eligible = ~finite[:, None] | (g[:, None] > (cohorts + weeks)[None, :])
    usable = eligible.any(axis=0) & ((eligible * before_c).sum(axis=0) > 0)  # a cohort needs a control base
    treated &= np.isin(gi, cohorts[usable])
    if treated.sum() < MIN_TREATED:
        return empty | {"n_treated": int(treated.sum()), "note": too_few(int(treated.sum()))}
    cohorts, before_c, after_c, eligible = (cohorts[usable], before_c[:, usable], after_c[:, usable],
                                            eligible[:, usable].astype("float64"))
    t = np.flatnonzero(treated)
    j = np.searchsorted(cohorts, gi[t])
    member = np.zeros((t.size, cohorts.size))
    member[np.arange(t.size), j] = 1.0
    weights = bootstrap_weights(units.size, draws, seed).astype("float64")
    wt = weights[:, t]
    a_t, b_t = wt @ (after_c[t, j][:, None] * member), wt @ (before_c[t, j][:, None] * member)  # draws x cohorts
    a_c, b_c = weights @ (eligible * after_c), weights @ (eligible * before_c)
    growth = np.divide(a_c, b_c, out=np.full(a_c.shape, np.nan), where=b_c > 0)  # the controls' after / before
    expected = np.nansum(b_t * growth, axis=1)  # the treated's complaints after, had they not been relieved
    seen = a_t.sum(axis=1)
    n_t = wt.sum(axis=1)
    pct = np.divide(100 * (seen - expected), expected, out=np.full(seen.size, np.nan), where=expected > 0)
    effect = np.divide(seen - expected, n_t * weeks, out=np.full(seen.size, np.nan), where=n_t > 0)
    base = np.divide(b_t.sum(axis=1), n_t * weeks, out=np.full(seen.size, np.nan), where=n_t > 0)
    if b_t[0].sum() < MIN_BEFORE:
        return empty | {"n_treated": int(t.size), "note": too_quiet(float(b_t[0].sum()))}
    tail = 100 * (1 - CONFIDENCE) / 2

    def interval(x):
        finite_draws = x[1:][np.isfinite(x[1:])]
        return np.percentile(finite_draws, [tail, 100 - tail]) if finite_draws.size else (np.nan, np.nan)

    (e_lo, e_hi), (p_lo, p_hi) = interval(effect), interval(pct)
    number = lambda x: float(x) if x is not None and np.isfinite(x) else None  # noqa: E731
    return {"n_treated": int(t.size), "n_control": int((eligible.sum(axis=1) > 0).sum()), "before": number(base[0]),
            "effect": number(effect[0]), "effect_low": number(e_lo), "effect_high": number(e_hi),
            "pct": number(pct[0]), "pct_low": number(p_lo), "pct_high": number(p_hi), "note": ""}


def _site_regions(con, net: network.Network, level: str) -> tuple[np.ndarray, np.ndarray]:
    """(site number, region_id) of every site and region of `level` holding its cell (a border cell: both)."""
    def build():
        b = engine.backend(con)
        s, rc, r = b.table("sites"), b.table("region_cells"), b.table("regions")
        rows = s.filter(s.cell > 0).select("site_id", parent=engine.parent(s.cell, cells.REGION_RES))
        j = rows.join(rc, rows.parent == rc.cell).join(r.filter(r.level == level), "region_id")
        got = b.execute(j.select("site_id", "region_id"))
        number = pd.Index(net.sites["site_id"]).get_indexer(got["site_id"].astype("str"))
        keep = number >= 0
        return number[keep].astype("int64"), got["region_id"].astype("str").to_numpy()[keep]
    return net.once(("eventstudy.site_regions", level), build)


def table(con, level: str = "state", as_of=None, kinds=KINDS) -> pd.DataFrame:
    """The effect per region of `level` (and ALL, first) and kind as of `as_of` (default today): `COLUMNS`."""
    day = pd.Timestamp(as_of or dt.date.today()).date()
    net = network.held(con)
    weeks_relieved, now = relief_weeks(net, day), week_of(day)
    number, region = _site_regions(con, net, level)
    groups = {ALL: np.arange(net.cell.size)} | {
        rid: np.unique(number[region == rid]) for rid in sorted(set(region))}
    rows = []
    for kind in kinds:
        out = outcome(con, net, kind)
        for rid, units in groups.items():
            rows.append({"region_id": rid, "kind": kind} | estimate(out, weeks_relieved, units, now))
    return pd.DataFrame(rows, columns=COLUMNS)
