"""The portable query layer: Ibis expressions over the store.

Derivations and page queries are written once as Ibis expressions; they run on the
embedded DuckDB store by default and compile unchanged for PostgreSQL, Trino or Spark
(`to_sql(expr, "postgres")`). H3 cells are BIGINT columns, so coarser resolutions are
integer arithmetic (`parent`), which every engine has; no engine needs an H3 extension.
"""

from __future__ import annotations

import os

import duckdb
import ibis
import ibis.expr.types as ir

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
