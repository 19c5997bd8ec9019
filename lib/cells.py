"""H3 cells as integers: the one join key of the store.

Cells are computed in Python at import (h3ronpy, vectorised) and stored as BIGINT.
Coarser resolutions are pure integer arithmetic (`parent`, `parent_sql`), so no SQL
engine needs an H3 extension.
"""

from __future__ import annotations

import h3
import h3ronpy
import numpy as np
import pyarrow as pa
import shapely.geometry
from h3ronpy import vector as h3v

CELL_RES = 9
"""Finest stored resolution (about 0.1 km2) of every place-bound record."""

REGION_RES = 8
"""Resolution of region cell sets (edge about 0.46 km); points join via `parent`."""

_RES_SHIFT = 52
_RES_MASK = 0xF << _RES_SHIFT
_DIGIT_BITS = 3
_MAX_RES = 15


def latlng_to_cells(lat, lon, res: int = CELL_RES) -> np.ndarray:
    """Vectorised lat/lon (degrees) to H3 cells as int64; NaN input gives 0."""
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    ok = np.isfinite(lat) & np.isfinite(lon)
    out = np.zeros(lat.shape, dtype="int64")
    if ok.any():
        cells = h3v.coordinates_to_cells(lat[ok], lon[ok], res)
        out[ok] = np.asarray(cells, dtype="uint64").astype("int64")
    return out


def cells_to_latlng(cells) -> tuple[np.ndarray, np.ndarray]:
    """Centres of int64 cells as (lat, lon) arrays in degrees."""
    cells = np.asarray(cells, dtype="int64")
    if cells.size == 0:
        return np.zeros(0), np.zeros(0)
    lat, lon = h3v.cells_to_coordinates(cells.astype("uint64")).columns
    return np.asarray(lat), np.asarray(lon)


def valid(cells) -> np.ndarray:
    """Whether each value is a valid H3 cell (bool array)."""
    values = np.asarray(cells, dtype="int64")
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    return pa.array(h3ronpy.cells_valid(values.astype("uint64"))).is_valid().to_numpy(zero_copy_only=False)


def _parent_mask(res: int) -> int:
    return (1 << (_DIGIT_BITS * (_MAX_RES - res))) - 1


def parent(cells, res: int) -> np.ndarray:
    """Parent of each int64 cell at a coarser `res` (the same as h3.cell_to_parent)."""
    cells = np.asarray(cells, dtype="int64")
    return (cells & ~np.int64(_RES_MASK)) | np.int64(res << _RES_SHIFT) | np.int64(_parent_mask(res))


def parent_bits(res: int) -> tuple[int, int]:
    """(keep, set): parent = (cell & keep) | set, for any engine with 64-bit integers."""
    keep = ~(_RES_MASK | _parent_mask(res)) & ((1 << 63) - 1)
    return keep, (res << _RES_SHIFT) | _parent_mask(res)


def parent_sql(expr: str, res: int) -> str:
    """Portable SQL for the parent of a BIGINT cell expression at `res` (no H3 extension)."""
    keep, bits = parent_bits(res)
    return f"(({expr}) & {keep}) | {bits}"


def resolution(cell: int) -> int:
    """Resolution of one int cell."""
    return (int(cell) & _RES_MASK) >> _RES_SHIFT


def to_str(cell: int) -> str:
    """Hex string form of an int cell (as h3 and pydeck's H3HexagonLayer show it)."""
    return h3.int_to_str(int(cell))


def parse_cell(value) -> int:
    """Int cell from an int, a decimal string or a hex string; 0 when not a valid cell."""
    try:
        if isinstance(value, (int, np.integer)):
            cell = int(value)
        else:
            text = str(value).strip()
            cell = int(text) if text.isdigit() else h3.str_to_int(text.lower())
    except (ValueError, TypeError, h3.H3BaseException):
        return 0
    return cell if cell > 0 and h3.api.basic_int.is_valid_cell(cell) else 0


def polygon_to_cells(geometry: dict, res: int = REGION_RES) -> np.ndarray:
    """Cells (int64, sorted) whose centres lie in a GeoJSON Polygon or MultiPolygon.

    h3ronpy's polyfill (the same cells as h3's `h3shape_to_cells`, about 5 times quicker)."""
    found = h3v.geometry_to_cells(shapely.geometry.shape(geometry), res,
                                       containment_mode=h3v.ContainmentMode.ContainsCentroid)
    return np.sort(np.asarray(pa.array(found), dtype="int64"))


def cells_to_geojson(cells) -> dict:
    """GeoJSON (Multi)Polygon outline of a set of int cells."""
    strs = [h3.int_to_str(int(c)) for c in cells]
    return h3.cells_to_geo(strs) if strs else {"type": "MultiPolygon", "coordinates": []}
