"""Impact of relief: do complaints in a hotspot fall once it is relieved?

A difference-in-differences (DiD) estimate, written as Ibis expressions on the store
(portable: integer cells, dates and plain joins; no H3 extension, no engine-only
functions). Only the per-hotspot event windows are computed in Python, from the small
relief table the caller passes in.

Design (a stacked event study):

- Weeks are calendar weeks starting on Monday (`date_trunc('week')` on every engine).
- Each relieved hotspot h has its own event window, aligned on the week W0 holding its
  relief date: *before* = the `weeks` weeks W0-weeks .. W0-1, *after* = the `weeks`
  weeks W0+1 .. W0+weeks. The relief week itself is left out (it is part before, part
  after). A relieved hotspot is *treated* once its after window is complete on `as_of`.
- The *controls* of h are the hotspots (of the same region; for "ALL", of the whole
  network) not relieved by the end of h's after window: never relieved, or relieved
  only later. They are measured over the same calendar weeks as h's windows, so a
  trend common to all hotspots (a season, a campaign) cancels out.
- Per treated hotspot: mean weekly complaints before and after (complaints in the window
  / weeks; quiet weeks count as zero), and the same for its controls (complaints of all
  its controls in the window / (weeks x number of controls)). A region's figures are the
  means over its treated hotspots that have at least one control:
  did = (treated_after - treated_before) - (control_after - control_before) and
  pct_change = 100 x did / treated_before (empty when treated_before is 0).
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import cells, engine
from lib.engine import hotspots

ALL = "ALL"
"""region_id of the whole network."""

DEFAULT_RES = 8
"""Resolution of hotspot cells."""

WEEKS = 8
"""Default length of the before and after windows, in weeks."""

WEEKLY_COLUMNS = ["cell", "week", "n"]
DID_COLUMNS = ["region_id", "treated_before", "treated_after", "control_before", "control_after", "did",
               "pct_change", "n_treated", "n_control"]

_EVENT_SCHEMA = {"cell": "int64", "relieved_on": "date", "w0": "date", "before_start": "date",
                 "after_end": "date", "complete": "boolean"}


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


def _regions(con, hot: ir.Table, res: int, region_level: str | None) -> ir.Table:
    """hot with a region_id: once as ALL, and once per region of `region_level` its cell lies in."""
    out = hot.mutate(region_id=ibis.literal(ALL))
    if region_level is None:
        return out
    b = engine.backend(con)
    r, rc = b.table("regions"), b.table("region_cells")
    rcl = rc.filter(rc.region_id.isin(r.filter(r.level == region_level).region_id))
    if res >= cells.REGION_RES:
        m = rcl.select("region_id", cell=rcl.cell)
        joined = hot.join(m, engine.parent(hot.cell, cells.REGION_RES) == m.cell)
    else:
        m = rcl.select("region_id", cell=engine.parent(rcl.cell, res)).distinct()
        joined = hot.join(m, hot.cell == m.cell)
    return out.union(joined.select(*hot.columns, "region_id"))


def did_expr(con, relief_df: pd.DataFrame, res: int = DEFAULT_RES, weeks: int = WEEKS, as_of=None,
             region_level: str | None = None, kind: str = "capacity") -> ir.Table:
    """The unexecuted expression of `did` (no ALL row when nothing is treated)."""
    ev = events(relief_df, weeks, as_of)
    hot = _regions(con, ibis.memtable(ev, schema=_EVENT_SCHEMA), res, region_level)
    treated = hot.filter(hot.complete)
    ctrl = hot.select(c_region=hot.region_id, c_cell=hot.cell, c_relieved=hot.relieved_on)
    pairs = treated.join(ctrl, [treated.region_id == ctrl.c_region, treated.cell != ctrl.c_cell,
                                ctrl.c_relieved.isnull() | (ctrl.c_relieved >= treated.after_end)])
    done = ev[ev["complete"]]
    start = done["before_start"].min() if len(done) else pd.Timestamp("2000-01-03")
    end = done["after_end"].max() if len(done) else start
    wk = complaint_weeks_expr(con, res, start, end, kind)

    def sums(tab: ir.Table, cell: str) -> ir.Table:
        j = tab.join(wk, [tab[cell] == wk.cell, wk.week >= tab.before_start, wk.week < tab.after_end])
        j = j.select(tab.region_id, tab.cell, before=(wk.week < tab.w0).ifelse(wk.n, 0),
                     after=(wk.week > tab.w0).ifelse(wk.n, 0))
        return j.group_by(["region_id", "cell"]).agg(s_before=ibis._.before.sum(), s_after=ibis._.after.sum())

    pair_cols = pairs.select("region_id", "cell", "w0", "before_start", "after_end", "c_cell")
    t_sums, c_sums = sums(treated, "cell"), sums(pair_cols, "c_cell")
    k = pairs.group_by(["region_id", "cell"]).agg(k=ibis._.count())
    keys = ["region_id", "cell"]
    per = treated.select(*keys).join(k, keys)
    per = per.left_join(t_sums, keys).select(*keys, "k", tb=ibis._.s_before.fill_null(0),
                                             ta=ibis._.s_after.fill_null(0))
    per = per.left_join(c_sums, keys).select(*keys, "k", "tb", "ta", cb=ibis._.s_before.fill_null(0),
                                             ca=ibis._.s_after.fill_null(0))
    per = per.select(*keys, tb=per.tb / weeks, ta=per.ta / weeks, cb=per.cb / (per.k * weeks),
                     ca=per.ca / (per.k * weeks))
    agg = per.group_by("region_id").agg(treated_before=per.tb.mean(), treated_after=per.ta.mean(),
                                        control_before=per.cb.mean(), control_after=per.ca.mean(),
                                        n_treated=per.cell.count())
    nc = pairs.select("region_id", "c_cell").distinct().group_by("region_id").agg(n_control=ibis._.count())
    out = agg.join(nc, "region_id")
    did = (out.treated_after - out.treated_before) - (out.control_after - out.control_before)
    out = out.mutate(did=did).mutate(
        pct_change=(ibis._.treated_before > 0).ifelse(ibis._.did * 100 / ibis._.treated_before, ibis.null()))
    return out.select(*DID_COLUMNS).order_by("region_id")


def did(con, relief_df: pd.DataFrame, res: int = DEFAULT_RES, weeks: int = WEEKS, as_of=None,
        region_level: str | None = None, kind: str = "capacity") -> pd.DataFrame:
    """Difference-in-differences of weekly complaints around relief, per region and for ALL.

    `relief_df` is `lib.engine.linkage.relief` of the hotspot cells at `res` as of the same
    `as_of` (default today): columns cell, relief_date, status. Complaints of `kind` (as
    in `lib.engine.hotspots.KINDS`). One row per region of `region_level` (e.g. "state") with a
    treated hotspot, and always the row ALL first (NaN figures and zero counts when no
    hotspot is treated yet): columns `DID_COLUMNS`. See the module docstring for the
    design: windows of `weeks` weeks aligned on each hotspot's relief week, controls
    measured over the same calendar weeks.
    """
    out = engine.backend(con).execute(did_expr(con, relief_df, res, weeks, as_of, region_level, kind))
    out = out.astype({"region_id": "str", "n_treated": "int64", "n_control": "int64"})
    for c in DID_COLUMNS[1:7]:
        out[c] = out[c].astype("float64")
    if ALL not in set(out["region_id"]):
        empty = {c: np.nan for c in DID_COLUMNS[1:7]} | {"region_id": ALL, "n_treated": 0, "n_control": 0}
        out = pd.concat([pd.DataFrame([empty]), out], ignore_index=True).astype(out.dtypes.to_dict())
    rank = (out["region_id"] != ALL).astype(int)
    return out.assign(_r=rank).sort_values(["_r", "region_id"]).drop(columns="_r")[DID_COLUMNS].reset_index(
        drop=True)
