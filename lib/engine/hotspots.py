"""Complaint hotspots on H3 cells: counts per cell and time window, and the hotspots of a window.

Portable split. The heavy work, counting millions of complaints per cell, is Ibis expressions
over integer columns (no H3 extension, no engine-only functions), with an unexecuted builder
that compiles for every engine of `engine.DIALECTS`: complaints -> (cell, n) and
(month, cell, n) (`cell_counts_expr`), a group-by on `engine.parent` of the stored
resolution-9 cell, months by truncating received_at. A window's times go in as DuckDB parameters
(`engine.run_timed`), so its SQL is compiled once for every window.

Gi* on those counts is lib/engine/gistar. A window's counts on a DuckDB store come from the complaints
held in memory (lib/engine/heldcounts), and its Gi* runs on a grid held with them (`held_grid`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import engine
from lib.engine import derive, gistar, heldcounts, network, rings, stores
from lib.engine.gistar import DEFAULT_K, FDR_Q
from lib.ingest import schema

DEFAULT_RES = 8
"""Resolution of hotspot cells (edge about 461 m, about 0.74 km2)."""

RESOLUTIONS = (7, 8, 9)
"""Resolutions a hotspot query may ask for (the store holds resolution 9)."""

KINDS = MappingProxyType({
    "capacity": schema.CAPACITY_CATEGORIES,  # more capacity helps: slow data, dropped calls
    "coverage": schema.COVERAGE_CATEGORIES,  # more coverage helps: no signal, no indoor signal
    "all": None,  # every category, "other" included
})
"""Hotspot kinds and the complaint categories each counts (None: all)."""

NEAR, COUNTRY = "near", "country"
STUDY_AREAS = (NEAR, COUNTRY)
"""Gi*'s study area, the cells a cell's neighbourhood is compared with. `NEAR` (the default): the cells with a
complaint in the window and their neighbours, i.e. where customers live and complain, so a place stands out
against the populated places around it, not against empty forest and fields. `COUNTRY`: every cell of the
states' regions at the resolution, quiet countryside included, so that any busy place stands out (more hot
cells), and every cell that ever had a complaint with its neighbours (the few outside the states); the
same cells for every window. Studied at `COUNTRY_RESOLUTIONS` only (resolution 9 would be 3.8 million cells)."""

COUNTRY_RESOLUTIONS = (7, 8)

_COUNT_COLUMNS = {"cell": "int64", "n": "int64"}



# -- counts: portable SQL on the store ------------------------------------------------

def _check_res(res: int) -> None:
    if res not in RESOLUTIONS:
        raise ValueError(f"resolution {res} not supported (choose one of {RESOLUTIONS})")


def complaint_filter(c: ir.Table, start, end, categories: Iterable[str] | None,
            channels: Iterable[str] | None = None) -> list[ir.BooleanValue]:
    """Filter of complaints `c` to the window [start, end), the categories and the channels.

    Ibis writes the values as literals (no driver placeholder style): timestamps are
    formatted here, categories checked against the schema.
    """
    cond = [c.cell > 0]
    if start is not None:
        cond.append(c.received_at >= engine.timestamp_value(start))
    if end is not None:
        cond.append(c.received_at < engine.timestamp_value(end))
    return cond + _categories(c, categories) + channel_filter(c, channels)


def channel_filter(c: ir.Table, channels: Iterable[str] | None) -> list[ir.BooleanValue]:
    """Filter of `c` to the channels (none: every channel), checked against the schema."""
    chans = checked(channels, schema.CHANNELS, "channels")
    return [] if chans is None else [c.channel.isin(chans) if chans else ibis.literal(False)]


def _categories(c: ir.Table, categories: Iterable[str] | None) -> list[ir.BooleanValue]:
    """Filter of `c` to the categories (none: every category), checked against the schema."""
    cats = checked(categories, schema.CATEGORIES, "categories")
    return [] if cats is None else [c.category.isin(cats) if cats else ibis.literal(False)]


def checked(values: Iterable[str] | None, choices: tuple[str, ...], name: str) -> tuple[str, ...] | None:
    """`values` as a tuple (None stays None: no filter), refused when one is not among `choices`."""
    if values is None:
        return None
    out = tuple(values)
    unknown = sorted(set(out) - set(choices))
    if unknown:
        raise ValueError(f"unknown {name} {unknown} (choose from {list(choices)})")
    return out


def _derived(con, start, end, monthly: bool = False, channels=None) -> bool:
    """Whether a count can read `derive`'s complaint_cube: no time window, no channel filter (the cube has
    no channel), and the cube is current."""
    return start is None and end is None and not monthly and channels is None and derive.current(con)


def cell_counts_expr(con, res: int = DEFAULT_RES, start=None, end=None, categories: Iterable[str] | None = None,
                     monthly: bool = False, derived: bool = False, channels: Iterable[str] | None = None) -> ir.Table:
    """Complaints per cell at `res` (and calendar month) received in [start, end): (month,) cell, n; unexecuted.

    `channels` keeps complaints of those channels only (None: every channel).

    With `derived` (no window, not monthly) the counts are sums over `derive`'s complaint_cube
    (complaints per cell at each resolution and category): the same answer from a far smaller table.
    """
    _check_res(res)
    if derived:
        if start is not None or end is not None or monthly or channels is not None:
            raise ValueError("the complaint cube holds totals over all time and channels: no window, months or "
                             "channels")
        k = engine.backend(con).table("complaint_cube")
        t = k.filter([k.res == res, *_categories(k, categories)])
        return t.group_by("cell").agg(n=t.n.sum().cast("int64")).order_by("cell")
    c = engine.backend(con).table("complaints")
    keys = ["month", "cell"] if monthly else ["cell"]
    cols = {"month": c.received_at.truncate("M")} if monthly else {}
    t = c.filter(complaint_filter(c, start, end, categories, channels)).select(**cols, cell=engine.parent(c.cell, res))
    return t.group_by(keys).agg(n=ibis._.count()).order_by(keys)


def cell_counts(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, start=None, end=None,
                categories: Iterable[str] | None = None, channels: Iterable[str] | None = None) -> pd.DataFrame:
    """Complaints per cell at `res` received in [start, end), optionally of some categories and channels only:
    cell, n, sorted by cell.

    A window on a DuckDB store is counted from the complaints held in memory (lib/engine/heldcounts, the same
    counts in a few ms instead of a scan); everything else is `cell_counts_sql`."""
    if _held(con, res, start, end):
        cats, chans = checked(categories, schema.CATEGORIES, "categories"), checked(channels, schema.CHANNELS,
                                                                                     "channels")
        return heldcounts.held(con).counts(res, start, end, cats, chans)
    return cell_counts_sql(con, res, start, end, categories, channels)


def _held(con, res: int, start, end) -> bool:
    """Whether a count reads the complaints held in memory: a window on a DuckDB store (the resolution checked)."""
    _check_res(res)
    return stores.holds(con) and (start is not None or end is not None)


def cell_counts_sql(con, res: int = DEFAULT_RES, start=None, end=None, categories: Iterable[str] | None = None,
                    channels: Iterable[str] | None = None) -> pd.DataFrame:
    """`cell_counts` as a query on the store (portable Ibis; the complaint cube where it serves)."""
    cats = None if categories is None else tuple(categories)
    chans = None if channels is None else tuple(channels)
    derived = _derived(con, start, end, channels=chans)
    # the window's times go in as parameters (engine.run_timed): one compiled SQL for every window
    out = engine.run_timed(con, ("cell_counts", res, start is None, end is None, cats, derived, chans),
                           {"start": start, "end": end},
                           lambda start=None, end=None: cell_counts_expr(con, res, start, end, cats, derived=derived,
                                                                         channels=chans))
    return out.astype(_COUNT_COLUMNS)


def monthly_counts(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, start=None, end=None,
                   categories: Iterable[str] | None = None) -> pd.DataFrame:
    """Complaints per calendar month and cell at `res` received in [start, end)."""
    cats = None if categories is None else tuple(categories)
    out = engine.run_timed(con, ("monthly_counts", res, start is None, end is None, cats), {"start": start, "end": end},
                           lambda start=None, end=None: cell_counts_expr(con, res, start, end, cats, monthly=True))
    out["month"] = pd.to_datetime(out["month"])
    return out.astype(_COUNT_COLUMNS)


@dataclass(frozen=True)
class _Grid:
    """The Gi* topology of the held complaints at one resolution and k: every cell within k of a cell that
    had a complaint (sorted), each one's ring slot by slot as positions among them (`rings.around`, int32,
    -1 outside them), and where each complaint cell (`heldcounts.Held.at_res`) lies among them."""

    cells: np.ndarray
    slots: np.ndarray
    at: np.ndarray


def _grid(held: heldcounts.Held, res: int, k: int, country: np.ndarray | None = None) -> _Grid:
    """The grid near complaints; with `country`, the whole-country study area itself (every cell of it in)."""
    distinct = held.at_res(res)[0]
    cells_, slots = rings.around(distinct, k)
    if country is not None:  # the country's cells and the rings of every complaint cell, each with its ring
        cells_, slots = rings.around(np.union1d(cells_, country), k)
        cells_, slots = _within(cells_, slots, np.union1d(np.searchsorted(cells_, country), rings.union_of(
            slots, np.searchsorted(cells_, distinct))))
    grid = _Grid(cells_, slots.astype("int32", copy=False), np.searchsorted(cells_, distinct))
    for a in (grid.cells, grid.slots, grid.at):
        a.setflags(write=False)
    return grid


def _within(cells_: np.ndarray, slots: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells `inside` (sorted positions) and their rings as positions among them (-1 outside)."""
    return cells_[inside], rings.slots_within(slots, inside)


def country_cells(con, res: int) -> np.ndarray:
    """Every cell at `res` of the states' regions (their resolution-8 cells, or those cells' parents), sorted;
    read once per store content (the held network's, which follows every import of regions)."""
    if res not in COUNTRY_RESOLUTIONS:
        raise ValueError(f"the whole country is studied at resolutions {COUNTRY_RESOLUTIONS}, not {res}")
    if stores.holds(con):
        return network.held(con).once(("hotspots.country", res), lambda: _country_cells(con, res))
    return _country_cells(con, res)


def _country_cells(con, res: int) -> np.ndarray:
    b = engine.backend(con)
    rc, r = b.table("region_cells"), b.table("regions")
    expr = rc.join(r.filter(r.level == "state"), "region_id").select(cell=engine.parent(rc.cell, res)).distinct()
    out = np.sort(b.execute(expr)["cell"].to_numpy(dtype="int64"))
    out.setflags(write=False)
    return out


def held_grid(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, k: int = DEFAULT_K,
              study: str = NEAR) -> tuple[heldcounts.Held, _Grid]:
    """The complaints held in memory and their Gi* grid at `res` (built once per import, and for the whole
    country once per set of country cells; lib/warmup builds them ahead of the first view)."""
    held = heldcounts.held(con)
    if study == NEAR:
        return held, held.once(("hotspots.grid", res, k), lambda: _grid(held, res, k))
    country = country_cells(con, res)
    key = ("hotspots.grid", res, k, COUNTRY, country.size, hash(country.tobytes()))
    return held, held.once(key, lambda: _grid(held, res, k, country))


def _held_getis_ord(con, res: int, start, end, categories, channels, k: int, q: float,
                    study: str = NEAR) -> dict[str, np.ndarray]:
    """`getis_ord` of the complaints held in memory (lib/engine/heldcounts) in [start, end), on their grid: the same
    answer as from `cell_counts`, without looking a window's cells up in the ring cache (at 10M complaints,
    over Germany at resolution 8: about 25 ms against 50)."""
    held, grid = held_grid(con, res, k, study)
    c = np.zeros(grid.cells.size + 1, dtype="int64")  # the extra last slot is what -1 reads: 0
    c[grid.at] = held.dense(res, start, end, categories, channels)
    if study == COUNTRY:  # the grid is the study area
        return gistar.gi_columns(grid.cells, c[:-1], grid.slots, q)
    inside = rings.union_of(grid.slots, np.flatnonzero(c))  # the study area: the rings of the counted cells
    return gistar.gi_columns(grid.cells[inside], c[inside], rings.slots_within(grid.slots, inside), q)


_RINGS_HELD: set[tuple[int, int, int]] = set()  # (res, k, rings.generation())


def _hold_rings(con, res: int, k: int) -> None:
    """Once per process and resolution: the rings (lib/engine/rings) of every cell that ever had a complaint and of
    their neighbours, so that a study area of any window is already held (a new date on the map's slider
    then computes no ring). At 10M complaints this took 0.3-0.4 s at resolution 7, 0.5-0.6 s at 8 and
    4.7-5.5 s at 9 (the first view at a resolution pays it; later ones at res 9 then take 0.3 s instead
    of 1.8), and the three together hold 70 MB (1.9M cells). Cells of later imports are added when first
    asked for; when the ring cache starts again (`rings.generation`), they are held again."""
    key = (res, k, rings.generation())
    if key not in _RINGS_HELD:
        rings.hold_around(cell_counts(con, res)["cell"].to_numpy(), k)
        _RINGS_HELD.add(key)


def hotspots(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, start=None, end=None,
             kind: str = "capacity", k: int = DEFAULT_K, q: float = FDR_Q,
             channels: Iterable[str] | None = None, study: str = NEAR) -> pd.DataFrame:
    """Gi* hotspots of one kind of complaint in [start, end): (cell, n, z, p, significant, hot).

    Capacity complaints (slow data, dropped calls) and coverage complaints (no signal, no
    indoor signal) have different remedies, so each kind is tested on its own; "all"
    counts every category. Only cells with complaints or a significant hotspot are
    returned (the quiet zero-filled cells are left out), hottest first. Counts are raw,
    not per inhabitant: over a large area the busiest places stand out too. `channels`
    (None: every channel) keeps complaints that came in through those channels only. `study` is Gi*'s study
    area (`STUDY_AREAS`).
    """
    gi = _hotspot_columns(con, res, start, end, kind, k, q, channels, study)
    keep = (gi["n"] > 0) | gi["hot"]
    gi = {c: v[keep] for c, v in gi.items()}
    order = np.lexsort((gi["cell"], -gi["z"]))  # hottest first, ties by cell
    return pd.DataFrame({c: gi[c][order] for c in gistar.GI_COLUMNS})


def hot_cells(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, start=None, end=None,
              kind: str = "capacity", k: int = DEFAULT_K, q: float = FDR_Q,
              channels: Iterable[str] | None = None, study: str = NEAR) -> np.ndarray:
    """The cells `hotspots` calls hot, sorted (int64)."""
    gi = _hotspot_columns(con, res, start, end, kind, k, q, channels, study)
    return gi["cell"][gi["hot"]]


def _hotspot_columns(con, res: int, start, end, kind: str, k: int, q: float, channels,
                     study: str = NEAR) -> dict[str, np.ndarray]:
    """Gi* of every study cell (`gistar.GI_COLUMNS` as arrays, sorted by cell) of one kind in [start, end)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose one of {list(KINDS)})")
    if study not in STUDY_AREAS:
        raise ValueError(f"unknown study area {study!r} (choose one of {list(STUDY_AREAS)})")
    if study == COUNTRY and res not in COUNTRY_RESOLUTIONS:
        raise ValueError(f"the whole country is studied at resolutions {COUNTRY_RESOLUTIONS}, not {res}")
    if _held(con, res, start, end):
        return _held_getis_ord(con, res, start, end, KINDS[kind], checked(channels, schema.CHANNELS, "channels"),
                               k, q, study)
    _hold_rings(con, res, k)
    counts = cell_counts(con, res, start, end, KINDS[kind], channels)
    gistar.check_counts(counts, ["cell"])
    if study == NEAR:
        return gistar.getis_ord_columns(counts, k, None, q)
    ever = cell_counts(con, res)["cell"].to_numpy(dtype="int64")  # every cell that ever had a complaint
    area = np.union1d(rings.around(ever, k)[0], country_cells(con, res))
    return gistar.getis_ord_columns(counts, k, area, q)
