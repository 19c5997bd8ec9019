"""The maps' offline base layer (lib/baselayer.py): which town names a view shows, and how a view fits a box."""

from __future__ import annotations

import json
import math

import pytest

from lib import baselayer, geonames

HANNOVER = (9.5, 52.2, 10.0, 52.55)


PIXELS = (700, 560)


def _extent(record, box) -> tuple[float, float, float, float]:
    """Left, right, bottom, top of a town name in pixels at the scale of `box` fitted into PIXELS (Web
    Mercator, computed here apart from lib.baselayer)."""
    v = baselayer.fit_view(box, PIXELS)
    lon, lat = record["p"]
    x = (lon + 180) / 360 * 512 * 2 ** v.zoom
    y = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * 512 * 2 ** v.zoom
    half = len(record["name"]) * baselayer.TOWN_SIZE * baselayer.CHAR_WIDTH / 2
    return x - half, x + half, y - baselayer.TOWN_SIZE * 0.5, y + baselayer.TOWN_SIZE * 0.5


@pytest.mark.parametrize("box", [baselayer.GERMANY_BOUNDS, HANNOVER, (11.0, 47.9, 12.2, 48.5), (6.5, 50.7, 7.9, 51.7)])
def test_town_names_are_the_biggest_in_view_and_never_crowd(box):
    towns = baselayer.towns(box, PIXELS)
    west, south, east, north = box
    assert 0 < len(towns) <= baselayer.MAX_TOWNS
    assert all(west <= lon <= east and south <= lat <= north for lon, lat in (t["p"] for t in towns))
    for i, a in enumerate(towns):  # no two names overlap where the map draws them
        al, ar, ab, at = _extent(a, box)
        for b in towns[:i]:
            bl, br, bb, bt = _extent(b, box)
            assert ar <= bl or br <= al or at <= bb or bt <= ab, (a, b)
    # the biggest town of the box always comes first: nothing is placed before it
    t = geonames.map_towns()
    inside = t[(t["lon"] >= west) & (t["lon"] <= east) & (t["lat"] >= south) & (t["lat"] <= north)]
    assert towns[0]["name"] == inside["german"].iloc[0]
    assert len(json.dumps(towns)) <= baselayer.MAX_TOWN_BYTES


def test_germany_shows_its_big_cities_and_no_city_district():
    names = [t["name"] for t in baselayer.towns(baselayer.GERMANY_BOUNDS, PIXELS)]
    assert names[:3] == ["Berlin", "Hamburg", "München"] and "Köln" in names
    assert not any(n.startswith(("Berlin-", "Hamburg-", "München-")) for n in names)
    assert "Hannover" in [t["name"] for t in baselayer.towns(HANNOVER, PIXELS)]


def test_the_limit_is_exact():
    assert len(baselayer.towns(baselayer.GERMANY_BOUNDS, PIXELS, limit=5)) == 5
    assert len(baselayer.towns(baselayer.GERMANY_BOUNDS, PIXELS, limit=1)) == 1


@pytest.mark.parametrize("box, pixels", [(baselayer.GERMANY_BOUNDS, (700, 560)), (HANNOVER, (360, 380)),
                                         ((13.08, 52.33, 13.77, 52.68), (700, 560))])
def test_a_fitted_view_shows_the_whole_box_and_fills_one_side(box, pixels):
    v = baselayer.fit_view(box, pixels, min_zoom=0, max_zoom=20)
    degrees_per_pixel = 360 / (512 * 2 ** v.zoom)
    west, south, east, north = box
    stretch = 1 / math.cos(math.radians((south + north) / 2))
    shown = (pixels[0] * degrees_per_pixel, pixels[1] * degrees_per_pixel / stretch)
    assert shown[0] >= (east - west) - 1e-9 and shown[1] >= (north - south) - 1e-9
    assert min(shown[0] - (east - west), shown[1] - (north - south)) < 1e-6  # one side touches
    assert (v.longitude, v.latitude) == ((west + east) / 2, (south + north) / 2)


def test_bounds_of_features_and_of_nothing():
    square = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 5], [1, 2]]]}}
    line = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 4], [2, 6]]}}
    assert baselayer.bounds([square, line]) == (0, 2, 3, 6)
    assert baselayer.bounds([]) == baselayer.GERMANY_BOUNDS
