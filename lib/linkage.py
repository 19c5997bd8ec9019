"""What serves a hotspot, and when it will be relieved.

Portable split, as in `lib.hotspots`: the joins (hotspots -> serving sites -> upgrades ->
transport links) and the per-hotspot aggregation are Ibis expressions over the store
(`hotspot_sites_expr`, `relief_expr`; `lib.engine` compiles them for DuckDB, PostgreSQL,
Trino or Spark) on integer cells, text ids and dates, with no H3 extension. Only the
grid disks need H3 grid topology and are built in Python (`coverage_disks`), then go
into the query as an in-memory table (`ibis.memtable`).

Coverage: a site covers the grid disk of `COVERAGE_RINGS[site_type]` rings around the
parent of its resolution-9 cell at the coverage resolution (default 8). A hotspot is
served by every site whose disk holds its cell, nearest (fewest rings) first. Grid
distance is symmetric, so the query draws the disks around the (few) hotspots and
looks for site centres in them, rather than drawing one around every site.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

import duckdb
import h3ronpy
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from lib import cells, engine, schema

DEFAULT_RES = 8
"""Resolution of coverage and hotspot cells (edge about 461 m)."""

COVERAGE_RINGS = MappingProxyType({"macro": 3, "micro": 1, "small_cell": 0})
"""Coverage radius in grid rings at resolution 8, per site type."""

DEFAULT_SITE_TYPE = "macro"
"""Site type assumed when a site's type is empty."""

STATUSES = ("relieved", "blocked_by_transport", "late", "on_track", "no_upgrade_planned")
"""Relief statuses of a hotspot (see `relief` for the rules)."""

_COVERAGE_COLUMNS = {"site_id": "str", "cell": "int64", "distance": "int64"}
_SITES_COLUMNS = ["cell", "site_id", "distance", "rank"]
_RELIEF_COLUMNS = ["cell", "n_sites", "n_upgrades", "relief_date", "status", "blocking_link_id"]
_REACH_SCHEMA = {"cell": "int64", "centre": "int64", "distance": "int64", "site_type": "string"}


def _rings(rings: Mapping[str, int] | None) -> dict[str, int]:
    out = dict(COVERAGE_RINGS if rings is None else rings)
    unknown = sorted(set(out) - set(schema.SITE_TYPES))
    if unknown:
        raise ValueError(f"unknown site types {unknown} (choose from {list(schema.SITE_TYPES)})")
    if any(k < 0 for k in out.values()):
        raise ValueError(f"rings must be 0 or more: {out}")
    return out


@contextlib.contextmanager
def _session(con):
    """A cursor of a DuckDB connection (in-memory tables stay private to this call), else `con` itself."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        cur = con.cursor()
        try:
            yield cur
        finally:
            cur.close()
    else:
        yield con


def coverage_disks(centres, k: int) -> pd.DataFrame:
    """Grid disk of k rings around each centre cell: int64 (centre, cell, distance in rings).

    Python because the disk needs H3's grid topology, which portable SQL does not have
    (no engine may need an H3 extension); h3ronpy computes it vectorised. Centres that
    are not valid H3 cells have no disk.
    """
    origin = np.unique(np.asarray(centres, dtype="int64"))
    if origin.size:
        origin = origin[pa.array(h3ronpy.cells_valid(origin.astype("uint64"))).is_valid().to_numpy(
            zero_copy_only=False)]
    if origin.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in ("centre", "cell", "distance")})
    rb = pa.record_batch(h3ronpy.grid_disk_distances(origin.astype("uint64"), int(k)))
    ring_cells, ring_k = rb.column("cell"), rb.column("k")
    sizes = np.diff(np.asarray(ring_cells.offsets))
    return pd.DataFrame({"centre": np.repeat(origin, sizes),
                         "cell": np.asarray(ring_cells.flatten()).astype("int64"),
                         "distance": np.asarray(ring_k.flatten()).astype("int64")})


def sites_expr(con, res: int = DEFAULT_RES) -> ir.Table:
    """Sites with a cell: site_id, centre (parent of the cell at `res`), site_type (empty: `DEFAULT_SITE_TYPE`)."""
    s = engine.backend(con).table("sites")
    return s.filter(s.cell > 0).select("site_id", centre=engine.parent(s.cell, res),
                                       site_type=s.site_type.fill_null(DEFAULT_SITE_TYPE))


def coverage_of(cell: int, site_type: str | None, res: int = DEFAULT_RES,
                rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The cells one site covers at `res`, by the rules of `site_coverage` (its resolution-9 `cell`, its
    type; empty type: `DEFAULT_SITE_TYPE`): cell, distance; empty for a site without a cell, or of a type
    missing from `rings`."""
    k = _rings(rings).get(site_type if isinstance(site_type, str) and site_type else DEFAULT_SITE_TYPE)
    if k is None or int(cell) <= 0:
        return pd.DataFrame({"cell": pd.Series(dtype="int64"), "distance": pd.Series(dtype="int64")})
    return coverage_disks(cells.parent(np.array([int(cell)], dtype="int64"), res), k)[["cell", "distance"]]


def site_coverage(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES,
                  rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Cells each site covers at `res`: (site_id, cell, distance), sorted by site_id, distance, cell.

    A site covers the disk of `rings[site_type]` rings (default `COVERAGE_RINGS`; an empty
    type counts as `DEFAULT_SITE_TYPE`; a type missing from `rings` covers nothing)
    around the parent of its cell at `res`. Sites without a cell are left out.
    """
    rings = _rings(rings)
    sites = sites_expr(con, res).execute()
    parts = []
    for site_type, k in rings.items():
        mine = sites[sites["site_type"] == site_type]
        disks = coverage_disks(mine["centre"], k)
        parts.append(mine[["site_id", "centre"]].merge(disks, on="centre")[["site_id", "cell", "distance"]])
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(_COVERAGE_COLUMNS))
    return out.astype(_COVERAGE_COLUMNS).sort_values(["site_id", "distance", "cell"], ignore_index=True)


def _hotspot_frame(hotspot_cells) -> pd.DataFrame:
    if isinstance(hotspot_cells, pd.DataFrame):
        if "cell" not in hotspot_cells.columns:
            raise ValueError("hotspot_cells needs a column 'cell'")
        hotspot_cells = hotspot_cells["cell"]
    return pd.DataFrame({"cell": np.unique(np.asarray(hotspot_cells, dtype="int64"))})


def _hotspots_table(hot: pd.DataFrame) -> ir.Table:
    return ibis.memtable(hot, schema={"cell": "int64"})


def _reach_frame(hot: pd.DataFrame, rings: dict[str, int]) -> pd.DataFrame:
    """(cell, centre, distance, site_type): a site of that type centred on `centre` would serve hotspot `cell`.

    The disk of each type's rings around each hotspot (`coverage_disks`, Python: H3 grid
    topology); by symmetry of grid distance these are the centres whose disks hold it.
    """
    parts = [coverage_disks(hot["cell"], k).rename(columns={"centre": "cell", "cell": "centre"})
             .assign(site_type=site_type) for site_type, k in rings.items()]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(_REACH_SCHEMA))
    return frame.astype({c: t if t != "string" else "str" for c, t in _REACH_SCHEMA.items()})


def _reach(hot: pd.DataFrame, rings: dict[str, int]) -> ir.Table:
    return ibis.memtable(_reach_frame(hot, rings), schema=_REACH_SCHEMA)


def _serving(con, hot: pd.DataFrame, res: int, rings) -> ir.Table:
    return _serving_from(con, _reach(hot, _rings(rings)), res)


def _serving_from(con, reach: ir.Table, res: int) -> ir.Table:
    s = sites_expr(con, res)
    pairs = reach.join(s, [reach.centre == s.centre, reach.site_type == s.site_type]).select(
        reach.cell, s.site_id, reach.distance)
    # ibis numbers rows from 0 (SQL from 1): the compiled text is row_number() - 1 + 1
    rank = ibis.row_number().over(group_by=pairs.cell, order_by=[pairs.distance, pairs.site_id]) + 1
    return pairs.mutate(rank=rank)


def hotspot_sites_expr(con, hotspot_cells, res: int = DEFAULT_RES,
                       rings: Mapping[str, int] | None = None) -> ir.Table:
    """The unexecuted expression of `hotspot_sites`."""
    return _serving(con, _hotspot_frame(hotspot_cells), res, rings).order_by(["cell", "rank"])


def hotspot_sites(con: duckdb.DuckDBPyConnection, hotspot_cells, res: int = DEFAULT_RES,
                  rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Sites whose coverage holds each hotspot cell: (cell, site_id, distance, rank).

    `hotspot_cells` is a DataFrame with a `cell` column (or any sequence of cells) at
    `res`. Rank 1 is the nearest site; equal distances are ranked by site_id. Cells no
    site covers have no rows.
    """
    with _session(con) as c:
        out = hotspot_sites_expr(c, hotspot_cells, res, rings).execute()
    return out.astype({"cell": "int64", "site_id": "str", "distance": "int64", "rank": "int64"})[
        _SITES_COLUMNS].reset_index(drop=True)


def _flag(cond: ir.BooleanValue) -> ir.IntegerValue:
    """1 where `cond` holds, else 0 (also where it is NULL), as CASE WHEN on every engine."""
    return ibis.cases((cond, 1), else_=0)


def upgrade_flags_expr(con, as_of: dt.date | None = None, site_ids: ir.Column | None = None) -> ir.Table:
    """Per not-cancelled upgrade, its state as of `as_of` (default today) by the rules of `relief`; unexecuted.

    Columns: upgrade_id, site_id, on_air_planned, link_id, up_done, up_date, link_done, link_date,
    ready, blocked, late, undated (flags are 1 or 0), own_date (the later of up_date and link_date).
    The one place these rules live: `relief_expr` aggregates them per hotspot, and the rollout
    page lists the late and blocked upgrades from them.
    """
    d = engine.date_value(dt.date.today() if as_of is None else as_of)
    b = engine.backend(con)
    u, lk = b.table("upgrades"), b.table("transport_links")
    # narrow tables first: fewer columns make the joins quicker for ibis to build
    keep = [u.status.isnull() | (u.status != "cancelled")]
    if site_ids is not None:
        keep.append(u.site_id.isin(site_ids))
    u = u.filter(keep).select(
        "upgrade_id", "site_id", "transport_link_id", "installed_actual", "on_air_planned", "on_air_actual")
    lk = lk.select("link_id", "completion_planned", "completion_actual")
    j = u.left_join(lk, u.transport_link_id == lk.link_id)
    no_link = u.transport_link_id.isnull()
    ups = j.select(
        u.upgrade_id, u.site_id, u.on_air_planned, link_id=u.transport_link_id,
        up_done=_flag(u.on_air_actual <= d),
        up_date=ibis.cases((u.on_air_actual <= d, u.on_air_actual), else_=u.on_air_planned),
        link_done=_flag(no_link | (lk.completion_actual <= d)),
        link_date=ibis.cases((no_link, ibis.null("date")), (lk.completion_actual <= d, lk.completion_actual),
                             else_=lk.completion_planned),
        ready=_flag((u.installed_actual <= d) | (u.on_air_actual <= d) | (u.on_air_planned <= d)),
    )
    open_link = ups.link_done == 0
    return ups.mutate(
        blocked=_flag(open_link & (ups.ready == 1)
                      & (ups.link_date.isnull() | (ups.link_date < d) | (ups.link_date > ups.on_air_planned))),
        late=_flag(((ups.up_done == 0) & (ups.on_air_planned < d)) | (open_link & (ups.link_date < d))),
        undated=_flag(open_link & ups.link_date.isnull()),
        own_date=ibis.cases((ups.link_date > ups.up_date, ups.link_date), else_=ups.up_date),
    )


def relief_expr(con, hotspot_cells, res: int = DEFAULT_RES, as_of: dt.date | None = None,
                rings: Mapping[str, int] | None = None) -> ir.Table:
    """The unexecuted expression of `relief` (see there for the rules)."""
    hot_frame = _hotspot_frame(hotspot_cells)
    return _relief_of(con, _hotspots_table(hot_frame), _reach(hot_frame, _rings(rings)),
                      dt.date.today() if as_of is None else as_of, res)


def _relief_of(con, hot: ir.Table, reach: ir.Table, as_of, res: int) -> ir.Table:
    """`relief_expr` over given tables of hotspot cells and reach (`_reach_frame`); `as_of` a date or a date
    expression."""
    serving = _serving_from(con, reach, res)
    served = serving.group_by("cell").agg(n_sites=ibis._.count())
    up = upgrade_flags_expr(con, as_of, serving.site_id)
    flags = serving.join(up, serving.site_id == up.site_id).select(serving.cell, *[up[c] for c in up.columns])
    per = flags.group_by("cell").agg(
        n_upgrades=ibis._.count(), all_done=(flags.up_done * flags.link_done).min(), any_blocked=flags.blocked.max(),
        any_late=flags.late.max(), any_undated=flags.undated.max(), relief_date=flags.own_date.max())
    blocked = flags.filter(flags.blocked == 1)
    pick = ibis.row_number().over(group_by=blocked.cell, order_by=[
        ibis.cases((blocked.link_date.isnull(), 0), else_=1), blocked.link_date.desc(), blocked.link_id])
    blocking = blocked.mutate(pick=pick).filter(ibis._.pick == 0).select("cell", "link_id")

    out = (hot.left_join(served, hot.cell == served.cell)
           .left_join(per, hot.cell == per.cell)
           .left_join(blocking, hot.cell == blocking.cell))
    status = ibis.cases((per.n_upgrades.isnull(), "no_upgrade_planned"), (per.all_done == 1, "relieved"),
                        (per.any_blocked == 1, "blocked_by_transport"), (per.any_late == 1, "late"),
                        else_="on_track")
    return out.select(
        hot.cell, n_sites=served.n_sites.fill_null(0), n_upgrades=per.n_upgrades.fill_null(0),
        relief_date=ibis.cases((per.any_undated == 1, ibis.null("date")), else_=per.relief_date),
        status=status, blocking_link_id=blocking.link_id,
    ).order_by("cell")


def relief(con: duckdb.DuckDBPyConnection, hotspot_cells, res: int = DEFAULT_RES,
           as_of: dt.date | None = None, rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """When each hotspot is relieved, as of `as_of` (default today).

    Returns (cell, n_sites, n_upgrades, relief_date, status, blocking_link_id), one row per
    distinct hotspot cell, sorted by cell. The serving upgrades of a hotspot are the
    upgrades, not cancelled, of the sites serving it (`hotspot_sites`); each may wait on
    one transport link (`upgrades.transport_link_id`).

    Dates as of `as_of` (an actual date after `as_of` counts as not yet happened, so the
    same call replays any past day of the map's time slider):

    - an upgrade is *on air* when on_air_actual <= as_of; its date is on_air_actual if
      on air, else on_air_planned;
    - its link is *done* when it has none, or completion_actual <= as_of; the link's date
      is completion_actual if done, else completion_planned (empty: unknown);
    - an upgrade is *ready* when installed_actual, on_air_actual or on_air_planned is
      <= as_of (installed or due);
    - an upgrade is *blocked* when it is ready, its link is not done, and the link's date
      is unknown, before as_of (late) or after the upgrade's on_air_planned;
    - an upgrade is *late* when it is not on air and on_air_planned < as_of, or its link
      is not done and completion_planned < as_of.

    relief_date = the latest of every serving upgrade's date and its link's date; empty
    when there is no serving upgrade or a link not done has no planned completion.

    status, the first rule that holds:

    1. no_upgrade_planned: no serving upgrade (no serving site, or none with an upgrade);
    2. relieved: every serving upgrade on air and every link they wait on done;
    3. blocked_by_transport: some serving upgrade is blocked; blocking_link_id is the link
       of a blocked upgrade with the latest date (unknown first), ties by link_id;
    4. late: some serving upgrade is late;
    5. on_track: otherwise (every date still open lies on or after as_of).

    blocking_link_id is empty unless blocked_by_transport. relief_date holds
    `datetime.date` values, None when empty.
    """
    hot = _hotspot_frame(hotspot_cells)
    frames = {"_relief_hot": hot, "_relief_reach": _reach_frame(hot, _rings(rings))}
    out = engine.run_dated(con, ("linkage.relief", res), dt.date.today() if as_of is None else as_of,
                           lambda d, _relief_hot, _relief_reach: _relief_of(con, _relief_hot, _relief_reach, d, res),
                           frames=frames)
    out = out.astype({"cell": "int64", "n_sites": "int64", "n_upgrades": "int64", "status": "str"})
    out["relief_date"] = engine.as_dates(out["relief_date"])
    out["blocking_link_id"] = out["blocking_link_id"].astype(object).where(out["blocking_link_id"].notna(), None)
    return out[_RELIEF_COLUMNS].reset_index(drop=True)
