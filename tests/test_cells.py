"""H3 arithmetic: integer parents equal h3's own, in Python and in SQL."""

from __future__ import annotations

import duckdb
import h3
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lib import cells
from lib.ingest import schema

lat = st.floats(schema.COUNTRY_BBOX[0], schema.COUNTRY_BBOX[2])
lon = st.floats(schema.COUNTRY_BBOX[1], schema.COUNTRY_BBOX[3])


@settings(max_examples=200)
@given(lat, lon, st.integers(0, 9))
def test_parent_arithmetic_equals_h3(la, lo, res):
    cell = h3.api.basic_int.latlng_to_cell(la, lo, 9)
    want = h3.api.basic_int.cell_to_parent(cell, res)
    assert int(cells.parent([cell], res)[0]) == want
    assert duckdb.sql(f"SELECT {cells.parent_sql(str(cell), res)}").fetchall()[0][0] == want


@settings(max_examples=50)
@given(st.lists(st.tuples(lat, lon), min_size=1, max_size=50))
def test_vectorised_cells_equal_h3(points):
    la, lo = np.array(points).T
    got = cells.latlng_to_cells(la, lo)
    assert got.tolist() == [h3.api.basic_int.latlng_to_cell(a, b, 9) for a, b in points]
    assert (got > 0).all()  # ids fit a signed BIGINT


def test_missing_coordinates_give_no_cell():
    assert cells.latlng_to_cells([np.nan, 52.5], [13.4, np.nan]).tolist() == [0, 0]


def test_parse_cell_forms():
    c = h3.api.basic_int.latlng_to_cell(52.5, 13.4, 9)
    assert cells.parse_cell(c) == cells.parse_cell(str(c)) == cells.parse_cell(h3.int_to_str(c).upper()) == c
    assert cells.parse_cell("not-a-cell") == 0 and cells.parse_cell("123") == 0


def _ring(la: float, lo: float, d: float, k: int) -> list[list[float]]:
    pts = [[lo + d * np.cos(2 * np.pi * i / k) * 1.6, la + d * np.sin(2 * np.pi * i / k)] for i in range(k)]
    return [*pts, pts[0]]


@settings(max_examples=25)
@given(st.floats(48, 54), st.floats(7, 14), st.floats(0.02, 0.3), st.integers(3, 9), st.integers(7, 8),
       st.booleans())
def test_polyfill_equals_h3(la, lo, d, k, res, multi):
    """Polygons (with a hole) and multipolygons: the same cells as h3's own polyfill."""
    outer, hole = _ring(la, lo, d, k), _ring(la, lo, d / 3, 5)[::-1]
    geom = {"type": "Polygon", "coordinates": [outer, hole]}
    if multi:
        geom = {"type": "MultiPolygon", "coordinates": [[outer, hole], [_ring(la + 3 * d, lo, d / 2, 4)]]}
    want = sorted(h3.api.basic_int.h3shape_to_cells(h3.geo_to_h3shape(geom), res))
    assert cells.polygon_to_cells(geom, res).tolist() == want
