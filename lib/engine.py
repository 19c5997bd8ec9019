"""The portable query layer: Ibis expressions over the store.

Derivations and page queries are written once as Ibis expressions; they run on the
embedded DuckDB store by default and compile unchanged for PostgreSQL, Trino or Spark
(`to_sql(expr, "postgres")`). H3 cells are BIGINT columns, so coarser resolutions are
integer arithmetic (`parent`), which every engine has; no engine needs an H3 extension.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from lib import cells

ENGINE_ENV = "NETZAUSBAU_ENGINE"
"""An Ibis connection URL (e.g. postgres://user@host/db) to query instead of the DuckDB store."""

DIALECTS = ("duckdb", "postgres", "trino", "pyspark")
"""Engines every page query is compiled for in the tests."""


def backend(con) -> ibis.BaseBackend:
    """An Ibis backend over `con`: a DuckDB connection or cursor, or already an Ibis backend."""
    if isinstance(con, ibis.BaseBackend):
        return con
    if isinstance(con, duckdb.DuckDBPyConnection):
        return ibis.duckdb.from_connection(con)
    raise TypeError(f"not a store connection: {type(con).__name__}")


def configured_backend() -> ibis.BaseBackend | None:
    """The engine named by $NETZAUSBAU_ENGINE, or None for the embedded DuckDB store."""
    url = os.environ.get(ENGINE_ENV)
    return ibis.connect(url) if url else None


def parent(cell: ir.IntegerValue, res: int) -> ir.IntegerValue:
    """The parent cell at `res` of a BIGINT cell expression (h3 cell_to_parent as integer arithmetic)."""
    keep, bits = cells.parent_bits(res)
    return (cell & ibis.literal(keep, type="int64")) | ibis.literal(bits, type="int64")


class _SparkCompileOptions(ibis.config.Config):
    """The one PySpark backend option Ibis's Spark SQL compiler reads (set by pyspark when installed)."""

    treat_nan_as_null: bool = False


def to_sql(expr: ir.Expr, dialect: str = "duckdb") -> str:
    """The SQL an expression compiles to on another engine (for review and portability tests)."""
    if dialect == "pyspark" and ibis.options.pyspark is None:  # pyspark itself is not installed here
        ibis.options.pyspark = _SparkCompileOptions()
    return ibis.to_sql(expr, dialect=dialect)


AS_OF = "_as_of"
"""The one-row frame that carries a query's dates and times (`run_dated`, `run_timed`), so that its SQL does not
change with them."""


def date_value(value) -> ir.DateScalar:
    """A date literal of `value` (a date, datetime or timestamp), or `value` itself when it already is a date
    expression (the date `run_dated` hands its `build`)."""
    if isinstance(value, ir.Expr):
        return value
    return ibis.literal(pd.Timestamp(value).date(), type="date")


def timestamp_value(value) -> ir.TimestampScalar:
    """A timestamp literal of `value` (naive, local time), or `value` itself when it already is a timestamp
    expression (the times `run_timed` hands its `build`)."""
    if isinstance(value, ir.Expr):
        return value
    return ibis.literal(_naive(value), type="timestamp")


def _naive(value) -> dt.datetime:
    """`value` (a date, datetime, timestamp or text) as a naive datetime, as the store keeps times."""
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=None)


def as_dates(values: pd.Series) -> pd.Series:
    """A column of a query's dates as `datetime.date` objects, None where empty."""
    days = pd.to_datetime(values)
    return pd.Series(np.where(days.isna().to_numpy(), None, days.dt.date.to_numpy()), index=values.index, dtype=object)


class _SqlCache:
    """Compiled SQL text per query shape (never data), shared by all sessions: LRU-bounded, locked."""

    def __init__(self, size: int):
        self._size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: tuple, sql: str) -> None:
        with self._lock:
            self._items[key] = sql
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_SQL = _SqlCache(1024)


def run_timed(con, key: tuple, times: Mapping[str, object], build: Callable[..., ir.Expr],
              frames: Mapping[str, pd.DataFrame] | None = None, types: Mapping[str, str] | None = None):
    """`run_query` of `build(**scalars, **tables)`, where each of `times` (name -> a date or time; None is
    left out, so `key` must say which are given) is a scalar expression over a one-row table, of type
    `types[name]` ("timestamp" by default, or "date"): the SQL is compiled once for every value (the map's
    slider moves through hundreds of dates), not per value. On DuckDB the scalar costs about 8 ms over a
    literal on 10M complaints (no zone-map skipping); compiling anew costs about 30."""
    given = {name: value for name, value in times.items() if value is not None}
    row = {AS_OF: pd.DataFrame({name: [_naive(value)] for name, value in given.items()} or {"_": [0]})}

    def timed(**tables):
        return build(**scalars_of(tables.pop(AS_OF), given, types), **tables)

    return run_query(con, key, timed, frames={**(frames or {}), **row})


def scalars_of(row: ir.Table, names, types: Mapping[str, str] | None = None) -> dict[str, ir.Scalar]:
    """The columns `names` of the one-row table `row` as scalar expressions of `types[name]` (default
    "timestamp"): what `run_timed` hands its `build`."""
    types = types or {}
    return {name: row[name].cast(types.get(name, "timestamp")).max().as_scalar() for name in names}


def run_dated(con, key: tuple, day, build: Callable[..., ir.Expr], frames: Mapping[str, pd.DataFrame] | None = None):
    """`run_timed` with one date: `build(d, **tables)`, `d` the date `day` as a scalar date expression."""
    return run_timed(con, key, {"d": day}, lambda d, **tables: build(d, **tables), frames, types={"d": "date"})


def run_query(con, key: tuple, build: Callable[..., ir.Expr], frames: Mapping[str, pd.DataFrame] | None = None,
              rows: bool = False):
    """Execute the Ibis expression `build(**tables)` on `con`: a DataFrame, or with rows=True a list of tuples.

    On the DuckDB store (a connection or cursor) the expression is compiled once per `key`
    (the query's name and every argument its SQL depends on; table and column names are
    fixed by lib/schema) and the cached SQL runs on `con`: building and compiling an Ibis
    expression costs 5-70 ms (region_table: about 70), more than running it on 200k complaints. `frames`
    (name -> DataFrame) are Python-side inputs: registered under their names on a private
    cursor and passed to `build` as unbound tables of those names; on any other Ibis
    backend (`configured_backend()`) they go in as memtables and the expression
    is executed there, uncached.
    """
    frames = dict(frames or {})
    if isinstance(con, duckdb.DuckDBPyConnection):
        sql = _SQL.get(key)
        if sql is None:
            tables = {name: ibis.table(ibis.memtable(df).schema(), name=name) for name, df in frames.items()}
            sql = to_sql(build(**tables), "duckdb")
            _SQL.put(key, sql)
        cur = con.cursor() if frames else con
        try:
            for name, df in frames.items():
                cur.register(name, df)
            result = cur.execute(sql)
            return result.fetchall() if rows else result.df()
        finally:
            if frames:
                cur.close()
    b = backend(con)
    expr = build(**{name: ibis.memtable(df) for name, df in frames.items()})
    if rows:
        return [tuple(r.values()) for r in b.to_pyarrow(expr).to_pylist()]
    return b.execute(expr)
