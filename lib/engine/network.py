"""The network's small tables (sites, upgrades, transport links), held in memory once per store content.

A map view as of a date needs the state of every site, link and serving upgrade on that date:
rules over 30,000 sites, 60,000 upgrades and 20,000 links at the benchmark's size. As DuckDB
queries they cost 20-75 ms each, nearly all of it fixed cost per operator and the conversion
of text columns, where the same rules (`lib.engine.rules`, written once for Ibis and numpy) over
arrays held here take a few milliseconds. So the store stays the source: `held` reads these
tables once per content (sums of row hashes, `FINGERPRINT_SQL`, about 8 ms), and keeps the
last few versions, shared read-only by every session (a lock guards the map, not the data).

On other engines (`engine.configured_backend`) nothing is held: `read` runs on every call,
and asof's sites and links run as Ibis expressions there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import engine
from lib.engine import kept, rules, stores

KEPT = 4
"""Store versions held at once (each about 10 MB at the benchmark's size)."""

SITE_FIELDS = ["site_id", "lat", "lon", "cell", "site_type", "capacity_mbps", "azimuth_deg", "beamwidth_deg", "name"]
LINK_FIELDS = ["link_id", "a_lat", "a_lon", "b_lat", "b_lon", "kind", "completion_planned", "completion_actual"]
UPGRADE_FIELDS = ["upgrade_id", "site_id", "status", "transport_link_id", "permit_actual", "installed_actual",
                  "on_air_planned", "on_air_actual"]
"""The upgrades' columns the network (and what is held with it: `Network.once`) reads."""


def _content(dialect: str, table: str, fields: list[str]) -> str:
    return f"(SELECT count(*) FROM {table}), (SELECT {stores.hash_sum(dialect, fields)} FROM {table})"


def _fingerprint_sql(dialect: str) -> tuple[str, str]:
    return (f"""SELECT {_content(dialect, 'sites', SITE_FIELDS)}, {_content(dialect, 'upgrades', UPGRADE_FIELDS)},
       {_content(dialect, 'transport_links', LINK_FIELDS)}""",
            f"""SELECT (SELECT {stores.hash_sum(dialect, ['import_id', 'checksum', 'imported_at'])} FROM import_log),
       (SELECT {stores.hash_sum(dialect, ['region_id', 'name', 'level'])} FROM regions),
       (SELECT count(*) FROM region_cells)""")


FINGERPRINT_SQL = {dialect: _fingerprint_sql(dialect) for dialect in stores.DIALECTS}
"""Per store dialect: the content of the three tables as counts and sums of row hashes over the columns read,
every import (its id, checksum and time), the regions' ids, names and levels and the number of region cells: any
change to what the network reads from the three tables, by an import or by hand, and any import (of regions too:
what `Network.once` holds) gives another fingerprint. The key is the content, not the file: two stores alike in
all of it hold the same network. A hand edit of a region's cells that keeps their number is not seen (regions
change by import). Two statements, about 8 ms at the benchmark's size: as one, DuckDB took 28 ms; over whole
rows (every column), the first took 9 ms instead of 7."""


@dataclass(frozen=True)
class Network:
    """The three tables as arrays.

    sites: every site (`SITE_FIELDS`, sorted by site_id; its position is the site's number); `cell` and
    `site_type` its cell and type as arrays.
    site, u: the not-cancelled upgrades of those sites, by site number ascending: `site` the number,
    `u` the rules' inputs (`rules.COLUMNS` and permit_actual; dates datetime64[D], link_id the number of
    the link in `link_ids`, NaN when none), `link` the same number, -1 when none.
    link_ids: the distinct transport_link_ids of those upgrades, sorted.
    links: every transport link (`LINK_FIELDS`, sorted by link_id), `link_dates` its two dates as arrays.
    """

    sites: pd.DataFrame
    upgrade_id: np.ndarray  # each held upgrade's id (object), in the order of `site`
    cell: np.ndarray  # each site's cell, int64, 0 when it has none
    site_type: np.ndarray  # each site's type as a number into `site_types`, -1 when empty
    site_types: tuple
    site: np.ndarray
    u: dict
    link: np.ndarray
    link_ids: np.ndarray
    links: pd.DataFrame
    link_dates: dict
    content: tuple = field(default=(), compare=False, repr=False)
    """The first `FINGERPRINT_SQL` row the network was read under (the three tables' content; () when not known)."""
    _once: kept.Once = field(default_factory=kept.Once, compare=False, repr=False)

    def once(self, key: tuple, build):
        """`build()` computed once for this store content (what depends on the store but not on a date, such
        as the upgrades per region: every import gives a new network)."""
        return self._once(key, build)


_HELD: kept.Kept[Network] = kept.Kept(KEPT)  # by fingerprint


def held(con) -> Network:
    """The network of the store behind `con`, read once per content on a store (`read` on other engines)."""
    if not stores.holds(con):
        return read(con)
    fingerprint = _fingerprint(con)
    return _HELD.get(fingerprint, lambda: _read_held(con, fingerprint))


def _fingerprint(con) -> tuple:
    return tuple(con.execute(sql).fetchall()[0] for sql in FINGERPRINT_SQL[stores.dialect(con)])


def _read_held(con, fingerprint: tuple) -> Network:
    """`read(con)` with its `content`: the fingerprint asked before it, if still the store's after it (an import
    in between leaves the content unknown, so nothing is kept in files under a key it does not hold)."""
    net = read(con)
    return dataclasses.replace(net, content=fingerprint[0]) if _fingerprint(con) == fingerprint else net


def clear() -> None:
    """Forget every held network (tests)."""
    _HELD.clear()


def with_plan(net: Network, planned: dt.date, link_id: str | None = None, upgrade_id: str | None = None) -> Network:
    """A copy of the network with one transport link's planned completion, or one upgrade's planned on-air date,
    moved to `planned`: a what-if, never written anywhere. What the copy holds is built afresh."""
    if (link_id is None) == (upgrade_id is None):
        raise ValueError("move either one link or one upgrade")
    u = dict(net.u)
    day = np.datetime64(planned, "D")
    if link_id is not None:
        number = int(np.searchsorted(net.link_ids, link_id))
        if number >= net.link_ids.size or net.link_ids[number] != link_id:
            raise ValueError(f"no upgrade waits on transport link {link_id!r}")
        column, rows = "completion_planned", net.link == number
    else:
        rows = net.upgrade_id == upgrade_id
        if not rows.any():
            raise ValueError(f"no upgrade {upgrade_id!r} that is not cancelled")
        column = "on_air_planned"
    moved = u[column].copy()
    moved[rows] = day
    moved.setflags(write=False)
    u[column] = moved
    return dataclasses.replace(net, u=u, _once=kept.Once())


def upgrade_inputs_expr(con, site_ids: ir.Column | None = None) -> ir.Table:
    """Every not-cancelled upgrade (of `site_ids`, when given) with what the rules read, the link's completion
    dates joined on its transport_link_id: upgrade_id, site_id, permit_actual, *rules.COLUMNS; unexecuted."""
    b = engine.backend(con)
    u, lk = b.table("upgrades"), b.table("transport_links")
    # narrow tables first: fewer columns make the joins quicker for ibis to build
    keep = [u.status.isnull() | (u.status != "cancelled")]
    if site_ids is not None:
        keep.append(u.site_id.isin(site_ids))
    u = u.filter(keep).select(*[c for c in UPGRADE_FIELDS if c != "status"])
    lk = lk.select("link_id", "completion_planned", "completion_actual")
    j = u.left_join(lk, u.transport_link_id == lk.link_id)
    return j.select(u.upgrade_id, u.site_id, u.permit_actual, u.installed_actual, u.on_air_planned, u.on_air_actual,
                    link_id=u.transport_link_id, completion_planned=lk.completion_planned,
                    completion_actual=lk.completion_actual)


def dates(values: pd.Series) -> np.ndarray:
    """A column of dates as datetime64[D], NaT where empty."""
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]")


def read(con) -> Network:
    """The network read from the store (three queries, portable Ibis)."""
    b = engine.backend(con)
    t = b.table("sites")
    # an empty cell as 0 (no cell), so that the column stays exact int64 (NULL would make it float)
    sites = b.execute(t.select(*[t[c] if c != "cell" else t.cell.fill_null(0).name("cell") for c in SITE_FIELDS])
                      .order_by("site_id"))
    sites = sites.astype({"site_id": "str", "cell": "int64"}).reset_index(drop=True)
    ups = b.execute(upgrade_inputs_expr(con))
    site = pd.Index(sites["site_id"]).get_indexer(ups["site_id"].astype("str"))
    ups = ups[site >= 0].assign(_site=site[site >= 0]).sort_values("_site", kind="stable")
    has_link = ups["link_id"].notna().to_numpy()
    named = ups["link_id"][has_link].astype("str").to_numpy(dtype=object)
    link_ids = np.array(sorted(set(named)), dtype=object)
    link = np.full(len(ups), -1, dtype="int64")
    link[has_link] = np.searchsorted(link_ids, named)
    u = {c: dates(ups[c]) for c in (*rules.COLUMNS, "permit_actual") if c != "link_id"}
    u["link_id"] = np.where(has_link, link, np.nan)
    links = b.execute(b.table("transport_links").select(*LINK_FIELDS).order_by("link_id"))
    links = links.astype({"link_id": "str", "kind": "str"}).reset_index(drop=True)
    link_dates = {c: dates(links[c]) for c in ("completion_planned", "completion_actual")}
    kinds = pd.Categorical(sites["site_type"].astype("str"))
    net = Network(sites, ups["upgrade_id"].astype("str").to_numpy(dtype=object), sites["cell"].to_numpy(),
                  kinds.codes.astype("int64"), tuple(kinds.categories), ups["_site"].to_numpy(dtype="int64"), u,
                  link, link_ids, links, link_dates)
    for a in (net.upgrade_id, net.cell, net.site_type, net.site, net.link, net.link_ids, *u.values(),
              *link_dates.values()):
        a.setflags(write=False)  # shared by every session: read only
    return net
