"""Complaints around relief for a hotspot's story: weekly complaints per hotspot and the event windows."""

from __future__ import annotations

import datetime as dt

import h3
import ibis
import pandas as pd
import pytest

from lib import cells, engine, store
from lib.engine import impact
from tests import worlds

D = dt.date
AS_OF = D(2025, 11, 1)


def hotspot(lat: float, lon: float) -> int:
    """A resolution-8 hotspot cell (int)."""
    return h3.str_to_int(h3.latlng_to_cell(lat, lon, 8))


# Hotspots well inside the West (lon 9.0-9.5) and East (lon 9.5-10.0) regions of tests/worlds.py.
WEST_CELLS = [hotspot(51.25, 9.1 + 0.1 * i) for i in range(3)]
EAST_CELLS = [hotspot(51.25, 9.6 + 0.1 * i) for i in range(3)]


def child(cell: int) -> str:
    """A resolution-9 cell inside a resolution-8 hotspot, as a complaint gives it."""
    return h3.cell_to_center_child(h3.int_to_str(cell), 9)


def make_store(new_store, rows: list[tuple[int, dt.datetime, str]], regions: bool = False):
    """A store holding complaints given as (hotspot cell, received_at, category) rows."""
    con = new_store()
    if regions:
        store.import_file(con, worlds.regions_geojson().encode(), table="regions", file_name="regions.geojson")
    lines = ["complaint_id,received_at,cell,category,channel"]
    lines += [f"K{i},{t:%Y-%m-%d %H:%M},{child(c)},{cat},app" for i, (c, t, cat) in enumerate(rows)]
    store.import_file(con, ("\n".join(lines) + "\n").encode(), table="complaints", file_name="complaints.csv")
    return con


def weekly_rows(cell: int, first_monday: dt.date, counts: list[int], category: str = "slow_data"):
    """Complaint rows: counts[i] complaints (spread over the days) in the i-th week from first_monday."""
    out = []
    for i, n in enumerate(counts):
        for j in range(n):
            day = first_monday + dt.timedelta(weeks=i, days=j % 7)
            out.append((cell, dt.datetime.combine(day, dt.time(8 + j % 10, 0)), category))
    return out


START = D(2025, 1, 6)  # a Monday
N_WEEKS = 40


def test_weekly_complaints_fill_quiet_weeks_with_zero(new_store):
    a, b = WEST_CELLS[0], EAST_CELLS[0]
    rows = weekly_rows(a, START, [2, 0, 5]) + weekly_rows(b, START + dt.timedelta(weeks=2), [1])
    rows.append((a, dt.datetime(2025, 1, 5, 23, 0), "slow_data"))  # Sunday before the window
    con = make_store(new_store, rows)
    cells = pd.DataFrame({"cell": [b, a, a], "relief_date": [None, D(2025, 1, 15), D(2025, 1, 15)]})
    out = impact.weekly_hotspot_complaints(con, cells, start=START, end=START + dt.timedelta(weeks=4))
    assert list(out.columns) == impact.WEEKLY_COLUMNS
    weeks = [START + dt.timedelta(weeks=i) for i in range(4)]
    got = {(r.cell, r.week): r.n for r in out.itertuples()}
    want = {(a, w): n for w, n in zip(weeks, [2, 0, 5, 0], strict=True)}
    want |= {(b, w): n for w, n in zip(weeks, [0, 0, 1, 0], strict=True)}
    assert got == want
    assert out["cell"].is_monotonic_increasing


def test_weekly_complaints_default_window_spans_the_relief_dates(new_store):
    a = WEST_CELLS[0]
    con = make_store(new_store, weekly_rows(a, START, [1] * 30))
    out = impact.weekly_hotspot_complaints(con, pd.DataFrame({"cell": [a], "relief_date": [D(2025, 4, 2)]}))
    assert out["week"].min() == D(2025, 3, 31) - dt.timedelta(weeks=impact.WEEKS)
    assert len(out) == 2 * impact.WEEKS + 1 and (out["n"] == 1).all()


class SparkOptions(ibis.config.Config):
    """The one option of ibis's PySpark backend its SQL compiler reads."""

    treat_nan_as_null: bool = False


@pytest.fixture
def spark_options(monkeypatch):
    """Ibis's PySpark compiler reads options that only exist once pyspark is installed; default them."""
    if ibis.options.pyspark is None:
        monkeypatch.setattr(ibis.options, "pyspark", SparkOptions())


@pytest.mark.parametrize("dialect", engine.DIALECTS)
def test_queries_compile_for_every_engine(world_con, dialect, spark_options):
    a, b = WEST_CELLS[0], EAST_CELLS[0]
    for expr in (impact.complaint_weeks_expr(world_con, 9, kind="coverage"),
                 impact.weekly_hotspot_complaints_expr(world_con, [a, b], start=START, end=D(2025, 3, 1))):
        assert "SELECT" in engine.to_sql(expr, dialect)


def test_weekly_complaints_filter_by_channel(world_con):
    """worlds.py: K1 (hotline, Sunday 5 January) and K2 (app, Monday 6 January) are slow_data complaints."""
    both = cells.parent(cells.latlng_to_cells([51.25, 51.251], [9.25, 9.251]), 8)
    window = dict(start=D(2025, 1, 1), end=D(2025, 2, 1))
    every = impact.weekly_hotspot_complaints(world_con, both, **window)
    app = impact.weekly_hotspot_complaints(world_con, both, channels=["app"], **window)
    assert every["n"].sum() == 2 and app["n"].sum() == 1
    assert app.loc[app["n"] > 0, "week"].tolist() == [D(2025, 1, 6)]  # K2, Monday 6 January
