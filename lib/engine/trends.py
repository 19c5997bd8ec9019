"""Trend classes of hotspot cells over months, as in emerging hot-spot analysis.

Gi* runs once per month on one study area (`gistar.gi_star`); a Mann-Kendall test on each
cell's monthly z-scores (`mann_kendall`), as ESRI's emerging hot-spot analysis does, and the
share of months the cell was hot give its class (`trend_class`, simplified). Python: the
normal CDF, FDR ranks and Mann-Kendall are not portable SQL (see lib/engine/gistar.py).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from lib.engine import gistar, hotspots

TREND_ALPHA = 0.05
"""Significance level of the Mann-Kendall trend test."""

MOST_SHARE = 0.9
"""Share of months a cell must be a hotspot in to count as a lasting one (ESRI's 90 %)."""

TRENDS = ("intensifying", "persistent", "diminishing", "new", "sporadic", "none")
"""Trend classes of `trend_class`, in the order its rules are tried (see there)."""

_TREND_COLUMNS = ["cell", "n", "months", "months_hot", "hot_latest", "mk_s", "mk_p", "trend"]


def mann_kendall(x, continuity: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Kendall trend test of each series (a 1-d array, or the rows of a 2-d one): (S, p).

    S = sum over i < j of sign(x_j - x_i): positive for a rising series, negative for a
    falling one. Under no trend S is about normal with mean 0 and
    Var(S) = [n(n-1)(2n+5) - sum over tie groups of t(t-1)(2t+5)] / 18;
    Z = (S - 1) / sd for S > 0, (S + 1) / sd for S < 0 (continuity correction; without it
    Z = S / sd, which is Kendall's tau-b test against time), and p = 2 (1 - Phi(|Z|)).
    Fewer than 3 points, or a constant series, give S = 0 and p = 1.
    """
    a = np.atleast_2d(np.asarray(x, dtype="float64"))
    rows, n = a.shape
    s = np.zeros(rows)
    ties = np.zeros(rows)  # sum over every value of (c - 1)(2c + 5), c = how often it occurs
    for i in range(n):
        s += np.sign(a[:, i + 1:] - a[:, [i]]).sum(axis=1)
        c = (a == a[:, [i]]).sum(axis=1)
        ties += (c - 1) * (2 * c + 5)
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    shift = np.sign(s) if continuity else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (s - shift) / np.sqrt(var), 0.0)
    p = np.where((s == 0) | (n < 3), 1.0, gistar.p_two_sided(z))
    if np.ndim(x) == 1:
        return s[0], p[0]
    return s, p


def trend_class(monthly: pd.DataFrame, k: int = gistar.DEFAULT_K, study_cells=None, months=None,
                q: float = gistar.FDR_Q, most: float = MOST_SHARE, alpha: float = TREND_ALPHA) -> pd.DataFrame:
    """Trend class of each cell from monthly counts (month, cell, n), as in emerging hot-spot analysis.

    Gi* runs once per month on one study area (as in `gistar.getis_ord`: the cells with counts in
    any month plus their k-rings, zero-filled, unless `study_cells` is given) over every
    month of `months` (default: each calendar month from the first to the last in
    `monthly`; months without complaints count as zeros). A cell is *hot* in a month
    when it is a significant (FDR q) hotspot with z > 0 that month. Mann-Kendall runs on
    the cell's monthly z-scores (trend up or down: p < alpha). With T months, of which
    the cell is hot in H, the first rule that holds gives the class:

    1. none: H = 0.
    2. intensifying: H >= most * T, hot in the latest month, trend up.
    3. diminishing: H >= most * T, trend down.
    4. persistent: H >= most * T (no trend, or rising without being hot in the latest month).
    5. new: hot in the latest month and in no month before the final uninterrupted
       run of hot months (ESRI's "new" and "consecutive").
    6. sporadic: every other cell that was ever hot (on and off, or no longer hot).

    Returns (cell, n, months, months_hot, hot_latest, mk_s, mk_p, trend) for every cell
    that had a complaint or was hot in some month, sorted by cell; n is the total count.
    A single month makes every hotspot "persistent": trends need a longer window.
    """
    gistar.check_counts(monthly, ["month", "cell"])
    period = pd.to_datetime(monthly["month"]).dt.to_period("M")
    if months is None:
        months = pd.period_range(period.min(), period.max(), freq="M") if len(monthly) else []
    months = pd.PeriodIndex(months, freq="M")
    inside = period.isin(months)
    monthly, period = monthly[inside.to_numpy()], period[inside]
    n_months = len(months)
    study = gistar.study_area(monthly["cell"].to_numpy(dtype="int64"), k, study_cells)
    if study.size == 0 or n_months == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in _TREND_COLUMNS}).astype(
            {"hot_latest": bool, "mk_p": "float64", "trend": "str"})
    # every study cell once per month, zero-filled
    grp = months.get_indexer(period)
    pos = np.searchsorted(study, monthly["cell"].to_numpy(dtype="int64"))
    ok = (pos < study.size) & (study[np.minimum(pos, study.size - 1)] == monthly["cell"].to_numpy())
    grid = np.zeros((n_months, study.size), dtype="int64")
    np.add.at(grid, (grp[ok], pos[ok]), monthly["n"].to_numpy(dtype="int64")[ok])
    z = gistar.gi_star(study, grid, k).T  # study cells x months
    hot = np.zeros_like(z, dtype=bool)
    for t in range(n_months):
        hot[:, t] = gistar.fdr_bh(gistar.p_two_sided(z[:, t]), q) & (z[:, t] > 0)
    total = grid.sum(axis=0)
    months_hot = hot.sum(axis=1)
    keep = (total > 0) | (months_hot > 0)
    z, hot, months_hot, total = z[keep], hot[keep], months_hot[keep], total[keep]
    mk_s, mk_p = mann_kendall(z)
    latest = hot[:, -1]
    not_hot = np.where(~hot, np.arange(n_months), -1).max(axis=1)  # last month not hot (-1: none)
    only_final_run = latest & (months_hot == n_months - 1 - not_hot)
    lasting = months_hot >= most * n_months
    up, down = (mk_p < alpha) & (mk_s > 0), (mk_p < alpha) & (mk_s < 0)
    trend = np.select(
        [months_hot == 0, lasting & latest & up, lasting & down, lasting, only_final_run],
        ["none", "intensifying", "diminishing", "persistent", "new"], default="sporadic")
    return pd.DataFrame({"cell": study[keep], "n": total, "months": n_months, "months_hot": months_hot,
                         "hot_latest": latest, "mk_s": mk_s.astype("int64"), "mk_p": mk_p,
                         "trend": pd.Series(trend, dtype="str")})[_TREND_COLUMNS]


def trends(con: duckdb.DuckDBPyConnection, res: int = hotspots.DEFAULT_RES, start=None, end=None,
           kind: str = "capacity", k: int = gistar.DEFAULT_K, q: float = gistar.FDR_Q) -> pd.DataFrame:
    """`trend_class` of one kind of complaint over the calendar months of [start, end).

    Align the window to month starts: a partial first or last month has fewer complaints
    and biases the trend.
    """
    if kind not in hotspots.KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose one of {list(hotspots.KINDS)})")
    monthly = hotspots.monthly_counts(con, res, start, end, hotspots.KINDS[kind])
    months = None
    if start is not None and end is not None:
        last = pd.Timestamp(end) - pd.Timedelta(microseconds=1)
        months = pd.period_range(pd.Timestamp(start).to_period("M"), last.to_period("M"), freq="M")
    return trend_class(monthly, k=k, months=months, q=q)
