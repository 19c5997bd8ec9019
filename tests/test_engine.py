"""lib/engine: a query's times as DuckDB parameters, compiled once for every value."""

from __future__ import annotations

import datetime as dt

import duckdb
import ibis
import pandas as pd
import pytest

from lib import engine


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE TABLE t AS SELECT TIMESTAMP '2025-01-01' + INTERVAL (i) HOUR AS ts, i FROM range(2000) r(i)")
    yield c
    c.close()


def _count(con, start=None, end=None):
    def build(start=None, end=None):
        t = engine.backend(con).table("t")
        cond = [t.ts >= engine.timestamp_value(start)] if start is not None else []
        cond += [t.ts < engine.timestamp_value(end)] if end is not None else []
        f = t.filter(cond) if cond else t
        return f.aggregate(n=f.count(), last=f.ts.max())
    return engine.run_timed(con, ("test.count", start is None, end is None), {"start": start, "end": end}, build)


def test_times_are_parameters_of_one_compiled_query(con):
    for day in range(0, 90, 7):
        start = dt.datetime(2025, 1, 1) + dt.timedelta(days=day)
        end = start + dt.timedelta(days=3, hours=12)
        got = _count(con, start, end)
        want = con.execute("SELECT count(*), max(ts) FROM t WHERE ts >= ? AND ts < ?", [start, end]).fetchall()[0]
        assert (int(got["n"].iloc[0]), got["last"].iloc[0]) == (want[0], pd.Timestamp(want[1]))
    sql = engine._SQL.get(("timed", "test.count", False, False))
    assert "$start" in sql and "$end" in sql and "1111" not in sql  # the markers are gone
    assert int(_count(con, None, dt.datetime(2025, 1, 2))["n"].iloc[0]) == 24
    assert int(_count(con)["n"].iloc[0]) == 2000


def test_a_date_parameter(con):
    def build(d):
        t = engine.backend(con).table("t")
        f = t.filter(t.ts.date() <= d)
        return f.aggregate(n=f.count())
    for day in (dt.date(2025, 1, 1), dt.date(2025, 2, 3)):
        got = engine.run_dated(con, ("test.dated",), day, build)
        assert int(got["n"].iloc[0]) == ((day - dt.date(2025, 1, 1)).days + 1) * 24


def test_a_time_the_query_does_not_use_is_refused(con):
    with pytest.raises(ValueError, match="'start' is not in its SQL"):
        engine.run_timed(con, ("test.unused",), {"start": dt.datetime(2025, 1, 1)},
                         lambda start: engine.backend(con).table("t").aggregate(n=ibis._.count()))
