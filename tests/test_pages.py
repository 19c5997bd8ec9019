"""Every page through AppTest (from dashboard.py), checked against the store with plain SQL and pandas."""

from __future__ import annotations

import io
import subprocess
import sys

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import cache, cells, changes, store
from lib.ingest import schema

APP = "../dashboard.py"
PAGES = ["pages/overview.py", "pages/map.py", "pages/rollout.py", "pages/data.py", "pages/public.py"]
TILES = {"Regions": "regions", "Sites": "sites", "Upgrades": "upgrades", "Transport links": "transport_links",
         "Complaints": "complaints"}


def app(page: str | None = None, **query) -> AppTest:
    """The app started from dashboard.py, run once, then switched to `page` and run again."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sql(path, query: str, params=None) -> list[tuple]:
    with duckdb.connect(str(path)) as con:
        return con.execute(query, params or []).fetchall()


def complaints_per_region(path, level: str) -> dict[str, int]:
    """Complaints per region counted in pandas: numpy H3 parents merged with the region cells."""
    with duckdb.connect(str(path)) as con:
        k = con.execute("SELECT cell FROM complaints").df()
        rc = con.execute("SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) "
                         "WHERE r.level = ?", [level]).df()
    k["cell"] = cells.parent(k["cell"].to_numpy(), cells.REGION_RES)
    return k.merge(rc, on="cell").groupby("region_id").size().to_dict()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(tiny_db, page):
    at = app(page)
    assert not at.error


def test_a_page_run_on_its_own_runs_the_router(tiny_db):
    """Before st.navigation has run, Streamlit may run a page file alone (a deep link after a server start)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/data.py").run()  # before the first run: the legacy pages/ folder
    for _ in range(2):
        assert not at.exception
        assert [t.value for t in at.title] == ["Data"]
        assert [c.value for c in at.sidebar.caption][1] == f"Store: `{tiny_db}`"
        at.run()


TILE_SQL = {t: f"SELECT count(*) FROM {t}" for t in TILES.values()} | {
    "upgrades": "SELECT count(*) FROM upgrades WHERE status IS NULL OR status <> 'cancelled'"}
"""What each Overview tile counts: the rows of its table; upgrades without the cancelled ones."""


def test_overview_tiles_and_as_of_match_the_store(tiny_db):
    at = app()
    shown = {m.label: m.value for m in at.metric}
    assert shown == {label: f"{sql(tiny_db, TILE_SQL[t])[0][0]:,}" for label, t in TILES.items()}
    as_of = sql(tiny_db, "SELECT greatest(max(received_at), (SELECT max(on_air_actual) FROM upgrades)) "
                         "FROM complaints")[0][0]
    assert f"Data as of **{as_of:%Y-%m-%d}**" in [c.value for c in at.sidebar.caption]
    assert f"Store: `{tiny_db}`" in [c.value for c in at.sidebar.caption]


def test_overview_regions_tile_says_how_many_of_each_level(tiny_db):
    """The Regions tile counts every level together; its help gives each level's count, in schema order."""
    at = app()
    tile = next(m for m in at.metric if m.label == "Regions")
    per_level = dict(sql(tiny_db, "SELECT level, count(*) FROM regions GROUP BY level"))
    assert len(per_level) > 1 and int(tile.value.replace(",", "")) == sum(per_level.values())
    listed = ", ".join(f"{lv} {per_level[lv]:,}" for lv in schema.LEVELS if lv in per_level)
    assert tile.proto.help == f"Every level counted; by level: {listed}."


@pytest.mark.parametrize("level", ["state", "cluster"])
def test_region_table_follows_the_level_in_the_url(tiny_db, level):
    at = app(level=level)
    table = at.dataframe[0].value
    names = sql(tiny_db, "SELECT name FROM regions WHERE level = ? ORDER BY name", [level])
    assert table["name"].tolist() == [n for (n,) in names]
    counted = complaints_per_region(tiny_db, level)
    assert dict(zip(table["region_id"], table["complaints"], strict=True)) == {
        r: counted.get(r, 0) for r in table["region_id"]}
    spec = at.get("plotly_chart")[0].proto.spec
    assert f"by {level}" in spec


def test_level_selector_switches_the_table(tiny_db):
    at = app()
    assert at.button_group(key="level").value == "state"
    at.button_group(key="level").set_value("cluster").run()
    assert at.dataframe[0].value["region_id"].tolist() == ["C1"]


def test_empty_store_shows_how_to_get_data(empty_db):
    at = app()
    text = " ".join(i.value for i in at.info)
    assert "python -m lib.cli demo" in text and "make run" in text and "Data" in text
    assert not at.metric and not at.dataframe
    assert "No data yet" in [c.value for c in at.sidebar.caption]
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert "No imports yet." in [i.value for i in at.info]
    assert not empty_db.exists()  # looking does not create an empty store (that would stop `demo --if-missing`)


def test_a_store_locked_by_another_process_gives_a_message(tiny_db):
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(tiny_db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for page in PAGES:
            at = AppTest.from_file(APP, default_timeout=60)
            at.switch_page(page).run()
            assert not at.exception
            assert "cannot be opened" in at.error[0].value and str(tiny_db) in at.error[0].value
    finally:
        holder.kill()
        holder.wait()


def test_data_page_lists_the_import_history(tiny_db):
    at = app("pages/data.py")
    log = at.dataframe[0].value
    assert log["import_id"].tolist() == [i for (i,) in sql(tiny_db, "SELECT import_id FROM import_log "
                                                                    "ORDER BY import_id DESC")]
    assert "No import had rejected rows." in [c.value for c in at.caption]
    assert [e.label for e in at.expander] == ["Data formats"]
    assert schema.format_markdown().strip()[:60] in " ".join(m.value for m in at.markdown)


def test_rejected_rows_of_a_past_import_are_shown(tiny_db, bad_complaints):
    with duckdb.connect(str(tiny_db)) as con:
        bad = store.import_file(con, bad_complaints, file_name="bad.csv")
        store.import_file(con, bad_complaints.replace(b"B", b"X"), file_name="bad2.csv")
    at = app("pages/data.py")
    picker = at.selectbox(key="rejects_of")
    assert picker.options[0].startswith("#8 bad2.csv") and picker.options[1].startswith("#7 bad.csv (complaints)")
    picker.select(bad.import_id).run()
    shown = next(d.value for d in at.dataframe if list(d.value.columns) == ["row", "field", "value", "reason"])
    want = pd.DataFrame(sql(tiny_db, 'SELECT "row", field, value, reason FROM rejected_rows WHERE import_id = ? '
                                     'ORDER BY "row"', [bad.import_id]), columns=["row", "field", "value", "reason"])
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), want, check_dtype=False)
    assert shown["row"].tolist() == [3, 4]
    assert "outside Germany" in shown["reason"].iloc[0] and "unknown category" in shown["reason"].iloc[1]
    assert [b.label for b in at.get("download_button")] == ["Download rejected rows (CSV)",
                                                            "Download the audit trail (CSV)"]


def test_import_flow_imports_refuses_and_invalidates_caches(tiny_db, bad_complaints):
    con = cache.get_store()
    before = cache.summary(con).counts["complaints"]
    steps = []
    outcomes = cache.import_files(con, [("bad.csv", bad_complaints), ("notes.csv", b"hello;world\n1;2\n")],
                                  progress=lambda msg, frac: steps.append((msg, frac)))
    ok, refused = outcomes
    assert ok.error is None and ok.rows_rejected == 2 and ok.result.rows_accepted == 2 and ok.import_id == 7
    assert refused.result is None and refused.error.startswith("notes.csv: cannot tell which table")
    fracs = [f for _, f in steps]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and steps[0][0].startswith("bad.csv: ")
    assert cache.summary(con).counts["complaints"] == before + 2  # the new version token bypasses the cache
    rejects = pd.read_csv(io.BytesIO(cache.rejects_csv(cache.rejected_rows(con, ok.import_id))), encoding="utf-8-sig")
    assert rejects["row"].tolist() == [3, 4] and list(rejects.columns) == ["row", "field", "value", "reason", "record"]
    again = cache.import_files(con, [("bad.csv", bad_complaints)], table="complaints")[0]
    assert again.import_id is None and "identical to import #7" in again.result.summary()


def test_the_version_token_is_read_again_after_each_committed_write_only(tiny_db, bad_complaints, tmp_path):
    con = cache.get_store()
    first = cache.version(con)
    with con.cursor() as cur:  # a row no import of this process wrote: the held token is kept, nothing asked
        cur.execute("INSERT INTO import_log (import_id, table_name, imported_at) VALUES (99, 'x', now())")
    assert cache.version(con) == first
    changes.bump()  # any committed write of this process: the token is read again and sees the row
    moved = cache.version(con)
    assert moved != first and "|99|" in moved
    with con.cursor() as cur:
        res = store.import_file(cur, bad_complaints, table="complaints", file_name="bad.csv")
    assert cache.version(con).split("|")[1] == str(res.import_id) == "100"  # an import moves it at once
    other = store.connect(tmp_path / "other.duckdb")  # another store (a file replaced on disk): its own token
    try:
        assert cache.version(other).split("|")[0].endswith("other.duckdb")
        assert cache.version(con).split("|")[1] == "100"
    finally:
        other.close()


def test_data_page_shows_the_outcome_of_an_import(tiny_db, bad_complaints):
    con = cache.get_store()
    ok, refused = cache.import_files(con, [("bad.csv", bad_complaints), ("x.csv", b"a,b\n1,2\n")])
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/data.py")
    at.session_state["outcomes"] = [ok.brief(), refused.brief()]
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [refused.error] and "x.csv" in refused.error
    assert at.warning[0].value == ok.result.summary()
    assert at.dataframe[0].value["row"].tolist() == [3, 4]


def test_demo_store_pages(demo_db, monkeypatch):
    monkeypatch.setenv(store.DB_ENV, str(demo_db))
    at = app()
    assert {m.label: m.value for m in at.metric} == {
        label: f"{sql(demo_db, TILE_SQL[t])[0][0]:,}" for label, t in TILES.items()}
    table = at.dataframe[0].value
    assert len(table) == sql(demo_db, "SELECT count(*) FROM regions WHERE level = 'state'")[0][0] > 0
    counted = complaints_per_region(demo_db, "state")
    assert dict(zip(table["region_id"], table["complaints"], strict=True)) == {
        r: counted.get(r, 0) for r in table["region_id"]}
    at.switch_page("pages/data.py").run()
    assert not at.exception and not at.error


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/map.py", "pages/rollout.py"])
def test_the_warm_up_makes_each_pages_first_view(demo_db, tmp_path, monkeypatch, page):
    """After the warm-up of a store opened by the server, a page opened with a link without parameters runs no
    query of its own: every one was made ahead, with the arguments the page asks for."""
    import shutil
    import types

    from lib import warmup

    db = tmp_path / "store.duckdb"
    shutil.copy(demo_db, db)
    monkeypatch.setenv(store.DB_ENV, str(db))
    cache.clear()
    cache.get_store()  # as the server does when it starts (lib/localapi)
    warmup.wait()
    asked: list[str] = []

    def counted(name: str, run):
        return lambda *a: asked.append(name) or run(*a)

    monkeypatch.setattr(cache, "QUERIES", types.MappingProxyType(
        {name: counted(name, run) for name, run in cache.QUERIES.items()}))
    built: list[str] = []
    real_deck = cache.mapdraw.deck
    monkeypatch.setattr(cache.mapdraw, "deck", lambda *a, **k: built.append("deck") or real_deck(*a, **k))
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert asked == [] and built == []
    other = AppTest.from_file(APP, default_timeout=120)  # a link to another view: made anew (the check can fail)
    other.query_params["region"] = "11" if page == "pages/map.py" else "Berlin"
    other.switch_page(page).run()
    assert not other.exception
    assert page == "pages/overview.py" or asked or built
