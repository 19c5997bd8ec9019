"""Complaint hotspots on H3 cells: counts, Getis-Ord Gi* with FDR control, trend classes.

Portable split. The heavy work, counting millions of complaints per cell, is Ibis expressions
over integer columns (no H3 extension, no engine-only functions), with an unexecuted builder
that compiles for every engine of `engine.DIALECTS`: complaints -> (cell, n) and
(month, cell, n) (`cell_counts_expr`), a group-by on `engine.parent` of the stored
resolution-9 cell, months by truncating received_at. A window's times go in as DuckDB parameters
(`engine.run_timed`), so its SQL is compiled once for every window.

What follows works on those counts, one row per cell, in Python: the Gi* z-scores
(`gi_star`, sums over H3 rings in numpy; see there for why not SQL), the neighbour
table (`neighbour_table`, H3 grid topology), the normal distribution (`p_two_sided`)
and the Benjamini-Hochberg procedure (`fdr_bh`, needs ranks over sorted p-values).
Trend classes over months, from the monthly Gi* of `gi_star`, are lib/trends.py.
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
from scipy import special

from lib import derive, engine, heldcounts, rings, schema

DEFAULT_RES = 8
"""Resolution of hotspot cells (edge about 461 m, about 0.74 km2)."""

RESOLUTIONS = (7, 8, 9)
"""Resolutions a hotspot query may ask for (the store holds resolution 9)."""

DEFAULT_K = 1
"""Neighbourhood of Gi*: the cell and its k-ring (k=1: the cell and its 6 neighbours)."""

FDR_Q = 0.05
"""Benjamini-Hochberg false-discovery rate for calling a cell significant."""

KINDS = MappingProxyType({
    "capacity": schema.CAPACITY_CATEGORIES,  # more capacity helps: slow data, dropped calls
    "coverage": schema.COVERAGE_CATEGORIES,  # more coverage helps: no signal, no indoor signal
    "all": None,  # every category, "other" included
})
"""Hotspot kinds and the complaint categories each counts (None: all)."""

_COUNT_COLUMNS = {"cell": "int64", "n": "int64"}
_GI_COLUMNS = ["cell", "n", "z", "p", "significant", "hot"]



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

    A window on a DuckDB store is counted from the complaints held in memory (lib/heldcounts, the same
    counts in a few ms instead of a scan); everything else is `cell_counts_sql`."""
    if isinstance(con, duckdb.DuckDBPyConnection) and (start is not None or end is not None):
        _check_res(res)
        cats, chans = checked(categories, schema.CATEGORIES, "categories"), checked(channels, schema.CHANNELS,
                                                                                     "channels")
        return heldcounts.held(con).counts(res, start, end, cats, chans)
    return cell_counts_sql(con, res, start, end, categories, channels)


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


# -- what SQL cannot do portably: H3 topology, the normal CDF, FDR ranks ---------------

def neighbour_table(cell_ids, k: int = DEFAULT_K) -> pd.DataFrame:
    """Every cell's k-ring (grid_disk, the cell itself included) as int64 (cell, neighbour) rows.

    Python because the ring needs H3's grid topology, which portable SQL does not have
    (no engine may need an H3 extension); h3ronpy computes it vectorised (`rings.disks`).
    """
    origin = rings.distinct(cell_ids)
    ids = rings.disks(origin, k)
    inside = ids >= 0  # a pentagon's ring is short
    return pd.DataFrame({"cell": np.repeat(origin, inside.sum(axis=1)), "neighbour": ids[inside]})


def gi_star(study: np.ndarray, values: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Gi* z-scores (see `getis_ord`) of the study cells `study` (sorted, distinct) for each row of `values`
    (groups x study cells, e.g. months): an array of the same shape.

    Neighbours are each cell's k-ring within the study area, the cell included. Where a group's field is
    constant (sd = 0) or a neighbourhood covers the whole study area, z is undefined and set to 0.

    Python (numpy over the rings), not SQL: the rings come from H3's topology in Python anyway,
    and the inputs are counts already aggregated per cell (one row each). Sending the value and ring
    tables to the engine and the z-scores back cost more than the arithmetic: at 10M complaints the map's
    Gi* over Germany (res 7, 56,000 study cells) took 36 ms as a DuckDB join after 37 ms of computing rings,
    and takes about 20 here with the rings held (lib/rings), with the same results to 1e-12
    (tests/test_portability.py keeps the SQL as the check; tests/test_hotspots.py checks against PySAL).
    """
    x = np.atleast_2d(np.asarray(values, dtype="float64"))
    if study.size == 0:
        return np.zeros_like(x)
    return _gi(x, np.ascontiguousarray(rings.neighbours_within(study, k).T))


def _gi(x: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """`gi_star` of `x` (groups x study cells, float64) given the study cells' rings slot by slot (`rings.around`:
    slots[j] the j-th ring cell of each, as a position in the study area, -1 outside it)."""
    n_cells = x.shape[1]
    w = (slots >= 0).sum(axis=0, dtype="int16").astype("float64")  # a narrow sum: 4 ms less at 190,000 cells
    padded = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # position -1 reads the appended 0
    local = np.empty_like(x)
    for g in range(x.shape[0]):  # one group at a time, one ring slot at a time: whole rows, no (cells x ring) array
        row = padded[g]
        local[g] = row[slots[0]]
        for j in range(1, slots.shape[0]):
            local[g] += row[slots[j]]
    mean = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = sd * np.sqrt(w * (n_cells - w) / (n_cells - 1))
        z = (local - w * mean) / scale
    return np.where((sd > 0) & (w < n_cells), z, 0.0)


def p_two_sided(z) -> np.ndarray:
    """Two-sided p-value of standard-normal z-scores.

    Python because the normal CDF is not a portable SQL function (PostgreSQL has none).
    """
    return 2.0 * special.ndtr(-np.abs(np.asarray(z, dtype="float64")))  # ndtr(-x) is what norm.sf(x) computes


def fdr_bh(p, q: float = FDR_Q) -> np.ndarray:
    """Which p-values the Benjamini-Hochberg procedure rejects at false-discovery rate q.

    Rejects the i smallest p-values, for the largest i with p_(i) <= i q / m. Python
    because it needs the rank of each p-value among all m of them, in sorted order.
    """
    p = np.asarray(p, dtype="float64")
    out = np.zeros(p.shape, dtype=bool)
    m = p.size
    # only p <= q can be rejected (i q / m <= q), and every smaller p is among them too: sorting those alone
    # gives each its rank among all m (ties in index order, as a stable sort of all m would)
    candidates = np.flatnonzero(p <= q)
    order = candidates[np.argsort(p[candidates], kind="stable")]
    below = np.nonzero(p[order] <= q * np.arange(1, order.size + 1) / m)[0]
    if below.size:
        out[order[: below[-1] + 1]] = True
    return out


# -- Gi* ---------------------------------------------------------------------------------

def study_area(counted, k: int, study_cells) -> np.ndarray:
    """The given `study_cells` (sorted, distinct), else the cells within distance k of a counted one."""
    if study_cells is not None:
        return rings.distinct(study_cells)
    return rings.disk_union(counted, k)


def check_counts(counts: pd.DataFrame, keys: list[str]) -> None:
    """Refuse counts without the columns `keys` and n, or with a key twice."""
    missing = [c for c in [*keys, "n"] if c not in counts.columns]
    if missing:
        raise ValueError(f"counts need columns {[*keys, 'n']}; missing {missing}")
    if counts.duplicated(keys).any():
        raise ValueError(f"counts hold duplicate {keys}: aggregate them first")


def getis_ord(counts: pd.DataFrame, k: int = DEFAULT_K, study_cells=None, q: float = FDR_Q) -> pd.DataFrame:
    """Getis-Ord Gi* of each study cell: (cell, n, z, p, significant, hot), sorted by cell.

    Gi* (Ord & Getis 1995) with binary weights over the k-ring, the cell included:
    z_i = (L_i - W_i xbar) / (S sqrt((N W_i - W_i^2) / (N - 1))), where L_i is the sum of
    the counts in cell i's k-ring, W_i the number of ring cells in the study area,
    N the number of study cells, xbar their mean count and S their standard deviation
    (divisor N). p is two-sided from the normal distribution; `significant` is the
    Benjamini-Hochberg decision at false-discovery rate q over all N cells; `hot` is
    significant with z > 0.

    The study area is `study_cells` when given (counts of cells outside it are ignored);
    by default it is the cells with counts plus their k-rings. Cells without complaints
    are real zeros, not missing data: they are zero-filled, so a lone cluster stands out
    against the quiet cells around it. Cells outside the study area are not neighbours.
    """
    check_counts(counts, ["cell"])
    return pd.DataFrame(_getis_ord(counts, k, study_cells, q)).astype({"n": counts["n"].dtype})


def _getis_ord(counts: pd.DataFrame, k: int, study_cells, q: float) -> dict[str, np.ndarray]:
    """`getis_ord` as arrays (`_GI_COLUMNS`)."""
    counted = counts["cell"].to_numpy(dtype="int64")
    if study_cells is None:  # the study area and its rings from one lookup
        study, slots = rings.around(counted, k)
    else:
        study = study_area(counted, k, study_cells)
        slots = np.ascontiguousarray(rings.neighbours_within(study, k).T)
    n = np.zeros(study.size, dtype=counts["n"].to_numpy().dtype)
    if study.size:  # each count at its cell's place in the (sorted) study area; cells outside it are left out
        pos = np.minimum(np.searchsorted(study, counted), study.size - 1)
        inside = study[pos] == counted
        n[pos[inside]] = counts["n"].to_numpy()[inside]
    return _gi_columns(study, n, slots, q)


def _gi_columns(study: np.ndarray, n: np.ndarray, slots: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """Gi* of the study cells `study` (sorted) with counts `n` and rings `slots` (`rings.around`), as the
    arrays of `_GI_COLUMNS`."""
    z = _gi(n[None, :].astype("float64"), slots)[0] if study.size else np.zeros(0)
    significant = fdr_bh(p := p_two_sided(z), q)
    return {"cell": study.astype("int64", copy=False), "n": n, "z": z, "p": p, "significant": significant,
            "hot": significant & (z > 0)}


@dataclass(frozen=True)
class _Grid:
    """The Gi* topology of the held complaints at one resolution and k: every cell within k of a cell that
    had a complaint (sorted), each one's ring slot by slot as positions among them (`rings.around`, int32,
    -1 outside them), and where each complaint cell (`heldcounts.Held.at_res`) lies among them."""

    cells: np.ndarray
    slots: np.ndarray
    at: np.ndarray


def _grid(held: heldcounts.Held, res: int, k: int) -> _Grid:
    distinct = held.at_res(res)[0]
    cells_, slots = rings.around(distinct, k)
    grid = _Grid(cells_, slots.astype("int32"), np.searchsorted(cells_, distinct))
    for a in (grid.cells, grid.slots, grid.at):
        a.setflags(write=False)
    return grid


def held_grid(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES,
              k: int = DEFAULT_K) -> tuple[heldcounts.Held, _Grid]:
    """The complaints held in memory and their Gi* grid at `res` (built once per import; lib/warmup builds
    them ahead of the first view)."""
    held = heldcounts.held(con)
    return held, held.once(("hotspots.grid", res, k), lambda: _grid(held, res, k))


def _held_getis_ord(con, res: int, start, end, categories, channels, k: int, q: float) -> dict[str, np.ndarray]:
    """`getis_ord` of the complaints held in memory (lib/heldcounts) in [start, end), on their grid: the same
    answer as from `cell_counts`, without looking a window's cells up in the ring cache (at 10M complaints,
    over Germany at resolution 8: about 25 ms against 50)."""
    held, grid = held_grid(con, res, k)
    c = np.zeros(grid.cells.size + 1, dtype="int64")  # the extra last slot is what -1 reads: 0
    c[grid.at] = held.dense(res, start, end, categories, channels)
    study = np.zeros(grid.cells.size + 1, dtype=bool)  # the study area: the rings of the counted cells
    study[grid.slots[:, np.flatnonzero(c)].ravel()] = True
    study[-1] = False
    inside = np.flatnonzero(study)
    where = np.full(grid.cells.size + 1, -1, dtype="int32")
    where[inside] = np.arange(inside.size, dtype="int32")
    slots = np.ascontiguousarray(where[grid.slots[:, inside]])  # slot by slot: rows for `_gi` (a gather of columns
    return _gi_columns(grid.cells[inside], c[inside], slots, q)  # comes out F-ordered; 4.7 ms against 6.6)


_RINGS_HELD: set[tuple[int, int, int]] = set()  # (res, k, rings.generation())


def _hold_rings(con, res: int, k: int) -> None:
    """Once per process and resolution: the rings (lib/rings) of every cell that ever had a complaint and of
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
             channels: Iterable[str] | None = None) -> pd.DataFrame:
    """Gi* hotspots of one kind of complaint in [start, end): (cell, n, z, p, significant, hot).

    Capacity complaints (slow data, dropped calls) and coverage complaints (no signal, no
    indoor signal) have different remedies, so each kind is tested on its own; "all"
    counts every category. Only cells with complaints or a significant hotspot are
    returned (the quiet zero-filled cells are left out), hottest first. Counts are raw,
    not per inhabitant: over a large area the busiest places stand out too. `channels`
    (None: every channel) keeps complaints that came in through those channels only.
    """
    gi = _hotspot_columns(con, res, start, end, kind, k, q, channels)
    keep = (gi["n"] > 0) | gi["hot"]
    gi = {c: v[keep] for c, v in gi.items()}
    order = np.lexsort((gi["cell"], -gi["z"]))  # hottest first, ties by cell
    return pd.DataFrame({c: gi[c][order] for c in _GI_COLUMNS})


def hot_cells(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES, start=None, end=None,
              kind: str = "capacity", k: int = DEFAULT_K, q: float = FDR_Q,
              channels: Iterable[str] | None = None) -> np.ndarray:
    """The cells `hotspots` calls hot, sorted (int64)."""
    gi = _hotspot_columns(con, res, start, end, kind, k, q, channels)
    return gi["cell"][gi["hot"]]


def _hotspot_columns(con, res: int, start, end, kind: str, k: int, q: float, channels) -> dict[str, np.ndarray]:
    """Gi* of every study cell (`_GI_COLUMNS` as arrays, sorted by cell) of one kind in [start, end)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose one of {list(KINDS)})")
    if isinstance(con, duckdb.DuckDBPyConnection) and (start is not None or end is not None):
        _check_res(res)
        return _held_getis_ord(con, res, start, end, KINDS[kind], checked(channels, schema.CHANNELS, "channels"),
                               k, q)
    _hold_rings(con, res, k)
    counts = cell_counts(con, res, start, end, KINDS[kind], channels)
    check_counts(counts, ["cell"])
    return _getis_ord(counts, k, None, q)
