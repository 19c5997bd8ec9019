"""Complaints around relief, for the story of one hotspot: weekly complaints of cells, and each relieved
hotspot's event window (the weeks before and after the week of its relief date).

The effect of relief over many areas, with its interval, is `lib.engine.eventstudy`; the weekly counts
per cell here (`complaint_weeks_expr`) are portable Ibis expressions it reads on engines without the
complaints held in memory.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import engine
from lib.engine import hotspots

ALL = "ALL"
"""region_id of the whole network."""

DEFAULT_RES = 8
"""Resolution of hotspot cells."""

WEEKS = 8
"""Default length of the before and after windows, in weeks."""

WEEKLY_COLUMNS = ["cell", "week", "n"]


def week_start(day) -> dt.date:
    """The Monday of the calendar week holding `day`."""
    d = pd.Timestamp(day).date()
    return d - dt.timedelta(days=d.weekday())


def complaint_weeks_expr(con, res: int = DEFAULT_RES, start=None, end=None, kind: str = "capacity",
                         channels=None) -> ir.Table:
    """Complaints of `kind` per cell at `res` and calendar week (Monday), received in [start, end): cell, week, n.

    Weeks without complaints have no row. `channels` (None: all) keeps those channels only.
    """
    if res not in hotspots.RESOLUTIONS:
        raise ValueError(f"resolution {res} not supported (choose one of {hotspots.RESOLUTIONS})")
    if kind not in hotspots.KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose one of {list(hotspots.KINDS)})")
    c = engine.backend(con).table("complaints")
    cond = hotspots.complaint_filter(c, start, end, hotspots.KINDS[kind], channels)
    t = c.filter(cond).select(cell=engine.parent(c.cell, res), week=c.received_at.truncate("W").cast("date"))
    return t.group_by(["cell", "week"]).agg(n=ibis._.count())


def _cells(cells_df) -> np.ndarray:
    if isinstance(cells_df, pd.DataFrame):
        if "cell" not in cells_df.columns:
            raise ValueError("cells need a column 'cell'")
        cells_df = cells_df["cell"]
    return np.unique(np.asarray(cells_df, dtype="int64"))


def weekly_hotspot_complaints_expr(con, cells_df, res: int = DEFAULT_RES, start=None, end=None,
                                   kind: str = "capacity", channels=None) -> ir.Table:
    """The unexecuted expression of `weekly_hotspot_complaints` (start and end required)."""
    if start is None or end is None:
        raise ValueError("give start and end of the study window")
    first, last = week_start(start), week_start(pd.Timestamp(end) - pd.Timedelta(microseconds=1))
    weeks = pd.date_range(first, max(first, last), freq="7D") if pd.Timestamp(end) > pd.Timestamp(start) else []
    grid = ibis.memtable(pd.DataFrame({"cell": _cells(cells_df)}), schema={"cell": "int64"}).cross_join(
        ibis.memtable(pd.DataFrame({"week": pd.DatetimeIndex(weeks)}), schema={"week": "date"}))
    counts = complaint_weeks_expr(con, res, start, end, kind, channels)
    joined = grid.left_join(counts, [grid.cell == counts.cell, grid.week == counts.week])
    return joined.select(grid.cell, grid.week, n=counts.n.fill_null(0)).order_by(["cell", "week"])


def weekly_hotspot_complaints(con, cells_df, res: int = DEFAULT_RES, start=None, end=None,
                              kind: str = "capacity", channels=None) -> pd.DataFrame:
    """Complaints of `kind` per hotspot cell and calendar week (Monday) in [start, end): cell, week, n.

    `cells_df` has a column `cell` at `res` (and may have `relief_date`). Every week of the
    study window is listed for every cell, weeks without complaints as 0; the first and
    last week are partial unless start is a Monday and end a Monday. Without start / end
    the window runs from `WEEKS` weeks before the week of the earliest relief_date to
    `WEEKS` weeks after the week of the latest.
    """
    if start is None or end is None:
        dates = pd.to_datetime(cells_df["relief_date"] if isinstance(cells_df, pd.DataFrame)
                               and "relief_date" in cells_df.columns else pd.Series([], dtype="object")).dropna()
        if dates.empty:
            raise ValueError("give start and end, or cells with relief dates")
        start = start if start is not None else week_start(dates.min()) - dt.timedelta(weeks=WEEKS)
        end = end if end is not None else week_start(dates.max()) + dt.timedelta(weeks=WEEKS + 1)
    expr = weekly_hotspot_complaints_expr(con, cells_df, res, start, end, kind, channels)
    out = engine.backend(con).execute(expr)
    out["week"] = pd.to_datetime(out["week"]).dt.date
    return out.astype({"cell": "int64", "n": "int64"})[WEEKLY_COLUMNS].reset_index(drop=True)


def events(relief_df: pd.DataFrame, weeks: int = WEEKS, as_of=None) -> pd.DataFrame:
    """Each hotspot's event window: cell, relieved_on, w0, before_start, after_end, complete.

    relieved_on is the relief date of hotspots whose status is 'relieved' (else empty);
    w0 the Monday of its week; the before window is [before_start, w0), the after window
    [w0 + 7 days, after_end); complete when after_end <= as_of + 1 day.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be 1 or more, not {weeks}")
    missing = {"cell", "relief_date", "status"} - set(relief_df.columns)
    if missing:
        raise ValueError(f"the relief table needs columns cell, relief_date, status; missing {sorted(missing)}")
    as_of = dt.date.today() if as_of is None else pd.Timestamp(as_of).date()
    df = relief_df.drop_duplicates("cell")
    relieved = pd.to_datetime(df["relief_date"].where(df["status"] == "relieved")).astype("datetime64[us]")
    w0 = relieved - pd.to_timedelta(relieved.dt.day_of_week, unit="D")
    out = pd.DataFrame({"cell": df["cell"].astype("int64").to_numpy(), "relieved_on": relieved.to_numpy(),
                        "w0": w0.to_numpy(),
                        "before_start": (w0 - pd.Timedelta(weeks=weeks)).to_numpy(),
                        "after_end": (w0 + pd.Timedelta(weeks=weeks + 1)).to_numpy()})
    out["complete"] = (out["after_end"] <= pd.Timestamp(as_of) + pd.Timedelta(days=1)).fillna(False).astype(bool)
    return out
