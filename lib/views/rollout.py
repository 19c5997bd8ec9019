"""The manager's view of the rollout: figures per region as of a date, the late and blocked
upgrades, the channel mix of complaints over time, and the impact of relief.

Every figure comes from the engine (one source of truth): percentages, late upgrades and the
forecast from `lib.engine.progress` (`headline_of` on each region's upgrades), the per-upgrade late and
blocked flags from `lib.engine.linkage.upgrade_flags_expr` (the same rules that set a hotspot's relief
status), open hotspots from `lib.engine.hotspots.hot_cells` and `lib.engine.linkage.relief_of`, impact from
`lib.engine.eventstudy` (capacity and coverage complaints apart, with intervals). The joins
are portable Ibis expressions (integer cells, no H3 extension); only the small per-region
frames are finished in pandas.
"""

from __future__ import annotations

import datetime as dt
import json

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import shapely

from lib import cells, engine
from lib.engine import asof, eventstudy, hotspots, linkage, network, progress, rules, serving, stores
from lib.ingest import schema

ALL = progress.ALL
"""region_id of the whole network."""

NETWORK_NAME = "Whole network"

OUTSIDE = "OUTSIDE"
"""The region_id of the row of upgrades whose site lies in no region of the level (shown only when some do)."""
"""Name shown for ALL."""

TREND_MONTHS = 12
"""Months of percent-on-air history in each region's sparkline."""

HOTSPOT_WINDOW_DAYS = asof.WINDOW_DAYS
"""Hotspots are those of the complaints received in this many days up to the as-of date."""

SIMPLIFY_DEG = 0.01
"""Tolerance of the map's region outlines, degrees (about 1 km)."""

CHANNELS = schema.CHANNELS
"""Complaint channels, in schema order."""

TABLE_COLUMNS = ["region_id", "name", "total", "on_air", "pct_on_air", "pct_change_pp", "late", "due", "blocked",
                 "open_no_plan", "forecast", "forecast_low", "forecast_high", "forecast_note", "last_planned", "trend"]
LATE_COLUMNS = ["region_id", "region", "upgrade_id", "site_id", "site_name", "kind", "problem", "days_late",
                "on_air_planned", "link_id", "link_due", "upgrade_owner", "link_owner"]
CHANNEL_COLUMNS = ["month", "channel", "n"]

MAX_LOOKBACK_DAYS = 3 * 365
"""How far before the data's date the page's as-of date may go."""

PROBLEM_BOTH = "late and blocked by transport"
PROBLEM_LATE = "late"
PROBLEM_BLOCKED = "blocked by transport"


def as_date(value) -> dt.date:
    """A date from a date, datetime or timestamp."""
    return pd.Timestamp(value).date()


def valid_day(text: str | None, first: dt.date, last: dt.date) -> bool:
    """True when `text` is empty (None) or an ISO day from `first` to `last` (a date given in a link)."""
    if text is None:
        return True
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return False
    return first <= day <= last


def regions(con, level: str = "state") -> pd.DataFrame:
    """region_id and name of every region of `level`, by name."""
    r = engine.backend(con).table("regions")
    out = r.filter(r.level == level).select("region_id", "name").order_by(["name", "region_id"]).execute()
    return out.astype({"region_id": "str", "name": "str"}).reset_index(drop=True)


def _simplify(geojson: str) -> dict:
    """A GeoJSON geometry simplified to SIMPLIFY_DEG, coordinates rounded to 4 decimals (about 10 m)."""
    geom = shapely.geometry.shape(json.loads(geojson)).simplify(SIMPLIFY_DEG, preserve_topology=True)
    return json.loads(shapely.to_geojson(shapely.set_precision(geom, 1e-4)))


def shapes(con, level: str = "state") -> dict:
    """The regions of `level` as a GeoJSON FeatureCollection (properties region_id, name), simplified for a
    country-wide map."""
    r = engine.backend(con).table("regions")
    df = r.filter(r.level == level).select("region_id", "name", "geometry").order_by("region_id").execute()
    features = [{"type": "Feature", "geometry": _simplify(g), "properties": {"region_id": str(rid), "name": str(n)}}
                for rid, n, g in zip(df["region_id"], df["name"], df["geometry"], strict=True) if g]
    return {"type": "FeatureCollection", "features": features}


def upgrade_states_expr(con, level: str, as_of) -> ir.Table:
    """The unexecuted expression of `upgrade_states`."""
    b = engine.backend(con)
    flags = linkage.upgrade_flags_expr(con, as_of)
    ru = progress.region_upgrades_expr(con, level).select("region_id", "upgrade_id")
    u = b.table("upgrades").select("upgrade_id", "kind", upgrade_owner="owner")
    lk = b.table("transport_links").select("link_id", "completion_planned", link_owner="owner")
    j = (flags.left_join(ru, flags.upgrade_id == ru.upgrade_id)
         .join(u, flags.upgrade_id == u.upgrade_id)
         .left_join(lk, flags.link_id == lk.link_id))
    return j.select(ru.region_id, flags.upgrade_id, flags.site_id, u.kind, flags.on_air_planned, flags.link_id,
                    flags.link_done, lk.completion_planned, flags.late, flags.blocked, flags.up_done,
                    u.upgrade_owner, lk.link_owner).rename(link_due="completion_planned")


def upgrade_states(con, level: str, as_of) -> pd.DataFrame:
    """Every not-cancelled upgrade with its `linkage.upgrade_flags_expr` flags as of `as_of`, its region of
    `level` (empty when in none), kind, owners and its link's planned completion (link_due)."""
    out = engine.run_dated(con, ("rollout.upgrade_states", level), as_date(as_of),
                           lambda d: upgrade_states_expr(con, level, d))
    for c in ("on_air_planned", "link_due"):
        out[c] = engine.as_dates(out[c])
    return out


def _days_late(states: pd.DataFrame, day: dt.date) -> pd.Series:
    """Days since the upgrade's planned on-air date passed while it is not on air (0: not late)."""
    today = pd.Timestamp(day)
    planned = pd.to_datetime(states["on_air_planned"])
    return ((today - planned).dt.days.where((states["up_done"] == 0) & (planned < today))).fillna(0).astype("int64")


def late_list(con, level: str = "state", as_of=None) -> pd.DataFrame:
    """The late or transport-blocked upgrades as of `as_of` (rules of `linkage.relief`), most days late first.

    days_late: days since its planned on-air date passed while not on air (0: blocked, not late). region is
    the region of `level` holding its site (empty when none)."""
    day = as_date(as_of)
    s = upgrade_states(con, level, day)
    s = s[(s["late"] == 1) | (s["blocked"] == 1)].copy()
    names = regions(con, level).set_index("region_id")["name"]
    s["region"] = s["region_id"].map(names)
    s["problem"] = np.select([(s["late"] == 1) & (s["blocked"] == 1), s["late"] == 1],
                             [PROBLEM_BOTH, PROBLEM_LATE], PROBLEM_BLOCKED)
    s["days_late"] = _days_late(s, day)
    sites = engine.backend(con).table("sites").select("site_id", "name").execute()
    s["site_name"] = s["site_id"].map(sites.set_index("site_id")["name"]).astype(object)
    s = s.sort_values(["days_late", "on_air_planned", "upgrade_id"], ascending=[False, True, True])
    return s[LATE_COLUMNS].reset_index(drop=True)


LATE_SHOWN = 500
"""Rows of the late list the page shows (the most days late first); the exports hold every row. A whole network's
list is 7,000 rows at 10M complaints: 1.2 MB on every page run, and more than anyone reads on a screen."""


def _or(values: pd.Series, instead: str = "") -> pd.Series:
    """`values` with `instead` where a value is missing: what a table people read shows there (never "None")."""
    return values.astype(object).where(values.notna(), instead)


def readable_late(late: pd.DataFrame) -> pd.DataFrame:
    """The late list as people read it: kinds in words, "no link" for an upgrade without one, and empty text
    where an owner, a site name or a link's date is unknown (never "None")."""
    out = late.copy()
    out["kind"] = out["kind"].astype(object).str.replace("_", " ")
    out["link_id"] = _or(out["link_id"], "no link")
    out["link_due"] = [f"{d:%Y-%m-%d}" if pd.notna(d) else "" for d in out["link_due"]]
    for c in ("site_name", "upgrade_owner", "link_owner"):
        out[c] = _or(out[c])
    return out


NO_PLAN_KINDS = ("capacity", "coverage")
"""Hotspots of either kind count for "no plan": a coverage hole with no site planned is pain with no plan too."""


def _open_no_plan(con, level: str, day: dt.date, net: network.Network | None = None) -> dict[str, int]:
    """Open hotspots (hot cells of the last HOTSPOT_WINDOW_DAYS, capacity or coverage, each kind tested on its
    own) whose status is no_upgrade_planned, per region of `level` and for ALL."""
    window = asof.window(day, HOTSPOT_WINDOW_DAYS)
    hot = pd.DataFrame({"cell": np.unique(np.concatenate(
        [hotspots.hot_cells(con, cells.REGION_RES, *window, kind) for kind in NO_PLAN_KINDS]))})
    rel = (linkage.relief_of(net, hot, cells.REGION_RES, day, serving.served_load(con, net)) if net is not None
           else linkage.relief(con, hot, cells.REGION_RES, day))  # the relief of hot cells only
    cells_open = rel.loc[rel["status"] == "no_upgrade_planned", ["cell"]].astype("int64")
    out = {ALL: len(cells_open)}
    if cells_open.empty:
        return out
    if net is not None:  # each region's cells, held per store content
        cell, region = net.once(("rollout.region_cells", level), lambda: _region_cells(con, level))
        _, at = rules.spans(*(np.searchsorted(cell, cells_open["cell"].to_numpy(), side) for side in ("left", "right")))
        return out | {str(k): int(v) for k, v in pd.Series(region[at], dtype=object).value_counts().items()}
    per = cells_per_region_expr(con, level, cells_open).execute()
    return out | {str(k): int(v) for k, v in zip(per["region_id"], per["n"], strict=True)}


def _region_cells(con, level: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (cell, region) of the regions of `level` (`cells_per_region_expr`'s join), sorted by cell: the cells
    (int64) and their region ids (object)."""
    b = engine.backend(con)
    r, rc = b.table("regions"), b.table("region_cells")
    j = rc.join(r.filter(r.level == level).select("region_id"), "region_id").select("cell", "region_id")
    df = b.execute(j.order_by(["cell", "region_id"]))
    return df["cell"].to_numpy(dtype="int64"), df["region_id"].astype("str").to_numpy(dtype=object)


def cells_per_region_expr(con, level: str, cells_df: pd.DataFrame) -> ir.Table:
    """How many of the res-REGION_RES cells in `cells_df` (column cell) lie in each region of `level`:
    region_id, n; unexecuted."""
    b = engine.backend(con)
    r, rc = b.table("regions"), b.table("region_cells")
    rc = rc.join(r.filter(r.level == level).select("region_id"), "region_id")
    m = ibis.memtable(cells_df[["cell"]].astype("int64"), schema={"cell": "int64"})
    return m.join(rc, m.cell == rc.cell).group_by(rc.region_id).agg(n=ibis._.count())


def blocked_counts(con, level: str, as_of, net: network.Network | None = None) -> dict[str, int]:
    """Upgrades blocked by transport as of `as_of` (`linkage.upgrade_flags_expr`) per region of `level`, and
    for ALL (every upgrade, also outside every region). On a held network (`net`) the rules run in numpy
    (`lib.engine.rules`) and each upgrade's regions are held with it."""
    if net is not None:
        blocked = rules.evaluate(net.u, as_date(as_of))["blocked"]
        codes, ids, where = net.once(("rollout.upgrade_regions", level), lambda: _upgrade_regions(con, level, net))
        per = np.bincount(codes, weights=blocked[where], minlength=len(ids)).astype("int64")
        return {ALL: int(blocked.sum())} | {str(r): int(n) for r, n in zip(ids, per, strict=True)}

    def per_region(d):
        s = upgrade_states_expr(con, level, d)
        return s.filter(s.region_id.notnull()).group_by("region_id").agg(n=s.blocked.sum())

    def network(d):
        flags = linkage.upgrade_flags_expr(con, d)
        return flags.aggregate(n=flags.blocked.sum())

    day = as_date(as_of)
    per = engine.run_dated(con, ("rollout.blocked", level), day, per_region)
    total = engine.run_dated(con, ("rollout.blocked_all",), day, network)["n"].iloc[0]
    return {ALL: int(total or 0)} | {str(k): int(v) for k, v in zip(per["region_id"], per["n"], strict=True)}


def _upgrade_regions(con, level: str, net: network.Network) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (region of `level`, upgrade) pair of `progress.region_upgrades`: the region's number, the regions'
    ids, and the upgrade's position in `net`."""
    ru = _region_upgrades(con, net, level)
    where = pd.Index(net.upgrade_id).get_indexer(ru["upgrade_id"].astype("str"))
    codes, ids = pd.factorize(ru["region_id"].astype("str"), sort=True)
    keep = where >= 0
    return codes[keep], np.asarray(ids, dtype=object), where[keep]


def _held(con, net: network.Network | None, key: tuple, build):
    """`build()`, computed once per store content when the network is held (`Network.once`)."""
    return net.once(key, build) if net is not None else build()


def _region_upgrades(con, net: network.Network | None, level: str) -> pd.DataFrame:
    """`progress.region_upgrades`, held per store content with the network."""
    return _held(con, net, ("progress.region_upgrades", level), lambda: progress.region_upgrades(con, level))


def _regions(con, net: network.Network | None, level: str) -> pd.DataFrame:
    """`regions`, held per store content with the network."""
    return _held(con, net, ("rollout.regions", level), lambda: regions(con, level))


def _trend_dates(day: dt.date) -> list[pd.Timestamp]:
    """The dates of a trend (`_trend`): the last TREND_MONTHS month ends before `day`, and `day`."""
    ends = progress.period_ends(pd.Timestamp(day) - pd.DateOffset(months=TREND_MONTHS), day, "month")
    return [d for d in ends if d < pd.Timestamp(day)] + [pd.Timestamp(day)]


def _trend(c: progress.Counters, dates: list[pd.Timestamp]) -> list[float]:
    """Percent on air at the `_trend_dates` of a day."""
    return [round(float(v), 2) for v in np.nan_to_num(progress.counts_at(c, dates)["pct_on_air"], nan=0.0)]


def _region_counters(con, net: network.Network | None, level: str) -> dict[str, progress.Counters]:
    """The `progress.counters` of the network's upgrades (ALL, first) and of each region of `level`."""
    per_region = _region_upgrades(con, net, level)
    groups = dict(tuple(per_region.groupby("region_id", sort=False)))
    network_frame = progress.network_upgrades(con)
    frames = {ALL: network_frame} | {
        rid: groups.get(rid, per_region.iloc[:0]) for rid in _regions(con, net, level)["region_id"]}
    outside = network_frame[~network_frame["upgrade_id"].isin(per_region["upgrade_id"])]
    if len(outside):  # upgrades the whole network counts that no region of the level holds: shown as such
        frames[OUTSIDE] = outside
    return {rid: progress.counters(frame) for rid, frame in frames.items()}


def region_table(con, level: str = "state", as_of=None) -> pd.DataFrame:
    """One row for the whole network (ALL, first) and one per region of `level`: the figures of
    `progress.headline_of` (total, on air, percent, change over 30 days, late, forecast), upgrades
    blocked by transport, open hotspots with no upgrade planned, and a percent-on-air trend."""
    day = as_date(as_of)
    net = network.held(con) if stores.holds(con) else None
    frames = _held(con, net, ("rollout.region_counters", level), lambda: _region_counters(con, net, level))
    names = ({ALL: NETWORK_NAME, OUTSIDE: f"Outside every {level}"}
             | _regions(con, net, level).set_index("region_id")["name"].to_dict())
    n_blocked = blocked_counts(con, level, day, net)
    open_no_plan = _open_no_plan(con, level, day, net)
    rows, trend_dates = [], _trend_dates(day)
    for rid, frame in frames.items():
        h = progress.headline_of(frame, day, rid)
        f = h["forecast"]
        rows.append({"region_id": rid, "name": names[rid], "total": h["total"], "on_air": h["on_air"],
                     "pct_on_air": h["pct_on_air"], "pct_change_pp": h["pct_change_pp"], "late": h["late"],
                     "due": h["due"],
                     "blocked": int(n_blocked.get(rid, 0)), "open_no_plan": int(open_no_plan.get(rid, 0)),
                     "forecast": f.date, "forecast_low": f.low, "forecast_high": f.high, "forecast_note": f.reason,
                     "last_planned": f.last_planned, "trend": _trend(frame, trend_dates)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def series(con, region_ids: tuple[str, ...], level: str = "state") -> pd.DataFrame:
    """`progress.progress_series` by week for the listed regions (ALL allowed)."""
    return progress.progress_series(con, list(region_ids), level, "week")


def channel_mix_expr(con, region_id: str = ALL, as_of=None, since=None) -> ir.Table:
    """Complaints per month and channel (no zero rows): month, channel, n; received up to `as_of` (inclusive;
    None: every one) and from `since` on (None: from the first); unexecuted (see `channel_mix`)."""
    b = engine.backend(con)
    c = b.table("complaints")
    if as_of is not None:
        end = pd.Timestamp(as_date(as_of)) + pd.Timedelta(days=1)
        c = c.filter(c.received_at < ibis.literal(end.to_pydatetime(), type="timestamp"))
    if since is not None:
        c = c.filter(c.received_at >= ibis.literal(pd.Timestamp(since).to_pydatetime(), type="timestamp"))
    if region_id != ALL:
        rc = b.table("region_cells")
        rc = rc.filter(rc.region_id == region_id)
        c = c.join(rc, engine.parent(c.cell, cells.REGION_RES) == rc.cell).select(c.received_at, c.channel)
    t = c.select(month=c.received_at.truncate("M").cast("date"), channel=c.channel)
    return t.group_by(["month", "channel"]).agg(n=ibis._.count())


def _channel_counts(con, region_id: str, as_of) -> pd.DataFrame:
    """month, channel, n of `channel_mix_expr` up to `as_of`: the months before as_of's month counted once per
    store content (on DuckDB, where the network is held: `Network.once`), the month of as_of counted anew. A
    new date then counts one month, not every complaint (at 10M complaints 7 ms against 120 ms)."""
    if not stores.holds(con):
        return channel_mix_expr(con, region_id, as_of).execute()
    month = pd.Timestamp(as_date(as_of)).replace(day=1)
    every = network.held(con).once(("rollout.channel_months", region_id), lambda: _months_as_dates(
        channel_mix_expr(con, region_id).execute()))
    earlier = every[every["month"] < month]
    this = _months_as_dates(channel_mix_expr(con, region_id, as_of, since=month).execute())
    return pd.concat([earlier, this], ignore_index=True) if len(this) else earlier


def _months_as_dates(counts: pd.DataFrame) -> pd.DataFrame:
    """`counts` with its months as datetime64[us] (the first day of each)."""
    return counts.assign(month=pd.to_datetime(counts["month"]).astype("datetime64[us]"))


def channel_mix(con, level: str = "state", region_id: str = ALL, as_of=None) -> pd.DataFrame:
    """Complaints per calendar month (first day) and channel received up to `as_of` (inclusive), in
    region `region_id` (ALL: every complaint, also outside every region): month, channel, n, one
    row per month from the first to the last with a complaint and channel (n = 0 when none).
    `level` only keys the cache (a region id names its level)."""
    counts = _channel_counts(con, region_id, as_of)
    if counts.empty:
        return pd.DataFrame({"month": pd.Series(dtype="datetime64[us]"), "channel": pd.Series(dtype="str"),
                             "n": pd.Series(dtype="int64")})
    counts = _months_as_dates(counts)
    months = pd.date_range(counts["month"].min(), counts["month"].max(), freq="MS").astype("datetime64[us]")
    grid = pd.MultiIndex.from_product([months, list(CHANNELS)], names=["month", "channel"])
    out = counts.set_index(["month", "channel"])["n"].reindex(grid, fill_value=0).astype("int64").reset_index()
    return out[CHANNEL_COLUMNS]


def impact_table(con, level: str = "state", as_of=None) -> pd.DataFrame:
    """The effect of sites being relieved on the complaints of their areas, per region of `level` (and ALL,
    first) and kind, as of `as_of`, with its interval (`lib.engine.eventstudy`), with region names."""
    day = as_date(as_of)
    names = {ALL: NETWORK_NAME} | regions(con, level).set_index("region_id")["name"].to_dict()
    out = eventstudy.table(con, level, day)
    return out.assign(name=out["region_id"].map(names))[["name", *eventstudy.COLUMNS]]


IMPACT_SHOWN = {"pct": "{:+.0f}%", "pct_low": "{:+.0f}%", "pct_high": "{:+.0f}%", "effect": "{:+.3f}"}
"""How the impact table shows its figures (a region without a figure: empty, and "No figure because" says why)."""


def readable_impact(effects: pd.DataFrame) -> pd.DataFrame:
    """The impact table as people read it: its figures as `IMPACT_SHOWN` writes them, empty where there is no
    figure, never "None"."""
    out = effects.copy()
    for column, shown in IMPACT_SHOWN.items():
        out[column] = [shown.format(v) if v is not None and pd.notna(v) else "" for v in out[column]]
    out["note"] = _or(out["note"])
    return out


SHOWN_DECIMALS = {"pct_on_air": 1, "pct_change_pp": 1}
"""Decimals of the region table's fractional figures as the page shows them, and so as the exports hold them."""


def export_sheets(table: pd.DataFrame, late: pd.DataFrame, as_of) -> dict[str, pd.DataFrame]:
    """The region table (without its sparkline; figures rounded as shown) and the late list as export sheets,
    each with its data date."""
    day = as_date(as_of)
    regions_sheet = table.drop(columns="trend").round(SHOWN_DECIMALS).assign(as_of=day)
    return {"regions": regions_sheet, "late_blocked": late.assign(as_of=day)}
