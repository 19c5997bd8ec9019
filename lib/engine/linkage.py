"""What serves a hotspot, and when it will be relieved.

Portable split, as in `lib.engine.hotspots`: the joins (hotspots -> serving sites, upgrades -> transport
links) and the rules per upgrade are Ibis expressions over the store (`hotspot_sites_expr`,
`upgrade_flags_expr`; `lib.engine` compiles them for DuckDB, PostgreSQL, Trino or Spark) on
integer cells, text ids and dates, with no H3 extension. The grid disks need H3 grid topology
and are built in Python (`coverage_disks`). The relief of hotspots evaluates the same rules
(`lib.engine.rules`, written once for Ibis and numpy) in numpy over the sites, upgrades and links read
once per store content, then aggregates them per site and per hotspot (`relief`).

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

from lib import cells, engine
from lib.engine import network, rules
from lib.ingest import schema

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


def _reach_frame(hot: pd.DataFrame, rings: dict[str, int]) -> pd.DataFrame:
    """(cell, centre, distance, site_type): a site of that type centred on `centre` would serve hotspot `cell`.

    The disk of each type's rings around each hotspot (`coverage_disks`, Python: H3 grid
    topology); by symmetry of grid distance these are the centres whose disks hold it.
    """
    disk = _disk_around(hot, rings)
    parts = [disk[disk["distance"] <= k].assign(site_type=site_type) for site_type, k in rings.items()]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(_REACH_SCHEMA))
    return frame.astype({c: t if t != "string" else "str" for c, t in _REACH_SCHEMA.items()})


def _disk_around(hot: pd.DataFrame, rings: dict[str, int]) -> pd.DataFrame:
    """(cell, centre, distance): the disk of the most rings of any type around each hotspot cell (one disk: the
    fewer rings of other types are its rows of smaller distance)."""
    k = max(rings.values(), default=0)
    return coverage_disks(hot["cell"], k).rename(columns={"centre": "cell", "cell": "centre"})


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


def upgrade_flags_expr(con, as_of: dt.date | None = None, site_ids: ir.Column | None = None) -> ir.Table:
    """Per not-cancelled upgrade, its state as of `as_of` (default today) by the rules of `relief`; unexecuted.

    Columns: upgrade_id, site_id, on_air_planned, link_id, up_done, up_date, link_done, link_date,
    ready, blocked, late, undated (flags are 1 or 0), own_date (the later of up_date and link_date).
    The rules are `lib.engine.rules` (written once for Ibis and numpy): `relief` runs them in numpy over the held
    network, and the rollout page lists the late and blocked upgrades from this expression.
    """
    d = engine.date_value(dt.date.today() if as_of is None else as_of)
    j = network.upgrade_inputs_expr(con, site_ids)
    one, two = rules.expr_stages(j, d)
    ups = j.select("upgrade_id", "site_id", "on_air_planned", "link_id", **one)
    return ups.mutate(**two(ups))


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

    The rules per upgrade are `lib.engine.rules` (also `upgrade_flags_expr`'s), evaluated in numpy over the
    network held per store content and aggregated per site (`rules.per_site`), then per hotspot here.
    """
    return relief_of(network.held(con), hotspot_cells, res, as_of, rings)


def relief_of(net: network.Network, hotspot_cells, res: int = DEFAULT_RES, as_of: dt.date | None = None,
              rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """`relief` over a held network (`network.held`)."""
    hot = _hotspot_frame(hotspot_cells)["cell"].to_numpy()
    flags = rules.evaluate(net.u, dt.date.today() if as_of is None else as_of)
    state = rules.per_site(net.site, net.cell.size, flags, net.link)
    cell, site = _serving_pairs(net, hot, res, _rings(rings))
    return _relief_per_cell(net, hot, cell, site, state)


def _serving_pairs(net: network.Network, hot: np.ndarray, res: int,
                   rings: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(position in `hot`, site number) of each site serving a hotspot, by hotspot: the cells that some site's
    disk covers, held per resolution and rings (`_site_disks`), looked up by binary search."""
    if hot.size == 0:
        return np.zeros(0, dtype="int64"), np.zeros(0, dtype="int64")
    covered, site = net.once(("linkage.site_disks", res, tuple(sorted(rings.items()))),
                             lambda: _site_disks(net, res, rings))
    row, at = rules.spans(np.searchsorted(covered, hot, "left"), np.searchsorted(covered, hot, "right"))
    return row, site[at].astype("int64")


def _site_disks(net: network.Network, res: int, rings: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every (cell, site number) where the site's disk covers the cell at `res`: the disk of its type's rings
    around its centre (its cell's parent at `res`), sorted by cell. A site without a cell, or of a type without
    rings, covers nothing. (Grid distance is symmetric, so these are the sites within their reach of a cell.)"""
    kinds = [rings.get(t, -1) for t in net.site_types]  # an empty text is a type of its own, as in SQL
    reach = np.array([*kinds, rings.get(DEFAULT_SITE_TYPE, -1)], dtype="int64")[net.site_type]  # -1: empty type
    reach[net.cell <= 0] = -1  # a site without a cell serves nothing
    serving = np.flatnonzero(reach >= 0)
    if serving.size == 0:
        return np.zeros(0, dtype="int64"), np.zeros(0, dtype="int32")
    centre = cells.parent(net.cell[serving], res)
    disk = coverage_disks(centre, int(reach[serving].max()))  # by centre: each distinct centre's disk
    starts = disk["centre"].to_numpy()
    row, at = rules.spans(np.searchsorted(starts, centre, "left"), np.searchsorted(starts, centre, "right"))
    keep = disk["distance"].to_numpy()[at] <= reach[serving][row]
    covered, site = disk["cell"].to_numpy()[at[keep]], serving[row[keep]]
    order = np.lexsort((site, covered))
    out = covered[order], site[order].astype("int32")
    for a in out:
        a.setflags(write=False)
    return out


def _relief_per_cell(net: network.Network, hot: np.ndarray, cell: np.ndarray, site: np.ndarray,
                     state: dict) -> pd.DataFrame:
    """`relief`'s rows from the serving pairs (position in `hot` `cell`, ascending; `site`) and the sites'
    `rules.per_site` state: the same aggregates over the sites as per_site makes over the upgrades."""
    per_cell = rules.grouped(cell, hot.size)
    agg = lambda ufunc, values, empty: per_cell(ufunc, values[site], empty)  # noqa: E731
    n_up = agg(np.add, state["n_upgrades"], 0)
    one = {c: agg(np.fmin if c == "all_done" else np.fmax, state[c], np.nan) == 1  # fmin, fmax skip NaN
           for c in ("all_done", "any_blocked", "any_late", "any_undated")}
    relief_date = np.where(one["any_undated"], np.datetime64("NaT"), rules.latest(agg, state["relief_date"]))
    link = state["pick_link_id"][site]
    blocking = rules.pick(cell, link >= 0, state["pick_date"][site], link, hot.size)["pick_link_id"]
    status = np.select([n_up == 0, one["all_done"], one["any_blocked"], one["any_late"]],
                       ["no_upgrade_planned", "relieved", "blocked_by_transport", "late"], "on_track")
    shown = (status == "blocked_by_transport") & (blocking >= 0)
    blocking_id = np.full(hot.size, None, dtype=object)
    blocking_id[shown] = net.link_ids[blocking[shown]]
    days = relief_date.astype("datetime64[D]")  # as days, not nanoseconds: a planned 9999-12-31 stays itself
    dates = np.where(np.isnat(days), None, days.astype(object))
    out = pd.DataFrame({"cell": hot.astype("int64"), "n_sites": np.bincount(cell, minlength=hot.size),
                        "n_upgrades": n_up, "relief_date": pd.Series(dates, dtype=object),
                        "status": status, "blocking_link_id": pd.Series(blocking_id, dtype=object)})
    return out.astype({"n_sites": "int64", "n_upgrades": "int64", "status": "str"})[_RELIEF_COLUMNS]
