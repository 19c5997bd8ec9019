"""Rollout progress of the expansion programme per region over time, and its forecast.

Which upgrade belongs to which region is a portable Ibis expression on the store
(`region_upgrades_expr`; `lib.engine` compiles it for DuckDB, PostgreSQL, Trino or
Spark): the parent of its site's resolution-9 cell at `cells.REGION_RES` is one of the
region's cells (an integer equi-join). The baseline of an upgrade is its first imported
version. The counting over time then runs on that small frame (one row per upgrade) in
pandas (`cumulative`): a sorted search per date series, which needs no date spine
table, and is the same whichever engine gave the frame. Cancelled upgrades (current
status) are left out everywhere. The forecast is plain Python too (`forecast`: a
Poisson interval from scipy, which SQL engines lack).

Counting rules, for a period end date d (inclusive):
- planned_cum: upgrades whose current on_air_planned <= d
- baseline_cum: upgrades whose baseline on_air_planned <= d
- on_air_cum: upgrades whose on_air_actual <= d
- late: on_air_planned < d (its planned day has passed) and not on air by d (on_air_actual empty or after d)
- total: every (not cancelled) upgrade of the region, whatever its dates
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats

from lib import cells, engine

ALL = "ALL"
"""region_id of the whole network (every upgrade, also those outside every region)."""

FREQS = {"week": "W-SUN", "month": "ME"}
"""Period names -> pandas offsets of their end dates (weeks end on Sunday)."""

WINDOW_DAYS = 90
"""Default look-back window of the forecast's pace."""

PACE_WINDOWS = (30, 90, 180, 365)
"""Windows (days) whose paces span the forecast's band, so that it holds how the pace has varied."""

CONFIDENCE = 0.90
"""Coverage of the forecast's band."""

CHANGE_DAYS = 30
"""The headline's percentage-point change is measured over this many days."""

UPGRADE_COLUMNS = ["region_id", "upgrade_id", "planned", "baseline", "actual"]
SERIES_COLUMNS = ["region_id", "date", "planned_cum", "baseline_cum", "on_air_cum", "late", "total",
                  "pct_on_air", "pct_planned"]

REASON_COMPLETE = "complete: every upgrade is on air"
REASON_EMPTY = "no upgrades planned"
REASON_NO_PACE = "no upgrade went on air in the last {days} days"


@dataclass(frozen=True)
class Forecast:
    """Forecast completion date with its band (earliest, latest), or None-fields and a reason."""

    date: dt.date | None
    low: dt.date | None
    high: dt.date | None
    pace_per_week: float
    remaining: int
    reason: str = ""
    last_planned: dt.date | None = None  # the latest planned on-air date: what the plan itself promises

    @property
    def done(self) -> bool:
        """True when every upgrade is already on air."""
        return self.reason == REASON_COMPLETE


def _baseline(b: ibis.BaseBackend) -> ir.Table:
    """upgrade_id, baseline: the on_air_planned of each upgrade's first imported version."""
    v = b.table("upgrades_versions").select("upgrade_id", "version_import_id", "on_air_planned")
    first = v.group_by("upgrade_id").agg(first_import=v.version_import_id.min())
    return v.join(first, [v.upgrade_id == first.upgrade_id, v.version_import_id == first.first_import]).select(
        v.upgrade_id, baseline=v.on_air_planned)


def _upgrades(b: ibis.BaseBackend) -> ir.Table:
    """Not-cancelled upgrades: upgrade_id, site_id, planned (current), baseline, actual."""
    u, base = b.table("upgrades"), _baseline(b)
    u = u.filter(u.status.isnull() | (u.status != "cancelled")).select(
        "upgrade_id", "site_id", planned=u.on_air_planned, actual=u.on_air_actual)
    return u.left_join(base, u.upgrade_id == base.upgrade_id).select(
        u.upgrade_id, u.site_id, u.planned, baseline=base.baseline.fill_null(u.planned), actual=u.actual)


def region_upgrades_expr(con, level: str = "state", region_ids: Iterable[str] | None = None) -> ir.Table:
    """The unexecuted expression of `region_upgrades` (only the regions `region_ids`, if given)."""
    b = engine.backend(con)
    r, rc = b.table("regions"), b.table("region_cells")
    s = b.table("sites").select("site_id", "cell")
    r = r.filter(r.level == level)
    if region_ids is not None:
        r = r.filter(r.region_id.isin(list(region_ids)))
    rc = rc.join(r.select("region_id"), "region_id").select("region_id", "cell")
    u = _upgrades(b)
    j = u.join(s, u.site_id == s.site_id).join(rc, rc.cell == engine.parent(s.cell, cells.REGION_RES))
    return j.select(rc.region_id, *UPGRADE_COLUMNS[1:]).order_by(["region_id", "upgrade_id"])


def network_upgrades_expr(con) -> ir.Table:
    """The unexecuted expression of `network_upgrades`."""
    u = _upgrades(engine.backend(con))
    return u.mutate(region_id=ibis.literal(ALL)).select(*UPGRADE_COLUMNS).order_by("upgrade_id")


def date_span_expr(con) -> ir.Table:
    """One row: earliest and latest planned, baseline and actual on-air date of the not-cancelled upgrades."""
    u = _upgrades(engine.backend(con))
    return u.aggregate(**{f"{c}_{f}": getattr(u[c], f)() for c in ("planned", "baseline", "actual")
                          for f in ("min", "max")})


def regions_expr(con, level: str = "state") -> ir.Table:
    """region_id of every region of `level`, sorted."""
    r = engine.backend(con).table("regions")
    return r.filter(r.level == level).select("region_id").order_by("region_id")


def _frame(con, key: tuple, build) -> pd.DataFrame:
    df = engine.run_query(con, key, build)
    for col in ("planned", "baseline", "actual"):
        df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
    return df.astype({"region_id": "str", "upgrade_id": "str"})[UPGRADE_COLUMNS].reset_index(drop=True)


def region_upgrades(con: duckdb.DuckDBPyConnection, level: str = "state") -> pd.DataFrame:
    """Per region of `level` and not-cancelled upgrade: planned (current), baseline and actual on-air dates."""
    return _frame(con, ("progress.region_upgrades", level, None), lambda: region_upgrades_expr(con, level))


def network_upgrades(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every not-cancelled upgrade of the network (region_id ALL), as `region_upgrades` gives them."""
    return _frame(con, ("progress.network_upgrades",), lambda: network_upgrades_expr(con))


def period_ends(start, end, freq: str = "week") -> pd.DatetimeIndex:
    """End dates of the periods (weeks ending Sunday, or months) from the one holding `start` to the one
    holding `end`."""
    if freq not in FREQS:
        raise ValueError(f"freq must be one of {', '.join(FREQS)}, not {freq!r}")
    offset = pd.tseries.frequencies.to_offset(FREQS[freq])
    first = offset.rollforward(pd.Timestamp(start).normalize())
    last = offset.rollforward(pd.Timestamp(end).normalize())
    return pd.date_range(first, last, freq=offset).astype("datetime64[us]")


@dataclass(frozen=True)
class Counters:
    """One region's upgrades as sorted date arrays (datetime64[us], empty dates dropped), for counting how many
    lie on or before any date by binary search: planned, baseline, actual, due (planned + 1 day) and both (the
    later of due and actual, empty when either is)."""

    total: int
    planned: np.ndarray
    baseline: np.ndarray
    actual: np.ndarray
    due: np.ndarray
    both: np.ndarray
    reached: np.ndarray  # the later of planned and actual (empty when either is): on air with its day come


def counters(upgrades: pd.DataFrame) -> Counters:
    """`Counters` of one region's upgrades (columns as `region_upgrades`)."""
    def sorted_(values: pd.Series) -> np.ndarray:
        return np.sort(values.dropna().to_numpy(dtype="datetime64[us]"))

    # late at d: its planned day has passed (planned < d, i.e. planned + 1 day <= d: dates are days) and it is
    # not on air (not actual <= d), the rule of linkage.upgrade_flags_expr; counted as the first minus both
    due = upgrades["planned"] + pd.Timedelta(days=1)
    both = pd.concat([due, upgrades["actual"]], axis=1).max(axis=1, skipna=False)
    reached = pd.concat([upgrades["planned"], upgrades["actual"]], axis=1).max(axis=1, skipna=False)
    return Counters(len(upgrades), sorted_(upgrades["planned"]), sorted_(upgrades["baseline"]),
                    sorted_(upgrades["actual"]), sorted_(due), sorted_(both), sorted_(reached))


def _count_le(values: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """For each date, how many of the sorted `values` are <= it."""
    return np.searchsorted(values, dates, side="right").astype("int64")


def counts_at(c: Counters, dates) -> dict[str, np.ndarray]:
    """The progress figures of `c` at `dates`: planned_cum, baseline_cum, on_air_cum, late, due, ahead, total,
    pct_on_air, pct_planned (arrays over dates). Every upgrade (not cancelled) is exactly one of on air, late,
    due and ahead (planned for a later day): their sum is the total."""
    d = pd.DatetimeIndex(dates).astype("datetime64[us]").to_numpy()
    out = {"planned_cum": _count_le(c.planned, d), "baseline_cum": _count_le(c.baseline, d),
           "on_air_cum": _count_le(c.actual, d)}
    out["late"] = _count_le(c.due, d) - _count_le(c.both, d)
    # due: its planned day is the day itself and it is not on air; ahead: planned for a later day, not on air
    out["due"] = _count_le(c.planned, d) - _count_le(c.reached, d) - out["late"]
    out["ahead"] = c.total - out["on_air_cum"] - out["late"] - out["due"]
    out["total"] = np.full(d.size, c.total, dtype="int64")
    # 100 * k / n (not k * (100 / n)) so that k == n gives exactly 100.0
    for name, k in (("pct_on_air", out["on_air_cum"]), ("pct_planned", out["planned_cum"])):
        out[name] = 100.0 * k / c.total if c.total else np.full(d.size, np.nan)
    return out


def cumulative(upgrades: pd.DataFrame, dates, region_id: str) -> pd.DataFrame:
    """The progress series of one region's upgrades (columns as `region_upgrades`) at `dates`."""
    d = pd.DatetimeIndex(dates).astype("datetime64[us]").to_numpy()
    out = pd.DataFrame({"region_id": region_id, "date": d, **counts_at(counters(upgrades), d)})
    return out[SERIES_COLUMNS]


def _date_span(frame: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    values = pd.concat([frame[c] for c in ("planned", "baseline", "actual")]).dropna()
    return (values.min(), values.max()) if len(values) else None


def date_span(con) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Earliest and latest date of the network's (not cancelled) upgrades, as `_date_span` of
    `network_upgrades`, without fetching every upgrade; None when there is none."""
    row = date_span_expr(con).execute().iloc[0]
    values = pd.to_datetime(pd.Series(list(row), dtype=object)).dropna()
    return (values.min(), values.max()) if len(values) else None


def progress_series(con: duckdb.DuckDBPyConnection, region_ids: Iterable[str] | None = None,
                    level: str = "state", freq: str = "week", start=None, end=None) -> pd.DataFrame:
    """Per region of `level` (and ALL, the whole network) and period end date: upgrades planned on air
    by then (current plan and baseline), on air by then, late, total and percentages.

    `region_ids` None means every region of the level and ALL; otherwise only those listed ("ALL"
    included if listed). `start`/`end` default to the earliest and latest date in the data. A region
    without upgrades has total 0 and NaN percentages."""
    if region_ids is None:
        wanted = [ALL, *regions_expr(con, level).execute()["region_id"].astype(str)]
    else:
        wanted = list(dict.fromkeys(region_ids))
    # fetch only what is asked for: the network's upgrades if ALL is, the listed regions' otherwise
    regions = [r for r in wanted if r != ALL]
    network = network_upgrades(con) if ALL in wanted else None
    only = None if region_ids is None else tuple(regions)
    per_region = _frame(con, ("progress.region_upgrades", level, only),
                        lambda: region_upgrades_expr(con, level, only)) if regions else None
    if start is None or end is None:
        span = _date_span(network) if network is not None else date_span(con)
        if span is None:
            return pd.DataFrame({c: [] for c in SERIES_COLUMNS})
        start = span[0] if start is None else start
        end = span[1] if end is None else end
    dates = period_ends(start, end, freq)
    parts = [cumulative(network if rid == ALL else per_region[per_region["region_id"] == rid], dates, rid)
             for rid in wanted]
    return pd.concat(parts, ignore_index=True)[SERIES_COLUMNS]


def forecast(on_air_dates, total: int, as_of, window_days: int = WINDOW_DAYS, last_planned=None) -> Forecast:
    """Completion date of `total` upgrades from the recent pace, with a 90% band.

    Method: n = upgrades that went on air in the window (as_of - window_days, as_of]; the pace is
    n / window_days per day, and the remaining upgrades (total minus those on air by as_of) go on
    air at that pace: date = as_of + ceil(remaining * window_days / n) days.

    The band comes from how the pace varies: the pace is measured over each of `PACE_WINDOWS` (and the
    forecast's own window) that the programme has run through (its first on-air date at or before the
    window's start; the forecast's own window always counts) and that saw an upgrade go on air; each
    window's count n_w is taken as a Poisson count with its exact (Garwood, chi-square) 90% interval
    [n_lo, n_hi]. The earliest date (low) comes from the fastest of the paces n_hi / w, the latest (high)
    from the slowest n_lo / w: a slower or faster spell of the last year lies inside the band. Dates after
    as_of are ignored. With nothing remaining the forecast is done (reason REASON_COMPLETE); with no
    upgrade on air in the window there is no date (reason REASON_NO_PACE). `last_planned` is passed
    through, to be shown beside the forecast."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    as_of = pd.Timestamp(as_of).normalize()
    given = on_air_dates if isinstance(on_air_dates, pd.Series) else pd.Series(list(on_air_dates), dtype=object)
    dates = np.sort(pd.to_datetime(given).dropna().dt.normalize().to_numpy(dtype="datetime64[us]"))
    return forecast_sorted(dates, total, as_of, window_days, last_planned)


def forecast_sorted(on_air: np.ndarray, total: int, as_of, window_days: int = WINDOW_DAYS,
                    last_planned=None) -> Forecast:
    """`forecast` of on-air dates given sorted, as whole days (datetime64[us], no empty one)."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    as_of = pd.Timestamp(as_of).normalize()
    on_air_by = int(np.searchsorted(on_air, as_of.to_datetime64(), side="right"))
    start = (as_of - pd.Timedelta(days=window_days)).to_datetime64()
    n = on_air_by - int(np.searchsorted(on_air, start, side="right"))
    pace_week = 7.0 * n / window_days
    remaining = max(int(total) - on_air_by, 0)
    last = None if last_planned is None or pd.isna(last_planned) else pd.Timestamp(last_planned).date()
    if int(total) <= 0:
        return Forecast(None, None, None, pace_week, 0, REASON_EMPTY, last)
    if remaining == 0:
        return Forecast(None, None, None, pace_week, 0, REASON_COMPLETE, last)
    if n == 0:
        return Forecast(None, None, None, 0.0, remaining, REASON_NO_PACE.format(days=window_days), last)
    day = as_of.date()

    def after(days: float) -> dt.date:
        return day + dt.timedelta(days=math.ceil(days))

    fast, slow = pace_range(on_air, on_air_by, as_of, window_days)
    central = day + dt.timedelta(days=-(-remaining * window_days // n))
    return Forecast(central, after(remaining / fast), after(remaining / slow), pace_week, remaining, "", last)


def pace_range(on_air: np.ndarray, on_air_by: int, as_of: pd.Timestamp, window_days: int) -> tuple[float, float]:
    """The fastest and slowest pace (upgrades a day) of the band (`forecast`): over the pace windows the
    programme has run through, the ends of each window count's Poisson 90% interval, divided by its days."""
    alpha = 1.0 - CONFIDENCE
    paces = []
    for w in sorted({window_days, *PACE_WINDOWS}):
        start = (as_of - pd.Timedelta(days=w)).to_datetime64()
        n = on_air_by - int(np.searchsorted(on_air, start, side="right"))
        covered = w == window_days or (on_air.size and on_air[0] <= start)
        if covered and n > 0:
            paces.append((stats.chi2.ppf(1 - alpha / 2, 2 * n + 2) / 2 / w, stats.chi2.ppf(alpha / 2, 2 * n) / 2 / w))
    return max(p[0] for p in paces), min(p[1] for p in paces)


def headline(con: duckdb.DuckDBPyConnection, as_of, region_id: str | None = None,
             level: str = "state") -> dict:
    """Key figures of one region (None or ALL: the network) as of a date: total, on air, percent on air,
    its change in percentage points over the last 30 days, late upgrades and the completion forecast."""
    rid = region_id or ALL
    if rid == ALL:
        frame = network_upgrades(con)
    else:
        frame = region_upgrades(con, level)
        frame = frame[frame["region_id"] == rid]
    return headline_of(frame, as_of, rid)


def headline_of(frame: pd.DataFrame | Counters, as_of, region_id: str = ALL) -> dict:
    """`headline` of the upgrades in `frame` (columns as `region_upgrades`, one region's rows; or their
    `counters`)."""
    c = frame if isinstance(frame, Counters) else counters(frame)
    day = pd.Timestamp(as_of).normalize()
    at = counts_at(c, [day, day - pd.Timedelta(days=CHANGE_DAYS)])
    return {
        "region_id": region_id,
        "as_of": day.date(),
        "total": int(at["total"][0]),
        "on_air": int(at["on_air_cum"][0]),
        "pct_on_air": float(at["pct_on_air"][0]),
        "pct_change_pp": float(at["pct_on_air"][0] - at["pct_on_air"][1]),
        "late": int(at["late"][0]),
        "due": int(at["due"][0]),
        "ahead": int(at["ahead"][0]),
        "forecast": forecast_sorted(_days(c.actual), c.total, day,
                                    last_planned=c.planned[-1] if c.planned.size else None),
    }


def _days(values: np.ndarray) -> np.ndarray:
    """Sorted datetime64 values as whole days (the order stays)."""
    return values.astype("datetime64[D]").astype("datetime64[us]")
