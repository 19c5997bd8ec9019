"""Derived tables, recomputed from the store after each import (never edited by hand).

`refresh(con)` rebuilds them inside the caller's transaction (store.import_file calls it
just before its COMMIT) and writes a `derived_version` row to `meta`: the newest
import_id they were computed from. Queries read them only while they are `current`
(that row equals the newest import_id), else the raw tables; both paths give the same
answers (tests/test_derive.py).

- `complaint_cube` (res, cell, category, n): complaints per cell at each resolution of
  `RESOLUTIONS` and category, over all time. It serves every query that counts complaints
  per cell without a time window: the hotspot map (`hotspots.cell_counts`) and the
  complaints per region (`overview.region_table`, via the rows at `cells.REGION_RES`).
  At 10M demo complaints: 2.9M rows (res 9: 2.1M, res 8: 0.62M, res 7: 0.16M).
  A time dimension does not pay at this density: (res-9 cell, day, category) keeps 79 %
  of the rows (7.9M of 10M), (cell, week, category) 72 %; so windowed queries read the
  raw complaints, which an import appends in file order (time-clustered for the demo
  and for ordinary exports, so DuckDB's zone maps skip most of a short window).
- `cell_regions` (cell, level, region_id): region membership of each res-REGION_RES cell
  that holds a complaint, a site or a transport link's end A: the rows of region_cells
  that any region query can meet (a cell in two regions of a level keeps both rows, as
  the raw join counts it twice).

Every statement is portable SQL: DROP TABLE IF EXISTS, CREATE TABLE ... AS and INSERT INTO
... SELECT around Ibis expressions compiled with `engine.to_sql` (`statements(dialect)`).
"""

from __future__ import annotations

import contextlib
from types import MappingProxyType

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from lib import cells, changes, engine
from lib.engine import stores

RESOLUTIONS = tuple(sorted({7, 8, 9, cells.REGION_RES}))
"""Resolutions the cube holds (hotspot resolutions and the region resolution)."""

VERSION_KEY = "derived_version"
"""The meta key holding the newest import_id the derived tables were computed from."""

TABLES = ("complaint_cube", "cell_regions")
"""The derived tables."""

# The columns of the store tables the derivations read (unbound: compiled without a backend).
_SOURCES = MappingProxyType({
    "complaints": {"cell": "int64", "category": "string"},
    "sites": {"cell": "int64"},
    "transport_links": {"a_cell": "int64"},
    "regions": {"region_id": "string", "level": "string"},
    "region_cells": {"region_id": "string", "cell": "int64"},
    "import_log": {"import_id": "int32"},
    "meta": {"key": "string", "value": "string"},
    "complaint_cube": {"res": "int64", "cell": "int64", "category": "string", "n": "int64"},
})


def _table(con, name: str) -> ir.Table:
    """Store table `name`: on `con` when given, else unbound (compiles to its name)."""
    if con is None:
        return ibis.table(dict(_SOURCES[name]), name=name)
    return engine.backend(con).table(name)


# -- the derivations as Ibis expressions ----------------------------------------------

def cube_base_expr(con=None) -> ir.Table:
    """Complaints per resolution-9 cell and category: res, cell, category, n (valid cells only); unexecuted."""
    c = _table(con, "complaints")
    agg = c.filter(c.cell > 0).group_by(["cell", "category"]).agg(n=ibis._.count())
    return agg.select(res=ibis.literal(cells.CELL_RES, type="int64"), cell=agg.cell, category=agg.category,
                      n=agg.n.cast("int64"))


def cube_rollup_expr(res: int, con=None, cube: ir.Table | None = None) -> ir.Table:
    """The cube's rows at `res`, rolled up from its resolution-9 rows (of `cube` when given, else the store's
    complaint_cube): res, cell, category, n; unexecuted."""
    if res >= cells.CELL_RES:
        raise ValueError(f"roll-up needs a resolution below {cells.CELL_RES}, not {res}")
    k = _table(con, "complaint_cube") if cube is None else cube
    fine = k.filter(k.res == cells.CELL_RES).select(cell=engine.parent(k.cell, res), category=k.category, n=k.n)
    agg = fine.group_by(["cell", "category"]).agg(n=ibis._.n.sum())
    return agg.select(res=ibis.literal(res, type="int64"), cell=agg.cell, category=agg.category,
                      n=agg.n.cast("int64"))


def cell_regions_expr(con=None, cube: ir.Table | None = None) -> ir.Table:
    """Region membership of each res-REGION_RES cell holding a complaint, site or link end A:
    cell, level, region_id; unexecuted. Reads complaint_cube, or `cube` when given (build that first)."""
    k = _table(con, "complaint_cube") if cube is None else cube
    s, t = _table(con, "sites"), _table(con, "transport_links")
    used = ibis.union(
        k.filter(k.res == cells.REGION_RES).select(cell=k.cell),
        s.select(cell=engine.parent(s.cell, cells.REGION_RES)),
        t.select(cell=engine.parent(t.a_cell, cells.REGION_RES)),
        distinct=True)
    rc, regions = _table(con, "region_cells"), _table(con, "regions")
    j = rc.join(regions.select("region_id", "level"), "region_id")
    j = j.filter(j.cell.isin(used.cell))  # a semi-join: region_cells rows keep their multiplicity
    return j.select("cell", "level", "region_id")


def version_expr(con=None) -> ir.Table:
    """The store's version as the derived tables record it: key, value (newest import_id, 0 when
    nothing was imported); unexecuted."""
    log = _table(con, "import_log")
    return log.aggregate(key=ibis.literal(VERSION_KEY),
                         value=log.import_id.max().cast("int64").fill_null(0).cast("string"))


def current_expr(con) -> ir.Table:
    """One row, `current`: whether meta's derived_version equals the store's version; unexecuted."""
    meta = _table(con, "meta")
    mine = meta.filter(meta.key == VERSION_KEY).aggregate(derived=meta.value.max())
    now = version_expr(con)
    j = mine.cross_join(now)
    return j.select(current=(j.derived == j.value).fill_null(False))


EXPRESSIONS = MappingProxyType({
    "complaint_cube": cube_base_expr,
    **{f"complaint_cube res {r}": (lambda con=None, r=r: cube_rollup_expr(r, con))
       for r in RESOLUTIONS if r < cells.CELL_RES},
    "cell_regions": cell_regions_expr,
    "version": version_expr,
})
"""The derivations by name: builder(con=None) -> unexecuted Ibis expression (unbound without con)."""


# -- refresh ------------------------------------------------------------------------------

def statements(dialect: str = "duckdb") -> list[str]:
    """The SQL of `refresh`, in order, for `dialect` (every statement is portable SQL).

    On a PostgreSQL store the tables are emptied and filled again rather than dropped: a DROP would lock them
    until the import commits, and every other process's page reading them would wait for it (or deadlock with
    it); emptied by DELETE, they show the others the previous rows until the import commits."""
    sql = lambda expr: engine.to_sql(expr, dialect)  # noqa: E731
    out = [f"DELETE FROM meta WHERE key = '{VERSION_KEY}'"]
    if dialect == "postgres":
        out += [f"CREATE TABLE IF NOT EXISTS complaint_cube AS {sql(cube_base_expr())} WITH NO DATA",
                f"CREATE TABLE IF NOT EXISTS cell_regions AS {sql(cell_regions_expr())} WITH NO DATA",
                "DELETE FROM complaint_cube", f"INSERT INTO complaint_cube {sql(cube_base_expr())}"]
        out += [f"INSERT INTO complaint_cube {sql(cube_rollup_expr(r))}"
                for r in sorted(RESOLUTIONS, reverse=True) if r < cells.CELL_RES]
        out += ["DELETE FROM cell_regions", f"INSERT INTO cell_regions {sql(cell_regions_expr())}",
                f"INSERT INTO meta {sql(version_expr())}"]
        return out
    out += [f"DROP TABLE IF EXISTS {name}" for name in TABLES]
    out.append(f"CREATE TABLE complaint_cube AS {sql(cube_base_expr())}")
    out += [f"INSERT INTO complaint_cube {sql(cube_rollup_expr(r))}"
            for r in sorted(RESOLUTIONS, reverse=True) if r < cells.CELL_RES]
    out.append(f"CREATE TABLE cell_regions AS {sql(cell_regions_expr())}")
    out.append(f"INSERT INTO meta {sql(version_expr())}")
    return out


def refresh(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute every derived table from the store and mark them current, in the caller's transaction.

    Without an open transaction each statement commits on its own; the version row is
    deleted first and written last, so a failure part-way leaves the tables not current
    (queries then read the raw tables). `rebuild` runs it in a transaction of its own.
    """
    for stmt in statements(stores.dialect(con)):
        con.execute(stmt)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """`refresh` in a transaction of its own (for a store imported before derived tables existed)."""
    con.execute("BEGIN TRANSACTION")
    try:
        refresh(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


SOURCES = MappingProxyType({name: tuple(cols) for name, cols in _SOURCES.items() if name not in (*TABLES, "meta")})
"""The store's tables and columns the derivations read (what an engine computing them must hold)."""


def compute(b) -> dict[str, pa.Table]:
    """The derived tables and the version row, computed on the engine `b` (an Ibis backend holding the store's
    `SOURCES`: Spark, say) from the same expressions `refresh` runs: name -> Arrow table (complaint_cube,
    cell_regions, version). The resolution-9 cube stays on the engine for the roll-ups and the regions, under
    a name of its own, dropped at the end."""
    with _held(b, cube_base_expr(b)) as base:
        parts = [b.to_pyarrow(base)]
        parts += [b.to_pyarrow(cube_rollup_expr(r, cube=base)) for r in sorted(RESOLUTIONS, reverse=True)
                  if r < cells.CELL_RES]
        regional = cube_rollup_expr(cells.REGION_RES, cube=base)  # the cube's rows cell_regions reads
        return {"complaint_cube": pa.concat_tables([p.cast(parts[0].schema) for p in parts]),
                "cell_regions": b.to_pyarrow(cell_regions_expr(b, cube=regional)),
                "version": b.to_pyarrow(version_expr(b))}


@contextlib.contextmanager
def _held(b, expr: ir.Table):
    """`expr` kept on the engine while the expressions that read it run, under a new name (never one of the
    store's tables): a temporary table, or on Spark (which has none) a cached temporary view; dropped after."""
    name = ibis.util.gen_name("derive_held")
    try:
        b.create_table(name, expr, temp=True)
        view = False
    except NotImplementedError:
        b.create_view(name, expr)
        b.raw_sql(f"CACHE TABLE {name}")
        view = True
    try:
        yield b.table(name)
    finally:
        if view:
            b.raw_sql(f"UNCACHE TABLE IF EXISTS {name}")
            b.drop_view(name, force=True)
        else:
            b.drop_table(name, force=True)


def store_computed(con: duckdb.DuckDBPyConnection, computed: dict[str, pa.Table]) -> None:
    """Replace the store's derived tables with `computed` (from `compute`) in one transaction. They count as
    current only if the version they were computed from is the store's (`current`): an engine that held an
    older copy of the store leaves them not current, and the queries read the raw tables."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM meta WHERE key = '{VERSION_KEY}'")
        for name in TABLES:
            con.register("computed", computed[name])
            con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM computed")
            con.unregister("computed")
        con.register("computed", computed["version"])
        con.execute("INSERT INTO meta SELECT key, value FROM computed")
        con.unregister("computed")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    changes.bump()


def current(con) -> bool:
    """Whether the derived tables exist and were computed from the store as it is now."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        try:
            return bool(engine.run_query(con, ("derive.current",), lambda: current_expr(None), rows=True)[0][0])
        except duckdb.CatalogException:  # a bare database without the store's tables
            return False
    b = engine.backend(con)
    try:
        for name in ("meta", "import_log", *TABLES):
            b.table(name)
    except Exception:  # noqa: BLE001 - each engine has its own "no such table" error
        return False
    return bool(b.execute(current_expr(b))["current"].iloc[0])
