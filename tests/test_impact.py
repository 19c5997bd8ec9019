"""Impact of relief: weekly complaints per hotspot and the difference-in-differences estimate."""

from __future__ import annotations

import datetime as dt
import random

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


def make_store(tmp_path, rows: list[tuple[int, dt.datetime, str]], regions: bool = False):
    """A store holding complaints given as (hotspot cell, received_at, category) rows."""
    con = store.connect(tmp_path / "x.duckdb")
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


def relief_table(rows: dict[int, tuple[dt.date | None, str]]) -> pd.DataFrame:
    return pd.DataFrame({"cell": list(rows), "relief_date": [v[0] for v in rows.values()],
                         "status": [v[1] for v in rows.values()]})


START = D(2025, 1, 6)  # a Monday
N_WEEKS = 40


def test_relief_that_cuts_complaints_from_10_to_3_gives_did_minus_7(tmp_path):
    t1, t2, c1, c2 = WEST_CELLS[0], WEST_CELLS[1], EAST_CELLS[0], EAST_CELLS[1]
    reliefs = {t1: (D(2025, 3, 12), "relieved"), t2: (D(2025, 5, 2), "relieved"),
               c1: (None, "no_upgrade_planned"), c2: (D(2025, 12, 1), "on_track")}
    rows = []
    for cell, (day, _) in reliefs.items():
        counts = [10] * N_WEEKS
        if day is not None and cell in (t1, t2):
            w0 = (impact.week_start(day) - START).days // 7
            counts = [10 if w < w0 else 3 for w in range(N_WEEKS)]
            counts[w0] = 50  # the relief week is left out
        rows += weekly_rows(cell, START, counts)
    rows += weekly_rows(t1, START, [40] * 3, category="no_signal")  # another kind: not counted
    con = make_store(tmp_path, rows)
    out = impact.did(con, relief_table(reliefs), weeks=8, as_of=AS_OF)
    assert list(out.columns) == impact.DID_COLUMNS
    assert out["region_id"].tolist() == [impact.ALL]
    row = out.iloc[0]
    assert row["treated_before"] == 10 and row["treated_after"] == 3
    assert row["control_before"] == 10 and row["control_after"] == 10
    assert row["did"] == -7
    assert row["pct_change"] == pytest.approx(-70)
    assert (row["n_treated"], row["n_control"]) == (2, 2)


def test_a_common_downward_trend_gives_did_zero(tmp_path):
    t1, c1, c2 = WEST_CELLS[0], EAST_CELLS[0], EAST_CELLS[1]
    reliefs = {t1: (D(2025, 4, 9), "relieved"), c1: (None, "late"), c2: (None, "no_upgrade_planned")}
    rows = []
    for cell in reliefs:
        rows += weekly_rows(cell, START, [max(0, 40 - w) for w in range(N_WEEKS)])
    con = make_store(tmp_path, rows)
    row = impact.did(con, relief_table(reliefs), weeks=6, as_of=AS_OF).iloc[0]
    assert row["treated_after"] < row["treated_before"]  # the trend is there...
    assert row["did"] == pytest.approx(0, abs=1e-9)  # ...and cancels out
    assert row["n_treated"] == 1


def test_nothing_treated_yet_gives_an_empty_all_row(tmp_path):
    c1 = EAST_CELLS[0]
    con = make_store(tmp_path, weekly_rows(c1, START, [1, 2]))
    out = impact.did(con, relief_table({c1: (D(2025, 10, 20), "relieved")}), as_of=AS_OF)
    assert out["region_id"].tolist() == [impact.ALL]
    assert out["n_treated"].tolist() == [0] and out["did"].isna().all()


def reference_did(complaints, reliefs, region_of, weeks, as_of):
    """The DiD by plain loops over the complaint rows (cell, received_at, category)."""
    def monday(d):
        return d - dt.timedelta(days=d.weekday())

    def count(cell, lo, hi):  # complaints in weeks [lo, hi), capacity categories only
        return sum(1 for c, t, cat in complaints if c == cell and cat in ("slow_data", "dropped_calls")
                   and lo <= monday(t.date()) < hi)

    out = {}
    for region in [impact.ALL, *sorted(set(region_of.values()))]:
        members = [c for c in reliefs if region == impact.ALL or region_of.get(c) == region]
        per, used = [], set()
        for h in members:
            day, status = reliefs[h]
            if status != "relieved":
                continue
            w0 = monday(day)
            b0, a0, a1 = w0 - dt.timedelta(weeks=weeks), w0 + dt.timedelta(weeks=1), w0 + dt.timedelta(weeks=weeks + 1)
            if a1 > as_of + dt.timedelta(days=1):
                continue
            controls = [c for c in members if c != h and not (reliefs[c][1] == "relieved" and reliefs[c][0] < a1)]
            if not controls:
                continue
            used |= set(controls)
            per.append((count(h, b0, w0) / weeks, count(h, a0, a1) / weeks,
                        sum(count(c, b0, w0) for c in controls) / (weeks * len(controls)),
                        sum(count(c, a0, a1) for c in controls) / (weeks * len(controls))))
        if not per:
            continue
        tb, ta, cb, ca = (sum(p[i] for p in per) / len(per) for i in range(4))
        out[region] = {"treated_before": tb, "treated_after": ta, "control_before": cb, "control_after": ca,
                       "did": (ta - tb) - (ca - cb), "n_treated": len(per), "n_control": len(used)}
    return out


def test_did_agrees_with_plain_loops_over_the_complaints(tmp_path):
    rng = random.Random(3)
    statuses = ["relieved", "relieved", "on_track", "late", "no_upgrade_planned"]
    reliefs = {}
    for cell in WEST_CELLS + EAST_CELLS:
        status = rng.choice(statuses)
        reliefs[cell] = (D(2025, 2, 1) + dt.timedelta(days=rng.randint(0, 240)), status)
    reliefs[WEST_CELLS[0]] = (D(2025, 4, 3), "relieved")
    reliefs[EAST_CELLS[0]] = (D(2025, 5, 30), "relieved")
    reliefs[EAST_CELLS[1]] = (D(2025, 6, 20), "relieved")  # relieved inside EAST_CELLS[0]'s after window
    reliefs[WEST_CELLS[1]] = (None, "no_upgrade_planned")
    complaints = []
    for cell in reliefs:
        for _ in range(rng.randint(150, 300)):
            when = dt.datetime(2025, 1, 1) + dt.timedelta(minutes=rng.randint(0, 300 * 24 * 60))
            complaints.append((cell, when, rng.choice(["slow_data", "dropped_calls", "no_signal"])))
    con = make_store(tmp_path, complaints, regions=True)
    region_of = {c: "W" for c in WEST_CELLS} | {c: "E" for c in EAST_CELLS}
    got = impact.did(con, relief_table(reliefs), weeks=5, as_of=AS_OF, region_level="state")
    want = reference_did(complaints, reliefs, region_of, 5, AS_OF)
    assert got["region_id"].tolist() == [impact.ALL, *sorted(r for r in want if r != impact.ALL)]
    for _, row in got.iterrows():
        w = want[row["region_id"]]
        for col, value in w.items():
            assert row[col] == pytest.approx(value), (row["region_id"], col)
        assert row["pct_change"] == pytest.approx(100 * w["did"] / w["treated_before"])


def test_weekly_complaints_fill_quiet_weeks_with_zero(tmp_path):
    a, b = WEST_CELLS[0], EAST_CELLS[0]
    rows = weekly_rows(a, START, [2, 0, 5]) + weekly_rows(b, START + dt.timedelta(weeks=2), [1])
    rows.append((a, dt.datetime(2025, 1, 5, 23, 0), "slow_data"))  # Sunday before the window
    con = make_store(tmp_path, rows)
    cells = pd.DataFrame({"cell": [b, a, a], "relief_date": [None, D(2025, 1, 15), D(2025, 1, 15)]})
    out = impact.weekly_hotspot_complaints(con, cells, start=START, end=START + dt.timedelta(weeks=4))
    assert list(out.columns) == impact.WEEKLY_COLUMNS
    weeks = [START + dt.timedelta(weeks=i) for i in range(4)]
    got = {(r.cell, r.week): r.n for r in out.itertuples()}
    want = {(a, w): n for w, n in zip(weeks, [2, 0, 5, 0], strict=True)}
    want |= {(b, w): n for w, n in zip(weeks, [0, 0, 1, 0], strict=True)}
    assert got == want
    assert out["cell"].is_monotonic_increasing


def test_weekly_complaints_default_window_spans_the_relief_dates(tmp_path):
    a = WEST_CELLS[0]
    con = make_store(tmp_path, weekly_rows(a, START, [1] * 30))
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
    reliefs = relief_table({a: (D(2025, 3, 5), "relieved"), b: (None, "late")})
    for expr in (impact.did_expr(world_con, reliefs, as_of=AS_OF, region_level="state"),
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
