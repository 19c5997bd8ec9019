"""Spark for the batch derivations (lib/engine/derive): a session on a master URL (`local[2]` on this machine,
`spark://host:7077` or another cluster's URL in production) that holds the store's tables the derivations read,
as an Ibis backend. pyspark (and a Java 17 runtime) is needed only here: `pip install pyspark==4.0.1`.

The tables reach Spark one of two ways (only the columns read: `derive.SOURCES`):

- handed over from the store through this process, as Arrow (`hand_over`): enough for local mode and a
  store that fits one machine;
- read by the cluster where they lie, as Parquet files `<location>/<table>.parquet` (`read_tables`): a
  folder every Spark worker reads (a shared file system, HDFS or an object store's URL), which an operator's
  own pipeline fills, or `export_tables` writes from the store (`python -m lib.cli export-tables FOLDER`).

Either way the cluster does the grouping and joining, and the results are written into the store, which stays
the one copy the pages read.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from lib import engine
from lib.engine import derive
from lib.errors import NetzausbauError

DEFAULT_MASTER = "local[2]"
LOCAL_PARTITIONS = 4
"""Shuffle partitions in local mode. Spark's default of 200 is for a cluster: on 2 cores the demo store's
derivation took 87 s with it and 24 s with 4, the Spark start included."""


class SparkMissing(NetzausbauError):
    """pyspark is not installed."""


def _spark_session_class():
    """pyspark's SparkSession, or SparkMissing saying how to install it."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkMissing("the derivations on Spark need pyspark: pip install pyspark==4.0.1 "
                           "(and a Java 17 runtime)") from exc
    return SparkSession


def session(master: str = DEFAULT_MASTER, scratch: str | None = None, app_name: str = "netzausbau-derive"):
    """A new Spark session on `master`, in UTC, without its web UI, its warehouse in the folder `scratch`."""
    SparkSession = _spark_session_class()  # noqa: N806 - pyspark's class
    scratch = scratch or tempfile.mkdtemp(prefix="netzausbau-spark-")
    b = (SparkSession.builder.master(master).appName(app_name)
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.sql.warehouse.dir", f"{scratch}/warehouse")
         .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={scratch}"))
    if master.startswith("local"):  # one machine: a few shuffle partitions, not a cluster's 200
        b = b.config("spark.sql.shuffle.partitions", str(LOCAL_PARTITIONS))
    s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s


def hand_over(spark_session, con: duckdb.DuckDBPyConnection):
    """The store's tables the derivations read, as temporary views of `spark_session`; its Ibis backend."""
    import ibis

    source = engine.backend(con.cursor())
    for name, columns in derive.SOURCES.items():
        table = source.table(name).select(*columns).to_pyarrow()
        spark_session.createDataFrame(table).createOrReplaceTempView(name)
    return ibis.pyspark.connect(spark_session)


def export_tables(con: duckdb.DuckDBPyConnection, folder: str | Path) -> dict[str, int]:
    """Write the store's tables the derivations read (`derive.SOURCES`, only those columns) as Parquet files
    `folder/<table>.parquet`, all from one snapshot of the store (a cursor's transaction): rows per table. A
    file of the same name is replaced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        written = {}
        for name, columns in derive.SOURCES.items():
            target = str(folder / f"{name}.parquet").replace("'", "''")
            cur.execute(f"COPY (SELECT {', '.join(columns)} FROM {name}) TO '{target}' (FORMAT parquet)")
            written[name] = cur.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        cur.execute("COMMIT")
    finally:
        cur.close()
    return written


def read_tables(spark_session, location: str):
    """The tables the derivations read, as temporary views of `spark_session` over the Parquet files
    `location/<table>.parquet` (read by the cluster's workers, not through this process); its Ibis backend.
    A missing table or column is refused with its name before anything is computed."""
    import ibis

    location = location.rstrip("/")
    frames = {}
    for name, columns in derive.SOURCES.items():
        path = f"{location}/{name}.parquet"
        try:
            frame = spark_session.read.parquet(path)
        except Exception as exc:  # noqa: BLE001 - Spark's own error types vary by version and file system
            raise NetzausbauError(f"{path}: Spark cannot read it ({str(exc).splitlines()[0]})") from exc
        if missing := [c for c in columns if c not in frame.columns]:
            raise NetzausbauError(f"{path}: the column(s) {', '.join(missing)} are missing; the derivations read "
                                  f"{', '.join(columns)}")
        frames[name] = frame.select(*columns)
    for name, frame in frames.items():  # only once every table is readable: a refusal leaves the session's views
        frame.createOrReplaceTempView(name)
    return ibis.pyspark.connect(spark_session)


def derive_on_spark(con: duckdb.DuckDBPyConnection, master: str = DEFAULT_MASTER,
                    progress=lambda message: None, tables: str | None = None) -> dict:
    """Compute the derived tables on Spark at `master` and store them (`derive.store_computed`): the rows per
    table written. With `tables` (a location) Spark reads the tables from the Parquet files there
    (`read_tables`); otherwise the store hands them over. `progress(message)` is told each step. A Spark
    session already running in this process (a notebook's, say) is used as it is and left running; otherwise
    one is started and stopped."""
    SparkSession = _spark_session_class()  # noqa: N806 - pyspark's class
    running = SparkSession.getActiveSession()
    scratch = None if running else tempfile.mkdtemp(prefix="netzausbau-spark-")
    try:
        progress(f"starting Spark at {master}" if not running else "using the running Spark session")
        s = running or session(master, scratch)
        try:
            if tables:
                progress(f"reading the tables at {tables}")
                b = read_tables(s, tables)
            else:
                progress("handing the store's tables to Spark")
                b = hand_over(s, con)
            progress("computing the complaint cube and the regions' cells")
            computed = derive.compute(b)
        finally:
            if not running:
                s.stop()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    progress("storing them")
    derive.store_computed(con, computed)
    return {name: computed[name].num_rows for name in derive.TABLES}
