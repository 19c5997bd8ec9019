"""Portability of the store queries: every Ibis expression compiles for every engine of
`engine.DIALECTS` without DuckDB-only functions, and on a small store gives what the
hand-written SQL it replaced gave (that SQL is kept here, verbatim, as the independent check).

Others extend `PORTABLE_QUERIES` with (name, builder) pairs: builder(con) -> Ibis expression.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from lib import cells, engine, store
from lib.engine import asof, derive, gistar, hotspots, impact, linkage, network
from lib.views import maps, overview, rollout, story

WINDOW = {"start": "2024-03-01", "end": "2024-09-15 12:30"}

# Frames of a small Gi* problem: two groups over a 2-disk, with the 1-rings as neighbours.
_STUDY = np.unique(gistar.neighbour_table([cells.latlng_to_cells([52.2], [8.2], 8)[0]], 2)["neighbour"])
GI_VALUES = pd.DataFrame({"grp": np.repeat([0, 1], _STUDY.size), "cell": np.tile(_STUDY, 2),
                          "n": np.random.default_rng(0).poisson(3.0, 2 * _STUDY.size)}).astype("int64")
GI_NEIGHBOURS = gistar.neighbour_table(_STUDY, 1)


PORTABLE_QUERIES: list[tuple[str, callable]] = [
    *[(f"hotspots.cell_counts res {r}", lambda con, r=r: hotspots.cell_counts_expr(con, r)) for r in (7, 8, 9)],
    ("hotspots.cell_counts window capacity", lambda con: hotspots.cell_counts_expr(
        con, 8, categories=hotspots.KINDS["capacity"], **WINDOW)),
    ("hotspots.cell_counts no categories", lambda con: hotspots.cell_counts_expr(con, 8, categories=[])),
    ("hotspots.monthly_counts", lambda con: hotspots.cell_counts_expr(
        con, 7, categories=["no_signal"], monthly=True, **WINDOW)),
    *[(f"overview.{name}", lambda con, name=name: overview.EXPRESSIONS[name](con))
      for name in ("counts", "date_ranges", "as_of", "imports", "levels")],
    *[(f"overview.region_table {lv}", lambda con, lv=lv: overview.region_table_expr(con, lv))
      for lv in ("state", "cluster", "district")],
    # the derived tables (lib/engine/derive) and the queries that read them
    *[(f"derive.{name}", lambda con, name=name: derive.EXPRESSIONS[name](con)) for name in derive.EXPRESSIONS],
    ("derive.current", derive.current_expr),
    *[(f"hotspots.cell_counts derived res {r}", lambda con, r=r: hotspots.cell_counts_expr(con, r, derived=True))
      for r in (7, 8, 9)],
    ("hotspots.cell_counts derived capacity", lambda con: hotspots.cell_counts_expr(
        con, 8, categories=hotspots.KINDS["capacity"], derived=True)),
    *[(f"overview.region_table derived {lv}", lambda con, lv=lv: overview.region_table_expr(con, lv, derived=True))
      for lv in ("state", "cluster")],
    # the planner map (lib/views/maps, lib/views/story) and the channel filter it added to the counts
    ("hotspots.cell_counts channels", lambda con: hotspots.cell_counts_expr(
        con, 8, categories=hotspots.KINDS["capacity"], channels=["app", "hotline"], **WINDOW)),
    ("impact.complaint_weeks channels", lambda con: impact.complaint_weeks_expr(
        con, 8, channels=["app"], **WINDOW)),
    ("maps.regions", maps.regions_expr),
    ("maps.region_cells", lambda con: maps.region_cells_expr(con, "NW")),
    ("maps.site_kinds", maps.site_kinds_expr),
    *[(f"maps.outlines {r}", lambda con, r=r: maps.outlines_expr(con, r)) for r in (None, "NW")],
    ("story.upgrades", lambda con: story.upgrades_expr(con, ["S00", "S01"])),
    ("story.links", lambda con: story.links_expr(con, ["L01", None])),
    # the rollout page (lib/views/rollout), and the per-upgrade rules of lib/engine/linkage it lists
    ("linkage.upgrade_flags", lambda con: linkage.upgrade_flags_expr(con, "2024-09-15")),
    ("rollout.upgrade_states", lambda con: rollout.upgrade_states_expr(con, "state", "2024-09-15")),
    ("rollout.channel_mix ALL", lambda con: rollout.channel_mix_expr(con, rollout.ALL, "2024-09-15")),
    ("rollout.channel_mix region", lambda con: rollout.channel_mix_expr(con, "NW", "2024-09-15")),
    ("rollout.cells_per_region", lambda con: rollout.cells_per_region_expr(con, "state", pd.DataFrame({"cell": [1]}))),
    # the network lib/engine/network holds, and the sites and links as of a date on other engines
    ("network.upgrade_inputs", lambda con: network.upgrade_inputs_expr(con)),
    ("asof.sites", lambda con: asof.sites_as_of_expr(con, "2024-09-15")),
    ("asof.links", lambda con: asof.links_as_of_expr(con, "2024-09-15")),
]
"""Every query expression of lib/ that must run on each engine: (name, builder(con) -> expression)."""

DUCKDB_ONLY = ("h3_", "list_", "strftime", "strptime", "epoch_ms", "struct_pack", "struct_extract", "time_bucket",
               "count_star", "regexp_full_match", "arg_max", "arg_min")
"""Functions (names, or prefixes ending in _) of DuckDB that the other engines lack or spell differently."""


def _calls(sql: str, name: str) -> bool:
    """Whether `sql` calls function `name` (a prefix when it ends in _)."""
    tail = r"\w*" if name.endswith("_") else ""
    return re.search(r"\b" + re.escape(name) + tail + r"\s*\(", sql) is not None


@pytest.fixture(scope="module")
def con(tiny_world, tmp_path_factory):
    path = tmp_path_factory.mktemp("portability") / "store.duckdb"
    shutil.copy(tiny_world.template, path)
    c = store.connect(path)
    if not derive.current(c):  # the derived tables, whether or not store.import_file built them
        derive.rebuild(c)
    yield c
    c.close()


@pytest.mark.parametrize("dialect", engine.DIALECTS)
@pytest.mark.parametrize(("name", "build"), PORTABLE_QUERIES, ids=[n for n, _ in PORTABLE_QUERIES])
def test_compiles_without_engine_only_functions(con, name, build, dialect):
    sql = engine.to_sql(build(con), dialect).lower()
    assert sql.lstrip().startswith(("select", "with")), sql
    assert "h3_" not in sql  # no engine needs an H3 extension
    if dialect != "duckdb":
        found = [f for f in DUCKDB_ONLY if _calls(sql, f)]
        assert not found, f"{name} on {dialect}: {found}\n{sql}"


@pytest.mark.parametrize(("name", "build"), PORTABLE_QUERIES, ids=[n for n, _ in PORTABLE_QUERIES])
def test_executes_on_the_store(con, name, build):
    out = engine.backend(con.cursor()).execute(build(con))
    assert isinstance(out, pd.DataFrame)


# -- the hand-written SQL the expressions replaced, as the independent check -------------

def _old_where(start, end, categories) -> str:
    clauses = ["cell > 0"]
    if start is not None:
        clauses.append(f"received_at >= TIMESTAMP '{pd.Timestamp(start).strftime('%Y-%m-%d %H:%M:%S.%f')}'")
    if end is not None:
        clauses.append(f"received_at < TIMESTAMP '{pd.Timestamp(end).strftime('%Y-%m-%d %H:%M:%S.%f')}'")
    if categories is not None:
        cats = list(categories)
        clauses.append(f"category IN ({', '.join(repr(c) for c in cats)})" if cats else "1 = 0")
    return " AND ".join(clauses)


def old_cell_counts_sql(res, start=None, end=None, categories=None, monthly=False) -> str:
    month = "date_trunc('month', received_at) AS month, " if monthly else ""
    keys = "month, cell" if monthly else "cell"
    return (f"SELECT {keys}, count(*) AS n FROM (SELECT {month}{cells.parent_sql('cell', res)} AS cell "
            f"FROM complaints WHERE {_old_where(start, end, categories)}) t GROUP BY {keys} ORDER BY {keys}")


OLD_GI_STAR_SQL = """
WITH stats AS (
    SELECT grp, count(*) AS n_cells, CAST(sum(n) AS DOUBLE PRECISION) / count(*) AS mean
    FROM {values} GROUP BY grp
), spread AS (
    SELECT v.grp, sqrt(sum((v.n - s.mean) * (v.n - s.mean)) / max(s.n_cells)) AS sd
    FROM {values} v JOIN stats s ON s.grp = v.grp GROUP BY v.grp
), local AS (
    SELECT v.grp, nb.cell, sum(v.n) AS local_sum, count(*) AS w
    FROM {neighbours} nb JOIN {values} v ON v.cell = nb.neighbour
    GROUP BY v.grp, nb.cell
)
SELECT l.grp, l.cell, x.n,
    CASE WHEN p.sd > 0 AND l.w < s.n_cells
         THEN (l.local_sum - l.w * s.mean)
              / (p.sd * sqrt(CAST(l.w * (s.n_cells - l.w) AS DOUBLE PRECISION) / (s.n_cells - 1)))
         ELSE 0 END AS z
FROM local l
JOIN stats s ON s.grp = l.grp
JOIN spread p ON p.grp = l.grp
JOIN {values} x ON x.grp = l.grp AND x.cell = l.cell
"""


def _membership(point_cell: str) -> str:
    return f"rc.cell = {cells.parent_sql(point_cell, cells.REGION_RES)}"


OLD_REGION_SQL = f"""
WITH rc AS (
    SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) WHERE r.level = $level
),
site_region AS (SELECT rc.region_id, s.site_id FROM sites s JOIN rc ON {_membership("s.cell")}),
n_sites AS (SELECT region_id, count(*) AS n FROM site_region GROUP BY region_id),
n_upgrades AS (
    SELECT sr.region_id, count(*) AS n, count(u.on_air_actual) AS on_air
    FROM upgrades u JOIN site_region sr USING (site_id)
    WHERE u.status IS DISTINCT FROM 'cancelled'
    GROUP BY sr.region_id
),
n_links AS (
    SELECT rc.region_id, count(*) AS n FROM transport_links l JOIN rc ON {_membership("l.a_cell")}
    GROUP BY rc.region_id
),
n_complaints AS (
    SELECT rc.region_id, count(*) AS n FROM complaints k JOIN rc ON {_membership("k.cell")}
    GROUP BY rc.region_id
)
SELECT r.region_id, r.name, r.population,
    coalesce(s.n, 0) AS sites, coalesce(u.n, 0) AS upgrades, coalesce(u.on_air, 0) AS upgrades_on_air,
    CASE WHEN u.n > 0 THEN 100.0 * u.on_air / u.n END AS pct_on_air,
    coalesce(l.n, 0) AS transport_links, coalesce(k.n, 0) AS complaints,
    CASE WHEN r.population > 0 THEN 10000.0 * coalesce(k.n, 0) / r.population END AS complaints_per_10k
FROM regions r
LEFT JOIN n_sites s USING (region_id)
LEFT JOIN n_upgrades u USING (region_id)
LEFT JOIN n_links l USING (region_id)
LEFT JOIN n_complaints k USING (region_id)
WHERE r.level = $level
ORDER BY r.name, r.region_id
"""


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal values column by column (dtypes aside: each path has its own pandas conversion)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        g, w = got[col].reset_index(drop=True), want[col].reset_index(drop=True)
        if pd.api.types.is_float_dtype(w) or pd.api.types.is_float_dtype(g):
            np.testing.assert_allclose(g.astype("float64"), w.astype("float64"), rtol=1e-12, atol=1e-12, err_msg=col)
        elif pd.api.types.is_datetime64_any_dtype(w):
            assert pd.to_datetime(g).tolist() == pd.to_datetime(w).tolist(), col
        else:
            plain = lambda s: s.astype(object).where(s.notna(), None).tolist()  # noqa: E731
            assert plain(g) == plain(w), col


COUNT_CASES = [
    dict(res=7), dict(res=8), dict(res=9),
    dict(res=8, categories=("slow_data", "dropped_calls"), **WINDOW),
    dict(res=9, categories=(), start="2024-01-01"),
    dict(res=7, end=pd.Timestamp("2024-06-01 08:15:30.250000")),
]


@pytest.mark.parametrize("case", COUNT_CASES)
@pytest.mark.parametrize("monthly", [False, True])
def test_cell_counts_equal_the_old_sql(con, case, monthly):
    res = case["res"]
    args = dict(start=case.get("start"), end=case.get("end"), categories=case.get("categories"))
    want = con.execute(old_cell_counts_sql(res, monthly=monthly, **args)).df()
    # the expression on Ibis's DuckDB backend, and the public function (cached compiled SQL)
    _same(engine.backend(con.cursor()).execute(hotspots.cell_counts_expr(con, res, monthly=monthly, **args)), want)
    got = (hotspots.monthly_counts if monthly else hotspots.cell_counts)(con, res, **args)
    _same(got, want)
    assert got.dtypes["cell"] == "int64" and got.dtypes["n"] == "int64"
    if monthly:
        assert pd.api.types.is_datetime64_any_dtype(got["month"])
    if res == 8 and not monthly and case.get("categories") is None:
        assert len(want) > 50  # the check compares something


def _old_gi(con, values, neighbours) -> pd.DataFrame:
    cur = con.cursor()
    cur.register("old_values", values)
    cur.register("old_neighbours", neighbours)
    return cur.execute(OLD_GI_STAR_SQL.format(values="old_values", neighbours="old_neighbours")).df()


def _numpy_gi(values: pd.DataFrame) -> pd.DataFrame:
    grid = values.pivot(index="grp", columns="cell", values="n").reindex(columns=_STUDY).to_numpy()
    z = gistar.gi_star(_STUDY, grid, 1)
    groups = grid.shape[0]
    return pd.DataFrame({"grp": np.repeat(np.arange(groups), _STUDY.size), "cell": np.tile(_STUDY, groups),
                         "n": grid.ravel(), "z": z.ravel()})


def test_gi_star_equals_the_old_sql(con):
    """Gi* moved from SQL to numpy (gistar.gi_star): the SQL it replaced is the check."""
    want = _old_gi(con, GI_VALUES, GI_NEIGHBOURS).sort_values(["grp", "cell"], ignore_index=True)
    assert (want["z"] != 0).sum() > 10
    _same(_numpy_gi(GI_VALUES), want)
    # a constant field: z is 0 everywhere, as before
    flat = GI_VALUES.assign(n=4)
    assert (_numpy_gi(flat)["z"] == 0).all()
    assert (_old_gi(con, flat, GI_NEIGHBOURS)["z"] == 0).all()


def test_hotspots_on_an_ibis_backend_equal_the_duckdb_path(con):
    """The uncached path (any Ibis backend, frames as memtables) gives what the cached DuckDB path gives."""
    b = engine.backend(con.cursor())
    for kind in ("all", "coverage"):
        pd.testing.assert_frame_equal(hotspots.hotspots(b, res=7, kind=kind), hotspots.hotspots(con, res=7, kind=kind),
                                      check_dtype=False)
    pd.testing.assert_frame_equal(hotspots.cell_counts(b, 9, **WINDOW), hotspots.cell_counts(con, 9, **WINDOW))


@pytest.mark.parametrize("level", ["state", "cluster", "district"])
def test_region_table_equals_the_old_sql(con, level):
    want = con.execute(OLD_REGION_SQL, {"level": level}).df()
    _same(engine.backend(con.cursor()).execute(overview.region_table_expr(con, level)), want)
    got = overview.region_table(con, level)
    _same(got, want)
    pd.testing.assert_frame_equal(overview.region_table(engine.backend(con.cursor()), level), got, check_dtype=False)


def _old_summary(con) -> tuple:
    scalar = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    counts = {name: int(scalar(f"SELECT count(*) FROM {name}")) for name in overview.schema.TABLES}
    counts[overview.CANCELLED] = int(scalar("SELECT count(*) FROM upgrades WHERE status = 'cancelled'"))
    ranges = {}
    for label, table, column in overview.DATE_RANGES:
        lo, hi = con.execute(f'SELECT min("{column}"), max("{column}") FROM {table}').fetchall()[0]
        ranges[label] = (overview._as_date(lo), overview._as_date(hi))
    union = " UNION ALL ".join(f'SELECT max(CAST("{c}" AS TIMESTAMP)) AS t FROM {t}' for t, c in overview.ACTUAL_DATES)
    as_of = scalar(f"SELECT max(t) FROM ({union})")
    row = con.execute("SELECT import_id, table_name, file_name, imported_at FROM import_log "
                      "ORDER BY import_id DESC LIMIT 1").fetchall()
    last = overview.LastImport(int(row[0][0]), row[0][1], row[0][2], row[0][3]) if row else None
    return overview.Summary(counts, ranges, last, as_of, int(scalar("SELECT count(*) FROM import_log")))


def test_summary_and_levels_equal_the_old_sql(con, tmp_path):
    empty = store.connect(tmp_path / "empty.duckdb")
    for c in (con, empty):
        want = _old_summary(c)
        for got in (overview.summary(c), overview.summary(engine.backend(c.cursor()))):
            assert got == want
            assert type(got.data_as_of) is type(want.data_as_of)
            assert [type(v) for r in got.date_ranges.values() for v in r] == [
                type(v) for r in want.date_ranges.values() for v in r]
        old_levels = {r[0] for r in c.execute("SELECT DISTINCT level FROM regions").fetchall()}
        assert overview.levels(c) == [lv for lv in overview.schema.LEVELS if lv in old_levels]
    empty.close()


def test_compiled_sql_cache_is_bounded_and_keeps_recent_entries():
    from lib.engine import _SqlCache

    c = _SqlCache(2)
    c.put(("a",), "SELECT 1")
    c.put(("b",), "SELECT 2")
    assert c.get(("a",)) == "SELECT 1"  # a is now the most recent
    c.put(("c",), "SELECT 3")
    assert c.get(("b",)) is None and c.get(("a",)) == "SELECT 1" and c.get(("c",)) == "SELECT 3"
