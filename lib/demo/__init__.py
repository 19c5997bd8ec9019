"""The demo: realistic input files, deterministic from a seed (``python -m lib.cli demo``).

This package builds them (`build_demo_files`); `geo` holds the country (states, places), `plans` the links and
the upgrade programme, `complaints` draws the complaints. Sites stand where people live (geonames places),
transport links carry their traffic to aggregation points, upgrades follow a two-year programme with
realistic slips, and complaints come from a population background, capacity hotspots (worst in the FOCUS
cities) and rural coverage gaps. Capacity complaints where the best server is relieved (its upgrades on air,
with the transport link they wait on done) fall by the set share `complaints.CAPACITY_EFFECT`, drawn with the
engine's own serving model; coverage complaints do not move.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.spatial import cKDTree

from lib import cells
from lib.demo import plans
from lib.demo.complaints import (
    Served,
    arrow_table,
    complaint_rates,
    complaint_tables,
    pick,
    write_tables,
)
from lib.demo.geo import (
    SHAPE_RES,
    Geography,
    load_geography,
    offset,
    regions_geojson,
    snap_inside,
    spread_km,
    state_of,
    xy,
)
from lib.demo.plans import DEMO_AS_OF
from lib.ingest import schema

FOCUS = ("C-BER", "C-HAM", "C-MST", "C-OSN", "C-MHG")  # clusters with the worst capacity problems
STEPS = ("sites", "hotspots", "links", "upgrades", "complaints", "replan")  # one random stream each (new last)
BASELINE = "upgrades_baseline"
"""The file of the programme's first plan: imported as upgrades before the current plan, so that every
upgrade keeps it as its baseline version and the re-planned ones show their slip against it."""
MIN_SITES = 100

RURAL_SHARE, NEW_SITE_SHARE, SITE_EXPONENT, MIN_FOCUS_SITES = 0.15, 0.02, 0.8, 3
SIZE_LIMITS = (300_000, 50_000)  # anchor population of metro, city; smaller: town; class 3: rural
SITE_TYPE_P = np.array([[.62, .15, .23], [.85, .10, .05], [.97, .03, 0], [1, 0, 0]])  # macro, micro, small_cell
TECH_P = np.array([[.01, 0, .30, .59, .10], [.02, 0, .45, .48, .05], [.04, .005, .60, .335, .02],
                   [.10, .01, .67, .20, .02]])  # by size class; columns as schema.TECHNOLOGIES


SITES_PER_HOTSPOT, SITES_PER_GAP, MIN_HOTSPOTS, MIN_GAPS = 50, 100, 20, 20
REMOTE_KM = 20.0  # coverage gaps lie at least this far from big places
FOCUS_BOOST, BIG_PLACE, LATE_ONSET = 5.0, 100_000, 0.25


def _sites(geo: Geography, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Sites around places (weighted by population**0.8) plus rural sites spread over the country."""
    places, pop = geo.places, geo.places["population"].to_numpy()
    n_rural = round(n * RURAL_SHARE)
    focus = geo.clusters.set_index("region_id").loc[list(FOCUS)]
    reserved = np.zeros(len(places), dtype="int64")
    reserved[cKDTree(xy(places.lat, places.lon)).query(xy(focus.lat, focus.lon))[1]] = min(MIN_FOCUS_SITES, n // 100)
    weights = pop**SITE_EXPONENT
    counts = rng.multinomial(n - n_rural - reserved.sum(), weights / weights.sum()) + reserved
    anchor = np.repeat(np.arange(len(places)), counts)
    spread = spread_km(pop[anchor])[:, None] * rng.normal(size=(len(anchor), 2))
    lat, lon = offset(places.lat.to_numpy()[anchor], places.lon.to_numpy()[anchor], spread[:, 0], spread[:, 1])
    rlat, rlon = cells.cells_to_latlng(geo.cells[rng.integers(len(geo.cells), size=n_rural)])
    rlat, rlon = offset(rlat, rlon, *rng.uniform(-0.8, 0.8, size=(2, n_rural)))
    lat, lon = snap_inside(geo, np.r_[lat, rlat], np.r_[lon, rlon], rng)
    rural = np.arange(n) >= n - n_rural
    anchor = np.r_[anchor, cKDTree(xy(places.lat, places.lon)).query(xy(rlat, rlon))[1]]
    size = np.where(rural, 3, np.searchsorted(-np.array(SIZE_LIMITS), -pop[anchor], side="right"))
    new = np.zeros(n, dtype=bool)
    new[rng.choice(np.nonzero(size >= 2)[0], round(n * NEW_SITE_SHARE), replace=False)] = True
    tech = np.array(schema.TECHNOLOGIES)[pick(rng, size, TECH_P)]
    tech[new] = "4G+5G"
    number = pd.Series(anchor).groupby(anchor).cumcount().to_numpy() + 1
    name = places.name.to_numpy()[anchor].astype(object) + "-" + np.char.zfill(number.astype(str), 3).astype(object)
    return pd.DataFrame({
        "site_id": plans.ids("S", n, 6), "name": name, "lat": lat, "lon": lon, "region_id": state_of(geo, lat, lon),
        "site_type": np.array(schema.SITE_TYPES)[pick(rng, np.where(new, 3, size), SITE_TYPE_P)],
        "technology": tech, "anchor": anchor, "size": size, "new": new,
    })


def _capacity_hotspots(geo: Geography, sites: pd.DataFrame,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hotspot sites in big places, as many per head everywhere; weight FOCUS_BOOST times higher in FOCUS cities.

    Returns the sites, their weights (a city's weight is proportional to its people) and the FOCUS flags.
    """
    n_cap = max(MIN_HOTSPOTS, len(sites) // SITES_PER_HOTSPOT)
    focus = geo.clusters.set_index("region_id").loc[list(FOCUS)]
    centres, pop = xy(focus.lat, focus.lon), geo.places.population.to_numpy()
    near_centre = cKDTree(xy(geo.places.lat, geo.places.lon)).query_ball_point(centres, focus.radius_km.to_numpy())
    people = np.array([pop[i].sum() for i in near_centre])
    big_place = pop >= BIG_PLACE
    big_place[np.concatenate(near_centre).astype(int)] = False
    quota = np.maximum(2, np.round(n_cap * people / (people.sum() + pop[big_place].sum()))).astype(int)
    usable = ~sites.new.to_numpy() & (sites["size"].to_numpy() < 2)
    site_tree, site_cells = cKDTree(xy(sites.lat, sites.lon)), cells.latlng_to_cells(sites.lat, sites.lon, SHAPE_RES)
    in_focus, chosen, weights = np.zeros(len(sites), dtype=bool), [], []
    for region_id, centre, radius, k, city_people in zip(focus.index, centres, focus.radius_km, quota, people,
                                                         strict=True):
        near = np.sort(np.asarray(site_tree.query_ball_point(centre, radius), dtype=int))
        in_focus[near] = True
        city = np.nonzero(usable & np.isin(site_cells, geo.cluster_cells[region_id]))[0]  # the city proper
        city = city if len(city) else near[usable[near]]  # tiny demos: near the city will do
        chosen.append(rng.choice(city, min(k, len(city)), replace=False))
        weights.append(np.full(len(chosen[-1]), FOCUS_BOOST * city_people / max(len(chosen[-1]), 1)))
    n_focus = sum(len(c) for c in chosen)
    anchor = sites.anchor.to_numpy()
    big = np.nonzero(usable & ~in_focus & big_place[anchor])[0]
    other = rng.choice(big, min(max(n_cap - n_focus, 0), len(big)), replace=False)
    per_anchor = np.unique(anchor[other], return_inverse=True)[1]
    weights.append(pop[anchor[other]] / np.bincount(per_anchor)[per_anchor])
    focus_flag = np.r_[np.ones(n_focus, dtype=bool), np.zeros(len(other), dtype=bool)]
    return np.r_[np.concatenate(chosen), other], np.concatenate(weights), focus_flag


def _hotspots(geo: Geography, sites: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Capacity hotspots (kind 1) and rural coverage gaps (kind 2): place, weight, onset, growth, relief."""
    cap, cap_weight, focus = _capacity_hotspots(geo, sites, rng)
    n_gap = max(MIN_GAPS, len(sites) // SITES_PER_GAP)
    big = geo.places[geo.places.population >= BIG_PLACE]
    remote = cKDTree(xy(big.lat, big.lon)).query(xy(sites.lat, sites.lon))[0] > REMOTE_KM
    new_sites = np.nonzero(sites.new.to_numpy() & remote)[0]
    at_new = rng.choice(new_sites, min(len(new_sites), round(n_gap * 2 / 3)), replace=False)
    rural = rng.choice(np.nonzero((sites["size"].to_numpy() == 3) & ~sites.new.to_numpy() & remote)[0],
                       n_gap - len(at_new))
    site = np.r_[cap, at_new, rural]
    away = np.r_[np.full(len(cap) + len(at_new), 0.3), rng.uniform(2, 4, len(rural))]
    angle = rng.uniform(0, 2 * np.pi, len(site))
    lat, lon = offset(sites.lat.to_numpy()[site], sites.lon.to_numpy()[site], away * np.sin(angle),
                       away * np.cos(angle))
    lat, lon = snap_inside(geo, lat, lon, rng)
    focus = np.r_[focus, np.zeros(n_gap, dtype=bool)]
    onset = np.where(~focus & (rng.random(len(site)) < LATE_ONSET), rng.integers(90, 400, len(site)), 0)
    return pd.DataFrame({
        "site": np.where(np.arange(len(site)) < len(cap) + len(at_new), site, -1),
        "kind": np.r_[np.ones(len(cap), dtype=int), np.full(n_gap, 2)], "lat": lat, "lon": lon,
        "weight": np.r_[cap_weight, np.ones(n_gap)] * rng.lognormal(0, 0.4, len(site)), "onset": onset,
        "growth": rng.normal(0.15, 0.25, len(site)),
        "focus": focus})


def file_table(key: str) -> str:
    """The table a demo file (a key of `build_demo_files`) is imported into."""
    return "upgrades" if key == BASELINE else key


def _frame_table(name: str, df: pd.DataFrame) -> pa.Table:
    """A plan frame as the schema's table, coordinates rounded to 6 decimals."""
    table = schema.TABLES[name]
    cols = {c: df[c].to_numpy() for c in table.names if c in df.columns}
    for c, f in ((c, table.field(c)) for c in cols):
        if f.type in (schema.LAT, schema.LON):
            cols[c] = np.round(cols[c].astype("float64"), 6)
    return arrow_table(table, cols, len(df))


def _reported(tables: Iterator[pa.Table], total: int, report: Callable[[str, float], None]) -> Iterator[pa.Table]:
    """The tables, reporting progress after each."""
    written = 0
    for t in tables:
        yield t
        written += t.num_rows
        report(f"Complaints written: {written:,}", 0.35 + 0.65 * written / max(total, 1))


def build_demo_files(out_dir: Path, seed: int = 42, sites: int = 30_000, complaints: int = 200_000,
                     complaints_format: str = "csv",
                     progress: Callable[[str, float], None] | None = None) -> dict[str, Path]:
    """Write one demo input file per table (in schema.TABLES order) and return their paths."""
    if complaints_format not in ("csv", "parquet"):
        raise ValueError(f"complaints_format must be csv or parquet, not {complaints_format!r}")
    if sites < MIN_SITES or complaints < 0:
        raise ValueError(f"need at least {MIN_SITES} sites and no negative number of complaints")
    report = progress or (lambda message, fraction: None)
    streams = np.random.SeedSequence(seed).spawn(len(STEPS))
    rngs = {step: np.random.default_rng(s) for step, s in zip(STEPS, streams, strict=True)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [n for t in schema.TABLES for n in ((BASELINE, t) if t == "upgrades" else (t,))]  # the first plan first
    paths = {name: out_dir / f"{name}.{'geojson' if name == 'regions' else 'csv'}" for name in names}
    paths["complaints"] = out_dir / f"complaints.{complaints_format}"
    report("Loading places and deriving state shapes", 0.0)
    geo = load_geography()
    paths["regions"].write_text(regions_geojson(geo), encoding="utf-8")
    report("Placing sites", 0.15)
    site_df = _sites(geo, sites, rngs["sites"])
    hot = _hotspots(geo, site_df, rngs["hotspots"])
    report("Planning transport links and upgrades", 0.25)
    links, site_link = plans.links(geo, site_df, hot.site[hot.kind == 1].to_numpy(), rngs["links"])
    up = plans.upgrade_plans(site_df, site_link, links, hot, rngs["upgrades"])
    links = plans.schedule_links(links, up, rngs["links"])
    up = plans.upgrade_actuals(up, links.completion_actual.to_numpy(), rngs["upgrades"])
    site_df["transport_link_id"] = links.link_id.to_numpy()[site_link]
    for name, df in (("sites", site_df), ("transport_links", links), ("upgrades", up)):
        write_tables([_frame_table(name, df)], paths[name], schema.TABLES[name])
    write_tables([_frame_table("upgrades", plans.first_plan(up, rngs["replan"]))], paths[BASELINE], schema.UPGRADES)
    rates, mix = complaint_rates(hot, DEMO_AS_OF)
    report("Generating complaints", 0.35)
    served = Served(site_df.lat.to_numpy(), site_df.lon.to_numpy(), site_df.site_type.to_numpy(),
                    plans.relief_days(site_df, up, links))
    chunks = complaint_tables(geo, hot, rates, mix, complaints, rngs["complaints"], served)
    write_tables(_reported(chunks, complaints, report), paths["complaints"], schema.COMPLAINTS)
    write_tables([_frame_table("status_notes", status_notes(geo))], paths["status_notes"], schema.STATUS_NOTES)
    report("Demo files ready", 1.0)
    return paths


NOTE_TEXTS = (
    ("de", "{name}: Neue Hardware-Generation an den Standorten im Stadtgebiet wird installiert; "
           "der Ausbau des Transportnetzes folgt abschnittsweise."),
    ("en", "{name}: new-generation hardware is being installed at sites in the city; "
           "the transport network is expanded section by section."),
)


def status_notes(geo: Geography) -> pd.DataFrame:
    """A few dated operator notes for the focus clusters (German and English), as the public page shows them."""
    rows = []
    clusters = geo.clusters.set_index("region_id")
    for i, region_id in enumerate(FOCUS):
        for j, (language, text) in enumerate(NOTE_TEXTS):
            day = DEMO_AS_OF - datetime.timedelta(days=14 + 30 * i + 3 * j)
            rows.append({"note_id": f"N-{region_id}-{language}", "region_id": region_id, "published_on": day,
                         "text": text.format(name=clusters.loc[region_id, "name"]), "language": language})
    return pd.DataFrame(rows)
