"""The planner map: layers as of a date, a feature budget per view, colours, pain.

No streamlit here: `view` reads the store (through the engine: `lib.engine.asof`) and returns
small frames, one per layer, already filtered and capped on the server; `lib.views.mapdraw` turns a
view into a pydeck Deck whose JSON is what the browser receives, and keeps it under `MAX_BYTES`.

The budget: pydeck sends every feature as JSON and browsers slow down badly past some
tens of thousands of hexagons, so a view ships at most `MAX_FEATURES` features and its
Deck JSON stays under `MAX_BYTES`. The whole of Germany is drawn at the coarser
`GERMANY_RES`; the features are shared out over the layers (`allot`) and each layer
keeps its most important rows (`cap`): hotspots with the most complaints, sites and links
in the most urgent state. The view says what it dropped (`View.capped`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import threading
from dataclasses import dataclass, field
from types import MappingProxyType

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from shapely.geometry import mapping, shape

from lib import baselayer, cells, engine
from lib.engine import asof, hotspots, linkage, network, serving, stores
from lib.ingest import schema

MAX_FEATURES = 50_000
"""Most features (hexagons, points, lines, outlines) one map view ships to the browser."""

COUNTRY_SITES = 3_000
"""Sites drawn at most on the map of all of Germany, the most urgent first (late, installed, permit, planned, on
air): its 26,000 site dots buried the hotspots there and were 2.8 MB of the view's 3.2 MB. A region's map draws
every site of the region (within `MAX_FEATURES`)."""

MAX_BYTES = 5_000_000
"""Largest Deck JSON one view ships, in bytes."""

GERMANY_RES = 7
"""Hotspot resolution of the whole-Germany view (about 5.2 km2 a cell)."""

REGION_RES = 8
"""Hotspot resolution of a one-region view (about 0.74 km2 a cell)."""

LAYERS = ("hotspots", "sites", "links", "regions")
"""Layers a planner can switch, in drawing order from the top."""

COLOUR_MODES = ("relief", "significance")
"""What the hotspot colour shows."""

SIGNIFICANCE = ("hot", "cold", "not_significant")
"""Significance classes of a hotspot cell: Gi* significant (FDR) with z > 0, with z < 0, or neither."""

RELIEF_COLOURS = MappingProxyType({
    "relieved": (26, 150, 65), "partly_relieved": (166, 217, 106), "on_track": (43, 131, 186),
    "late": (253, 174, 97), "blocked_by_transport": (215, 25, 28), "no_upgrade_planned": (94, 60, 153)})
SIGNIFICANCE_COLOURS = MappingProxyType({
    "hot": (202, 0, 32), "cold": (5, 113, 176), "not_significant": (170, 170, 170)})
SITE_COLOURS = MappingProxyType({
    "late": (0, 0, 0), "installed": (230, 97, 1), "permit": (118, 42, 131), "planned": (33, 102, 172),
    "on_air": (130, 130, 130), "no_upgrade": (200, 200, 200)})
"""A site's ring by its upgrade status (the mark itself is a small light dot: sites are where the network is,
hotspots are what the map is about): black for late, no red or green, which the hotspots' relief uses."""
LINK_COLOURS = MappingProxyType({
    "late": (215, 25, 28), "planned": (33, 102, 172), "done": (150, 150, 150), "no_expansion": (210, 210, 210)})
"""A transport link's colour by state: red only for a late link (a hotspot blocked by transport is red too:
red on this map is transport holding relief back)."""
LINK_WIDTHS = MappingProxyType({"late": 3, "planned": 2, "done": 1, "no_expansion": 1})
"""A transport link's width in pixels by state: what still has to happen is drawn heavier."""
REGION_COLOUR = (60, 60, 60)
INNER_REGION_COLOUR = baselayer.INNER_COLOUR
"""The outlines of the regions within the chosen one (its districts or city areas), drawn thinner."""

SITE_PRIORITY = tuple(SITE_COLOURS)
"""Site statuses from most to least urgent: a capped sites layer keeps the first ones."""

LINK_PRIORITY = tuple(LINK_COLOURS)
"""Link states from most to least urgent: a capped links layer keeps the first ones."""

GERMANY = (51.16, 10.45, 5.2)
"""Centre (lat, lon) and zoom of the whole-Germany view."""

MAP_PIXELS = (540, 580)
"""Width and height (px) a region's outline is fitted into (the map is about 580 x 620 on a laptop screen)."""

SIMPLIFY_DEGREES = 0.005
"""Tolerance (about 400 m) to which region outlines are simplified before shipping."""

COORD_DIGITS = 5
"""Decimals kept of a coordinate (about 1 m)."""


@dataclass(frozen=True)
class Params:
    """What a view shows: the date, the area and the filters (every field hashable, for caching)."""

    as_of: dt.date
    region: str | None = None
    kind: str = "capacity"
    channels: tuple[str, ...] | None = None  # None: every channel
    upgrade_kinds: tuple[str, ...] | None = None  # None: every site, also those without upgrades
    site_statuses: tuple[str, ...] = tuple(x for x in asof.SITE_STATUSES if x != "no_upgrade")
    link_states: tuple[str, ...] = ("planned", "late")  # the links whose expansion is still open
    relief_statuses: tuple[str, ...] = linkage.STATUSES
    significant_only: bool = True
    study: str = hotspots.NEAR  # Gi*'s study area (hotspots.STUDY_AREAS); the whole country at res 7 and 8 only
    res: int | None = None  # None: GERMANY_RES for the whole country, REGION_RES for one region
    layers: tuple[str, ...] = LAYERS
    window_days: int = asof.WINDOW_DAYS

    @property
    def resolution(self) -> int:
        """The hotspot resolution drawn."""
        return self.res or (GERMANY_RES if self.region is None else REGION_RES)

    @property
    def study_area(self) -> str:
        """Gi*'s study area used: the one chosen, near complaints where the country cannot be studied."""
        return self.study if self.resolution in hotspots.COUNTRY_RESOLUTIONS else hotspots.NEAR


@dataclass
class View:
    """The frames one map view draws, after filters and the feature budget."""

    params: Params
    hotspots: pd.DataFrame  # every hotspot after the filters (the table and the exports), pain-ranked
    layers: dict[str, pd.DataFrame]  # name -> rows drawn (capped)
    totals: dict[str, int]  # name -> rows after the filters, before the cap
    outlines: list[dict] = field(default_factory=list)  # GeoJSON features of region outlines

    @property
    def capped(self) -> dict[str, tuple[int, int]]:
        """Layers that lost rows to the budget: name -> (drawn, total)."""
        return {k: (len(self.layers[k]), n) for k, n in self.totals.items() if len(self.layers[k]) < n}

    def capped_notes(self) -> list[str]:
        """What a person reads about each layer that lost rows: how many of how many are drawn, and why."""
        notes = []
        for layer, (drawn, total) in self.capped.items():
            if layer == "sites" and not self.params.region and drawn == COUNTRY_SITES:
                notes.append(f"sites: the {drawn:,} most urgent of {total:,} drawn on the map of Germany (late "
                             "first); choose a region to see all of its sites.")
                continue
            most = "complained-about" if layer == "hotspots" else "urgent"
            notes.append(f"{layer}: the {drawn:,} most {most} of {total:,} drawn (at most {MAX_FEATURES:,} features "
                         f"and {MAX_BYTES / 1e6:.0f} MB a view); choose a region or filters to see the rest.")
        return notes

    @property
    def features(self) -> int:
        """Features drawn in all layers."""
        return sum(len(f) for f in self.layers.values())


# -- the budget -------------------------------------------------------------------------

def allot(sizes: dict[str, int], total: int = MAX_FEATURES) -> dict[str, int]:
    """Share `total` features over layers of the given sizes: each gets an equal share, and what a
    small layer does not need goes to the others (water-filling). Sums to min(total, sum of sizes)."""
    if total < 0:
        raise ValueError(f"total must be 0 or more, not {total}")
    out = dict.fromkeys(sizes, 0)
    left, open_ = total, sorted(sizes, key=lambda k: sizes[k])
    while open_ and left > 0:
        share = left // len(open_)
        name = open_[0]
        if sizes[name] <= share:
            out[name] = sizes[name]
            left -= sizes[name]
            open_.pop(0)
            continue
        for i, name in enumerate(open_):  # every remaining layer is larger than its share
            out[name] = share + (1 if i < left - share * len(open_) else 0)
        break
    return out


def cap(frame: pd.DataFrame, n: int, by: list[str], ascending: list[bool]) -> pd.DataFrame:
    """The first `n` rows of `frame` in the order `by` (the most important rows of a capped layer), in that order."""
    return frame.sort_values(by, ascending=ascending, kind="stable").head(n)


def first_by(frame: pd.DataFrame, column: str, priority: tuple[str, ...], n: int) -> pd.DataFrame:
    """The first `n` rows of `frame` by the place of `column`'s value in `priority`, ties in the frame's order
    (sites and links come sorted by id): `cap` by (priority, id), without sorting the ids again."""
    rank = pd.Categorical(frame[column], categories=priority).codes.astype("int64")
    rank[rank < 0] = len(priority)  # a value not in priority: last
    return frame.iloc[np.argsort(rank, kind="stable")[:n]]


# -- queries ------------------------------------------------------------------------------

def regions_expr(con) -> ir.Table:
    """region_id, name, level of every region; unexecuted."""
    return engine.backend(con).table("regions").select("region_id", "name", "level")


def level_rank(level: str) -> int:
    """A region level's place from the widest (`schema.LEVELS` order); a level the schema does not know last."""
    return schema.LEVELS.index(level) if level in schema.LEVELS else len(schema.LEVELS)


def regions(con) -> pd.DataFrame:
    """Every region: region_id, name, level (states first, then by name)."""
    out = regions_expr(con).execute()
    return out.assign(_r=out["level"].map(level_rank)).sort_values(["_r", "name"]).drop(columns="_r").reset_index(
        drop=True)


def region_names(con) -> MappingProxyType:
    """region_id -> "name (level)" of every region in `regions` order: the Planner map's list of regions, read
    only (one mapping shared by every page run)."""
    r = regions(con)
    return MappingProxyType(dict(zip(r["region_id"], r["name"] + " (" + r["level"] + ")", strict=True)))


def region_cells_expr(con, region_id: str) -> ir.Table:
    """The cells of one region (at `cells.REGION_RES`); unexecuted."""
    rc = engine.backend(con).table("region_cells")
    return rc.filter(rc.region_id == ibis.literal(str(region_id))).select("cell")


def region_cells(con, region_id: str) -> np.ndarray:
    """The region's cells at `cells.REGION_RES` (int64, sorted)."""
    out = engine.run_query(con, ("maps.region_cells", region_id), lambda: region_cells_expr(con, region_id))
    return np.unique(out["cell"].to_numpy(dtype="int64"))


def within(cell_ids, res: int, area: np.ndarray) -> np.ndarray:
    """Which cells at `res` lie in an area given as cells at `cells.REGION_RES`: a cell at or below
    REGION_RES by its parent, a coarser cell when any of the area's cells is its child."""
    c = np.asarray(cell_ids, dtype="int64")
    if res >= cells.REGION_RES:
        return np.isin(cells.parent(c, cells.REGION_RES), area)
    return np.isin(c, cells.parent(area, res))


def site_kinds_expr(con) -> ir.Table:
    """(site_id, kind) of every upgrade not cancelled, distinct; unexecuted."""
    u = engine.backend(con).table("upgrades")
    u = u.filter(u.status.isnull() | (u.status != "cancelled"))
    return u.select("site_id", "kind").distinct()


def site_kinds(con) -> pd.DataFrame:
    """(site_id, kind) of every upgrade not cancelled, distinct."""
    return site_kinds_expr(con).execute().astype({"site_id": "str", "kind": "str"})


def outlines_expr(con, region: str | None) -> ir.Table:
    """region_id, name, geometry, level, inner of the states (region None), or of one region and the regions
    within it (whose parent it is: its districts and city areas, when the store has them; `inner` true for
    those), the region last, so that its outline is drawn over theirs where they meet; unexecuted."""
    r = engine.backend(con).table("regions")
    if region:
        r = r.filter((r.region_id == ibis.literal(region)) | (r.parent_id == ibis.literal(region)))
        inner = r.region_id != ibis.literal(region)
    else:
        r = r.filter(r.level == "state")
        inner = ibis.literal(False)
    return r.select("region_id", "name", "geometry", "level", inner=inner).order_by([ibis.desc("inner"), "name",
                                                                                     "region_id"])


def _one_inner_level(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (outlines_expr) with the inner regions of one level only, the widest the store has outlines of
    within the region (a state's districts rather than its city areas, which would cross them), and the region
    itself."""
    inner = rows["inner"].astype(bool)
    outlined = inner & rows["geometry"].notna()  # a region without an outline draws nothing
    if not outlined.any():
        return rows[~inner]
    widest = min(rows.loc[outlined, "level"], key=level_rank)
    return rows[~inner | (outlined & (rows["level"] == widest))]


class Outlines(list):
    """A list of outline features that knows the length of its compact JSON (`json_bytes`)."""

    json_bytes: int = 2


def outlines(con, region: str | None) -> Outlines:
    """GeoJSON features of the state outlines (whole country), or of one region and the regions within it of
    one level (`_one_inner_level`), simplified; a feature's `inner` property says it lies within the chosen
    region (drawn thinner)."""
    rows = _one_inner_level(engine.run_query(con, ("maps.outlines", region), lambda: outlines_expr(con, region)))
    with gc_paused():
        kept = [(rid, name, geom, bool(inner)) for rid, name, geom, inner in
                rows[["region_id", "name", "geometry", "inner"]].itertuples(index=False)
                if _outline(rid, name, geom, bool(inner)) is not None]
        out = Outlines(_outline(*row) for row in kept)
    out.json_bytes = 2 + max(0, len(kept) - 1) + sum(_outline_bytes(*row) for row in kept)
    return out


@functools.lru_cache(maxsize=1024)
def _outline_bytes(rid, name, geom, inner: bool) -> int:
    """Bytes of one outline feature's compact JSON (what `upper_bytes` counts), kept like `_outline`."""
    return len(json.dumps(_outline(rid, name, geom, inner), separators=(",", ":")))


@functools.lru_cache(maxsize=1024)
def _outline(rid, name, geom, inner: bool) -> dict | None:
    """One region's simplified outline feature; None when it has no geometry, or one that is not GeoJSON text.
    Kept per (id, name, geometry text, inner): a pure function of them, shared read-only by every view that
    draws it."""
    if not geom:
        return None
    try:
        g = shape(json.loads(geom)).simplify(SIMPLIFY_DEGREES, preserve_topology=True)
    except (ValueError, TypeError, AttributeError):
        return None
    return {"type": "Feature", "properties": {"id": str(rid), "name": str(name), "inner": inner},
            "geometry": _rounded(mapping(g))}


def _rounded(geom: dict) -> dict:
    def r(x):
        return round(x, COORD_DIGITS) if isinstance(x, float) else [r(y) for y in x]
    return {"type": geom["type"], "coordinates": r(json.loads(json.dumps(geom["coordinates"])))}


# -- pain ---------------------------------------------------------------------------------

NO_DATE_DAYS = 730
"""Days a hotspot with no relief date (no upgrade planned, or waiting on a link with no planned
completion) is counted as waiting, at least: two years, beyond the demo's plan horizon."""

OVERDUE_DAYS = 90
"""Days an overdue hotspot (relief date passed, not relieved) is counted as still waiting."""


def pain(hot: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """`hot` (hotspots_as_of rows) with days_open, pain and rank: the table of unrelieved pain.

    days_open: 0 when relieved; days from as_of to relief_date when that lies ahead; `OVERDUE_DAYS`
    when the relief date has passed and the hotspot is not relieved; when there is no relief date,
    the larger of `NO_DATE_DAYS` and one day more than the longest dated wait in `hot` (so no
    date ranks worst for a given count). pain = n (complaints in the window) x days_open;
    rank 1 is the most pain (ties by n, then cell).
    """
    out = hot.copy()
    day = pd.Timestamp(as_of)
    rel = pd.to_datetime(out["relief_date"])
    ahead = (rel - day).dt.days
    relieved = out["status"] == "relieved"
    dated = rel.notna() & ~relieved
    longest = int(ahead[dated & (ahead > 0)].max()) if (dated & (ahead > 0)).any() else 0
    days = np.where(relieved, 0, np.where(rel.isna(), max(NO_DATE_DAYS, longest + 1),
                                          np.where(ahead > 0, ahead.fillna(0), OVERDUE_DAYS)))
    out["days_open"] = days.astype("int64")
    out["pain"] = out["n"].astype("int64") * out["days_open"]
    out = out.sort_values(["pain", "n", "cell"], ascending=[False, False, True], ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def significance(hot: pd.DataFrame) -> pd.Series:
    """The `SIGNIFICANCE` class of each hotspot row."""
    sig = hot["significant"].astype(bool)
    return pd.Series(np.where(sig & (hot["z"] > 0), "hot", np.where(sig, "cold", "not_significant")),
                     index=hot.index, dtype="str")


# -- the view -----------------------------------------------------------------------------

def _network(con, p: Params, area: np.ndarray | None,
             net: network.Network | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sites and links of a view as of its date, filtered (independent of its hotspots); from the held
    network `net` when given (the DuckDB store), else queried."""
    sites = asof.sites_of(net, p.as_of) if net is not None else asof.sites_as_of(con, p.as_of)
    sites = sites[sites["status"].isin(p.site_statuses)]
    if p.upgrade_kinds is not None and not set(p.upgrade_kinds) >= set(schema.UPGRADE_KINDS):
        k = site_kinds(con)
        sites = sites[sites["site_id"].isin(k.loc[k["kind"].isin(p.upgrade_kinds), "site_id"])]
    links = asof.links_of(net, p.as_of) if net is not None else asof.links_as_of(con, p.as_of)
    links = links[links["state"].isin(p.link_states)].dropna(subset=["a_lat", "a_lon", "b_lat", "b_lon"])
    if area is not None:
        sites = sites[within(sites["cell"], cells.CELL_RES, area)]
        a = cells.latlng_to_cells(links["a_lat"], links["a_lon"])
        b = cells.latlng_to_cells(links["b_lat"], links["b_lon"])
        links = links[within(a, cells.CELL_RES, area) | within(b, cells.CELL_RES, area)]
    return sites, links


def site_names(con, net: network.Network | None) -> pd.Series:
    """Each site's display name by its id (empty where the input gives none): from the held network `net` when
    given (its sites hold their names), else queried."""
    def of(frame: pd.DataFrame) -> pd.Series:
        names = frame["name"].astype(object)
        return pd.Series(names.where(names.notna(), "").to_numpy(dtype=object),
                         index=frame["site_id"].astype(str).to_numpy(dtype=object))

    if net is not None:
        return net.once(("maps.site_names",), lambda: of(net.sites))
    t = engine.backend(con).table("sites")
    return of(engine.run_query(con, ("maps.site_names",), lambda: t.select("site_id", "name")))


def _hot(con, p: Params, area: np.ndarray | None, net: network.Network | None) -> pd.DataFrame:
    """The hotspots of a view with their relief, filtered and pain-ranked (asof.hotspots_as_of's two steps,
    the relief computed only for the cells the view keeps)."""
    channels = None if p.channels is None or set(p.channels) >= set(schema.CHANNELS) else p.channels
    hot = hotspots.hotspots(con, p.resolution, *asof.window(p.as_of, p.window_days), p.kind, channels=channels,
                            study=p.study_area)
    hot = hot[hot["n"] > 0] if not p.significant_only else hot[hot["significant"]]
    if area is not None:
        hot = hot[within(hot["cell"], p.resolution, area)]
    rel = (linkage.relief_of(net, hot[["cell"]], p.resolution, p.as_of, serving.served_load(con, net))
           if net is not None else linkage.relief(con, hot[["cell"]], p.resolution, p.as_of))
    hot = hot.merge(rel, on="cell", how="left")
    hot = hot[hot["status"].isin(p.relief_statuses)]
    return pain(hot.assign(significance=significance(hot)), p.as_of)


def view(con, p: Params, max_features: int | None = None) -> View:
    """The frames of one map view: filtered and capped on the server (default cap `MAX_FEATURES`).

    On the DuckDB store the sites, links and relief come from the network held per store content
    (`lib.engine.network`, its fingerprint read once per view)."""
    max_features = MAX_FEATURES if max_features is None else max_features
    area = region_cells(con, p.region) if p.region else None
    net = network.held(con) if stores.holds(con) else None
    hot = _hot(con, p, area, net)
    sites, links = _network(con, p, area, net)
    shapes = outlines(con, p.region) if "regions" in p.layers else []

    frames = {"hotspots": hot, "sites": sites, "links": links}
    frames = {k: v for k, v in frames.items() if k in p.layers}
    totals = {k: len(v) for k, v in frames.items()}
    wanted = totals | ({"sites": min(totals["sites"], COUNTRY_SITES)} if "sites" in totals and not p.region else {})
    budget = allot(wanted, max(0, max_features - len(shapes) - 1))  # one left for the outline of a picked hexagon
    layers = {}
    if "hotspots" in frames:
        layers["hotspots"] = cap(hot, budget["hotspots"], ["n", "cell"], [False, True])
    if "sites" in frames:
        drawn = first_by(sites, "status", SITE_PRIORITY, budget["sites"])
        layers["sites"] = drawn.assign(name=site_names(con, net).reindex(drawn["site_id"].astype(str)).fillna(
            "").to_numpy(dtype=object))
    if "links" in frames:
        layers["links"] = first_by(links, "state", LINK_PRIORITY, budget["links"])
    return View(p, hot.reset_index(drop=True), {k: v.reset_index(drop=True) for k, v in layers.items()},
                totals, shapes)


_GC_LOCK = threading.Lock()
_GC_PAUSES = [0]  # sessions inside gc_paused now (a count, so the first to leave does not resume it early)


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection while tens of thousands of small records are built: in a server's
    large heap its full passes cost five times the building itself (26k site records: 74 ms, 13 ms
    without). The records hold no cycles; what was deferred is collected at the next pass."""
    with _GC_LOCK:
        _GC_PAUSES[0] += 1
        gc.disable()
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES[0] -= 1
            if not _GC_PAUSES[0]:
                gc.enable()
