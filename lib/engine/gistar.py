"""Getis-Ord Gi* over H3 cells with false-discovery-rate control: the arithmetic on counts per cell.

The counts come from lib/engine/hotspots (one row per cell); this is what SQL cannot do portably, in Python:
the Gi* z-scores (`gi_star`, sums over H3 rings in numpy; see there for why not SQL), the neighbour
table (`neighbour_table`, H3 grid topology), the normal distribution (`p_two_sided`) and the
Benjamini-Hochberg procedure (`fdr_bh`, needs ranks over sorted p-values). Trend classes over months,
from the monthly Gi* of `gi_star`, are lib/engine/trends.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from lib.engine import rings

DEFAULT_K = 1
"""Neighbourhood of Gi*: the cell and its k-ring (k=1: the cell and its 6 neighbours)."""

FDR_Q = 0.05
"""Benjamini-Hochberg false-discovery rate for calling a cell significant."""

GI_COLUMNS = ["cell", "n", "z", "p", "significant", "hot"]
"""What Gi* gives per study cell."""


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
    and takes about 20 here with the rings held (lib/engine/rings), with the same results to 1e-12
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
    return pd.DataFrame(getis_ord_columns(counts, k, study_cells, q)).astype({"n": counts["n"].dtype})


def getis_ord_columns(counts: pd.DataFrame, k: int, study_cells, q: float) -> dict[str, np.ndarray]:
    """`getis_ord` as arrays (`GI_COLUMNS`)."""
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
    return gi_columns(study, n, slots, q)


def gi_columns(study: np.ndarray, n: np.ndarray, slots: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """Gi* of the study cells `study` (sorted) with counts `n` and rings `slots` (`rings.around`), as the
    arrays of `GI_COLUMNS`."""
    z = _gi(n[None, :].astype("float64"), slots)[0] if study.size else np.zeros(0)
    significant = fdr_bh(p := p_two_sided(z), q)
    return {"cell": study.astype("int64", copy=False), "n": n, "z": z, "p": p, "significant": significant,
            "hot": significant & (z > 0)}
