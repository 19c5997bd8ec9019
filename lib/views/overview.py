"""What the store holds: row counts, date ranges, last import and per-region figures.

Ibis expressions on the store (no streamlit), each with an unexecuted `*_expr` builder
(`EXPRESSIONS`) that compiles for every engine of `engine.DIALECTS`; on the DuckDB store
their compiled SQL is cached (`engine.run_query`). A point belongs to a region when the
parent of its resolution-9 cell at `cells.REGION_RES` is one of the region's cells: an
integer equi-join, no point-in-polygon test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import MappingProxyType

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd

from lib import cells, engine
from lib.engine import derive
from lib.ingest import schema

PER_INHABITANTS = 10_000
"""Complaint rates are given per this many inhabitants."""

REGION_COLUMNS = ["region_id", "name", "population", "sites", "upgrades", "upgrades_on_air", "pct_on_air",
                  "transport_links", "complaints", "complaints_per_10k"]

# (label, table, column): the date ranges the overview reports.
DATE_RANGES = (
    ("Complaints received", "complaints", "received_at"),
    ("Upgrades on air (planned)", "upgrades", "on_air_planned"),
    ("Transport links complete (planned)", "transport_links", "completion_planned"),
)

# Every actual (observed) date in the store: the latest of them is "data as of".
ACTUAL_DATES = (
    ("complaints", "received_at"),
    ("upgrades", "permit_actual"),
    ("upgrades", "installed_actual"),
    ("upgrades", "on_air_actual"),
    ("transport_links", "completion_actual"),
)


@dataclass(frozen=True)
class LastImport:
    """The newest row of the import log."""

    import_id: int
    table: str
    file_name: str
    imported_at: dt.datetime


@dataclass(frozen=True)
class Summary:
    """What the store holds, in a few figures."""

    counts: dict[str, int]  # input table -> rows
    date_ranges: dict[str, tuple[dt.date | None, dt.date | None]] = field(default_factory=dict)  # label -> (min, max)
    last_import: LastImport | None = None
    data_as_of: dt.datetime | None = None
    imports: int = 0

    @property
    def empty(self) -> bool:
        """True when no input table has a row."""
        return not any(self.counts.values())


def _as_date(value) -> dt.date | None:
    if value is None:
        return None
    return value.date() if isinstance(value, dt.datetime) else value


def _run(con, name: str, *args, rows: bool = True):
    return engine.run_query(con, (f"overview.{name}", *args), lambda: EXPRESSIONS[name](con, *args), rows=rows)


CANCELLED = "upgrades_cancelled"
"""The counts' entry of the upgrades whose status is cancelled (the Overview shows upgrades without them)."""


def counts_expr(con) -> ir.Table:
    """Rows per input table: table, n (one row per table of `schema.TABLES`, and `CANCELLED`); unexecuted."""
    b = engine.backend(con)
    u = b.table("upgrades")
    cancelled = u.filter(u.status == "cancelled").aggregate(table=ibis.literal(CANCELLED), n=ibis._.count())
    return ibis.union(*[b.table(name).aggregate(table=ibis.literal(name), n=ibis._.count())
                        for name in schema.TABLES], cancelled, distinct=False)


def date_ranges_expr(con) -> ir.Table:
    """The earliest and latest day of each of `DATE_RANGES`: label, lo, hi (dates); unexecuted."""
    b = engine.backend(con)
    parts = []
    for label, table, column in DATE_RANGES:
        t = b.table(table)
        parts.append(t.aggregate(label=ibis.literal(label), lo=t[column].min().cast("date"),
                                 hi=t[column].max().cast("date")))
    return ibis.union(*parts, distinct=False)


def as_of_expr(con) -> ir.Table:
    """The latest of every actual date in the store (`ACTUAL_DATES`) as a timestamp: t; unexecuted."""
    b = engine.backend(con)
    tables = {t: b.table(t) for t, _ in ACTUAL_DATES}
    parts = [tables[t].aggregate(t=tables[t][c].cast("timestamp").max()) for t, c in ACTUAL_DATES]
    return ibis.union(*parts, distinct=False).aggregate(t=ibis._.t.max())


def imports_expr(con) -> ir.Table:
    """The newest row of the import log and how many imports there were: import_id, table_name,
    file_name, imported_at, imports (no row when the log is empty); unexecuted."""
    log = engine.backend(con).table("import_log")
    last = log.order_by(ibis.desc("import_id")).limit(1)
    return last.select("import_id", "table_name", "file_name", "imported_at").cross_join(
        log.aggregate(imports=ibis._.count()))


def summary(con: duckdb.DuckDBPyConnection) -> Summary:
    """Row counts per input table, date ranges, the last import and the data's as-of time."""
    counts = dict.fromkeys([*schema.TABLES, CANCELLED], 0) | {t: int(n) for t, n in _run(con, "counts")}
    ranges = {label: (_as_date(lo), _as_date(hi)) for label, lo, hi in _run(con, "date_ranges")}
    ranges = {label: ranges[label] for label, _, _ in DATE_RANGES}
    as_of = _run(con, "as_of")[0][0]
    row = _run(con, "imports")
    last = LastImport(int(row[0][0]), row[0][1], row[0][2], row[0][3]) if row else None
    imports = int(row[0][4]) if row else 0
    return Summary(counts, ranges, last, as_of, imports)


def levels_expr(con) -> ir.Table:
    """The region levels in the store and their regions: level, n; unexecuted."""
    regions = engine.backend(con).table("regions")
    return regions.group_by("level").agg(n=regions.count())


def level_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Regions per level present in the store, in schema order."""
    present = {level: int(n) for level, n in _run(con, "levels")}
    return {lv: present[lv] for lv in schema.LEVELS if lv in present}


def levels(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Region levels present in the store, in schema order."""
    return list(level_counts(con))


def region_table_expr(con, level: str = "state", derived: bool = False) -> ir.Table:
    """The unexecuted expression of `region_table` (its columns before the dtype fix-up).

    A point belongs to a region when the parent of its resolution-9 cell at
    `cells.REGION_RES` is one of the region's cells: an integer equi-join. With `derived`
    the membership comes from `derive`'s cell_regions (only the cells that hold anything)
    and the complaints from its complaint_cube (per cell at REGION_RES), not from every complaint.
    """
    b = engine.backend(con)
    regions = b.table("regions").filter(ibis._.level == level)
    if derived:
        rc = b.table("cell_regions")
        rc = rc.filter(rc.level == level).select("region_id", "cell")
    else:
        rc = b.table("region_cells")
        rc = rc.join(regions.select("region_id"), "region_id").select("region_id", "cell")

    def in_region(points: ir.Table, cell: str, *keep: str) -> ir.Table:
        """region_id and the `keep` columns of each row of `points` whose `cell` lies in a region's cell set."""
        j = points.join(rc, engine.parent(points[cell], cells.REGION_RES) == rc.cell)
        return j.select(rc.region_id, *[points[k] for k in keep])  # sites have a region_id of their own

    site_region = in_region(b.table("sites"), "cell", "site_id")
    n_sites = site_region.group_by("region_id").agg(sites=ibis._.count())
    u = b.table("upgrades")
    u = u.filter(u.status.isnull() | (u.status != "cancelled"))  # IS DISTINCT FROM 'cancelled'
    n_upgrades = u.join(site_region, "site_id").group_by("region_id").agg(
        n_up=ibis._.count(), on_air=ibis._.on_air_actual.count())
    n_links = in_region(b.table("transport_links"), "a_cell").group_by("region_id").agg(links=ibis._.count())
    if derived:
        k = b.table("complaint_cube")
        k = k.filter(k.res == cells.REGION_RES)
        n_complaints = k.join(rc, "cell").group_by("region_id").agg(n_k=ibis._.n.sum().cast("int64"))
    else:
        n_complaints = in_region(b.table("complaints"), "cell").group_by("region_id").agg(n_k=ibis._.count())
    j = (regions.left_join(n_sites, "region_id").left_join(n_upgrades, "region_id")
         .left_join(n_links, "region_id").left_join(n_complaints, "region_id"))
    complaints = j.n_k.fill_null(0)
    return j.select(
        "region_id", "name", "population",
        sites=j.sites.fill_null(0),
        upgrades=j.n_up.fill_null(0),
        upgrades_on_air=j.on_air.fill_null(0),
        pct_on_air=ibis.cases((j.n_up > 0, 100.0 * j.on_air / j.n_up), else_=ibis.null("float64")),
        transport_links=j.links.fill_null(0),
        complaints=complaints,
        complaints_per_10k=ibis.cases((j.population > 0, float(PER_INHABITANTS) * complaints / j.population),
                                      else_=ibis.null("float64")),
    ).order_by(["name", "region_id"])


def region_table(con: duckdb.DuckDBPyConnection, level: str = "state") -> pd.DataFrame:
    """Per region of `level`: population, sites, upgrades (not cancelled) and how many are on air,
    transport links (by end A), complaints and complaints per 10,000 inhabitants."""
    df = _run(con, "region_table", level, derive.current(con), rows=False)
    for col in ("sites", "upgrades", "upgrades_on_air", "transport_links", "complaints"):
        df[col] = df[col].astype("int64")
    df["population"] = df["population"].astype("Int64")
    df["pct_on_air"] = df["pct_on_air"].astype("float64")
    df["complaints_per_10k"] = df["complaints_per_10k"].astype("float64")
    return df[REGION_COLUMNS].reset_index(drop=True)


EXPRESSIONS = MappingProxyType({
    "counts": counts_expr,
    "date_ranges": date_ranges_expr,
    "as_of": as_of_expr,
    "imports": imports_expr,
    "levels": levels_expr,
    "region_table": region_table_expr,
})
"""Every query of this module by name: a builder (con, *args) -> unexecuted Ibis expression."""
