"""The ring cache (lib/engine/rings) against plain h3 calls, whatever was asked of it before."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.engine import gistar, rings

CENTRE = h3.str_to_int(h3.latlng_to_cell(52.2, 8.2, 8))
NEAR = np.array(sorted(h3.str_to_int(c) for c in h3.grid_disk(h3.int_to_str(CENTRE), 6)), dtype="int64")
PENTAGON = h3.str_to_int(sorted(h3.get_pentagons(8))[0])


def naive_union(cells, k):
    return sorted({h3.str_to_int(n) for c in cells for n in h3.grid_disk(h3.int_to_str(int(c)), k)})


def naive_within(study, k):
    pos = {int(c): i for i, c in enumerate(study)}
    return [sorted(pos[h3.str_to_int(n)] for n in h3.grid_disk(h3.int_to_str(int(c)), k) if h3.str_to_int(n) in pos)
            for c in study]


def rows_of(within):
    return [sorted(int(i) for i in row if i >= 0) for row in within]


@pytest.fixture(autouse=True)
def fresh():
    rings.clear()
    yield
    rings.clear()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list(NEAR)), min_size=1, max_size=25), min_size=1, max_size=4),
       st.integers(0, 2))
def test_answers_do_not_depend_on_what_was_asked_before(asks, k):
    rings.clear()
    for cells in asks:
        union = rings.disk_union(cells, k)
        assert union.tolist() == naive_union(cells, k)
        assert rows_of(rings.neighbours_within(union, k)) == naive_within(union, k)
        study = np.array(sorted(set(cells)), dtype="int64")
        assert rows_of(rings.neighbours_within(study, k)) == naive_within(study, k)


def test_a_pentagon_has_a_shorter_ring():
    union = rings.disk_union([PENTAGON], 1)
    assert union.tolist() == naive_union([PENTAGON], 1) and len(union) == 6
    within = rings.neighbours_within(union, 1)
    assert rows_of(within) == naive_within(union, 1)
    assert within.shape == (6, rings.width(1)) and (within[list(union).index(PENTAGON)] == -1).sum() == 1


def test_a_full_cache_starts_again_and_stays_right(monkeypatch):
    first = rings.disk_union(NEAR[:5], 1)
    monkeypatch.setattr(rings, "MAX_CELLS", rings._cache(1).held.cells.size + 1)
    before = rings.generation()
    second = rings.disk_union(NEAR[-8:], 1)  # more cells than the cap would be held: the cache starts again
    assert rings.generation() == before + 1
    assert second.tolist() == naive_union(NEAR[-8:], 1)
    assert rings.disk_union(NEAR[:5], 1).tolist() == first.tolist()


def test_the_cache_starts_again_only_when_what_it_would_hold_is_over_the_cap(monkeypatch):
    """Counted by the cells really new: a second area next to the first, both under the cap together,
    keeps the first one's rings."""
    area = rings.disk_union([CENTRE], 6)  # 127 cells, their rings held
    monkeypatch.setattr(rings, "MAX_CELLS", 400)
    before = rings.generation()
    rings.neighbours_within(area, 1)  # the rings of 127 cells, of which 91 were held; 169 cells held after
    fine = h3.str_to_int(h3.cell_to_center_child(h3.int_to_str(CENTRE), 9))
    rings.disk_union(rings.disk_union([fine], 5), 1)  # 91 rings at resolution 9: 127 cells more, 296 in all
    held = rings._cache(1).held
    assert rings.generation() == before and held.cells.size <= 400
    assert held.has_ring[np.searchsorted(held.cells, area)].all()


def test_rings_held_up_front_are_held_again_after_the_cache_starts_again(tiny_db):
    from lib import store
    from lib.engine import hotspots

    con = store.connect(tiny_db, read_only=True)

    hotspots._hold_rings(con, 8, 1)
    assert (8, 1, rings.generation()) in hotspots._RINGS_HELD
    rings.clear()
    assert (8, 1, rings.generation()) not in hotspots._RINGS_HELD
    hotspots._hold_rings(con, 8, 1)
    held = rings._cache(1).held
    counted = hotspots.cell_counts(con, 8)["cell"].to_numpy()
    assert held.has_ring[np.searchsorted(held.cells, counted)].all()
    con.close()


def test_gi_star_of_no_group_is_empty():

    study = rings.disk_union([CENTRE], 2)
    assert gistar.gi_star(study, np.zeros((0, study.size))).shape == (0, study.size)


def test_unique_and_distinct():
    a = np.array([5, 3, 5, -1, 3, 9], dtype="int64")
    assert rings.unique(a).tolist() == [-1, 3, 5, 9]
    assert rings.distinct(a).tolist() == [-1, 3, 5, 9]
    assert rings.distinct(np.array([1, 2, 7])).tolist() == [1, 2, 7]
    assert rings.unique(np.zeros(0, dtype="int64")).size == 0
    assert rings.disk_union([], 1).size == 0
    with pytest.raises(ValueError, match="k must be 0 or more"):
        rings.disk_union([CENTRE], -1)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_around_is_the_union_and_its_neighbours_cold_and_warm(k):
    """`around` (one lookup) equals `disk_union` then `neighbours_within`, slot by slot, near a pentagon too."""
    pentagon_area = np.array(sorted(h3.str_to_int(c) for c in h3.grid_disk(h3.int_to_str(PENTAGON), 2)))
    rng = np.random.default_rng(k)
    for cells in (NEAR[rng.choice(NEAR.size, 12, replace=False)], pentagon_area[:5], NEAR[:1]):
        for _ in range(2):  # a cold cache first, then the rings held
            study, slots = rings.around(cells, k)
            union = rings.disk_union(cells, k)
            assert study.tolist() == union.tolist() == naive_union(cells, k)
            assert slots.flags.c_contiguous and slots.shape == (rings.width(k), study.size)
            assert rows_of(slots.T) == naive_within(study, k)
        rings.clear()
