"""lib/engine/derive: the derived tables, their version, and that every query answers the same from them as
from the raw tables (tiny world, the hotspot world of test_hotspots, the demo store)."""

from __future__ import annotations

import shutil

import duckdb
import pandas as pd
import pytest

from lib import cells, engine, store
from lib.engine import derive, hotspots
from lib.views import overview
from tests.test_portability import DUCKDB_ONLY, _calls

CATEGORY_CASES = [None, hotspots.KINDS["capacity"], hotspots.KINDS["coverage"], (), ("other",)]


def _copy(src, tmp_path, name: str) -> duckdb.DuckDBPyConnection:
    path = tmp_path / name
    shutil.copy(src, path)
    return store.connect(path)


@pytest.fixture
def tiny(tiny_world, tmp_path):
    c = _copy(tiny_world.template, tmp_path, "tiny.duckdb")
    derive.rebuild(c)
    yield c
    c.close()


@pytest.fixture(scope="module")
def demo(demo_db, tmp_path_factory):
    c = _copy(demo_db, tmp_path_factory.mktemp("derive-demo"), "demo.duckdb")
    derive.rebuild(c)
    yield c
    c.close()


def _set_stale(con) -> None:
    con.execute(f"UPDATE meta SET value = '-1' WHERE key = '{derive.VERSION_KEY}'")


def _set_current(con) -> None:
    con.execute(f"UPDATE meta SET value = (SELECT CAST(coalesce(max(import_id), 0) AS VARCHAR) FROM import_log) "
                f"WHERE key = '{derive.VERSION_KEY}'")


def _both_paths(con, fn, *args, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """fn's answer from the derived tables and from the raw tables (the derived ones marked stale)."""
    assert derive.current(con)
    derived = fn(con, *args, **kwargs)
    _set_stale(con)
    try:
        assert not derive.current(con)
        raw = fn(con, *args, **kwargs)
    finally:
        _set_current(con)
    return derived, raw


def _check_same_answers(con) -> None:
    for res in hotspots.RESOLUTIONS:
        for cats in CATEGORY_CASES:
            got = engine.backend(con.cursor()).execute(hotspots.cell_counts_expr(con, res, categories=cats,
                                                                                 derived=True))
            want = engine.backend(con.cursor()).execute(hotspots.cell_counts_expr(con, res, categories=cats))
            pd.testing.assert_frame_equal(got.astype("int64"), want.astype("int64"))
            pd.testing.assert_frame_equal(*_both_paths(con, hotspots.cell_counts, res, categories=cats))
    for kind in hotspots.KINDS:
        pd.testing.assert_frame_equal(*_both_paths(con, hotspots.hotspots, 7, kind=kind))
    for level in ("state", "cluster", "district"):
        derived, raw = _both_paths(con, overview.region_table, level)
        pd.testing.assert_frame_equal(derived, raw)


def test_refresh_builds_the_tables_and_marks_them_current(tiny):
    assert derive.current(tiny)
    assert tiny.execute("SELECT value FROM meta WHERE key = 'derived_version'").fetchall() == [
        (str(tiny.execute("SELECT max(import_id) FROM import_log").fetchall()[0][0]),)]
    valid = tiny.execute("SELECT count(*) FROM complaints WHERE cell > 0").fetchall()[0][0]
    assert valid > 250
    totals = dict(tiny.execute("SELECT res, sum(n) FROM complaint_cube GROUP BY res").fetchall())
    assert totals == dict.fromkeys(derive.RESOLUTIONS, valid)
    assert set(hotspots.RESOLUTIONS) | {cells.REGION_RES} <= set(derive.RESOLUTIONS)
    # cell_regions: exactly the region_cells rows of cells that hold a complaint, a site or a link end
    want = tiny.execute(f"""SELECT rc.cell, r.level, rc.region_id FROM region_cells rc JOIN regions r USING (region_id)
        WHERE rc.cell IN (SELECT {cells.parent_sql('cell', 8)} FROM complaints WHERE cell > 0
                          UNION SELECT {cells.parent_sql('cell', 8)} FROM sites
                          UNION SELECT {cells.parent_sql('a_cell', 8)} FROM transport_links)
        ORDER BY ALL""").fetchall()
    assert tiny.execute("SELECT * FROM cell_regions ORDER BY ALL").fetchall() == want
    assert {lv for _, lv, _ in want} == {"state", "cluster"}
    derive.rebuild(tiny)  # again: replaces, never appends
    assert dict(tiny.execute("SELECT res, sum(n) FROM complaint_cube GROUP BY res").fetchall()) == totals
    assert tiny.execute("SELECT count(*) FROM meta WHERE key = 'derived_version'").fetchall() == [(1,)]


def test_both_paths_agree_on_the_tiny_world(tiny):
    _check_same_answers(tiny)


def test_both_paths_agree_on_the_demo_store(demo):
    assert demo.execute("SELECT count(*) FROM complaint_cube WHERE res = 9").fetchall()[0][0] > 1000
    _check_same_answers(demo)


def test_both_paths_agree_on_the_hotspot_world(tmp_path):
    from tests.test_hotspots import make_complaints

    con = store.connect(tmp_path / "hot.duckdb")
    store.import_file(con, make_complaints().to_csv(index=False).encode(), table="complaints", file_name="c.csv")
    derive.rebuild(con)
    for res in hotspots.RESOLUTIONS:
        for cats in CATEGORY_CASES:
            pd.testing.assert_frame_equal(*_both_paths(con, hotspots.cell_counts, res, categories=cats))
    for kind in hotspots.KINDS:
        derived, raw = _both_paths(con, hotspots.hotspots, 8, kind=kind)
        pd.testing.assert_frame_equal(derived, raw)
        assert derived["hot"].any()
    con.close()


def test_a_later_import_is_never_answered_from_stale_tables(tiny, tiny_world):
    before = overview.region_table(tiny, "state")
    text = tiny_world.files["complaints.csv"].read_text().replace("K0", "X0")  # 100 more complaints
    store.import_file(tiny, text.encode(), table="complaints", file_name="more.csv")
    # current only if store.import_file refreshes; either way the answers include the new rows
    after = overview.region_table(tiny, "state")
    assert after["complaints"].sum() > before["complaints"].sum()
    want = engine.backend(tiny.cursor()).execute(overview.region_table_expr(tiny, "state"))
    assert after["complaints"].tolist() == want["complaints"].astype("int64").tolist()
    raw = engine.backend(tiny.cursor()).execute(hotspots.cell_counts_expr(tiny, 8))
    pd.testing.assert_frame_equal(hotspots.cell_counts(tiny, 8), raw.astype("int64"))
    derive.rebuild(tiny)
    assert derive.current(tiny)
    pd.testing.assert_frame_equal(overview.region_table(tiny, "state"), after)


def test_windows_and_months_read_the_raw_complaints(tiny):
    with pytest.raises(ValueError, match="all time"):
        hotspots.cell_counts_expr(tiny, 8, start="2024-01-01", derived=True)
    with pytest.raises(ValueError, match="all time"):
        hotspots.cell_counts_expr(tiny, 8, monthly=True, derived=True)
    sql = engine.to_sql(hotspots.cell_counts_expr(tiny, 8, start="2024-01-01")).lower()
    assert "complaints" in sql and "complaint_cube" not in sql
    pd.testing.assert_frame_equal(*_both_paths(tiny, hotspots.cell_counts, 8, start="2024-03-01", end="2024-06-01"))
    pd.testing.assert_frame_equal(*_both_paths(tiny, hotspots.monthly_counts, 7))


def test_not_current_without_the_tables(tiny_world, tmp_path):
    bare = duckdb.connect()
    assert not derive.current(bare)
    bare.close()
    fresh = store.connect(tmp_path / "fresh.duckdb")
    assert not derive.current(fresh)
    assert not derive.current(engine.backend(fresh.cursor()))
    derive.rebuild(fresh)  # an empty store: current, and every answer empty
    assert derive.current(fresh) and derive.current(engine.backend(fresh.cursor()))
    assert hotspots.cell_counts(fresh, 8).empty and overview.region_table(fresh).empty
    fresh.close()
    old = _copy(tiny_world.template, tmp_path, "old.duckdb")  # imported without refresh, or refresh undone
    old.execute("DELETE FROM meta WHERE key = 'derived_version'")
    assert not derive.current(old)
    old.close()


def test_refresh_runs_in_the_callers_transaction(tiny):
    tiny.execute("BEGIN TRANSACTION")
    tiny.execute("DELETE FROM complaints WHERE complaint_id < 'K0100'")
    derive.refresh(tiny)
    assert tiny.execute("SELECT sum(n) FROM complaint_cube WHERE res = 9").fetchall()[0][0] < 250
    tiny.execute("ROLLBACK")
    assert derive.current(tiny)
    assert tiny.execute("SELECT sum(n) FROM complaint_cube WHERE res = 9").fetchall()[0][0] > 250


@pytest.mark.parametrize("dialect", engine.DIALECTS)
def test_refresh_statements_are_portable_sql(dialect):
    stmts = derive.statements(dialect)
    assert stmts[0].startswith("DELETE FROM meta") and stmts[-1].startswith("INSERT INTO meta")
    for s in stmts:
        low = s.lower()
        assert "h3_" not in low
        if dialect != "duckdb":
            assert not [f for f in DUCKDB_ONLY if _calls(low, f)], s
