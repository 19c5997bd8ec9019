"""Names of German places (lib/geonames.py) as a person here reads them: for the public place list and for naming
a spot on the Planner map by its nearest town."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from lib.geonames import CITY_POPULATION, TOWN_POPULATION, districts, german_places, map_towns


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
    for i, (t, district) in enumerate(zip(towns.itertuples(index=False), districts(towns, by_state), strict=True)):
        if district:
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
    map_towns()
