"""H3 k-rings, computed once per cell and kept, as indices: the topology under Gi* and its study areas.

Gi* needs, for every cell of a study area, the cells of its k-ring that lie in the area; the
study area itself is the k-rings of the cells with complaints. A map's time slider asks for
this over nearly the same cells again and again, and computing rings (h3ronpy), deduplicating
them (np.unique) and looking them up (np.searchsorted) cost more than the Gi* arithmetic: at
10M complaints, over Germany at resolution 8, 0.2 s of a 0.28 s Gi*.

So each cell's ring is computed once and kept as a column of indices into a sorted array of the
cells held (`_Held`), with every ring cell held too. A study area is then a boolean mask
over the held cells, and a cell's neighbours within it a gather. The cache grows as new cells
are asked for (one process-wide cache per k, locked; readers use an immutable snapshot) and
starts again past `MAX_CELLS` cells (about 37 bytes each).

Python because the rings are H3's grid topology, which portable SQL does not have.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import h3ronpy
import numpy as np
import pyarrow as pa

MAX_CELLS = 8_000_000
"""Cells one cache (one k) may hold: at 10M complaints the rings of every cell that ever had a complaint,
at resolutions 7, 8 and 9 together, are 1.9M cells."""


def width(k: int) -> int:
    """Cells of a k-ring around a hexagon, the centre included (a pentagon's ring has fewer)."""
    return 3 * k * (k + 1) + 1


@dataclass(frozen=True)
class _Held:
    cells: np.ndarray  # int64, sorted, distinct
    ring: np.ndarray  # int32 (width, len(cells)): ring[j, i] the j-th ring cell of cell i as an index into cells;
    # -1 pads (pentagons) and fills columns not computed. Slot by slot: a study area's sums over its rings
    # then read whole rows (tests: 5 ms against 7 ms for a cell's slots side by side, 189,000 cells)
    has_ring: np.ndarray  # bool per cell: its column of `ring` is computed


def _empty(k: int) -> _Held:
    return _Held(np.zeros(0, dtype="int64"), np.zeros((width(k), 0), dtype="int32"), np.zeros(0, dtype=bool))


class _Cache:
    def __init__(self, k: int):
        self.k, self.held, self.lock = k, _empty(k), threading.Lock()

    @staticmethod
    def _find(held: _Held, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each cell in `held` and whether its ring is held there."""
        if held.cells.size == 0:
            return np.zeros(cells.size, dtype="int64"), np.zeros(cells.size, dtype=bool)
        pos = np.minimum(np.searchsorted(held.cells, cells), held.cells.size - 1)
        return pos, (held.cells[pos] == cells) & held.has_ring[pos]

    def rows(self, cells: np.ndarray) -> tuple[_Held, np.ndarray]:
        """A snapshot holding the rings of `cells` (sorted, distinct int64) and their row numbers in it."""
        held = self.held
        pos, ok = self._find(held, cells)
        if ok.all():
            return held, pos
        asked = cells[~ok]
        ids = disks(asked, self.k)  # the slow part, outside the lock: readers of held rings never wait
        with self.lock:
            held = self.held
            pos, ok = self._find(held, cells)
            if not ok.all():
                missing = cells[~ok]
                at = np.minimum(np.searchsorted(asked, missing), asked.size - 1)
                mine = ids[at] if bool((asked[at] == missing).all()) else disks(missing, self.k)  # else: a reset
                grown = unique(np.concatenate([held.cells, mine[mine >= 0]]))
                if grown.size > MAX_CELLS:  # start again with what is asked for now
                    _new_generation()
                    held, grown = _empty(self.k), unique(mine[mine >= 0])
                held = self._grow(held, missing, mine, grown)
                self.held = held
                pos, ok = self._find(held, cells)
        return held, pos

    def _grow(self, held: _Held, missing: np.ndarray, ids: np.ndarray, cells: np.ndarray) -> _Held:
        """`held` with the rings `ids` of the cells `missing`; `cells` is every cell held afterwards."""
        remap = np.searchsorted(cells, held.cells).astype("int32")
        ring = np.full((width(self.k), cells.size), -1, dtype="int32")
        ring[:, remap] = np.where(held.ring >= 0, remap[np.maximum(held.ring, 0)], -1)
        has_ring = np.zeros(cells.size, dtype=bool)
        has_ring[remap] = held.has_ring
        row = np.searchsorted(cells, missing)
        ring[:, row] = np.where(ids.T >= 0, np.searchsorted(cells, ids.T), -1)
        has_ring[row] = True
        return _Held(cells, ring, has_ring)


_GENERATION = [0]


def _new_generation() -> None:
    _GENERATION[0] += 1


def generation() -> int:
    """A number that changes whenever rings held may have been dropped (a full cache starting again,
    `clear`): whoever held rings up front (hotspots._hold_rings) holds them again."""
    return _GENERATION[0]


_CACHES: dict[int, _Cache] = {}
_CACHES_LOCK = threading.Lock()


def _cache(k: int) -> _Cache:
    if k < 0:
        raise ValueError(f"k must be 0 or more, not {k}")
    with _CACHES_LOCK:
        return _CACHES.setdefault(k, _Cache(k))


def unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int64 array: np.unique by sorting (numpy 2's hash-based np.unique took 8
    times as long on millions of cells)."""
    a = np.sort(a, kind="stable")
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if a.size else a


def distinct(cell_ids) -> np.ndarray:
    """The cells as sorted distinct int64 (no sort when they already are, as a query's ORDER BY gives them)."""
    a = np.asarray(cell_ids, dtype="int64").ravel()
    if a.size < 2 or bool((a[1:] > a[:-1]).all()):
        return a
    return unique(a)


def disks(cells: np.ndarray, k: int) -> np.ndarray:
    """Each cell's k-ring (grid_disk, the cell included) as a row of cell ids: int64 (len(cells), width(k)),
    -1 padding a pentagon's shorter ring."""
    out = pa.array(h3ronpy.grid_disk(np.asarray(cells, dtype="int64").astype("uint64"), k))
    offsets = np.asarray(out.offsets)
    flat = np.asarray(out.values).view("int64")[offsets[0]:offsets[-1]]
    sizes = np.diff(offsets)
    w = width(k)
    if bool((sizes == w).all()):  # hexagons only (every cell of Germany): no padding
        return flat.reshape(-1, w)
    ids = np.full((cells.size, w), -1, dtype="int64")
    owner = np.repeat(np.arange(cells.size), sizes)
    ids[owner, np.arange(flat.size) - np.repeat(offsets[:-1] - offsets[0], sizes)] = flat
    return ids


def disk_union(cell_ids, k: int) -> np.ndarray:
    """Every cell within grid distance k of one of `cell_ids` (their k-rings' union), sorted."""
    cells = distinct(cell_ids)
    if cells.size == 0:
        return cells
    held, rows = _cache(k).rows(cells)
    mask = np.zeros(held.cells.size + 1, dtype=bool)  # the extra last slot takes the -1 pads
    mask[held.ring[:, rows].ravel()] = True
    return held.cells[np.flatnonzero(mask[:-1])]


def around(cell_ids, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The study area of `cell_ids` (`disk_union`) and its cells' neighbours within it, from one lookup of the
    held rings: (study, slots), where slots is `neighbours_within(study, k).T`, (width(k), len(study)) and
    contiguous: slots[j] the j-th ring cell of every study cell."""
    cells = distinct(cell_ids)
    if cells.size == 0:
        return cells, np.zeros((width(k), 0), dtype="int32")
    held, rows = _cache(k).rows(cells)
    inside = union_of(held.ring, rows)
    study = held.cells[inside]
    if not bool(held.has_ring[inside].all()):  # a ring cell's own ring is not held yet
        return study, np.ascontiguousarray(neighbours_within(study, k).T)
    return study, slots_within(held.ring, inside)


def union_of(ring: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """In cells whose rings are `ring` (slot by slot, (width, n), indices among them, -1 pads), the union of the
    rings of the cells `rows`: their indices, sorted (a study area)."""
    mask = np.zeros(ring.shape[1] + 1, dtype=bool)  # the extra last slot takes the -1 pads
    mask[ring[:, rows].ravel()] = True
    mask[-1] = False
    return np.flatnonzero(mask)


def slots_within(ring: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The rings (`ring` as in `union_of`) of the cells `inside` (sorted indices) as positions among them, -1
    outside: int32 (width, len(inside)), C-ordered (a gather of columns comes out F-ordered: Gi* reads rows)."""
    where = np.full(ring.shape[1] + 1, -1, dtype="int32")
    where[inside] = np.arange(inside.size, dtype="int32")
    return np.ascontiguousarray(where[ring[:, inside]])


def hold_around(cell_ids, k: int) -> None:
    """Hold the rings of every cell within grid distance k of `cell_ids` (a study area of theirs and of
    any subset), in one growth of the cache."""
    ids = disks(distinct(cell_ids), k)
    neighbours_within(unique(ids[ids >= 0]), k)


def neighbours_within(study, k: int) -> np.ndarray:
    """For each cell of `study` (sorted, distinct int64), its k-ring's cells that lie in `study`, as positions
    in `study`: an int64 array (len(study), width(k)), -1 where a ring cell lies outside (or a pentagon's ring
    is short). The cell itself is among its own."""
    study = np.asarray(study, dtype="int64")
    if study.size == 0:
        return np.zeros((0, width(k)), dtype="int64")
    held, rows = _cache(k).rows(study)
    where = np.full(held.cells.size + 1, -1, dtype="int64")  # the extra last slot takes the -1 pads
    where[rows] = np.arange(study.size)
    return where[held.ring[:, rows]].T


def clear() -> None:
    """Forget every ring held (tests; a process that ran over another country)."""
    with _CACHES_LOCK:
        _CACHES.clear()
        _new_generation()
