"""The engine: the derivations every figure rests on, and (here) the portable query layer they share.

Modules: `derive` (derived tables after each import), `hotspots`, `heldcounts`, `gistar`, `rings` and `trends`
(complaint counts, Gi* hotspots, trend classes), `network`, `rules` and `linkage` (serving sites and relief),
`asof` (the network as of a date), `progress` (rollout series and forecast), `impact` (before/after effect),
`kept` (values held in memory per store content), `keptfiles` (arrays kept in files beside the store for the next
start).

The query layer: Ibis expressions over the store.

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
from lib.engine import stores

ENGINE_ENV = "NETZAUSBAU_ENGINE"
"""An Ibis connection URL (e.g. postgres://user@host/db) to query instead of the DuckDB store."""

DIALECTS = ("duckdb", "postgres", "trino", "pyspark")
"""Engines every page query is compiled for in the tests."""


def backend(con) -> ibis.BaseBackend:
    """An Ibis backend over `con`: a DuckDB connection or cursor, a PostgreSQL store's connection
    (`stores.Postgres`), or already an Ibis backend."""
    if isinstance(con, ibis.BaseBackend):
        return con
    if isinstance(con, duckdb.DuckDBPyConnection):
        return ibis.duckdb.from_connection(con)
    if isinstance(con, stores.Postgres):
        return con.backend
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


def date_value(value) -> ir.DateScalar:
    """A date literal of `value` (a date, datetime or timestamp), or `value` itself when it already is a date
    expression."""
    if isinstance(value, ir.Expr):
        return value
    return ibis.literal(pd.Timestamp(value).date(), type="date")


def timestamp_value(value) -> ir.TimestampScalar:
    """A timestamp literal of `value` (naive, local time), or `value` itself when it already is a timestamp
    expression."""
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


_MARK = dt.datetime(1111, 11, 11, 11, 11)
"""Times no store holds: `run_timed` compiles a query with these and puts DuckDB parameters in their place."""


def run_timed(con, key: tuple, times: Mapping[str, object], build: Callable[..., ir.Expr],
              frames: Mapping[str, pd.DataFrame] | None = None, types: Mapping[str, str] | None = None):
    """`run_query` of `build(**times, **tables)`, where each of `times` (name -> a date or time; None is
    left out, so `key` must say which are given) is a scalar of type `types[name]` ("timestamp" by default, or
    "date"): the SQL is compiled once for every value (the map's slider moves through hundreds of dates), not
    per value.

    On the DuckDB store each time is a query parameter (`$name`): the SQL is compiled with a marker literal
    in its place (`_MARK`), whose text is then replaced; DuckDB plans with the value, so a window's zone maps
    still skip what lies outside it (at 10M complaints the count of a map's window took 28 ms so, against 39
    as a scalar subquery of a one-row table and about 30 more to compile anew). Elsewhere the times go in as
    literals (those engines run the expression uncached anyway)."""
    types = types or {}
    given = {name: value for name, value in times.items() if value is not None}
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return run_query(con, key, lambda **tables: build(**_literals(given, types), **tables), frames=frames)
    marks = {name: _MARK + dt.timedelta(days=i, seconds=i) for i, name in enumerate(given)}

    def marked(**tables):
        return build(**_literals(marks, types), **tables)

    def parametrised(sql: str) -> str:
        for name, mark in marks.items():
            text = _literal_sql(mark, types.get(name, "timestamp"))
            if text not in sql:
                raise ValueError(f"query {key[0]!r}: its time {name!r} is not in its SQL as the literal {text}")
            sql = sql.replace(text, f"CAST(${name} AS {types.get(name, 'timestamp').upper()})")
        if str(_MARK.year) in sql:  # a marker written in another form: its value would be lost
            raise ValueError(f"query {key[0]!r}: a time is in its SQL in a form not replaced")
        return sql

    params = {name: _value(value, types.get(name, "timestamp")) for name, value in given.items()}
    return run_query(con, ("timed", *key), marked, frames=frames, params=params, rewrite=parametrised)


def _literals(values: Mapping[str, object], types: Mapping[str, str]) -> dict[str, ir.Scalar]:
    return {name: (date_value if types.get(name, "timestamp") == "date" else timestamp_value)(value)
            for name, value in values.items()}


def _value(value, type_: str):
    return pd.Timestamp(value).date() if type_ == "date" else _naive(value)


def _literal_sql(value, type_: str) -> str:
    """The text DuckDB's compiler writes for the literal `value` of type `type_` (MAKE_TIMESTAMP(...))."""
    sql = to_sql(ibis.literal(_value(value, type_), type=type_).name("v"), "duckdb")
    return sql.split("SELECT", 1)[1].rsplit(' AS "v"', 1)[0].strip()


def run_dated(con, key: tuple, day, build: Callable[..., ir.Expr], frames: Mapping[str, pd.DataFrame] | None = None):
    """`run_timed` with one date: `build(d, **tables)`, `d` the date `day` as a scalar date expression."""
    return run_timed(con, key, {"d": day}, lambda d, **tables: build(d, **tables), frames, types={"d": "date"})


def run_query(con, key: tuple, build: Callable[..., ir.Expr], frames: Mapping[str, pd.DataFrame] | None = None,
              rows: bool = False, params: Mapping[str, object] | None = None,
              rewrite: Callable[[str], str] | None = None):
    """Execute the Ibis expression `build(**tables)` on `con`: a DataFrame, or with rows=True a list of tuples.

    On the DuckDB store (a connection or cursor) the expression is compiled once per `key`
    (the query's name and every argument its SQL depends on; table and column names are
    fixed by lib/ingest/schema) and the cached SQL runs on `con`: building and compiling an Ibis
    expression costs 5-70 ms (region_table: about 70), more than running it on 200k complaints. `frames`
    (name -> DataFrame) are Python-side inputs: registered under their names on a private
    cursor and passed to `build` as unbound tables of those names; on any other Ibis
    backend (`configured_backend()`) they go in as memtables and the expression
    is executed there, uncached. On DuckDB, `rewrite` edits the SQL once after compiling it, and `params`
    (name -> value) bind its `$name` parameters (`run_timed`).
    """
    frames = dict(frames or {})
    if isinstance(con, duckdb.DuckDBPyConnection):
        sql = _SQL.get(key)
        if sql is None:
            tables = {name: ibis.table(ibis.memtable(df).schema(), name=name) for name, df in frames.items()}
            sql = to_sql(build(**tables), "duckdb")
            sql = rewrite(sql) if rewrite else sql
            _SQL.put(key, sql)
        cur = con.cursor() if frames else con
        try:
            for name, df in frames.items():
                cur.register(name, df)
            result = cur.execute(sql, dict(params)) if params else cur.execute(sql)
            return result.fetchall() if rows else result.df()
        finally:
            if frames:
                cur.close()
    b = backend(con)
    expr = build(**{name: ibis.memtable(df) for name, df in frames.items()})
    if rows:
        return [tuple(r.values()) for r in b.to_pyarrow(expr).to_pylist()]
    return b.execute(expr)
