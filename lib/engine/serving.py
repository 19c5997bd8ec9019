"""Which sites carry a place's traffic: the serving model every relief figure rests on.

A place is the centre of a resolution-9 cell (about 0.1 km2) where complaints were made. It is served by
its nearest sites within the reach of their type, at most `MAX_SERVERS` of them, the best server first.
Each carries a share of the place's traffic that falls with the square of its distance (`NEAR_KM` the
least distance counted): in a town the site a few hundred metres away carries most of it and its
neighbours the rest; in the country a lone macro site kilometres away carries all of it. A hotspot's
complaints are apportioned to its serving sites by these shares, cell by cell, so a hotspot is served by
a handful of sites, not by every site whose coverage reaches it. Complaints in a place no site reaches
are served by none: only a new site can relieve them.

Two optional columns of an operator's sites file refine it: `azimuth_deg` (with `beamwidth_deg`, default
`DEFAULT_BEAMWIDTH`) makes a site serve only the places in its sector (and those nearer than `NEAR_KM`), and
`capacity_mbps` shares a place's traffic in proportion to capacity / distance squared (a site without a
capacity counts as the median of those given).

`REACH_KM` per site type follows the radio planning references: ITU-R M.2135's test environments place
urban macro sites 500 m apart, urban micro sites 200 m and rural macro sites 1,732 m, and a rural macro
cell reaches several kilometres; a site beyond its reach carries nothing there, however near it is
compared with the others.

Python, not SQL: nearest neighbours need geometry that portable SQL has not (scipy's k-d tree over the
sites' positions on the sphere). The servers of every place with complaints are found once per store
content (network and complaints) and kept.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from lib import cells
from lib.engine import heldcounts, hotspots, keptfiles, network, stores

REACH_KM = MappingProxyType({"macro": 8.0, "micro": 1.0, "small_cell": 0.3})
"""How far a site of each type serves (km); an empty or unknown type counts as `DEFAULT_SITE_TYPE`."""

DEFAULT_SITE_TYPE = "macro"

MAX_SERVERS = 3
"""The most sites that share one place's traffic."""

NEAR_KM = 0.1
"""Distances below this count as this when weighing the servers (a complaint in a site's own cell); a sector
site serves this near all round."""

DEFAULT_BEAMWIDTH = 120.0
"""Width in degrees of a site's sector when its azimuth is given without one (three sectors a site)."""

EARTH_KM = 6371.0088
_CANDIDATES = 4 * MAX_SERVERS  # nearest sites looked at before the reach of each is applied


@dataclass(frozen=True)
class Load:
    """The complaint weight of places: the distinct resolution-9 cells with complaints (sorted) and how many
    complaints each holds, over all time, every category and channel."""

    cells9: np.ndarray
    n: np.ndarray


@dataclass(frozen=True)
class Servers:
    """Serving sites of places, sorted by place then share (largest first): place (position among the places
    served), site (the site's number in `network.Network`), share (of the place's traffic, summing to 1 per
    place served), km (distance from the place)."""

    place: np.ndarray
    site: np.ndarray
    share: np.ndarray
    km: np.ndarray


def _xyz(lat, lon) -> np.ndarray:
    """Points on the sphere (km): chord distances between them are great-circle distances to 0.1 % at 100 km."""
    la, lo = np.radians(np.asarray(lat, dtype="float64")), np.radians(np.asarray(lon, dtype="float64"))
    return EARTH_KM * np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _chord_km(chord) -> np.ndarray:
    """Great-circle km of chords between points of `_xyz`."""
    return 2 * EARTH_KM * np.arcsin(np.minimum(np.asarray(chord) / (2 * EARTH_KM), 1.0))


def km_between(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle km between the points (lat1, lon1) and (lat2, lon2), pair by pair (degrees)."""
    return _chord_km(np.linalg.norm(_xyz(lat1, lon1) - _xyz(lat2, lon2), axis=1))


def reach_of(site_types) -> np.ndarray:
    """The reach in km of sites of these types (`REACH_KM`; an empty or unknown type: `DEFAULT_SITE_TYPE`'s)."""
    return np.array([REACH_KM.get(t, REACH_KM[DEFAULT_SITE_TYPE]) if isinstance(t, str) else
                     REACH_KM[DEFAULT_SITE_TYPE] for t in site_types], dtype="float64")


def site_reach(net: network.Network) -> np.ndarray:
    """Each site's reach in km (`REACH_KM` of its type); 0 for a site without a cell, which serves nothing."""
    by_type = np.r_[reach_of(net.site_types), REACH_KM[DEFAULT_SITE_TYPE]]
    reach = by_type[net.site_type]  # -1 (no type) takes the last entry: the default
    return np.where(net.cell > 0, reach, 0.0)


@dataclass(frozen=True)
class Sites:
    """The serving sites in a k-d tree's order: their numbers, reaches (km), positions (radians), sector
    (azimuth and half its width, degrees; NaN: all round) and weight (relative capacity; 1 when unknown)."""

    number: np.ndarray
    reach: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    azimuth: np.ndarray
    half_beam: np.ndarray
    weight: np.ndarray


def _optional(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column of optional numbers as float (NaN where empty, or where a store predates it)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")


def sites_of(frame: pd.DataFrame, reach: np.ndarray) -> Sites:
    """`Sites` of rows of a sites table (lat, lon; capacity_mbps, azimuth_deg, beamwidth_deg optional)."""
    capacity = _optional(frame, "capacity_mbps")
    known = capacity[np.isfinite(capacity) & (capacity > 0)]
    weight = np.where(np.isfinite(capacity) & (capacity > 0), capacity, np.median(known) if known.size else 1.0)
    azimuth = _optional(frame, "azimuth_deg")
    beam = _optional(frame, "beamwidth_deg")
    half = np.where(np.isfinite(azimuth), np.where(np.isfinite(beam), beam, DEFAULT_BEAMWIDTH) / 2, np.nan)
    return Sites(np.arange(len(frame)), reach, np.radians(frame["lat"].to_numpy(dtype="float64")),
                 np.radians(frame["lon"].to_numpy(dtype="float64")), azimuth, half, weight / weight.max()
                 if weight.size else weight)


def _tree(net: network.Network) -> tuple[cKDTree, Sites]:
    """The k-d tree of the sites that serve (with a cell) and what serving needs of them; built once per
    network."""
    def build():
        reach = site_reach(net)
        number = np.flatnonzero(reach > 0)
        sites = sites_of(net.sites.iloc[number], reach[number])
        sites = dataclasses.replace(sites, number=number)
        return cKDTree(_xyz(np.degrees(sites.lat), np.degrees(sites.lon))), sites
    return net.once(("serving.tree",), build)


def _nearest(tree: cKDTree, sites: Sites, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """The serving sites of each point by the model (positions in the tree, nearest first, -1 beyond the
    MAX_SERVERS within reach) and their distances in km (inf where none): (points x width) arrays."""
    lat, lon = np.asarray(lat, dtype="float64"), np.asarray(lon, dtype="float64")
    xyz, k = _xyz(lat, lon), min(_CANDIDATES, tree.n)
    site, km, more = _nearest_within_reach(tree, sites, xyz, lat, lon, k)
    todo = np.flatnonzero(more)
    while todo.size and k < tree.n:  # too few within reach among the candidates: look further out
        k = min(4 * k, tree.n)
        more_site, more_km, more = _nearest_within_reach(tree, sites, xyz[todo], lat[todo], lon[todo], k)
        site, km = _widen(site, k), _widen(km, k, np.inf)
        site[todo], km[todo] = more_site, more_km
        todo = todo[more]
    within = (site >= 0) & (np.cumsum(site >= 0, axis=1) <= MAX_SERVERS)
    return np.where(within, site, -1), np.where(within, km, np.inf)


def best_servers(site_lat, site_lon, site_types, lat, lon) -> np.ndarray:
    """The best server (nearest within reach, ties by position) of each point among the given sites (all round,
    capacities unknown): its position among them, -1 where none reaches. What the demo draws complaints with,
    by the engine's model."""
    reach = reach_of(site_types)
    if len(reach) == 0 or len(lat) == 0:
        return np.full(len(lat), -1, dtype="int64")
    sites = sites_of(pd.DataFrame({"lat": site_lat, "lon": site_lon}), reach)
    site, _ = _nearest(cKDTree(_xyz(site_lat, site_lon)), sites, lat, lon)
    return site[:, 0].astype("int64")


def serve(net: network.Network, places) -> Servers:
    """The serving sites of each place (resolution-9 or coarser cells, at their centres), by the model above:
    the nearest sites within their reach (and sector, where one is given; ties: the smaller site number, i.e.
    site id), at most MAX_SERVERS, sharing by capacity / distance squared."""
    places = np.asarray(places, dtype="int64")
    tree, sites = _tree(net)
    if places.size == 0 or sites.number.size == 0:
        return Servers(*(np.zeros(0, dtype=t) for t in ("int64", "int64", "float64", "float64")))
    site, km = _nearest(tree, sites, *cells.cells_to_latlng(places))
    place, col = np.nonzero(site >= 0)
    d = km[place, col]
    weight = sites.weight[site[place, col]] / np.maximum(d, NEAR_KM) ** 2
    share = weight / np.bincount(place, weights=weight, minlength=places.size)[place]
    order = np.lexsort((col, place))  # by place, nearest first
    out = Servers(place[order].astype("int64"), sites.number[site[place, col]][order].astype("int64"),
                  share[order], d[order])
    for a in (out.place, out.site, out.share, out.km):
        a.setflags(write=False)
    return out


def _widen(a: np.ndarray, width: int, fill=-1) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)


def _in_beam(sites: Sites, idx: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether each point (rows) lies in the sector of each candidate site (`idx`, points x k): true for sites
    all round; the bearing from the site within half the beam of its azimuth."""
    half = sites.half_beam[idx]
    out = ~np.isfinite(half)
    if out.all():
        return out
    la1, lo1 = sites.lat[idx], sites.lon[idx]
    la2, lo2 = np.radians(lat)[:, None], np.radians(lon)[:, None]
    bearing = np.degrees(np.arctan2(np.sin(lo2 - lo1) * np.cos(la2),
                                    np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(lo2 - lo1)))
    off = np.abs((bearing - sites.azimuth[idx] + 180.0) % 360.0 - 180.0)
    return out | (off <= np.where(np.isfinite(half), half, 180.0) + 1e-9)  # the edge of the beam is in it


def _nearest_within_reach(tree: cKDTree, sites: Sites, xyz: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                          k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest sites of each point, nearest first (equal distances: the smaller site number), as positions
    in the tree (-1 where beyond the site's reach, or outside its sector unless nearer than NEAR_KM) and km
    (inf there); and whether a point has fewer than MAX_SERVERS while sites further out could still serve it."""
    chord, idx = tree.query(xyz, k=k)
    chord, idx = np.asarray(chord).reshape(len(xyz), k), np.asarray(idx).reshape(len(xyz), k)
    km = _chord_km(chord)
    order = np.lexsort((idx, km), axis=-1)
    idx, km = np.take_along_axis(idx, order, axis=1), np.take_along_axis(km, order, axis=1)
    ok = (km <= sites.reach[idx]) & ((km <= NEAR_KM) | _in_beam(sites, idx, lat, lon))
    more = (ok.sum(axis=1) < MAX_SERVERS) & (km[:, -1] <= sites.reach.max())
    return np.where(ok, idx, -1), np.where(ok, km, np.inf), more


def load(con) -> Load:
    """Complaints per resolution-9 cell over all time (the complaints held per content on DuckDB, else SQL)."""
    if stores.holds(con):
        return _held_load(heldcounts.held(con))
    counts = hotspots.cell_counts(con, cells.CELL_RES)
    nz = counts[counts["n"] > 0].sort_values("cell")
    return Load(nz["cell"].to_numpy(dtype="int64"), nz["n"].to_numpy(dtype="int64"))


def _held_load(held: heldcounts.Held) -> Load:
    return held.once(("serving.load",), lambda: _frozen(Load(held.cells9, held.dense(cells.CELL_RES))))


def _frozen(x: Load) -> Load:
    for a in (x.cells9, x.n):
        a.setflags(write=False)
    return x


def served_load(con, net: network.Network) -> tuple[Load, Servers]:
    """The complaint load and the servers of its places, found once per network and complaints."""
    if not stores.holds(con):
        got = load(con)
        return got, serve(net, got.cells9)
    held = heldcounts.held(con)  # once: the load, the places and the key from the same complaints
    got = _held_load(held)
    return got, with_network(held, net, "serving.servers", lambda: _kept_servers(con, held, net, got.cells9))


CODE = keptfiles.code(__file__, network.__file__, cells.__file__, *heldcounts.CODE_FILES)
"""The code that decides the servers (and the places they index: the held complaints' cells): a change to it
finds them anew, whatever files were kept."""


def _kept_servers(con, held: heldcounts.Held, net: network.Network, places: np.ndarray) -> Servers:
    """`serve(net, places)`, or what an earlier process found for the same complaints and network
    (lib/engine/keptfiles: at 10M complaints 6 s to find, a few ms to read)."""
    if not held.content or not net.content:  # content not known: found here, not kept
        return serve(net, places)
    def found() -> dict[str, np.ndarray]:
        servers = serve(net, places)
        return {f.name: getattr(servers, f.name) for f in dataclasses.fields(Servers)}

    return Servers(**keptfiles.get(con, "servers", (held.content, net.content), found, CODE))


def with_network(held: heldcounts.Held, net: network.Network, key: str, build):
    """`build()` kept once per complaints (`held`) and network: what depends on both, such as the servers of
    every place with complaints. The network is known by its identity, checked through a weak reference."""
    ref, value = held.once((key, id(net)), lambda: (weakref.ref(net), build()))
    return value if ref() is net else build()  # another network once had this id: not this one's value


def site_places(servers: Servers, site: int) -> tuple[np.ndarray, np.ndarray]:
    """The places a site serves (positions) and its share of each."""
    mine = servers.site == site
    return servers.place[mine], servers.share[mine]


def frame(net: network.Network, places, servers: Servers) -> pd.DataFrame:
    """Servers as a frame for a person: place (cell), site_id, share, km, rank (1: the best server)."""
    places = np.asarray(places, dtype="int64")
    first = np.r_[True, servers.place[1:] != servers.place[:-1]] if servers.place.size else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(servers.place.size), 0)) if servers.place.size else first
    return pd.DataFrame({"place": places[servers.place], "site_id": net.sites["site_id"].to_numpy()[servers.site],
                         "share": servers.share, "km": servers.km,
                         "rank": (np.arange(servers.place.size) - start + 1).astype("int64")})
