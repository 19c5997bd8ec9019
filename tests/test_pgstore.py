"""The store on a real PostgreSQL server (`NETZAUSBAU_DB=postgresql://...`): the same imports, rejects and log as
the DuckDB file, the same answer to every page query and the same public snapshot on the same worlds, imports
that change nothing when they fail, and several processes on one database, each seeing the others' imports.

The server is started by the tests in a temporary directory (tests/pgserver.py); each world has its own database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import cache, cli, store
from lib.engine import derive, stores
from lib.errors import StoreError
from lib.views import maps, mapurl, publish, rollout
from tests.conftest import TODAY, pg_database
from tests.test_engines import canonical, rows

ROOT = Path(__file__).resolve().parent.parent

TABLES = ("regions", "region_cells", "sites", "transport_links", "upgrades", "upgrades_versions", "complaints",
          "status_notes", "rejected_rows", "complaint_cube", "cell_regions", "meta")
"""Tables whose every row two stores of the same files hold alike (the log and the audit trail hold times)."""


def table_rows(con, name: str) -> list[tuple]:
    with con.cursor() as cur:
        return rows(cur.execute(f"SELECT * FROM {name}").df())


def same(a, b, where: str = "") -> None:
    """`a` and `b` (frames, dataclasses, mappings, sequences, values) hold the same values; frames compared by
    their columns and canonical rows (engines order ties differently)."""
    if isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame), where
        assert list(a.columns) == list(b.columns), where
        assert rows(a) == rows(b), where
    elif isinstance(a, pd.Series):
        same(a.to_frame(), b.to_frame(), where)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert canonical(a) == canonical(b), where


@pytest.fixture
def fresh_pg(pg_cluster, request) -> str:
    """An empty PostgreSQL store of this test's own."""
    url = pg_database(pg_cluster, "t_" + request.node.name.lower()[:40].replace("[", "_").replace("]", "_"))
    store.connect(url).close()
    return url


# -- imports -----------------------------------------------------------------------------------------------

def test_the_same_files_give_the_same_tables(tiny_world, tiny_pg):
    duck, pg = store.connect(tiny_world.template, read_only=True), store.connect(tiny_pg, read_only=True)
    try:
        for name in TABLES:
            assert table_rows(pg, name) == table_rows(duck, name), name
        log = ["import_id", "table_name", "file_name", "checksum", "format", "encoding", "rows_total", "rows_accepted",
               "rows_rejected", "rows_new", "rows_updated", "rows_unchanged", "warnings"]
        assert rows(store.import_log(pg)[log]) == rows(store.import_log(duck)[log])
        assert len(table_rows(pg, "complaints")) == len(tiny_world.complaints)
        assert derive.current(pg)
        assert stores.dialect(pg) == "postgres" and stores.dialect(duck) == "duckdb"
    finally:
        duck.close()
        pg.close()


def test_rejects_updates_and_a_file_again_as_on_duckdb(tiny_world, bad_complaints, fresh_pg, tmp_path):
    duck = store.connect(tmp_path / "s.duckdb")
    pg = store.connect(fresh_pg)
    try:
        got = {}
        for con in (duck, pg):
            out = [store.import_file(con, path, today=TODAY) for path in tiny_world.files.values()]
            out.append(store.import_file(con, bad_complaints, table="complaints", file_name="bad.csv", today=TODAY))
            out.append(store.import_file(con, tiny_world.files["upgrades_update.csv"], today=TODAY))  # the same again
            got[stores.dialect(con)] = out
        for d, p in zip(got["duckdb"], got["postgres"], strict=True):
            assert (p.import_id, p.rows_total, p.rows_accepted, p.rows_rejected, p.rows_new, p.rows_updated,
                    p.rows_unchanged, p.duplicate_of, p.warnings) == (
                d.import_id, d.rows_total, d.rows_accepted, d.rows_rejected, d.rows_new, d.rows_updated,
                d.rows_unchanged, d.duplicate_of, d.warnings), d.file_name
        bad = got["postgres"][-2]
        assert bad.rows_rejected == 2 and bad.rows_accepted == 2
        same(store.rejected_rows(pg, bad.import_id), store.rejected_rows(duck, bad.import_id))
        assert got["postgres"][-1].duplicate_of == 5  # the update file, imported as #5
        same(store.versions(pg, "upgrades", "U000"), store.versions(duck, "upgrades", "U000"))
        for name in TABLES:
            assert table_rows(pg, name) == table_rows(duck, name), name
    finally:
        duck.close()
        pg.close()


@pytest.mark.parametrize("case", ["onto-rows", "empty", "id-taken", "keys-changed"])
def test_large_csv_chunked_as_on_duckdb(fresh_pg, tmp_path, monkeypatch, case):
    """A large CSV on a PostgreSQL store takes the chunked path, never read whole by the app and checked before the
    import takes the server's lock, and gives the same rows, rejects (repeated keys across ranges included, with
    their records) and counts as on a DuckDB file."""
    from concurrent.futures import ThreadPoolExecutor

    from lib.ingest import bulk
    from tests import worlds
    from tests.test_bulk import complaints_csv, worlds_today

    data = complaints_csv()
    sent: list[int] = []
    real_insert = stores.insert_frame

    def whole(*a, **k):
        raise AssertionError("a large CSV was read whole")

    import psycopg

    held: list[int] = []  # while the file is checked, no import holds the server's import lock
    real_stage = bulk.stage_csv

    def checked(*a, **k):
        with psycopg.connect(fresh_pg) as other:
            held.append(other.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = "
                "'import_log' AND l.granted AND l.mode = 'ShareRowExclusiveLock'").fetchone()[0])
        return real_stage(*a, **k)

    real_next, asked = store._next_import_id, []

    def one_behind_at_first(c) -> int:
        """Checked as the import before this one: as if another import had taken its id meanwhile."""
        asked.append(1)
        return real_next(c) - (len(asked) == 1)

    real_known, known_asked = store.known_ids, []

    def keys_grown_after_first(c, t):
        """As if another import had added keys the file is checked against, while it was checked."""
        known_asked.append(1)
        return real_known(c, t) | ({} if len(known_asked) == 1 else {"sites": {"S-NEW"}})

    duck, pg = store.connect(tmp_path / "s.duckdb"), store.connect(fresh_pg)
    try:
        got = {}
        for con in (duck, pg):
            worlds.import_world(con, tmp_path / stores.dialect(con))
            if case == "empty":
                con.execute("DELETE FROM complaints")
            with monkeypatch.context() as m:  # the large file only
                if case in ("id-taken", "keys-changed") and stores.dialect(con) == "postgres":
                    m.setattr(store, "_next_import_id", one_behind_at_first)
                if case == "keys-changed" and stores.dialect(con) == "postgres":
                    m.setattr(store, "known_ids", keys_grown_after_first)
                m.setattr(bulk, "pool", lambda: ThreadPoolExecutor(max_workers=2))
                m.setattr(bulk, "MIN_BYTES", 0)
                m.setattr(bulk, "CHUNK_BYTES", 9_000)
                m.setattr(store, "SEND_ROWS", 250)  # several batches to the server
                m.setattr(store, "read_file", whole)
                m.setattr(bulk, "stage_csv", checked)
                m.setattr(stores, "insert_frame", lambda c, table, frame, *a: (
                    sent.append(len(frame)) if table == "_incoming" else None) or real_insert(c, table, frame, *a))
                sent.clear()
                got[stores.dialect(con)] = store.import_file(con, data, table="complaints", file_name="c.csv",
                                                             today=worlds_today())
        d, p = got["duckdb"], got["postgres"]
        assert len(sent) > 2 and sum(sent) == p.rows_accepted == d.rows_accepted  # in batches of SEND_ROWS
        # checked on each store without the server's lock; checked again under it when the keys had changed
        assert held == ([0, 0, 1] if case == "keys-changed" else [0, 0])
        assert len(asked) == (2 if case in ("id-taken", "keys-changed") else 0)  # when checked, in the transaction
        assert (p.rows_total, p.rows_rejected, p.rows_new, p.rows_updated, p.warnings) == (
            d.rows_total, d.rows_rejected, d.rows_new, d.rows_updated, d.warnings)
        assert p.rows_rejected > 20 and any(r.startswith("duplicate ") for r in p.rejects["reason"])
        same(store.rejected_rows(pg, p.import_id), store.rejected_rows(duck, d.import_id))
        for name in ("complaints", "complaint_cube", "cell_regions"):
            assert table_rows(pg, name) == table_rows(duck, name), name
    finally:
        duck.close()
        pg.close()


def test_a_failed_import_changes_nothing(tiny_world, fresh_pg, monkeypatch):
    con = store.connect(fresh_pg)
    try:
        for path in list(tiny_world.files.values())[:-1]:
            store.import_file(con, path, today=TODAY)
        before = {name: table_rows(con, name) for name in (*TABLES, "import_log", "audit_log")}

        def broken(c):
            raise RuntimeError("the derived tables failed")

        monkeypatch.setattr(derive, "refresh", broken)
        with pytest.raises(RuntimeError, match="derived tables failed"):
            store.import_file(con, tiny_world.files["complaints.csv"], today=TODAY)
        for name, want in before.items():
            assert table_rows(con, name) == want, name
        monkeypatch.undo()
        assert store.import_file(con, tiny_world.files["complaints.csv"], today=TODAY).rows_new == 300
    finally:
        con.close()


def _import_in_a_process(url: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.cli", "--db", url, "import", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_two_processes_import_at_once(tiny_world, fresh_pg):
    con = store.connect(fresh_pg)
    for name in ("regions.geojson", "sites.csv", "links.csv"):
        store.import_file(con, tiny_world.files[name], today=TODAY)
    done: list[subprocess.CompletedProcess] = []
    runs = [threading.Thread(target=lambda p=p: done.append(_import_in_a_process(fresh_pg, p)))
            for p in (tiny_world.files["upgrades.csv"], tiny_world.files["complaints.csv"])]
    blocker = store.connect(fresh_pg)
    blocker.execute("BEGIN TRANSACTION")
    blocker.execute("LOCK TABLE import_log IN SHARE ROW EXCLUSIVE MODE")  # as an import under way holds it
    for t in runs:
        t.start()
    waiting = 0
    for _ in range(600):  # both imports have come to the lock and wait there
        waiting = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'").fetchone()[0]
        if waiting == 2:
            break
        time.sleep(0.1)
    blocker.execute("COMMIT")
    blocker.close()
    for t in runs:
        t.join()
    try:
        assert waiting == 2
        assert [r.returncode for r in done] == [0, 0], [r.stderr for r in done]
        log = store.import_log(con)
        assert sorted(log["import_id"]) == [1, 2, 3, 4, 5]
        assert set(log["table_name"]) == {"regions", "sites", "transport_links", "upgrades", "complaints"}
        assert derive.current(con)
        assert con.execute("SELECT count(*) FROM complaints").fetchall()[0][0] == 300
    finally:
        con.close()


# -- every page query, the snapshot ------------------------------------------------------------------------

def _page_queries(con) -> dict[str, object]:
    """Every cached page query of lib/cache on the demo store, with the arguments a page passes."""
    info = cache.QUERIES["summary"](con)
    day = info.data_as_of.date()
    level = cache.QUERIES["levels"](con)[0]
    regions = cache.QUERIES["map_regions"](con)["region_id"].tolist()
    first, last = mapurl.date_range(info)
    p = mapurl.parse({}, first, last, regions).params
    berlin = maps.Params(as_of=day, region="11")
    view = cache.QUERIES["map_view"](con, p)
    hot = view.hotspots.iloc[0]
    site = sorted(view.layers["sites"]["site_id"])[0]
    link = con.execute("SELECT link_id FROM transport_links ORDER BY link_id LIMIT 1").fetchall()[0][0]
    return {
        "summary": dataclasses.replace(info, last_import=dataclasses.replace(info.last_import, imported_at=None)),
        "levels": cache.QUERIES["levels"](con),
        "level_counts": cache.QUERIES["level_counts"](con),
        "region_table": cache.QUERIES["region_table"](con, level),
        "map_regions": cache.QUERIES["map_regions"](con),
        "map_region_names": dict(cache.QUERIES["map_region_names"](con)),
        "map_view": view,
        "map_view Berlin": cache.QUERIES["map_view"](con, berlin),
        "map_bottlenecks": cache.QUERIES["map_bottlenecks"](con, p),
        "map_what_if": cache.QUERIES["map_what_if"](con, p, day, link_id=link),
        "hotspot_story": cache.QUERIES["hotspot_story"](con, int(hot["cell"]), p.resolution, day),
        "site_story": cache.QUERIES["site_story"](con, site, day),
        "link_story": cache.QUERIES["link_story"](con, link, day),
        "rollout_regions": cache.QUERIES["rollout_regions"](con, level),
        "rollout_shapes": cache.QUERIES["rollout_shapes"](con, level),
        "rollout_table": cache.QUERIES["rollout_table"](con, level, day),
        "rollout_table cluster": cache.QUERIES["rollout_table"](con, "cluster", day - dt.timedelta(days=200)),
        "rollout_table district": cache.QUERIES["rollout_table"](con, "district", day),
        "rollout_series": cache.QUERIES["rollout_series"](con, (rollout.ALL, "11"), level),
        "rollout_late": cache.QUERIES["rollout_late"](con, level, day),
        "rollout_channels": cache.QUERIES["rollout_channels"](con, level, "11", day),
        "rollout_impact": cache.QUERIES["rollout_impact"](con, level, day),
    }


@pytest.fixture(scope="module")
def both(demo_db, demo_pg):
    """The page queries' answers on the demo store in a DuckDB file and on a PostgreSQL server."""
    out = {}
    for name in (demo_db, demo_pg):
        con = store.connect(name, read_only=True)
        try:
            out[stores.dialect(con)] = _page_queries(con)
        finally:
            con.close()
    return out


QUERY_NAMES = ["summary", "levels", "level_counts", "region_table", "map_regions", "map_region_names", "map_view",
               "map_view Berlin", "map_bottlenecks", "map_what_if", "hotspot_story", "site_story", "link_story",
               "rollout_regions", "rollout_shapes", "rollout_table", "rollout_table cluster",
               "rollout_table district", "rollout_series", "rollout_late", "rollout_channels", "rollout_impact"]


def test_every_cached_page_query_is_compared():
    assert {q.split()[0] for q in QUERY_NAMES} == set(cache.QUERIES) - {"import_log", "rejected_rows"}


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_page_query_answers_alike(both, name):
    same(both["postgres"][name], both["duckdb"][name], name)


def test_the_answers_are_not_empty(both):
    got = both["postgres"]
    assert len(got["map_view"].hotspots) > 0 and len(got["map_view"].layers["sites"]) > 0
    assert got["rollout_table"]["total"].sum() > 0 and len(got["rollout_late"]) > 0
    assert got["summary"].counts["complaints"] == 8000


def test_the_public_snapshot_is_the_same(demo_db, demo_pg, tmp_path):
    docs = []
    for name in (demo_db, demo_pg):
        con = store.connect(name)
        try:
            docs.append(publish.publish(con, tmp_path / stores.dialect(con) / "snapshot.json", k=10, by="test"))
        finally:
            con.close()
    duck, pg = (json.loads(Path(r.path).read_text()) for r in docs)
    for doc in (duck, pg):
        doc.pop("published_at", None)
    assert pg == duck


# -- the app on the server, several processes ----------------------------------------------------------------

@pytest.mark.parametrize("page", ["overview", "map", "rollout", "data"])
def test_every_page_runs_on_the_server(tiny_pg, monkeypatch, page):
    monkeypatch.setenv(store.DB_ENV, tiny_pg)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    at.query_params["page"] = page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_an_import_by_another_process_is_seen_at_once(tiny_world, fresh_pg, monkeypatch):
    con = store.connect(fresh_pg)
    for path in list(tiny_world.files.values())[:-1]:
        store.import_file(con, path, today=TODAY)
    con.close()
    monkeypatch.setenv(store.DB_ENV, fresh_pg)
    app = cache.get_store()
    assert cache.query(app, "summary").counts["complaints"] == 0
    before = cache.version(app)
    done = _import_in_a_process(fresh_pg, tiny_world.files["complaints.csv"])
    assert done.returncode == 0, done.stderr
    assert cache.version(app) != before
    assert cache.query(app, "summary").counts["complaints"] == 300


def test_the_command_line_builds_reads_and_publishes_on_the_server(fresh_pg, tmp_path, capsys):
    assert cli.main(["--db", fresh_pg, "demo", "--complaints", "3000", "--sites", "300"]) == 0
    assert "demo store built at postgresql://" in capsys.readouterr().out
    assert cli.main(["--db", fresh_pg, "demo", "--if-missing"]) == 0
    assert "store exists" in capsys.readouterr().out
    assert cli.main(["--db", fresh_pg, "figures", "--no-impact"]) == 0
    assert capsys.readouterr().out.startswith("Whole network (ALL), as of ")
    out = tmp_path / "public" / "snapshot.json"
    assert cli.main(["--db", fresh_pg, "publish", "--out", str(out)]) == 0
    assert out.exists()
    con = store.connect(fresh_pg, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM complaints").fetchall()[0][0] == 3000
        assert con.execute("SELECT action FROM audit_log ORDER BY happened_at DESC LIMIT 1").fetchall()[0][0] == \
            "publish"
    finally:
        con.close()


def test_a_server_that_cannot_be_reached_is_named_without_its_password(monkeypatch):
    from tests.ports import free_port

    url = f"postgresql://planner:s3cret@127.0.0.1:{free_port()}/netzausbau"
    with pytest.raises(StoreError) as caught:
        store.connect(url)
    assert "cannot be reached" in str(caught.value) and "s3cret" not in str(caught.value)
    assert "postgresql://planner:***@127.0.0.1" in str(caught.value)
    monkeypatch.setenv(store.DB_ENV, url)
    assert "s3cret" not in cache.store_name() and cache.store_name().startswith("postgresql://planner:***@")
    assert stores.shown("postgresql://h/db?sslmode=require&password=s3cret") == \
        "postgresql://h/db?sslmode=require&password=***"
    assert stores.shown("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db"


def test_a_store_file_is_not_a_server():
    assert not stores.is_server("data/netzausbau.duckdb") and not stores.is_server("/tmp/postgresql.duckdb")
    assert stores.is_server("postgresql://u@h/db") and stores.is_server("postgres://u@h/db")
    assert store.server_url("data/x.duckdb") is None and store.local_folder("postgresql://u@h/db") == store.DATA_DIR
    assert os.fspath(store.local_folder("/tmp/a/b.duckdb")) == "/tmp/a"


def test_of_several_processes_one_at_a_time_takes_the_inbox(tiny_world, fresh_pg, tmp_path):
    from lib import inbox

    folder = tmp_path / "inbox"
    folder.mkdir()
    app_a, app_b = store.connect(fresh_pg), store.connect(fresh_pg)
    a = inbox.Watcher(folder, lambda: app_a, quiet=0, claim=lambda: app_a.claimed(inbox.INBOX_LOCK))
    b = inbox.Watcher(folder, lambda: app_b, quiet=0, claim=lambda: app_b.claimed(inbox.INBOX_LOCK))
    try:
        (folder / "regions.geojson").write_bytes(tiny_world.files["regions.geojson"].read_bytes())
        assert [r.table for r in a.once()] == ["regions"]
        (folder / "sites.csv").write_bytes(tiny_world.files["sites.csv"].read_bytes())
        with app_a.claimed(inbox.INBOX_LOCK) as mine:  # a is taking files: b leaves them
            assert mine
            assert b.once() == [] and (folder / "sites.csv").exists()
        assert [(r.status, r.table) for r in b.once()] == [("imported", "sites")]  # a is done: b takes them
        assert a.once() == [] and sorted(store.import_log(app_a)["table_name"]) == ["regions", "sites"]
    finally:
        app_a.close()
        app_b.close()


def test_derive_runs_on_the_server_and_spark_is_refused_by_name(tiny_pg, tmp_path, capsys):
    assert cli.main(["--db", tiny_pg, "derive"]) == 0
    con = store.connect(tiny_pg, read_only=True)
    try:
        assert derive.current(con)
    finally:
        con.close()
    capsys.readouterr()
    for argv in (["derive", "--spark"], ["export-tables", str(tmp_path / "t")]):
        assert cli.main(["--db", tiny_pg, *argv]) == 2
        err = capsys.readouterr().err
        assert argv[0] in err and "DuckDB store file" in err
    assert not (tmp_path / "t").exists()


def test_a_cursor_given_back_mid_transaction_is_rolled_back(tiny_pg):
    con = store.connect(tiny_pg)
    try:
        cur = con.cursor()
        cur.execute("BEGIN TRANSACTION")
        cur.execute("DELETE FROM complaints")
        cur.close()  # given back to the pool with the transaction open
        with con.cursor() as again:
            assert again.execute("SELECT count(*) FROM complaints").fetchall()[0][0] == 300
        frame = con.execute("SELECT received_at, cell, category FROM complaints ORDER BY complaint_id LIMIT 2").df()
        assert str(frame["received_at"].dtype) == "datetime64[us]" and str(frame["cell"].dtype) == "int64"
        assert con.execute("SELECT ? || '%'", ["50"]).fetchone() == ("50%",)
    finally:
        con.close()


def test_two_served_processes_share_the_store_in_a_browser(tiny_world, fresh_pg, bad_complaints, page, tmp_path):
    """Two `streamlit run serve.py` processes on one database: a file uploaded through the first is in the second's
    import log and figures at its next page run."""
    from playwright.sync_api import expect

    from tests.browser import assert_no_errors, settle, streamlit_server

    con = store.connect(fresh_pg)
    for path in tiny_world.files.values():
        store.import_file(con, path, today=TODAY)
    con.close()
    env = {store.DB_ENV: fresh_pg, "NETZAUSBAU_INBOX": str(tmp_path / "inbox")}
    with streamlit_server(env, tmp_path / "a.log", target="serve.py") as a, \
            streamlit_server(env, tmp_path / "b.log", target="serve.py") as b:
        page.goto(f"{b}/data")
        page.wait_for_selector("[data-testid='stFileUploader']")
        settle(page)
        expect(page.get_by_text("browser_bad.csv")).to_have_count(0)
        page.goto(f"{a}/data")
        page.wait_for_selector("[data-testid='stFileUploader']")
        settle(page)
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
            files=[{"name": "browser_bad.csv", "mimeType": "text/csv", "buffer": bad_complaints}])
        settle(page)
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.locator("[data-testid='stAlertContentWarning']", has_text="browser_bad.csv")).to_be_visible()
        page.goto(f"{b}/data")
        page.wait_for_selector("[data-testid='stFileUploader']")
        settle(page)
        expect(page.get_by_text("browser_bad.csv").first).to_be_attached()  # a cell of the import log's grid
        page.goto(b)
        page.wait_for_selector("[data-testid='stPlotlyChart']")
        settle(page)
        expect(page.locator("[data-testid='stMetric']", has_text="Complaints").first).to_contain_text("302")
        assert_no_errors(page)
    assert "cannot be reached" not in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()


def test_opening_the_store_waits_for_no_reader(tiny_pg):
    """Another process opening the store (an app start, a command) alters no table that has its columns: it does
    not wait for a long read, nor hold up the reads after it."""
    reader = store.connect(tiny_pg, read_only=True)
    try:
        reader.execute("BEGIN TRANSACTION")
        reader.execute("SELECT count(*) FROM complaints").fetchall()  # holds its lock until the end
        opened: list = []
        t = threading.Thread(target=lambda: opened.append(store.connect(tiny_pg)), daemon=True)
        t.start()
        t.join(30)
        assert opened, "opening the store waited for a reader"
        opened[0].close()
    finally:
        reader.execute("ROLLBACK")
        reader.close()


def test_columns_read_by_binary_copy(tiny_pg):
    con = store.connect(tiny_pg, read_only=True)
    try:
        got = con.arrays("SELECT cell, CAST(1 AS SMALLINT) AS one FROM complaints WHERE cell > 0 ORDER BY cell",
                         {"cell": "int64", "one": "int16"})
        want = [r[0] for r in con.execute("SELECT cell FROM complaints WHERE cell > 0 ORDER BY cell").fetchall()]
        assert got["cell"].tolist() == want and got["one"].dtype == "int16" and set(got["one"]) == {1}
        assert con.arrays("SELECT cell FROM complaints WHERE false", {"cell": "int64"})["cell"].size == 0
        with pytest.raises(ValueError, match="a NULL"):
            con.arrays("SELECT CASE WHEN category = 'no_signal' THEN cell END FROM complaints", {"cell": "int64"})
    finally:
        con.close()


def _end_every_other_session(url: str) -> int:
    """End every session of the database but this one, as a server restart does, and wait until they are gone:
    how many were ended."""
    import psycopg

    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with psycopg.connect(url, autocommit=True) as pg:
        ended = len(pg.execute(f"SELECT pg_terminate_backend(pid) {others}").fetchall())
        deadline = time.monotonic() + 10
        while pg.execute(f"SELECT count(*) {others}").fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    return ended


def test_the_app_goes_on_after_the_server_ended_its_sessions(tiny_pg, monkeypatch):
    """A restarted server has closed every connection: the app's shared connection and its idle cursors open
    new ones at their next statement, and no page query fails."""
    from lib import warmup

    monkeypatch.setenv(store.DB_ENV, tiny_pg)
    app = cache.get_store()
    warmup.wait()
    cursors = [app.cursor() for _ in range(3)]  # open, then idle in the pool
    for cur in cursors:
        cur.execute("SELECT 1")
        cur.close()
    assert cache.query(app, "summary").counts["complaints"] == 300
    assert _end_every_other_session(tiny_pg) >= 4
    assert app.execute("SELECT count(*) FROM complaints").fetchall()[0][0] == 300  # the shared connection
    for _ in range(3):  # every idle cursor of the pool was ended too
        with app.cursor() as cur:
            assert maps.regions(cur)["region_id"].tolist()  # an Ibis query
    cache.clear()
    assert cache.query(app, "summary").counts["complaints"] == 300


def test_a_transaction_the_server_ended_fails_and_the_next_one_runs(tiny_pg):
    import psycopg

    con = store.connect(tiny_pg)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("SELECT count(*) FROM complaints")
        _end_every_other_session(tiny_pg)
        with pytest.raises(psycopg.OperationalError):  # not carried on outside its transaction
            con.execute("DELETE FROM complaints")
        assert con.execute("SELECT count(*) FROM complaints").fetchall()[0][0] == 300
    finally:
        con.close()


def test_a_notification_between_statements_keeps_the_connection(tiny_pg):
    """Something the server sends between transactions that does not end the session (a notification here)
    keeps the connection and its session: its advisory locks, say."""
    import psycopg

    con = store.connect(tiny_pg)
    try:
        pid = con.execute("SELECT pg_backend_pid()").fetchall()[0][0]
        con.execute("LISTEN netzausbau_test")
        con.execute("SELECT pg_advisory_lock(42)")
        with psycopg.connect(tiny_pg, autocommit=True) as other:
            other.execute("NOTIFY netzausbau_test, 'hello'")
        time.sleep(0.2)  # the notification has reached the socket
        assert con.execute("SELECT pg_backend_pid()").fetchall()[0][0] == pid
        held = con.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert held.fetchall()[0][0] == 1
    finally:
        con.close()


def test_a_session_end_is_seen_before_its_stream_ends(tiny_pg):
    """The server's FATAL message ends a link even while its socket is still open (the end of the stream may come
    a moment later); a notice or warning between statements does not."""
    import types

    link = stores._Link(tiny_pg)
    try:
        link.pg.execute("DO $$ BEGIN RAISE NOTICE 'a notice'; RAISE WARNING 'a warning'; END $$")  # real ones
        assert link.alive() and not link.ended
        link.pg.execute("BEGIN")
        link.notice(types.SimpleNamespace(severity_nonlocalized="FATAL"))  # what libpq hands on while idle
        assert link.ended and link.alive()  # within a transaction: its next statement fails, nothing carried over
        link.pg.execute("ROLLBACK")
        assert not link.alive()  # between transactions: a new link for the next statement
    finally:
        link.pg.close()


def test_a_link_dropped_unclosed_lets_its_connection_go_at_once(tiny_pg):
    """Nothing of a link refers back to it from its connection: dropped, it is freed at once, not at the next
    garbage collection (the server's connections are few)."""
    import gc
    import weakref

    gc.disable()
    try:
        link = stores._Link(tiny_pg)
        pg, gone = link.pg, weakref.ref(link)
        del link
        assert gone() is None
        pg.close()
    finally:
        gc.enable()
