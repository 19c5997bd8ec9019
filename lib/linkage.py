"""What serves a hotspot, and when it will be relieved.

Portable split, as in `lib.hotspots`: the joins (sites -> coverage cells -> hotspots ->
upgrades -> transport links) and the per-hotspot aggregation are plain SQL over integer
cells, text ids and dates, with literals instead of driver placeholders and no H3
extension. Only the coverage disks need H3 grid topology and are built in Python
(`coverage_disks`).

Coverage: a site covers the grid disk of `COVERAGE_RINGS[site_type]` rings around the
parent of its resolution-9 cell at the coverage resolution (default 8). A hotspot is
served by every site whose disk holds its cell, nearest (fewest rings) first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

import duckdb
import h3ronpy
import numpy as np
import pandas as pd
import pyarrow as pa

from lib import cells, schema

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


def _date_sql(value) -> str:
    return f"DATE '{pd.Timestamp(value).strftime('%Y-%m-%d')}'"


def _rings(rings: Mapping[str, int] | None) -> dict[str, int]:
    out = dict(COVERAGE_RINGS if rings is None else rings)
    unknown = sorted(set(out) - set(schema.SITE_TYPES))
    if unknown:
        raise ValueError(f"unknown site types {unknown} (choose from {list(schema.SITE_TYPES)})")
    if any(k < 0 for k in out.values()):
        raise ValueError(f"rings must be 0 or more: {out}")
    return out


def coverage_disks(centres, k: int) -> pd.DataFrame:
    """Grid disk of k rings around each centre cell: int64 (centre, cell, distance in rings).

    Python because the disk needs H3's grid topology, which portable SQL does not have
    (no engine may need an H3 extension); h3ronpy computes it vectorised.
    """
    origin = np.unique(np.asarray(centres, dtype="int64"))
    if origin.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in ("centre", "cell", "distance")})
    rb = pa.record_batch(h3ronpy.grid_disk_distances(origin.astype("uint64"), int(k)))
    ring_cells, ring_k = rb.column("cell"), rb.column("k")
    sizes = np.diff(np.asarray(ring_cells.offsets))
    return pd.DataFrame({"centre": np.repeat(origin, sizes),
                         "cell": np.asarray(ring_cells.flatten()).astype("int64"),
                         "distance": np.asarray(ring_k.flatten()).astype("int64")})


def site_coverage(con: duckdb.DuckDBPyConnection, res: int = DEFAULT_RES,
                  rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Cells each site covers at `res`: (site_id, cell, distance), sorted by site_id, distance, cell.

    A site covers the disk of `rings[site_type]` rings (default `COVERAGE_RINGS`; an empty
    type counts as `DEFAULT_SITE_TYPE`; a type missing from `rings` covers nothing)
    around the parent of its cell at `res`. Sites without a cell are left out.
    """
    rings = _rings(rings)
    sites = con.execute(
        f"SELECT site_id, {cells.parent_sql('cell', res)} AS centre, "
        f"coalesce(site_type, '{DEFAULT_SITE_TYPE}') AS site_type FROM sites WHERE cell > 0").df()
    parts = []
    for site_type, k in rings.items():
        mine = sites[sites["site_type"] == site_type]
        disks = coverage_disks(mine["centre"], k)
        parts.append(mine[["site_id", "centre"]].merge(disks, on="centre")[["site_id", "cell", "distance"]])
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(_COVERAGE_COLUMNS))
    return out.astype(_COVERAGE_COLUMNS).sort_values(["site_id", "distance", "cell"], ignore_index=True)


HOTSPOT_SITES_SQL = """
SELECT h.cell, c.site_id, c.distance,
       row_number() OVER (PARTITION BY h.cell ORDER BY c.distance, c.site_id) AS rank
FROM (SELECT DISTINCT cell FROM {hotspots}) h
JOIN {coverage} c ON c.cell = h.cell
ORDER BY h.cell, rank
"""
"""Serving sites of each hotspot cell, nearest first (portable SQL)."""


def _hotspot_frame(hotspot_cells) -> pd.DataFrame:
    if isinstance(hotspot_cells, pd.DataFrame):
        if "cell" not in hotspot_cells.columns:
            raise ValueError("hotspot_cells needs a column 'cell'")
        hotspot_cells = hotspot_cells["cell"]
    return pd.DataFrame({"cell": np.unique(np.asarray(hotspot_cells, dtype="int64"))})


def _hotspot_sites(cur, hot: pd.DataFrame, res: int, rings) -> pd.DataFrame:
    cur.register("lk_hotspots", hot)
    cur.register("lk_coverage", site_coverage(cur, res, rings))
    out = cur.execute(HOTSPOT_SITES_SQL.format(hotspots="lk_hotspots", coverage="lk_coverage")).df()
    return out.astype({"cell": "int64", "site_id": "str", "distance": "int64", "rank": "int64"})[_SITES_COLUMNS]


def hotspot_sites(con: duckdb.DuckDBPyConnection, hotspot_cells, res: int = DEFAULT_RES,
                  rings: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Sites whose coverage holds each hotspot cell: (cell, site_id, distance, rank).

    `hotspot_cells` is a DataFrame with a `cell` column (or any sequence of cells) at
    `res`. Rank 1 is the nearest site; equal distances are ranked by site_id. Cells no
    site covers have no rows.
    """
    cur = con.cursor()
    try:
        return _hotspot_sites(cur, _hotspot_frame(hotspot_cells), res, rings)
    finally:
        cur.close()


RELIEF_SQL = """
WITH served AS (
    SELECT cell, count(*) AS n_sites FROM {serving} GROUP BY cell
), ups AS (
    SELECT s.cell, u.upgrade_id, u.transport_link_id AS link_id, u.on_air_planned,
        CASE WHEN u.on_air_actual <= {as_of} THEN 1 ELSE 0 END AS up_done,
        CASE WHEN u.on_air_actual <= {as_of} THEN u.on_air_actual ELSE u.on_air_planned END AS up_date,
        CASE WHEN u.transport_link_id IS NULL OR l.completion_actual <= {as_of} THEN 1 ELSE 0 END AS link_done,
        CASE WHEN u.transport_link_id IS NULL THEN NULL
             WHEN l.completion_actual <= {as_of} THEN l.completion_actual
             ELSE l.completion_planned END AS link_date,
        CASE WHEN u.installed_actual <= {as_of} OR u.on_air_actual <= {as_of} OR u.on_air_planned <= {as_of}
             THEN 1 ELSE 0 END AS ready
    FROM {serving} s
    JOIN upgrades u ON u.site_id = s.site_id
    LEFT JOIN transport_links l ON l.link_id = u.transport_link_id
    WHERE u.status IS NULL OR u.status <> 'cancelled'
), flags AS (
    SELECT cell, upgrade_id, link_id, up_done, link_done, up_date, link_date,
        CASE WHEN link_done = 0 AND ready = 1 AND (link_date IS NULL OR link_date < {as_of}
                                                   OR link_date > on_air_planned)
             THEN 1 ELSE 0 END AS blocked,
        CASE WHEN (up_done = 0 AND on_air_planned < {as_of}) OR (link_done = 0 AND link_date < {as_of})
             THEN 1 ELSE 0 END AS late,
        CASE WHEN link_done = 0 AND link_date IS NULL THEN 1 ELSE 0 END AS undated,
        CASE WHEN link_date > up_date THEN link_date ELSE up_date END AS own_date
    FROM ups
), per_cell AS (
    SELECT cell, count(*) AS n_upgrades, min(up_done * link_done) AS all_done, max(blocked) AS any_blocked,
        max(late) AS any_late, max(undated) AS any_undated, max(own_date) AS relief_date
    FROM flags GROUP BY cell
), blocking AS (
    SELECT cell, link_id, row_number() OVER (
        PARTITION BY cell ORDER BY CASE WHEN link_date IS NULL THEN 0 ELSE 1 END, link_date DESC, link_id) AS pick
    FROM flags WHERE blocked = 1
)
SELECT h.cell, coalesce(sv.n_sites, 0) AS n_sites, coalesce(p.n_upgrades, 0) AS n_upgrades,
    CASE WHEN p.any_undated = 1 THEN NULL ELSE p.relief_date END AS relief_date,
    CASE WHEN p.n_upgrades IS NULL THEN 'no_upgrade_planned'
         WHEN p.all_done = 1 THEN 'relieved'
         WHEN p.any_blocked = 1 THEN 'blocked_by_transport'
         WHEN p.any_late = 1 THEN 'late'
         ELSE 'on_track' END AS status,
    b.link_id AS blocking_link_id
FROM {hotspots} h
LEFT JOIN served sv ON sv.cell = h.cell
LEFT JOIN per_cell p ON p.cell = h.cell
LEFT JOIN blocking b ON b.cell = h.cell AND b.pick = 1
ORDER BY h.cell
"""
"""Relief date and status of each hotspot cell as of a date (portable SQL; see `relief`)."""


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
    as_of = dt.date.today() if as_of is None else as_of
    hot = _hotspot_frame(hotspot_cells)
    cur = con.cursor()
    try:
        serving = _hotspot_sites(cur, hot, res, rings)
        cur.register("lk_serving", serving)
        out = cur.execute(RELIEF_SQL.format(hotspots="lk_hotspots", serving="lk_serving",
                                            as_of=_date_sql(as_of))).df()
    finally:
        cur.close()
    out = out.astype({"cell": "int64", "n_sites": "int64", "n_upgrades": "int64", "status": "str"})
    out["relief_date"] = pd.Series([None if pd.isna(d) else d.date() for d in pd.to_datetime(out["relief_date"])],
                                   index=out.index, dtype=object)
    out["blocking_link_id"] = out["blocking_link_id"].astype(object).where(out["blocking_link_id"].notna(), None)
    return out[_RELIEF_COLUMNS]
