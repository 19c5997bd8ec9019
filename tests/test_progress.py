"""lib/engine/progress against a plain Python count over the input rows of a hand-made world."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pytest
import sqlglot
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from sqlglot import exp

from lib import cells, engine, store
from lib.engine import progress

D = dt.date.fromisoformat
# Two square states side by side near Kassel; site X1 lies outside both (network total only).
SQUARES = {"W": (9.0, 9.5), "E": (9.5, 10.0)}
SITES = {"W1": (51.25, 9.25, "W"), "W2": (51.10, 9.10, "W"), "E1": (51.25, 9.75, "E"),
         "E2": (51.40, 9.90, "E"), "X1": (52.50, 11.00, None)}
# upgrade_id -> (site, on_air_planned, on_air_actual, status): the baseline file ...
V1 = {
    "U1": ("W1", "2025-02-10", "2025-02-20", ""),
    "U2": ("W1", "2025-03-01", "", ""),
    "U3": ("W2", "2025-03-15", "2025-03-10", ""),
    "U4": ("W2", "2025-04-20", "", ""),
    "U5": ("E1", "2025-02-01", "2025-02-01", ""),
    "U6": ("E1", "2025-05-01", "", ""),
    "U7": ("E2", "2025-03-30", "", ""),
    "U8": ("X1", "2025-03-05", "2025-03-06", ""),
    "U9": ("E2", "2025-04-01", "", ""),
}
# ... and the newer export: U2, U4, U6 slip, U7 goes on air late, U9 is cancelled, U10 is new.
V2 = V1 | {
    "U2": ("W1", "2025-04-15", "2025-04-20", ""),
    "U4": ("W2", "2025-06-01", "", ""),
    "U6": ("E1", "2025-05-20", "", ""),
    "U7": ("E2", "2025-03-30", "2025-05-05", ""),
    "U9": ("E2", "2025-04-01", "", "cancelled"),
    "U10": ("W2", "2025-05-10", "", ""),
}
CHECK_DATES = [D("2025-01-31"), D("2025-03-02"), D("2025-03-31"), D("2025-04-20"), D("2025-05-10"),
               D("2025-05-31"), D("2025-06-30")]


def _regions_geojson() -> bytes:
    features = [{"type": "Feature",
                 "properties": {"region_id": rid, "name": rid, "level": "state", "population": 1000},
                 "geometry": {"type": "Polygon",
                              "coordinates": [[[w, 51.0], [e, 51.0], [e, 51.5], [w, 51.5], [w, 51.0]]]}}
                for rid, (w, e) in SQUARES.items()]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _upgrades_csv(rows: dict) -> bytes:
    lines = ["upgrade_id,site_id,kind,on_air_planned,on_air_actual,status"]
    lines += [f"{uid},{site},hardware_swap,{plan},{actual},{status}"
              for uid, (site, plan, actual, status) in rows.items()]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def con(new_module_store):
    c = new_module_store()
    sites = "site_id,lat,lon\n" + "".join(f"{s},{lat},{lon}\n" for s, (lat, lon, _) in SITES.items())
    store.import_file(c, _regions_geojson(), table="regions", file_name="regions.geojson")
    store.import_file(c, sites.encode(), table="sites", file_name="sites.csv")
    for i, rows in enumerate((V1, V2), 1):
        r = store.import_file(c, _upgrades_csv(rows), table="upgrades", file_name=f"upgrades_{i}.csv")
        assert r.rows_rejected == 0
    yield c
    c.close()


def _rows(region_id: str) -> list[tuple[str, dt.date, dt.date, dt.date | None]]:
    """(upgrade_id, planned, baseline, actual) of a region's not-cancelled upgrades, from the input rows."""
    out = []
    for uid, (site, plan, actual, status) in V2.items():
        if status == "cancelled" or (region_id != progress.ALL and SITES[site][2] != region_id):
            continue
        out.append((uid, D(plan), D(V1.get(uid, V2[uid])[1]), D(actual) if actual else None))
    return out


def _expected(region_id: str, day: dt.date) -> dict:
    planned = baseline = on_air = late = 0
    rows = _rows(region_id)
    for _, plan, base, actual in rows:
        done = actual is not None and actual <= day
        planned += plan <= day
        baseline += base <= day
        on_air += done
        late += plan < day and not done  # its planned day has passed
    total = len(rows)
    return {"planned_cum": planned, "baseline_cum": baseline, "on_air_cum": on_air, "late": late, "total": total,
            "pct_on_air": 100 * on_air / total, "pct_planned": 100 * planned / total}


def test_region_upgrades_match_the_input(con):
    df = progress.region_upgrades(con)
    assert list(df.columns) == progress.UPGRADE_COLUMNS
    got = {(r.region_id, r.upgrade_id, r.planned.date(), r.baseline.date(),
            None if pd.isna(r.actual) else r.actual.date()) for r in df.itertuples()}
    want = {(rid, *row) for rid in SQUARES for row in _rows(rid)}
    assert got == want
    assert "U9" not in set(df["upgrade_id"])  # cancelled
    assert "U8" not in set(df["upgrade_id"])  # outside every region


def test_the_world_has_slipped_plans(con):
    df = progress.region_upgrades(con)
    assert (df["planned"] != df["baseline"]).sum() == 3


@pytest.mark.parametrize("freq, first, last", [
    ("week", "2025-02-02", "2025-06-01"),  # the data runs from Sat 1 Feb to Sun 1 Jun
    ("month", "2025-02-28", "2025-06-30"),
])
def test_series_equals_a_plain_count(con, freq, first, last):
    df = progress.progress_series(con, freq=freq)
    assert list(df.columns) == progress.SERIES_COLUMNS
    assert set(df["region_id"]) == {progress.ALL, "W", "E"}
    for row in df.to_dict("records"):
        want = _expected(row["region_id"], row["date"].date())
        for key, value in want.items():
            assert row[key] == pytest.approx(value), (row["region_id"], row["date"], key)
    dates = sorted(set(df["date"]))
    assert (dates[0].date(), dates[-1].date()) == (D(first), D(last))
    assert len(df) == 3 * len(dates)


@pytest.mark.parametrize("day", CHECK_DATES)
def test_series_at_chosen_dates(con, day):
    df = progress.progress_series(con, freq="month", start=day, end=day)
    assert len(df) == 3  # ALL, E, W; each one month end
    for row in df.to_dict("records"):
        assert row["date"].date() == (pd.Timestamp(day) + pd.offsets.MonthEnd(0)).date()
        want = _expected(row["region_id"], row["date"].date())
        assert {k: row[k] for k in want} == pytest.approx(want)


def test_weeks_end_on_sunday_and_cover_the_range(con):
    df = progress.progress_series(con, region_ids=["W"], freq="week", start="2025-03-05", end="2025-03-20")
    assert [d.date() for d in df["date"]] == [D("2025-03-09"), D("2025-03-16"), D("2025-03-23")]
    assert set(df["region_id"]) == {"W"}


def test_baseline_differs_from_the_current_plan(con):
    row = progress.progress_series(con, region_ids=["W"], freq="month", start="2025-03-31",
                                   end="2025-03-31").iloc[0]
    assert (row["planned_cum"], row["baseline_cum"]) == (2, 3)  # U2 slipped from March to April


def test_unknown_freq_is_refused(con):
    with pytest.raises(ValueError, match="freq"):
        progress.progress_series(con, freq="day")


def test_empty_store(tmp_path):
    c = store.connect(tmp_path / "x.duckdb")
    assert progress.progress_series(c).empty
    h = progress.headline(c, "2025-05-01")
    assert h["total"] == 0 and h["forecast"].reason == progress.REASON_EMPTY


@pytest.mark.parametrize("region_id", [None, "W", "E"])
def test_headline_equals_a_plain_count(con, region_id):
    as_of = D("2025-05-10")
    h = progress.headline(con, as_of, region_id)
    rid = region_id or progress.ALL
    now, before = _expected(rid, as_of), _expected(rid, as_of - dt.timedelta(days=30))
    assert h["region_id"] == rid
    assert (h["total"], h["on_air"], h["late"]) == (now["total"], now["on_air_cum"], now["late"])
    assert h["pct_on_air"] == pytest.approx(now["pct_on_air"])
    assert h["pct_change_pp"] == pytest.approx(now["pct_on_air"] - before["pct_on_air"])
    actual = [a for *_, a in _rows(rid) if a is not None and a <= as_of]
    last = max(plan for _, plan, *_ in _rows(rid))
    assert h["forecast"] == progress.forecast(actual, now["total"], as_of, last_planned=last)
    assert h["forecast"].last_planned == last


AS_OF = D("2025-06-30")


def _daily(n: int, every: int = 1, end: dt.date = AS_OF) -> list[dt.date]:
    return [end - dt.timedelta(days=i * every) for i in range(n)]


@pytest.mark.parametrize("dates, total, window, date, per_week", [
    (_daily(90), 120, 90, AS_OF + dt.timedelta(days=30), 7.0),  # one a day, 30 to go
    (_daily(13, every=7), 39, 91, AS_OF + dt.timedelta(days=182), 1.0),  # one a week, 26 to go
    (_daily(20, every=7), 26, 91, AS_OF + dt.timedelta(days=42), 1.0),  # older ones count as done only
    (_daily(45, every=2), 50, 90, AS_OF + dt.timedelta(days=10), 3.5),  # one every second day
])
def test_forecast_steady_pace(dates, total, window, date, per_week):
    f = progress.forecast(dates, total, AS_OF, window_days=window)
    assert f.date == date and f.reason == "" and not f.done
    assert f.pace_per_week == pytest.approx(per_week)
    assert f.low < f.date < f.high


def _poisson_90(n: int) -> tuple[float, float]:
    """The exact 90% interval of a Poisson mean after n events, by root finding (not the chi-square form)."""
    lo = optimize.brentq(lambda lam: stats.poisson.sf(n - 1, lam) - 0.05, 1e-6, 500)  # P(X >= n) = 5%
    hi = optimize.brentq(lambda lam: stats.poisson.cdf(n, lam) - 0.05, 1e-6, 500)  # P(X <= n) = 5%
    return lo, hi


def test_forecast_band_spans_the_poisson_intervals_of_the_windows_run_through():
    f = progress.forecast(_daily(9, every=10), 20, AS_OF, window_days=90)  # n = 9 in 90 days, 3 in 30; 11 to go
    assert f.date == AS_OF + dt.timedelta(days=110)
    (lo30, hi30), (lo90, hi90) = _poisson_90(3), _poisson_90(9)  # 180 and 365 days: not run through yet
    fast, slow = max(hi30 / 30, hi90 / 90), min(lo30 / 30, lo90 / 90)
    assert f.low == AS_OF + dt.timedelta(days=math.ceil(11 / fast))
    assert f.high == AS_OF + dt.timedelta(days=math.ceil(11 / slow))


def test_a_slower_year_lies_inside_the_band():
    slow_year = [AS_OF - dt.timedelta(days=d) for d in range(91, 371, 5)]  # one every 5 days until 90 days ago
    fast_now = _daily(90)  # then one a day
    total = len(slow_year) + len(fast_now) + 200
    f = progress.forecast([*slow_year, *fast_now], total, AS_OF)
    assert f.date == AS_OF + dt.timedelta(days=200)  # the 90-day pace
    n_365 = sum(d > AS_OF - dt.timedelta(days=365) for d in [*slow_year, *fast_now])
    at_year_pace = AS_OF + dt.timedelta(days=math.ceil(200 * 365 / n_365))
    assert f.low <= f.date < at_year_pace <= f.high


def test_the_forecast_carries_the_last_planned_date():
    f = progress.forecast(_daily(9, every=10), 20, AS_OF, last_planned=D("2026-03-31"))
    assert f.last_planned == D("2026-03-31")


@pytest.mark.parametrize("dates, total, reason", [
    (_daily(5, end=AS_OF - dt.timedelta(days=100)), 10, progress.REASON_NO_PACE.format(days=90)),
    ([], 10, progress.REASON_NO_PACE.format(days=90)),
    ([AS_OF + dt.timedelta(days=1)], 10, progress.REASON_NO_PACE.format(days=90)),  # after as_of: ignored
    (_daily(10), 10, progress.REASON_COMPLETE),
    ([*_daily(3), None, pd.NaT], 3, progress.REASON_COMPLETE),
    ([], 0, progress.REASON_EMPTY),
])
def test_forecast_without_a_date(dates, total, reason):
    f = progress.forecast(dates, total, AS_OF)
    assert (f.date, f.low, f.high, f.reason) == (None, None, None, reason)
    assert f.done == (reason == progress.REASON_COMPLETE)


def test_forecast_refuses_an_empty_window():
    with pytest.raises(ValueError):
        progress.forecast([], 1, AS_OF, window_days=0)


_day = st.integers(min_value=0, max_value=200)
_upgrade = st.tuples(_day, _day, st.one_of(st.none(), _day))


@settings(max_examples=150, deadline=None)
@example(upgrades=[(0, 0, None)] * 11, offsets=[0])  # k * (100 / n) overshot 100 here
@given(st.lists(_upgrade, max_size=30), st.lists(_day, min_size=1, max_size=10))
def test_cumulative_properties(upgrades, offsets):
    start = pd.Timestamp("2025-01-01")
    day = [start + pd.Timedelta(days=o) for o in range(0, 201)]
    frame = pd.DataFrame({
        "planned": pd.Series([day[p] for p, _, _ in upgrades], dtype="datetime64[us]"),
        "baseline": pd.Series([day[b] for _, b, _ in upgrades], dtype="datetime64[us]"),
        "actual": pd.Series([None if a is None else day[a] for *_, a in upgrades], dtype="datetime64[us]"),
    })
    dates = sorted(day[o] for o in set(offsets))
    df = progress.cumulative(frame, dates, "R")
    assert df["on_air_cum"].is_monotonic_increasing and df["planned_cum"].is_monotonic_increasing
    assert (df["on_air_cum"] <= df["total"]).all() and (df["total"] == len(upgrades)).all()
    assert ((df["late"] >= 0) & (df["late"] <= df["planned_cum"])).all()
    if upgrades:
        assert df["pct_on_air"].between(0, 100).all() and df["pct_planned"].between(0, 100).all()
    for row, d in zip(df.to_dict("records"), dates, strict=True):
        k = (d - start).days
        assert row["late"] == sum(p < k and (a is None or a > k) for p, _, a in upgrades)
        assert row["baseline_cum"] == sum(b <= k for _, b, _ in upgrades)


# -- the Ibis expressions against the SQL they replaced ---------------------------------

def old_upgrades_sql(by_region: bool) -> str:
    """The module's SQL before Ibis (DuckDB placeholders), kept as an independent reference."""
    baseline = """
    first_version AS (
        SELECT upgrade_id, min(version_import_id) AS version_import_id FROM upgrades_versions GROUP BY upgrade_id
    ),
    baseline AS (
        SELECT v.upgrade_id, v.on_air_planned AS baseline
        FROM upgrades_versions v JOIN first_version f
            ON v.upgrade_id = f.upgrade_id AND v.version_import_id = f.version_import_id
    )"""
    select = """u.upgrade_id, u.on_air_planned AS planned, coalesce(b.baseline, u.on_air_planned) AS baseline,
        u.on_air_actual AS actual
    FROM upgrades u LEFT JOIN baseline b ON b.upgrade_id = u.upgrade_id"""
    where = "u.status IS NULL OR u.status <> 'cancelled'"
    if not by_region:
        return f"WITH {baseline} SELECT 'ALL' AS region_id, {select} WHERE {where} ORDER BY u.upgrade_id"
    return f"""WITH {baseline},
    rc AS (
        SELECT c.region_id, c.cell FROM region_cells c JOIN regions r ON r.region_id = c.region_id
        WHERE r.level = ?
    )
    SELECT rc.region_id, {select}
        JOIN sites s ON s.site_id = u.site_id
        JOIN rc ON rc.cell = {cells.parent_sql("s.cell", cells.REGION_RES)}
    WHERE {where}
    ORDER BY rc.region_id, u.upgrade_id"""


def _old_frame(con, sql: str, params: list) -> pd.DataFrame:
    df = con.execute(sql, params).df()
    for col in ("planned", "baseline", "actual"):
        df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
    return df.astype({"region_id": "str", "upgrade_id": "str"})[progress.UPGRADE_COLUMNS]


def test_expressions_equal_the_old_sql(con):
    pd.testing.assert_frame_equal(progress.region_upgrades(con), _old_frame(con, old_upgrades_sql(True), ["state"]))
    pd.testing.assert_frame_equal(progress.network_upgrades(con), _old_frame(con, old_upgrades_sql(False), []))
    assert progress.region_upgrades(con, "cluster").empty


def test_date_span_without_fetching_every_upgrade(con, tmp_path):
    assert progress.date_span(con) == progress._date_span(progress.network_upgrades(con))
    assert progress.date_span(store.connect(tmp_path / "empty.duckdb")) is None


@pytest.mark.parametrize("region_ids", [["W"], ["E", "W"], [progress.ALL], ["W", progress.ALL, "nowhere"]])
@pytest.mark.parametrize("freq", list(progress.FREQS))
def test_listed_regions_are_rows_of_the_full_series(con, region_ids, freq):
    full = progress.progress_series(con, freq=freq)
    part = progress.progress_series(con, region_ids, freq=freq)
    assert list(dict.fromkeys(part["region_id"])) == list(dict.fromkeys(region_ids))
    known = [r for r in region_ids if r in set(full["region_id"])]
    want = pd.concat([full[full["region_id"] == r] for r in known], ignore_index=True)
    pd.testing.assert_frame_equal(part[part["region_id"].isin(known)].reset_index(drop=True), want)
    unknown = part[~part["region_id"].isin(known)]
    assert (unknown["total"] == 0).all() and unknown["pct_on_air"].isna().all()


def test_works_on_a_cursor_and_an_ibis_backend(con):
    want = progress.progress_series(con, freq="month")
    cur = con.cursor()
    try:
        pd.testing.assert_frame_equal(progress.progress_series(cur, freq="month"), want)
        pd.testing.assert_frame_equal(progress.progress_series(engine.backend(cur), freq="month"), want)
    finally:
        cur.close()


# -- every query compiles for every engine, with no DuckDB-only function ----------------

DUCKDB_ONLY = {"LIST_VALUE", "LIST_EXTRACT", "LIST_AGGREGATE", "STRUCT_PACK", "STRFTIME", "STRPTIME", "EPOCH_MS",
               "REGEXP_MATCHES", "ARG_MIN", "ARG_MAX", "COUNT_STAR", "ANY_VALUE", "H3_CELL_TO_PARENT",
               "H3_GRID_DISK", "UNNEST", "GENERATE_SERIES", "RANGE", "TIME_BUCKET", "DATE_DIFF", "DATEDIFF"}
"""Functions DuckDB has and (some of) the other engines have not, or spell differently."""

NATIVE = {"duckdb": set(), "postgres": {"MAKE_DATE"}, "trino": {"FROM_ISO8601_DATE"}, "pyspark": {"MAKE_DATE"}}
"""Functions sqlglot does not model that ibis writes on purpose for an engine (date literals)."""


def function_names(sql: str, dialect: str) -> tuple[set[str], set[str]]:
    """(every function called, those sqlglot does not know in `dialect`), upper case."""
    tree = sqlglot.parse_one(sql, read={"pyspark": "spark"}.get(dialect, dialect))
    names, unknown = set(), set()
    for f in tree.find_all(exp.Func):
        name = (f.name if isinstance(f, exp.Anonymous) else f.sql_name()).upper()
        names.add(name)
        if isinstance(f, exp.Anonymous):
            unknown.add(name)
    return names, unknown


BUILDERS = {
    "region_upgrades": lambda con: progress.region_upgrades_expr(con),
    "region_upgrades_listed": lambda con: progress.region_upgrades_expr(con, "state", ["W", "E"]),
    "network_upgrades": lambda con: progress.network_upgrades_expr(con),
    "date_span": lambda con: progress.date_span_expr(con),
    "regions": lambda con: progress.regions_expr(con, "state"),
}


@pytest.mark.parametrize("dialect", engine.DIALECTS)
@pytest.mark.parametrize("name", BUILDERS)
def test_expressions_compile_for_every_engine(con, name, dialect):
    sql = engine.to_sql(BUILDERS[name](con), dialect)
    names, unknown = function_names(sql, dialect)
    assert unknown <= NATIVE[dialect], (name, dialect, unknown - NATIVE[dialect])
    if dialect != "duckdb":
        assert not names & DUCKDB_ONLY, (name, dialect, names & DUCKDB_ONLY)
        assert "h3_" not in sql.lower()
    assert "?" not in sql and "$1" not in sql  # literals, no driver placeholder style
