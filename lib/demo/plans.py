"""The demo's programme: transport links and their expansions, the upgrades of the sites with their milestones
planned and done (slips, stuck ones, cancellations), the first plan they were re-planned from, and the day
each site is relieved. Deterministic from the random streams `lib.demo.build_demo_files` hands in.
"""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd

from lib import cells
from lib.demo.complaints import COMPLAINTS_FROM, pick
from lib.demo.geo import Geography
from lib.ingest import schema

DEMO_AS_OF = datetime.date(2026, 11, 1)
"""The "today" of the demo data: no actual date is later, nothing planned later is done."""

PROGRAMME = (datetime.date(2025, 6, 1), datetime.date(2027, 6, 30))  # upgrade milestones
LINK_PLANS = (datetime.date(2025, 3, 1), datetime.date(2027, 12, 31))  # transport expansions
REPLANNED = 0.35  # share of the upgrades whose on-air date was moved since the first plan
REPLAN_SLIP_DAYS = (2.0, 30.0)  # gamma shape and scale of how far it moved (mean two months later)
TECH_CAPACITY = np.array([100, 150, 450, 1200, 1500])  # Mbit/s per technology

LINKS_PER_SITE, MAX_SITES_PER_LINK, AGGREGATION_MIN_POP = 2 / 3, 3, 200_000
LINK_KIND_P = np.array([[.6, .3, .1], [.5, .4, .1], [.45, .45, .1], [.35, .55, .1]])  # fibre, microwave, leased
LINK_TIERS = ((1000, 10000, 25000), (400, 1000, 2500, 10000), (100, 1000, 10000))  # Mbit/s steps per kind
LINK_SLIP_SCALE = np.array([55.0, 8.0, 25.0])  # days, gamma shape 2: fibre slips most
EXPANSION_P, HOT_EXPANSION_P, LINK_STUCK = 0.47, 0.85, 0.06

UPGRADES_PER_SITE = 2.0
UPGRADE_KIND_P = np.array([[.50, .27, .23, 0]])  # hardware_swap, new_carrier, 5g, new_site
DEPENDS_P = np.array([.85, .30, .90, .60])  # share needing the link's expansion, by kind
UPGRADE_STUCK, CANCELLED = 0.07, 0.015

ZONES = {"Nord": "01 02 03 04 13", "Ost": "11 12 14 15 16", "West": "05 06 07 10", "Süd": "08 09"}


def _day(d: datetime.date) -> np.datetime64:
    """A date as numpy day."""
    return np.datetime64(d, "D")


def _days(values) -> np.ndarray:
    """Whole days (floats rounded) as numpy timedelta."""
    return np.round(values).astype("int64").astype("timedelta64[D]")


def _between(rng: np.random.Generator, start, end, n: int) -> np.ndarray:
    """Uniform random days in [start, end] (arrays or scalars)."""
    span = (np.asarray(end, "datetime64[D]") - np.asarray(start, "datetime64[D]")).astype("int64")
    return np.asarray(start, "datetime64[D]") + _days(rng.random(n) * np.maximum(span, 0))


def ids(prefix: str, n: int, width: int) -> np.ndarray:
    """Ids like S000001."""
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


def _zone_owner(prefix: str, ags: np.ndarray) -> np.ndarray:
    """Responsible team by the state's zone."""
    owner = np.full(len(ags), f"{prefix} West", dtype=object)
    for zone, keys in ZONES.items():
        owner[np.isin(ags, keys.split())] = f"{prefix} {zone}"
    return owner


def links(geo: Geography, sites: pd.DataFrame, hot_sites: np.ndarray,
           rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Links of 1-3 neighbouring sites each, from a hub site to an aggregation point; and each site's link."""
    n, anchor = len(sites), sites.anchor.to_numpy()
    plat, plon, ppop = (geo.places[c].to_numpy() for c in ("lat", "lon", "population"))
    order = np.lexsort((np.arctan2(sites.lat - plat[anchor], sites.lon - plon[anchor]), anchor))
    start = np.r_[True, anchor[order][1:] != anchor[order][:-1]]
    free = np.nonzero(~start)[0]
    start[rng.choice(free, int(np.clip(round(n * LINKS_PER_SITE) - start.sum(), 0, len(free))), replace=False)] = True
    first = np.nonzero(start)[0]
    start |= (np.arange(n) - first[np.cumsum(start) - 1]) % MAX_SITES_PER_LINK == 0
    site_link = np.empty(n, dtype="int64")
    site_link[order] = np.cumsum(start) - 1
    hub = order[start]
    m = len(hub)
    hlat, hlon = sites.lat.to_numpy()[hub], sites.lon.to_numpy()[hub]
    glat, glon = cells.cells_to_latlng(cells.latlng_to_cells(hlat, hlon, 6))
    big = ppop[anchor[hub]] >= AGGREGATION_MIN_POP
    s, w, north, e = schema.COUNTRY_BBOX
    blat = np.clip(np.where(big, glat, plat[anchor[hub]]), s, north)
    blon = np.clip(np.where(big, glon, plon[anchor[hub]]), w, e)
    kind = pick(rng, sites["size"].to_numpy()[hub], LINK_KIND_P)
    tiers = [np.array(t) for t in LINK_TIERS]
    step = np.floor(rng.random(m) * np.array([len(t) - 1 for t in tiers])[kind]).astype(int)
    hot = np.isin(np.arange(m), site_link[hot_sites])
    expansion = rng.random(m) < np.where(hot, HOT_EXPANSION_P, EXPANSION_P)
    links = pd.DataFrame({
        "link_id": ids("L", m, 5), "kind": np.array(schema.LINK_KINDS)[kind], "a_lat": hlat, "a_lon": hlon,
        "b_lat": blat, "b_lon": blon,
        "capacity_before_mbps": [tiers[k][i] for k, i in zip(kind, step, strict=True)],
        "capacity_after_mbps": np.where(expansion, [tiers[k][i + 1] for k, i in zip(kind, step, strict=True)], np.nan),
        "owner": _zone_owner("Transport", sites.region_id.to_numpy()[hub]), "expansion": expansion, "kind_i": kind,
    })
    return links, site_link


def upgrade_plans(sites: pd.DataFrame, site_link: np.ndarray, links: pd.DataFrame, hot: pd.DataFrame,
                   rng: np.random.Generator) -> pd.DataFrame:
    """The programme: a main upgrade at every hotspot site and new site, the rest spread over other sites."""
    n = len(sites)
    main_sites = hot.site[hot.site >= 0].to_numpy()
    main_kind = np.where(sites.new.to_numpy()[main_sites], 3, np.where(rng.random(len(main_sites)) < 0.7, 0, 2))
    others = np.setdiff1d(np.nonzero(sites.new.to_numpy())[0], main_sites)
    eligible = ~sites.new.to_numpy() & ~np.isin(np.arange(n), main_sites)
    weights = eligible * np.array([1.5, 1.2, 1.0, 0.8])[sites["size"]]
    n_rest = max(round(n * UPGRADES_PER_SITE) - len(main_sites) - len(others), 0)
    rest = rng.choice(n, n_rest, p=weights / weights.sum())
    site = np.r_[main_sites, others, rest]
    kind = np.r_[main_kind, np.full(len(others), 3), pick(rng, np.zeros(n_rest, dtype=int), UPGRADE_KIND_P)]
    order = np.argsort(site, kind="stable")
    site, kind, main = site[order], kind[order], (np.arange(len(site)) < len(main_sites))[order]
    m = len(site)
    gap1 = np.where(kind == 3, rng.integers(120, 241, m), rng.integers(30, 121, m))
    gap2 = rng.integers(7, 46, m)
    permit = _between(rng, _day(PROGRAMME[0]), _day(PROGRAMME[1]) - _days(gap1 + gap2), m)
    tech_cap = TECH_CAPACITY[pd.Index(schema.TECHNOLOGIES).get_indexer(sites.technology.to_numpy()[site])]
    before = np.where(kind == 3, 0, np.round(tech_cap * rng.uniform(0.8, 1.2, m) / 50) * 50)
    gain = np.select([kind == 0, kind == 1, kind == 2], [before * rng.uniform(1, 2, m), rng.uniform(200, 400, m),
                                                         rng.uniform(800, 1600, m)], rng.uniform(600, 1500, m))
    needs = links.expansion.to_numpy()[site_link[site]] & (rng.random(m) < DEPENDS_P[kind])
    return pd.DataFrame({
        "upgrade_id": ids("U", m, 6), "site_id": sites.site_id.to_numpy()[site],
        "kind": np.array(schema.UPGRADE_KINDS)[kind], "permit_planned": permit,
        "installed_planned": permit + _days(gap1), "on_air_planned": permit + _days(gap1 + gap2),
        "capacity_before_mbps": before, "capacity_after_mbps": before + np.round(gain / 50) * 50,
        "transport_link_id": np.where(needs, links.link_id.to_numpy()[site_link[site]], None),
        "owner": _zone_owner("Rollout", sites.region_id.to_numpy()[site]), "site": site, "link": site_link[site],
        "needs": needs, "main": main,
    })


def schedule_links(links: pd.DataFrame, up: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Expansion dates: ready before the first upgrade waiting on it (as planned); fibre slips most."""
    m, as_of = len(links), _day(DEMO_AS_OF)
    plan = _between(rng, _day(LINK_PLANS[0]), _day(LINK_PLANS[1]), m)
    first_need = up[up.needs].groupby("link").on_air_planned.min()
    lead = _days(rng.uniform(14, 90, len(first_need)))
    plan[first_need.index] = np.maximum(first_need.to_numpy().astype("datetime64[D]") - lead, _day(LINK_PLANS[0]))
    plan = np.where(links.expansion, plan, np.datetime64("NaT"))
    actual = plan + _days(rng.gamma(2.0, LINK_SLIP_SCALE[links.kind_i]) - 10)
    done = (plan <= as_of) & (actual <= as_of) & (rng.random(m) >= LINK_STUCK)
    return links.assign(completion_planned=plan, completion_actual=np.where(done, actual, np.datetime64("NaT")))


def upgrade_actuals(up: pd.DataFrame, link_done: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Milestones done with gamma-distributed slips; on air not before the awaited link is done."""
    m, as_of, nat = len(up), _day(DEMO_AS_OF), np.datetime64("NaT")
    stuck = np.where(rng.random(m) < UPGRADE_STUCK, 400, 0)
    permit = up.permit_planned.to_numpy() + _days(rng.gamma(1.5, 25, m) - 7 + stuck)
    installed = permit + (up.installed_planned - up.permit_planned).to_numpy() + _days(rng.gamma(1.5, 8, m) - 3)
    on_air = installed + (up.on_air_planned - up.installed_planned).to_numpy() + _days(rng.gamma(1.2, 6, m) - 2)
    waited = np.maximum(on_air, link_done[up.link] + _days(rng.integers(0, 15, m)))
    on_air = np.where(up.needs, waited, on_air)
    ok1 = (permit <= as_of) & (up.permit_planned <= as_of).to_numpy()
    ok2 = ok1 & (installed <= as_of) & (up.installed_planned <= as_of).to_numpy()
    ok3 = ok2 & (on_air <= as_of) & (up.on_air_planned <= as_of).to_numpy()
    status = np.select([ok3, ok2, ok1], ["on_air", "installed", "permit"], "planned").astype(object)
    status[~ok3 & (rng.random(m) < CANCELLED)] = "cancelled"
    return up.assign(permit_actual=np.where(ok1, permit, nat), installed_actual=np.where(ok2, installed, nat),
                     on_air_actual=np.where(ok3, on_air, nat), status=status)


def relief_days(sites: pd.DataFrame, up: pd.DataFrame, links: pd.DataFrame) -> np.ndarray:
    """The day (since COMPLAINTS_FROM) each site is relieved, by the engine's rule (`lib.engine.rules`): it has
    upgrades not cancelled, every one on air with the link it waits on done, by the data date; the latest of
    those dates. inf for a site not relieved by then."""
    live = up[up.status != "cancelled"]
    link_done = links.completion_actual.to_numpy().astype("datetime64[D]")[live.link.to_numpy()]
    on_air = live.on_air_actual.to_numpy().astype("datetime64[D]")
    own = np.where(live.needs.to_numpy(), np.maximum(on_air, link_done), on_air)  # NaT when either is open
    day = (own - np.datetime64(COMPLAINTS_FROM, "D")).astype("float64")
    day[np.isnat(own)] = np.inf
    latest = pd.Series(day).groupby(live.site.to_numpy()).max()
    out = np.full(len(sites), np.inf)
    out[latest.index.to_numpy()] = latest.to_numpy()
    return out


def first_plan(up: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The plan as first exported, before anything was done: no actual dates, status planned; a share
    `REPLANNED` of the upgrades was due earlier then (every planned milestone by the same slip)."""
    moved = rng.random(len(up)) < REPLANNED
    slip = _days(np.where(moved, np.ceil(rng.gamma(*REPLAN_SLIP_DAYS, len(up))), 0))
    out = up.assign(status="planned", permit_actual=np.datetime64("NaT"), installed_actual=np.datetime64("NaT"),
                    on_air_actual=np.datetime64("NaT"))
    for c in ("permit_planned", "installed_planned", "on_air_planned"):
        out[c] = out[c].to_numpy() - slip
    return out
