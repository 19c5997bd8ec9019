"""The planner map: layers as of a date, a feature budget per view, colours, payload, exports.

No streamlit here: `view` reads the store (through the engine: `lib.asof`) and returns
small frames, one per layer, already filtered and capped on the server; `deck` turns a
view into a pydeck Deck whose JSON is what the browser receives.

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
import math
import threading
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import duckdb
import h3
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize
from shapely.geometry import mapping, shape

from lib import asof, cells, engine, hotspots, linkage, network, schema

MAX_FEATURES = 50_000
"""Most features (hexagons, points, lines, outlines) one map view ships to the browser."""

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
    "relieved": (26, 150, 65), "on_track": (43, 131, 186), "late": (253, 174, 97),
    "blocked_by_transport": (215, 25, 28), "no_upgrade_planned": (94, 60, 153)})
SIGNIFICANCE_COLOURS = MappingProxyType({
    "hot": (202, 0, 32), "cold": (5, 113, 176), "not_significant": (170, 170, 170)})
SITE_COLOURS = MappingProxyType({
    "late": (227, 26, 28), "installed": (255, 127, 0), "permit": (106, 61, 154), "planned": (31, 120, 180),
    "on_air": (51, 160, 44), "no_upgrade": (140, 140, 140)})
LINK_COLOURS = MappingProxyType({
    "late": (227, 26, 28), "planned": (31, 120, 180), "done": (51, 160, 44), "no_expansion": (175, 175, 175)})
REGION_COLOUR = (60, 60, 60)

SITE_PRIORITY = tuple(SITE_COLOURS)
"""Site statuses from most to least urgent: a capped sites layer keeps the first ones."""

LINK_PRIORITY = tuple(LINK_COLOURS)
"""Link states from most to least urgent: a capped links layer keeps the first ones."""

MAP_STYLE = "light"
"""CARTO's positron basemap: needs no token; the layers draw without it (offline)."""

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
    res: int | None = None  # None: GERMANY_RES for the whole country, REGION_RES for one region
    layers: tuple[str, ...] = LAYERS
    window_days: int = asof.WINDOW_DAYS

    @property
    def resolution(self) -> int:
        """The hotspot resolution drawn."""
        return self.res or (GERMANY_RES if self.region is None else REGION_RES)


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


def regions(con) -> pd.DataFrame:
    """Every region: region_id, name, level (states first, then by name)."""
    out = regions_expr(con).execute()
    rank = out["level"].map({lv: i for i, lv in enumerate(schema.LEVELS)}).fillna(len(schema.LEVELS))
    return out.assign(_r=rank).sort_values(["_r", "name"]).drop(columns="_r").reset_index(drop=True)


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
    """region_id, name, geometry of the states (region None) or of one region; unexecuted."""
    r = engine.backend(con).table("regions")
    r = r.filter(r.region_id == ibis.literal(region)) if region else r.filter(r.level == "state")
    return r.select("region_id", "name", "geometry")


class Outlines(list):
    """A list of outline features that knows the length of its compact JSON (`json_bytes`)."""

    json_bytes: int = 2


def outlines(con, region: str | None) -> Outlines:
    """GeoJSON features of the state outlines (whole country) or of one region, simplified."""
    rows = engine.run_query(con, ("maps.outlines", region), lambda: outlines_expr(con, region)).itertuples(
        index=False)
    with _gc_paused():
        kept = [row for row in rows if _outline(*row) is not None]
        out = Outlines(_outline(*row) for row in kept)
    out.json_bytes = 2 + max(0, len(kept) - 1) + sum(_outline_bytes(*row) for row in kept)
    return out


@functools.lru_cache(maxsize=256)
def _outline_bytes(rid, name, geom) -> int:
    """Bytes of one outline feature's compact JSON (what `upper_bytes` counts), kept like `_outline`."""
    return len(json.dumps(_outline(rid, name, geom), separators=(",", ":")))


@functools.lru_cache(maxsize=256)
def _outline(rid, name, geom) -> dict | None:
    """One region's simplified outline feature; None when it has no geometry, or one that is not GeoJSON text.
    Kept per (id, name, geometry text): a pure function of them, shared read-only by every view that draws it."""
    if not geom:
        return None
    try:
        g = shape(json.loads(geom)).simplify(SIMPLIFY_DEGREES, preserve_topology=True)
    except (ValueError, TypeError, AttributeError):
        return None
    return {"type": "Feature", "properties": {"id": str(rid), "name": str(name)}, "geometry": _rounded(mapping(g))}


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


def _hot(con, p: Params, area: np.ndarray | None, net: network.Network | None) -> pd.DataFrame:
    """The hotspots of a view with their relief, filtered and pain-ranked (asof.hotspots_as_of's two steps,
    the relief computed only for the cells the view keeps)."""
    channels = None if p.channels is None or set(p.channels) >= set(schema.CHANNELS) else p.channels
    hot = hotspots.hotspots(con, p.resolution, *asof.window(p.as_of, p.window_days), p.kind, channels=channels)
    hot = hot[hot["n"] > 0] if not p.significant_only else hot[hot["significant"]]
    if area is not None:
        hot = hot[within(hot["cell"], p.resolution, area)]
    rel = linkage.relief_of(net, hot[["cell"]], p.resolution, p.as_of) if net is not None else linkage.relief(
        con, hot[["cell"]], p.resolution, p.as_of)
    hot = hot.merge(rel, on="cell", how="left")
    hot = hot[hot["status"].isin(p.relief_statuses)]
    return pain(hot.assign(significance=significance(hot)), p.as_of)


def view(con, p: Params, max_features: int | None = None) -> View:
    """The frames of one map view: filtered and capped on the server (default cap `MAX_FEATURES`).

    On the DuckDB store the sites, links and relief come from the network held per store content
    (`lib.network`, its fingerprint read once per view)."""
    max_features = MAX_FEATURES if max_features is None else max_features
    area = region_cells(con, p.region) if p.region else None
    net = network.held(con) if isinstance(con, duckdb.DuckDBPyConnection) else None
    hot = _hot(con, p, area, net)
    sites, links = _network(con, p, area, net)
    shapes = outlines(con, p.region) if "regions" in p.layers else []

    frames = {"hotspots": hot, "sites": sites, "links": links}
    frames = {k: v for k, v in frames.items() if k in p.layers}
    totals = {k: len(v) for k, v in frames.items()}
    budget = allot(totals, max(0, max_features - len(shapes) - 1))  # one left for the outline of a picked hexagon
    layers = {}
    if "hotspots" in frames:
        layers["hotspots"] = cap(hot, budget["hotspots"], ["n", "cell"], [False, True])
    if "sites" in frames:
        layers["sites"] = first_by(sites, "status", SITE_PRIORITY, budget["sites"])
    if "links" in frames:
        layers["links"] = first_by(links, "state", LINK_PRIORITY, budget["links"])
    return View(p, hot.reset_index(drop=True), {k: v.reset_index(drop=True) for k, v in layers.items()},
                totals, shapes)


RECORD_BYTES = MappingProxyType({"hotspots": 130, "sites": 90, "links": 130})
"""Most bytes one record of each layer takes in the Deck JSON besides its text ids (keys, a 15-hex H3 id,
numbers, rounded coordinates, status words and colours), over-counted."""
DECK_BYTES = 4096
"""Bytes of the Deck JSON besides the layers' records and the outlines (view state, layer settings, tooltip)."""


def upper_bytes(v: View) -> int:
    """An upper bound of the Deck JSON's size: the outlines as written, and each record at its most."""
    shapes = v.outlines.json_bytes if isinstance(v.outlines, Outlines) else len(
        json.dumps(v.outlines, separators=(",", ":")))
    total = DECK_BYTES + shapes
    for layer, frame in v.layers.items():
        ids = {"sites": ["site_id"], "links": ["link_id"]}.get(layer, [])
        text = sum(int(frame[c].astype("str").str.len().sum()) + 2 * len(frame) for c in ids)
        total += len(frame) * RECORD_BYTES[layer] + text
    return total


def shrink(v: View, max_bytes: int | None = None) -> tuple[View, int]:
    """`v` cut down (the same per-layer priorities) until its Deck JSON, in either colour mode and with a
    hotspot picked, is at most `max_bytes` (default `MAX_BYTES`): (view, bytes), the bytes exact, or
    `upper_bytes` when that already fits (then nothing is cut)."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    def size(v: View) -> int:  # only the hotspot colours differ between the colour modes
        h = v.layers.get("hotspots")
        extra = 0 if h is None else max(0, len(json.dumps(hotspot_records(h, "significance"))) -
                                        len(json.dumps(hotspot_records(h, "relief"))))
        return payload_bytes(deck(v, "relief", ("hotspots", "0" * 15))) + extra

    bound = upper_bytes(v)
    if bound <= max_bytes:  # the usual view: clearly within, no need to write its JSON to know
        return v, bound
    n = size(v)
    while n > max_bytes and v.features > 0:
        total = int(v.features * max_bytes / n * 0.95)
        budget = allot({k: len(f) for k, f in v.layers.items()}, total)
        v = replace(v, layers={k: f.head(budget[k]) for k, f in v.layers.items()})
        n = size(v)
    return v, n


def fitted(con, p: Params) -> View:
    """`view` within both budgets: at most `MAX_FEATURES` features and `MAX_BYTES` of Deck JSON."""
    return shrink(view(con, p))[0]


# -- drawing ------------------------------------------------------------------------------

class CompactDeck(pdk.Deck):
    """A Deck whose JSON has no indentation: pydeck indents by 2, which for tens of thousands
    of features more than doubles what the browser receives."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, default=default_serialize, separators=(",", ":"))


def payload_bytes(d: pdk.Deck) -> int:
    """Bytes of the Deck JSON the browser receives."""
    return len(d.to_json().encode())


def _c(frame: pd.DataFrame, column: str) -> list:
    return np.round(frame[column].to_numpy(dtype="float64"), COORD_DIGITS).tolist()


_GC_LOCK = threading.Lock()
_GC_PAUSES = [0]  # sessions inside _gc_paused now (a count, so the first to leave does not resume it early)


@contextlib.contextmanager
def _gc_paused():
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


def _s(frame: pd.DataFrame, column: str) -> list:
    """A column as a list of Python values (iterating an Arrow-backed column is ten times slower)."""
    return frame[column].tolist()


def _colours(values: list, palette) -> list:
    rgb = {k: list(v) for k, v in palette.items()}
    return [rgb[v] for v in values]


def hotspot_records(hot: pd.DataFrame, colour: str = "relief") -> list[dict]:
    """Hexagon records: id (H3 hex), n, s (relief status), g (significance), c (colour)."""
    if colour not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {colour!r} (choose one of {list(COLOUR_MODES)})")
    palette, col = (RELIEF_COLOURS, "status") if colour == "relief" else (SIGNIFICANCE_COLOURS, "significance")
    ids = [h3.int_to_str(c) for c in _s(hot, "cell")]
    return [{"id": i, "n": int(n), "s": s, "g": g, "c": c} for i, n, s, g, c in zip(
        ids, _s(hot, "n"), _s(hot, "status"), _s(hot, "significance"), _colours(_s(hot, col), palette), strict=True)]


def site_records(sites: pd.DataFrame) -> list[dict]:
    """Point records: id (site_id), p ([lon, lat]), s (status), c (colour)."""
    status = _s(sites, "status")
    return [{"id": i, "p": [lo, la], "s": s, "c": c} for i, lo, la, s, c in zip(
        _s(sites, "site_id"), _c(sites, "lon"), _c(sites, "lat"), status, _colours(status, SITE_COLOURS),
        strict=True)]


def link_records(links: pd.DataFrame) -> list[dict]:
    """Line records: id (link_id), a and b ([lon, lat]), s (state), c (colour)."""
    state = _s(links, "state")
    return [{"id": i, "a": [alo, ala], "b": [blo, bla], "s": s, "c": c} for i, alo, ala, blo, bla, s, c in zip(
        _s(links, "link_id"), _c(links, "a_lon"), _c(links, "a_lat"), _c(links, "b_lon"), _c(links, "b_lat"),
        state, _colours(state, LINK_COLOURS), strict=True)]


FOCUS_ZOOM = 10.5
"""Zoom of the map centred on a selected object."""


def focus_of(pick: tuple[str, str] | None, v: View) -> tuple[float, float] | None:
    """(lat, lon) of a picked hotspot (its cell centre), site or link (its midpoint) when the view knows it."""
    if not pick:
        return None
    layer, ident = pick
    if layer == "hotspots":
        cell = cells.parse_cell(ident)
        return h3.cell_to_latlng(h3.int_to_str(cell)) if cell else None
    f = v.layers.get(layer)
    if f is None:
        return None
    row = f[f[f.columns[0]] == ident]
    if row.empty:
        return None
    if layer == "sites":
        return float(row["lat"].iloc[0]), float(row["lon"].iloc[0])
    r = row.iloc[0]
    return (r["a_lat"] + r["b_lat"]) / 2, (r["a_lon"] + r["b_lon"]) / 2


def view_state(v: View, focus: tuple[float, float] | None = None) -> pdk.ViewState:
    """Centred on `focus` (a picked object), else Germany or the bounds of the region's outline."""
    if focus is not None:
        return pdk.ViewState(latitude=round(focus[0], COORD_DIGITS), longitude=round(focus[1], COORD_DIGITS),
                             zoom=FOCUS_ZOOM)
    lat, lon, zoom = GERMANY
    if v.params.region and v.outlines:
        xs, ys = [], []
        for f in v.outlines:
            def walk(x):
                if isinstance(x[0], (int, float)):
                    xs.append(x[0])
                    ys.append(x[1])
                else:
                    for y in x:
                        walk(y)
            walk(f["geometry"]["coordinates"])
        lon, lat = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        stretch = 1 / math.cos(math.radians(lat))  # Web Mercator stretches latitude
        fit = min(MAP_PIXELS[0] / max(max(xs) - min(xs), 0.01),
                  MAP_PIXELS[1] / max((max(ys) - min(ys)) * stretch, 0.01))
        zoom = max(4.0, min(12.0, math.log2(fit * 360 / 512)))
    return pdk.ViewState(latitude=lat, longitude=lon, zoom=zoom)


def deck(v: View, colour: str = "relief", pick: tuple[str, str] | None = None,
         map_style: str | None = MAP_STYLE, focus: tuple[float, float] | None = None) -> CompactDeck:
    """The pydeck Deck of a view (layer ids are the `LAYERS` names; `pick` = (layer, id) is outlined;
    the map is centred on `focus` when given)."""
    with _gc_paused():
        return _deck(v, colour, pick, map_style, focus)


def _deck(v: View, colour: str, pick: tuple[str, str] | None, map_style: str | None,
          focus: tuple[float, float] | None) -> CompactDeck:
    layers = []
    if v.outlines:
        layers.append(pdk.Layer("GeoJsonLayer", id="regions", data={"type": "FeatureCollection",
                                                                      "features": v.outlines},
                                stroked=True, filled=False, get_line_color=list(REGION_COLOUR),
                                line_width_min_pixels=1, pickable=False))
    if "links" in v.layers:
        layers.append(pdk.Layer("LineLayer", id="links", data=link_records(v.layers["links"]),
                                get_source_position="a", get_target_position="b", get_color="c",
                                get_width=1, pickable=True, auto_highlight=True))
    if "sites" in v.layers:
        layers.append(pdk.Layer("ScatterplotLayer", id="sites", data=site_records(v.layers["sites"]),
                                get_position="p", get_fill_color="c", get_radius=200, radius_min_pixels=1.5,
                                radius_max_pixels=8, pickable=True, auto_highlight=True))
    if "hotspots" in v.layers:
        layers.append(pdk.Layer("H3HexagonLayer", id="hotspots", data=hotspot_records(v.layers["hotspots"], colour),
                                get_hexagon="id", get_fill_color="c", get_line_color="c", opacity=0.8,
                                extruded=False, stroked=True, line_width_min_pixels=1, pickable=True,
                                auto_highlight=True))
    if pick and pick[0] == "hotspots":
        layers.append(pdk.Layer("H3HexagonLayer", id="picked", data=[{"id": pick[1]}], get_hexagon="id",
                                filled=False, stroked=True, get_line_color=[0, 0, 0], line_width_min_pixels=3,
                                extruded=False, pickable=False))
    tooltip = {"html": "<b>{id}</b><br/>{s}", "style": {"fontSize": "12px"}}
    return CompactDeck(layers=layers, initial_view_state=view_state(v, focus), map_style=map_style, tooltip=tooltip)


def picked(selection) -> tuple[str, str] | None:
    """(layer, id) of the object a map selection holds (`event["selection"]`), or None."""
    objects = (selection or {}).get("objects") or {}
    for layer in ("hotspots", "sites", "links"):
        for obj in objects.get(layer) or []:
            if isinstance(obj, dict) and obj.get("id"):
                return layer, str(obj["id"])
    return None


# -- exports ------------------------------------------------------------------------------

TABLE_COLUMNS = ["rank", "cell", "n", "status", "relief_date", "days_open", "pain", "z", "significance",
                 "n_sites", "n_upgrades", "blocking_link_id"]


def table(hot: pd.DataFrame) -> pd.DataFrame:
    """The ranked hotspot table (and CSV export): cells as H3 hex text."""
    out = hot[TABLE_COLUMNS].copy()
    out["cell"] = [h3.int_to_str(int(c)) for c in out["cell"]]
    out["z"] = out["z"].round(2)
    return out


def geojson(hot: pd.DataFrame) -> dict:
    """The hotspots as a GeoJSON FeatureCollection of hexagon polygons (lon, lat; ring closed)."""
    features = []
    for row in table(hot).itertuples(index=False):
        ring = [[round(lo, 6), round(la, 6)] for la, lo in h3.cell_to_boundary(row.cell)]
        props = {c: getattr(row, c) for c in TABLE_COLUMNS}
        props["relief_date"] = None if pd.isna(props["relief_date"]) else str(pd.Timestamp(props["relief_date"]).date())
        props = {k: (v.item() if isinstance(v, np.generic) else (None if v is None or v is pd.NA else v))
                 for k, v in props.items()}
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def geojson_bytes(hot: pd.DataFrame) -> bytes:
    """`geojson` as UTF-8 bytes."""
    return json.dumps(geojson(hot), separators=(",", ":"), allow_nan=False).encode()


LABELS = MappingProxyType({
    "relieved": "relieved", "on_track": "on track", "late": "late", "blocked_by_transport": "blocked by transport",
    "no_upgrade_planned": "no upgrade planned", "hot": "hot spot (significant)", "cold": "cold spot (significant)",
    "not_significant": "not significant", "installed": "installed", "permit": "permit", "planned": "planned",
    "on_air": "on air", "no_upgrade": "no upgrade", "done": "done", "no_expansion": "no expansion"})
"""How a status reads on the page."""


def legend(colour: str, layers) -> list[tuple[str, list[tuple[str, tuple[int, int, int]]]]]:
    """The legend of the drawn layers: (layer title, [(label, rgb), ...])."""
    out = []
    if "hotspots" in layers:
        palette = RELIEF_COLOURS if colour == "relief" else SIGNIFICANCE_COLOURS
        out.append((f"Hotspots by {colour}", [(LABELS[k], v) for k, v in palette.items()]))
    if "sites" in layers:
        out.append(("Sites by upgrade status", [(LABELS[k], v) for k, v in SITE_COLOURS.items()]))
    if "links" in layers:
        out.append(("Transport links", [(LABELS[k], v) for k, v in LINK_COLOURS.items()]))
    if "regions" in layers:
        out.append(("Regions", [("outline", REGION_COLOUR)]))
    return out


def legend_html(colour: str, layers) -> str:
    """`legend` as small HTML: a coloured square before each label."""
    rows = []
    for title, items in legend(colour, layers):
        swatches = " ".join(
            f'<span style="white-space:nowrap;margin-right:10px"><span style="display:inline-block;width:11px;'
            f'height:11px;background:rgb{rgb};margin-right:4px;vertical-align:middle"></span>{label}</span>'
            for label, rgb in items)
        rows.append(f'<div style="font-size:13px;margin:2px 0"><b>{title}:</b> {swatches}</div>')
    return "".join(rows)
