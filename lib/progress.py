"""Rollout progress of the expansion programme per region over time, and its forecast.

Which upgrade belongs to which region is plain, portable SQL: the parent of its site's
resolution-9 cell at `cells.REGION_RES` is one of the region's cells (an integer
equi-join). The baseline of an upgrade is its first imported version. The counting
over time then runs on that small frame in pandas (`cumulative`), so it is the same
on any engine. Cancelled upgrades (current status) are left out everywhere.

Counting rules, for a period end date d (inclusive):
- planned_cum: upgrades whose current on_air_planned <= d
- baseline_cum: upgrades whose baseline on_air_planned <= d
- on_air_cum: upgrades whose on_air_actual <= d
- late: on_air_planned <= d and not on air by d (on_air_actual empty or after d)
- total: every (not cancelled) upgrade of the region, whatever its dates
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from lib import cells

ALL = "ALL"
"""region_id of the whole network (every upgrade, also those outside every region)."""

FREQS = {"week": "W-SUN", "month": "ME"}
"""Period names -> pandas offsets of their end dates (weeks end on Sunday)."""

WINDOW_DAYS = 90
"""Default look-back window of the forecast's pace."""

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

    @property
    def done(self) -> bool:
        """True when every upgrade is already on air."""
        return self.reason == REASON_COMPLETE


def _upgrades_sql(by_region: bool) -> str:
    """Not-cancelled upgrades with current and baseline on-air plan; per region or network-wide."""
    baseline = """
    first_version AS (
        SELECT upgrade_id, min(version_import_id) AS version_import_id FROM upgrades_versions GROUP BY upgrade_id
    ),
    baseline AS (
        SELECT v.upgrade_id, v.on_air_planned AS baseline
        FROM upgrades_versions v JOIN first_version f
            ON v.upgrade_id = f.upgrade_id AND v.version_import_id = f.version_import_id
    )"""
    select = """u.upgrade_id, u.on_air_planned AS planned, coalesce(b.baseline, u.on_air_planned) AS baseline,
        u.on_air_actual AS actual
    FROM upgrades u LEFT JOIN baseline b ON b.upgrade_id = u.upgrade_id"""
    where = "u.status IS NULL OR u.status <> 'cancelled'"
    if not by_region:
        return f"WITH {baseline} SELECT '{ALL}' AS region_id, {select} WHERE {where} ORDER BY u.upgrade_id"
    return f"""WITH {baseline},
    rc AS (
        SELECT c.region_id, c.cell FROM region_cells c JOIN regions r ON r.region_id = c.region_id
        WHERE r.level = ?
    )
    SELECT rc.region_id, {select}
        JOIN sites s ON s.site_id = u.site_id
        JOIN rc ON rc.cell = {cells.parent_sql("s.cell", cells.REGION_RES)}
    WHERE {where}
    ORDER BY rc.region_id, u.upgrade_id"""


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pd.DataFrame:
    df = con.execute(sql, params).df()
    for col in ("planned", "baseline", "actual"):
        df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
    return df[UPGRADE_COLUMNS]


def region_upgrades(con: duckdb.DuckDBPyConnection, level: str = "state") -> pd.DataFrame:
    """Per region of `level` and not-cancelled upgrade: planned (current), baseline and actual on-air dates."""
    return _frame(con, _upgrades_sql(True), [level])


def network_upgrades(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every not-cancelled upgrade of the network (region_id ALL), as `region_upgrades` gives them."""
    return _frame(con, _upgrades_sql(False), [])


def period_ends(start, end, freq: str = "week") -> pd.DatetimeIndex:
    """End dates of the periods (weeks ending Sunday, or months) from the one holding `start` to the one
    holding `end`."""
    if freq not in FREQS:
        raise ValueError(f"freq must be one of {', '.join(FREQS)}, not {freq!r}")
    offset = pd.tseries.frequencies.to_offset(FREQS[freq])
    first = offset.rollforward(pd.Timestamp(start).normalize())
    last = offset.rollforward(pd.Timestamp(end).normalize())
    return pd.date_range(first, last, freq=offset).astype("datetime64[us]")


def _count_le(values: pd.Series, dates: np.ndarray) -> np.ndarray:
    """For each date, how many non-null values are <= it."""
    v = np.sort(values.dropna().to_numpy(dtype="datetime64[us]"))
    return np.searchsorted(v, dates, side="right").astype("int64")


def cumulative(upgrades: pd.DataFrame, dates, region_id: str) -> pd.DataFrame:
    """The progress series of one region's upgrades (columns as `region_upgrades`) at `dates`."""
    d = pd.DatetimeIndex(dates).astype("datetime64[us]").to_numpy()
    planned, actual = upgrades["planned"], upgrades["actual"]
    # late at d: planned <= d and not (actual <= d); counted as planned <= d minus both <= d
    both = pd.concat([planned, actual], axis=1).max(axis=1, skipna=False)
    total = len(upgrades)
    out = pd.DataFrame({
        "region_id": region_id,
        "date": d,
        "planned_cum": _count_le(planned, d),
        "baseline_cum": _count_le(upgrades["baseline"], d),
        "on_air_cum": _count_le(actual, d),
    })
    out["late"] = out["planned_cum"] - _count_le(both, d)
    out["total"] = np.int64(total)
    # 100 * k / n (not k * (100 / n)) so that k == n gives exactly 100.0
    out["pct_on_air"] = 100.0 * out["on_air_cum"] / total if total else np.nan
    out["pct_planned"] = 100.0 * out["planned_cum"] / total if total else np.nan
    return out[SERIES_COLUMNS]


def _date_span(frame: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    values = pd.concat([frame[c] for c in ("planned", "baseline", "actual")]).dropna()
    return (values.min(), values.max()) if len(values) else None


def progress_series(con: duckdb.DuckDBPyConnection, region_ids: Iterable[str] | None = None,
                    level: str = "state", freq: str = "week", start=None, end=None) -> pd.DataFrame:
    """Per region of `level` (and ALL, the whole network) and period end date: upgrades planned on air
    by then (current plan and baseline), on air by then, late, total and percentages.

    `region_ids` None means every region of the level and ALL; otherwise only those listed ("ALL"
    included if listed). `start`/`end` default to the earliest and latest date in the data. A region
    without upgrades has total 0 and NaN percentages."""
    per_region = region_upgrades(con, level)
    network = network_upgrades(con)
    known = [r[0] for r in con.execute("SELECT region_id FROM regions WHERE level = ? ORDER BY region_id",
                                       [level]).fetchall()]
    wanted = [ALL, *known] if region_ids is None else list(dict.fromkeys(region_ids))
    span = _date_span(network)
    if start is None or end is None:
        if span is None:
            return pd.DataFrame({c: [] for c in SERIES_COLUMNS})
        start = span[0] if start is None else start
        end = span[1] if end is None else end
    dates = period_ends(start, end, freq)
    parts = [cumulative(network if rid == ALL else per_region[per_region["region_id"] == rid], dates, rid)
             for rid in wanted]
    return pd.concat(parts, ignore_index=True)[SERIES_COLUMNS]


def forecast(on_air_dates, total: int, as_of, window_days: int = WINDOW_DAYS) -> Forecast:
    """Completion date of `total` upgrades from the recent pace, with a 90% band.

    Method: n = upgrades that went on air in the window (as_of - window_days, as_of]; the pace is
    n / window_days per day, and the remaining upgrades (total minus those on air by as_of) go on
    air at that pace: date = as_of + ceil(remaining * window_days / n) days. The band treats n as
    a Poisson count and takes its exact (Garwood, chi-square) 90% interval [n_lo, n_hi]: the
    earliest date (low) comes from the fast pace n_hi / window_days, the latest (high) from the
    slow pace n_lo / window_days. Dates after as_of are ignored. With nothing remaining the
    forecast is done (reason REASON_COMPLETE); with no upgrade on air in the window there is no
    date (reason REASON_NO_PACE)."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    as_of = pd.Timestamp(as_of).normalize()
    dates = pd.to_datetime(pd.Series(list(on_air_dates), dtype=object)).dropna().dt.normalize()
    dates = dates[dates <= as_of]
    n = int((dates > as_of - pd.Timedelta(days=window_days)).sum())
    pace_week = 7.0 * n / window_days
    remaining = max(int(total) - len(dates), 0)
    if int(total) <= 0:
        return Forecast(None, None, None, pace_week, 0, REASON_EMPTY)
    if remaining == 0:
        return Forecast(None, None, None, pace_week, 0, REASON_COMPLETE)
    if n == 0:
        return Forecast(None, None, None, 0.0, remaining, REASON_NO_PACE.format(days=window_days))
    alpha = 1.0 - CONFIDENCE
    n_lo = stats.chi2.ppf(alpha / 2, 2 * n) / 2
    n_hi = stats.chi2.ppf(1 - alpha / 2, 2 * n + 2) / 2
    day = as_of.date()

    def after(days: float) -> dt.date:
        return day + dt.timedelta(days=math.ceil(days))

    central = day + dt.timedelta(days=-(-remaining * window_days // n))
    return Forecast(central, after(remaining * window_days / n_hi), after(remaining * window_days / n_lo),
                    pace_week, remaining)


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
    day = pd.Timestamp(as_of).normalize()
    now, before = cumulative(frame, [day, day - pd.Timedelta(days=CHANGE_DAYS)], rid).to_dict("records")
    return {
        "region_id": rid,
        "as_of": day.date(),
        "total": int(now["total"]),
        "on_air": int(now["on_air_cum"]),
        "pct_on_air": float(now["pct_on_air"]),
        "pct_change_pp": float(now["pct_on_air"] - before["pct_on_air"]),
        "late": int(now["late"]),
        "forecast": forecast(frame["actual"], len(frame), day),
    }
