"""The store's queries on other engines: every expression of `PORTABLE_QUERIES` (the page and derivation
queries of lib/), run on an engine holding the same tables as the DuckDB test world, gives the same rows as
on DuckDB.

- PostgreSQL: a real server started by the tests (tests/pgserver.py, from Debian's postgresql package); the
  world's tables are copied into it through Ibis, column types as they are.
- Spark: pyspark in local mode (two threads, on Java 17); the world's tables are handed over as Arrow tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import math
import shutil
import sys
from pathlib import Path

import duckdb
import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lib import cli, engine, store
from lib.engine import derive
from lib.engine import spark as spark_engine
from tests.pgserver import postgres_server
from tests.test_portability import PORTABLE_QUERIES


@pytest.fixture(scope="module")
def duck(tiny_world, tmp_path_factory):
    path = tmp_path_factory.mktemp("pg-parity") / "store.duckdb"
    shutil.copy(tiny_world.template, path)
    c = store.connect(path)
    if not derive.current(c):
        derive.rebuild(c)
    yield c
    c.close()


def base_tables(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                      "'main' AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]


@contextlib.contextmanager
def postgres(duck):
    """A PostgreSQL server holding every table of the DuckDB world, as an Ibis backend."""
    with postgres_server() as url:
        b = ibis.connect(url)
        source = engine.backend(duck.cursor())
        for name in base_tables(duck):
            b.create_table(name, source.table(name).to_pyarrow())
        yield b
        b.disconnect()


@contextlib.contextmanager
def spark(duck, tmp):
    """Spark in local mode holding every table of the DuckDB world (as views), as an Ibis backend."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("netzausbau-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2").config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
               .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={tmp}").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        source = engine.backend(duck.cursor())
        for name in base_tables(duck):  # Arrow in: nulls stay nulls, types stay as they are
            session.createDataFrame(source.table(name).to_pyarrow()).createOrReplaceTempView(name)
        yield ibis.pyspark.connect(session)
    finally:
        session.stop()


@pytest.fixture(scope="module", params=["postgres", "pyspark"])
def other(request, duck, tmp_path_factory):
    """Another engine holding the DuckDB world's tables."""
    if request.param == "postgres":
        with postgres(duck) as b:
            yield b
    else:
        with spark(duck, tmp_path_factory.mktemp("spark")) as b:
            yield b


def canonical(value):
    """One spelling per value, whichever engine and driver gave it: whole numbers exactly (H3 cells are 18-digit
    integers), other numbers rounded to 9 significant digits, dates and times in ISO form, missing as None."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, (float, decimal.Decimal, np.floating)):
        x = float(value)
        if x.is_integer() and abs(x) < 2 ** 53:  # a count that came as a float (a column with a gap)
            return int(x)
        return float(f"{x:.9g}")
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64)):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def rows(frame: pd.DataFrame) -> list[tuple]:
    """The frame's rows in canonical values, sorted (engines order ties differently)."""
    out = [tuple(canonical(v) for v in r) for r in frame.astype(object).itertuples(index=False, name=None)]
    return sorted(out, key=lambda r: [(v is None, str(v)) for v in r])


def test_the_engine_holds_the_same_tables(duck, other):
    for name in base_tables(duck):
        want = duck.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        assert other.table(name).count().execute() == want, name
    assert duck.execute("SELECT count(*) FROM complaints").fetchone()[0] > 0


@pytest.mark.parametrize(("name", "build"), PORTABLE_QUERIES, ids=[n for n, _ in PORTABLE_QUERIES])
def test_gives_what_duckdb_gives(duck, other, name, build):
    want = engine.backend(duck.cursor()).execute(build(duck))
    got = other.execute(build(other))
    assert list(got.columns) == list(want.columns)
    assert rows(got) == rows(want), name


def test_cells_are_compared_exactly():
    """Neighbouring H3 cells differ in their last digits only: the comparison tells them apart."""
    import h3

    cell = h3.latlng_to_cell(52.5, 13.4, 9)
    ring = [h3.str_to_int(c) for c in h3.grid_disk(cell, 1)]
    assert len({canonical(np.int64(c)) for c in ring}) == len(ring) == 7
    assert canonical(decimal.Decimal(ring[0])) == canonical(ring[0]) == ring[0]
    assert canonical(5.0) == canonical(5) and canonical(0.1 + 0.2) == canonical(0.3)


def test_a_difference_is_seen(duck, other):
    """The comparison is not blind: with one complaint taken off the map on DuckDB (in a transaction rolled
    back after), the engine's counts differ from DuckDB's."""
    build = dict(PORTABLE_QUERIES)["hotspots.cell_counts res 8"]
    got = rows(other.execute(build(other)))
    duck.execute("BEGIN TRANSACTION")
    try:
        duck.execute("UPDATE complaints SET cell = -cell WHERE complaint_id = "
                     "(SELECT min(complaint_id) FROM complaints WHERE cell > 0)")
        assert got != rows(engine.backend(duck).execute(build(duck)))  # the transaction's own connection
    finally:
        duck.execute("ROLLBACK")
    assert got == rows(engine.backend(duck.cursor()).execute(build(duck)))


def copy_of(duck, folder) -> Path:
    """A copy of the DuckDB world's store file, in `folder`."""
    copy = folder / "store.duckdb"
    duck.execute("CHECKPOINT")
    shutil.copy(duck.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")
                .fetchone()[0], copy)
    return copy


def table_rows(con, name: str) -> list[tuple]:
    return rows(con.execute(f"SELECT * FROM {name}").df())


def test_the_derived_tables_computed_on_spark_are_duckdbs(duck, tmp_path, capsys):
    """The batch derivations on Spark (local mode, `python -m lib.cli derive --spark local[2]`), from the same
    expressions, written into a copy of the store: the same complaint cube and region membership as DuckDB
    derives, and current."""
    copy = copy_of(duck, tmp_path)
    con = store.connect(copy)
    try:
        con.execute("DROP TABLE complaint_cube")  # nothing of DuckDB's own derivation is left to find
        con.execute("DELETE FROM meta WHERE key = ?", [derive.VERSION_KEY])
        assert not derive.current(con)
    finally:
        con.close()
    assert cli.main(["--db", str(copy), "derive", "--spark", "local[2]"]) == 0
    said = capsys.readouterr().out
    con = store.connect(copy)
    try:
        assert derive.current(con)
        for name in derive.TABLES:
            assert table_rows(con, name) == table_rows(duck, name), name
            n = duck.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            assert f"{name} {n:,} rows" in said and n > 0
        assert said.startswith("derived on Spark at local[2] in ")
    finally:
        con.close()


def test_spark_reads_the_tables_where_they_lie(duck, tmp_path, capsys, monkeypatch):
    """`export-tables` writes the tables the derivations read as Parquet; `derive --spark --tables` has Spark
    read those files (not handed over by this process) and gives DuckDB's tables, current."""
    copy = copy_of(duck, tmp_path)
    lake = tmp_path / "lake"
    assert cli.main(["--db", str(copy), "export-tables", str(lake)]) == 0
    said = capsys.readouterr().out
    for name in derive.SOURCES:  # every table, only the columns read, every row
        got = duckdb.sql(f"SELECT * FROM '{lake / name}.parquet'")
        assert tuple(got.columns) == derive.SOURCES[name]
        n = duck.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        assert got.count("*").fetchall()[0][0] == n and f"{name}.parquet {n:,} rows" in said
    con = store.connect(copy)
    try:
        con.execute("DROP TABLE complaint_cube")
        con.execute("DELETE FROM meta WHERE key = ?", [derive.VERSION_KEY])
    finally:
        con.close()
    monkeypatch.setattr(spark_engine, "hand_over", lambda *a: pytest.fail("handed over by the store"))
    assert cli.main(["--db", str(copy), "derive", "--spark", "local[2]", "--tables", str(lake)]) == 0
    assert f"reading the tables at {lake}" in capsys.readouterr().err
    con = store.connect(copy)
    try:
        assert derive.current(con)
        for name in derive.TABLES:
            assert table_rows(con, name) == table_rows(duck, name), name
    finally:
        con.close()


def test_tables_spark_cannot_use_are_refused_by_name(duck, tmp_path, capsys):
    copy = copy_of(duck, tmp_path)
    lake = tmp_path / "lake"
    con = store.connect(copy, read_only=True)
    try:
        spark_engine.export_tables(con, lake)
    finally:
        con.close()
    duckdb.sql(f"COPY (SELECT cell FROM '{lake}/complaints.parquet') TO '{lake}/complaints.parquet' (FORMAT parquet)")
    before = table_rows(duck, "complaint_cube")
    assert cli.main(["--db", str(copy), "derive", "--spark", "local[2]", "--tables", str(lake)]) == 2
    err = capsys.readouterr().err
    assert f"{lake}/complaints.parquet: the column(s) category are missing" in err
    con = store.connect(copy, read_only=True)
    try:
        spark_engine.export_tables(con, lake)  # whole again, but for one file gone
    finally:
        con.close()
    (lake / "sites.parquet").unlink()
    assert cli.main(["--db", str(copy), "derive", "--spark", "local[2]", "--tables", str(lake)]) == 2
    assert f"{lake}/sites.parquet: Spark cannot read it" in capsys.readouterr().err
    assert cli.main(["--db", str(copy), "derive", "--tables", str(lake)]) == 2
    assert "--tables needs --spark" in capsys.readouterr().err
    con = store.connect(copy)
    try:  # nothing was stored by any of them
        assert derive.current(con) and table_rows(con, "complaint_cube") == before
    finally:
        con.close()


def test_derive_on_spark_without_pyspark_says_so_and_changes_nothing(duck, tmp_path, monkeypatch, capsys):
    copy = copy_of(duck, tmp_path)
    before = table_rows(duck, "complaint_cube")
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import pyspark.sql fails, as when it is not installed
    assert cli.main(["--db", str(copy), "derive", "--spark"]) == 2
    assert "pip install pyspark" in capsys.readouterr().err
    con = store.connect(copy)
    try:
        assert derive.current(con) and table_rows(con, "complaint_cube") == before
    finally:
        con.close()


def test_derived_tables_from_an_older_copy_are_not_current(duck, tmp_path):
    """An engine holding an older copy of the store (an import since): its tables are stored, not current."""
    copy = copy_of(duck, tmp_path)
    con = store.connect(copy)
    try:
        b = engine.backend(con.cursor())
        computed = derive.compute(b)
        newest = con.execute("SELECT max(import_id) FROM import_log").fetchone()[0]
        computed["version"] = computed["version"].set_column(
            1, "value", pa.array([str(newest - 1)]))  # as if computed before the newest import
        derive.store_computed(con, computed)
        assert not derive.current(con)
        assert table_rows(con, "cell_regions") == table_rows(duck, "cell_regions")
    finally:
        con.close()
