"""The chunked path for large CSVs gives the same store as the whole-file path, row for row."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lib import store
from lib.errors import ImportRefused
from lib.ingest import bulk, csvranges, lifeline
from tests import worlds

HEADER = "complaint_id;received_at;lat;lon;category;channel;text\n"

CONTENT_SUM = ("SELECT count(*), sum(hash(complaint_id, received_at, lat, lon, cell, category, channel, text)) "
               "FROM complaints")


def complaints_csv(n: int = 1200, seed: int = 7) -> bytes:
    """Semicolons, decimal commas, German dates, Windows-1252, and faults of every kind along the way."""
    rnd = random.Random(seed)
    lines = [HEADER]
    for i in range(n):
        lat, lon = f"{51 + rnd.random() / 2:.5f}".replace(".", ","), f"{9 + rnd.random():.5f}".replace(".", ",")
        when = f"{rnd.randint(1, 28):02d}.0{rnd.randint(1, 9)}.2025 {rnd.randint(0, 23):02d}:15"
        row = [f"K{i}", when, lat, lon, rnd.choice(["Langsames Internet", "kein Netz", "app"]), "Hotline", "Straße"]
        if i % 97 == 5:
            row[2] = "99,0"  # outside Germany
        if i % 131 == 7:
            row[4] = "aliens"  # unknown category
        if i % 211 == 11:
            row[0] = f"K{i - 3}"  # duplicate in the same chunk
        if i % 401 == 400:
            row[0] = "K1"  # duplicate of a row in the first chunk
        line = ";".join(row)
        if i % 307 == 13:
            line += ";extra;fields"  # unreadable
        lines.append(line + "\n")
    return "".join(lines).encode("cp1252")


@pytest.fixture
def threads(monkeypatch):
    """Workers as threads: the same code path, without spawning processes in every test."""
    monkeypatch.setattr(bulk, "pool", lambda: ThreadPoolExecutor(max_workers=2))


def import_both(tmp_path, data: bytes, monkeypatch, chunk_bytes: int = 10_000, first: bool = False):
    """The file imported whole and in chunks into two equal stores; `first`: their complaints table is
    empty, so the chunks go into it in place (store._in_place), not through the staging table."""
    whole = store.connect(tmp_path / "whole.duckdb")
    worlds.import_world(whole, tmp_path / "w")
    chunked = store.connect(tmp_path / "chunked.duckdb")
    worlds.import_world(chunked, tmp_path / "c")
    if first:
        for con in (whole, chunked):
            con.execute("DELETE FROM complaints")
    r1 = store.import_file(whole, data, table="complaints", file_name="c.csv", today=worlds_today())
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", chunk_bytes)
    r2 = store.import_file(chunked, data, table="complaints", file_name="c.csv", today=worlds_today())
    return whole, r1, chunked, r2


def worlds_today():
    import datetime as dt

    return dt.date(2026, 11, 1)


def table_rows(con, sql: str) -> list:
    return con.execute(sql).fetchall()


@pytest.fixture
def in_place(monkeypatch):
    """The ranges staged straight into the table, counted."""
    calls = []
    stage = store._stage_in_place
    monkeypatch.setattr(store, "_stage_in_place", lambda *a: calls.append(a[-1]) or stage(*a))
    return calls


@pytest.mark.parametrize("first", [False, True], ids=["staged", "in-place"])
@pytest.mark.parametrize("chunk_bytes", [2_000, 10_000, 70_000])
def test_chunked_import_equals_whole_file_import(tmp_path, monkeypatch, threads, in_place, chunk_bytes, first):
    data = complaints_csv()
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes, first)
    assert bool(in_place) == first  # the path under test was taken
    assert r2.rows_new == r1.rows_new
    assert (r2.rows_total, r2.rows_accepted, r2.rows_rejected) == (r1.rows_total, r1.rows_accepted, r1.rows_rejected)
    assert r1.rows_rejected > 20 and r1.warnings == r2.warnings
    cols = "complaint_id, received_at, lat, lon, cell, category, channel, text"
    assert table_rows(chunked, f"SELECT {cols} FROM complaints ORDER BY ALL") == \
        table_rows(whole, f"SELECT {cols} FROM complaints ORDER BY ALL")
    rej = 'SELECT "row", field, value, reason FROM rejected_rows ORDER BY ALL'
    assert table_rows(chunked, rej) == table_rows(whole, rej)
    assert all(r[0] for r in table_rows(chunked, "SELECT record FROM rejected_rows"))  # nothing lost
    assert table_rows(chunked, "SELECT sum(n) FROM complaint_cube WHERE res = 9") == \
        table_rows(whole, "SELECT sum(n) FROM complaint_cube WHERE res = 9")


@pytest.mark.parametrize("first", [False, True], ids=["staged", "in-place"])
def test_chunked_import_in_worker_processes(tmp_path, monkeypatch, first):
    """The real pool: spawned processes validate the chunks."""
    data = complaints_csv(600)
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=14_000, first=first)
    assert (r2.rows_accepted, r2.rows_rejected) == (r1.rows_accepted, r1.rows_rejected)
    assert table_rows(chunked, CONTENT_SUM) == \
        table_rows(whole, CONTENT_SUM)


def test_worker_processes_start_whatever_the_main_script(tmp_path, monkeypatch):
    """Spawned workers do not run the parent's main script again: under Streamlit that is the page script,
    which fails outside a session, and the pool broke, leaving every large upload to one process. Here the
    main script fails when run; the import must still use its worker processes, never the fallback."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise RuntimeError('a page script run outside Streamlit')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)

    def no_fallback(*a, **k):
        raise AssertionError("the worker pool broke and the import fell back to this process")

    monkeypatch.setattr(bulk, "Inline", no_fallback)
    data = complaints_csv(600)
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=14_000, first=True)
    assert (r2.rows_accepted, r2.rows_rejected) == (r1.rows_accepted, r1.rows_rejected)
    assert table_rows(chunked, CONTENT_SUM) == table_rows(whole, CONTENT_SUM)
    assert sys.modules["__main__"] is fake_main  # given back


def test_chunked_refusal_and_failure_change_nothing(tmp_path, monkeypatch, threads):
    con = store.connect(tmp_path / "s.duckdb")
    worlds.import_world(con, tmp_path / "in")
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 7_000)
    before = table_rows(con, "SELECT count(*) FROM complaints") + table_rows(con, "SELECT count(*) FROM import_log")
    with pytest.raises(ImportRefused, match="missing required column"):
        store.import_file(con, b"complaint_id;received_at\nK1;2025-01-01\n", table="complaints", file_name="x.csv")

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_log", boom)
    with pytest.raises(RuntimeError):
        store.import_file(con, complaints_csv(300), table="complaints", file_name="c.csv", today=worlds_today())
    after = table_rows(con, "SELECT count(*) FROM complaints") + table_rows(con, "SELECT count(*) FROM import_log")
    assert after == before


def test_a_broken_worker_pool_falls_back_to_this_process(tmp_path, monkeypatch):
    """Workers that cannot start (e.g. a main script read from stdin) must not fail the import."""
    from concurrent.futures.process import BrokenProcessPool

    class Broken(ThreadPoolExecutor):
        def submit(self, *a, **k):
            raise BrokenProcessPool("workers died")

    monkeypatch.setattr(bulk, "pool", lambda: Broken(max_workers=1))
    data = complaints_csv(500)
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=7_000)
    assert (r2.rows_accepted, r2.rows_rejected) == (r1.rows_accepted, r1.rows_rejected)
    assert table_rows(chunked, CONTENT_SUM) == \
        table_rows(whole, CONTENT_SUM)


def test_large_imports_keep_every_row_on_both_paths(tmp_path, monkeypatch, threads):
    """More rows than one DuckDB row group (122,880): every row must be readable after the import."""
    n = 130_000
    lines = [HEADER] + [f"K{i};2025-03-{1 + i % 28:02d} 10:00;51,{i % 9000:04d};9,5;slow_data;app;\n" for i in range(n)]
    data = "".join(lines).encode()
    for chunked in (False, True):
        con = store.connect(tmp_path / f"big-{chunked}.duckdb")
        if chunked:
            monkeypatch.setattr(bulk, "MIN_BYTES", 0)
            monkeypatch.setattr(bulk, "CHUNK_BYTES", 1_000_000)
        res = store.import_file(con, data, table="complaints", file_name="big.csv", today=worlds_today())
        assert res.rows_new == n
        assert con.execute("SELECT count(DISTINCT complaint_id), count(*) FROM complaints").fetchall() == [(n, n)]
        assert con.execute("SELECT sum(n) FROM complaint_cube WHERE res = 9").fetchall() == [(n,)]


def test_repeated_keys_are_rejected_alike_in_place_and_staged(tmp_path, monkeypatch, threads, in_place):
    """Keys repeated across ranges: the first occurrence stays, each repeat is rejected with the same row,
    reason and record, whether the ranges went into the empty table in place or through the staging table
    (there the table already held one other complaint); a repeat that differs from its first is not kept."""
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 3_000)
    lines = [HEADER] + [f"K{i % 150};2025-03-{1 + i % 28:02d} 10:00;51,{i:04d};9,5;slow_data;app;v{i}\n"
                        for i in range(400)]
    data = "".join(lines).encode()
    stores = {}
    for name, before in (("in-place", None), ("staged", "Z1;2025-01-02 10:00;51,5;9,5;slow_data;app;z\n")):
        con = stores[name] = store.connect(tmp_path / f"{name}.duckdb")
        if before:
            store.import_file(con, (HEADER + before).encode(), table="complaints", file_name="z.csv")
        calls = len(in_place)
        res = store.import_file(con, data, table="complaints", file_name="c.csv", today=worlds_today())
        assert (len(in_place) > calls) == (before is None)
        assert (res.rows_accepted, res.rows_rejected, res.rows_new) == (150, 250, 150)
    keep = "SELECT complaint_id, lat, text FROM complaints WHERE complaint_id <> 'Z1' ORDER BY ALL"
    want = sorted((f"K{i}", 51 + i / 10_000, f"v{i}") for i in range(150))  # the first of each key
    assert [(k, round(lat, 6), t) for k, lat, t in table_rows(stores["in-place"], keep)] == want
    assert table_rows(stores["in-place"], keep) == table_rows(stores["staged"], keep)
    rej = """SELECT "row", field, value, reason, json_extract(record, '$.text'), json_extract(record, '$.row')
             FROM rejected_rows WHERE reason LIKE 'duplicate%' ORDER BY 1"""
    got = table_rows(stores["in-place"], rej)
    assert got == table_rows(stores["staged"], rej)
    assert got == [(i + 2, "complaint_id", f"K{i % 150}", f"duplicate complaint_id (first at row {i % 150 + 2})",
                    f'"v{i}"', str(i + 2)) for i in range(150, 400)]
    assert stores["in-place"].execute("SELECT count(*) FROM complaint_cube WHERE res = 9").fetchall()[0][0] > 0


def test_the_same_file_into_an_empty_table_again_changes_nothing(tmp_path, monkeypatch, threads, in_place):
    """Into an empty table the file's hash is checked only once it is staged (it is computed beside the
    staging): a file imported before, whose rows were all rejected, is found the same, and the import
    that staged it again is rolled back whole."""
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 2_000)
    lines = [HEADER] + [f"K{i};2025-03-{1 + i % 28:02d} 10:00;51,5;9,5;aliens;app;x\n" for i in range(200)]
    data = "".join(lines).encode()
    con = store.connect(tmp_path / "s.duckdb")
    first = store.import_file(con, data, table="complaints", file_name="c.csv", today=worlds_today())
    assert (first.rows_accepted, first.rows_rejected, first.duplicate_of) == (0, 200, None)
    staged_before = len(in_place)
    state = "SELECT (SELECT count(*) FROM import_log), (SELECT count(*) FROM rejected_rows), " \
            "(SELECT count(*) FROM complaints)"
    before = table_rows(con, state)
    again = store.import_file(con, data, table="complaints", file_name="c.csv", today=worlds_today())
    assert len(in_place) > staged_before  # staged in place before the hash said it was the same file
    assert again.duplicate_of == first.import_id and again.checksum == first.checksum
    assert table_rows(con, state) == before == [(1, 200, 0)]
    assert not table_rows(con, "SELECT * FROM duckdb_tables() WHERE table_name IN ('_keys', '_incoming')")
    other = store.import_file(con, data.replace(b"aliens", b"slow_data"), table="complaints", file_name="c.csv",
                              today=worlds_today())
    assert other.duplicate_of is None and other.rows_new == 200


def test_a_large_regions_csv_is_read_whole(tmp_path, monkeypatch, threads):
    """Regions are placed per record (their cells): a large regions CSV takes the whole-file path, so a
    repeated region keeps its own cells and every region's cells are stored (review finding)."""
    import json

    con_w = store.connect(tmp_path / "w.duckdb")
    files = worlds.write_world(tmp_path / "in")
    store.import_file(con_w, files["regions"], table="regions")
    regions = con_w.execute("SELECT region_id, name, level, parent_id, geometry FROM regions ORDER BY 1 LIMIT 2"
                            ).df()
    header = "region_id,name,level,parent_id,geometry\n"
    rows = [f'{r.region_id},{r.name},{r.level},{r.parent_id or ""},"{r.geometry.replace(chr(34), chr(34) * 2)}"\n'
            for r in regions.itertuples()]
    data = (header + rows[0] + rows[1] + rows[0]).encode()  # the first region repeated
    assert json.loads(regions.geometry[0])
    whole = store.connect(tmp_path / "whole.duckdb")
    r1 = store.import_file(whole, data, table="regions", file_name="r.csv")
    calls = []
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 200)
    monkeypatch.setattr(bulk, "pool", lambda: calls.append(1) or ThreadPoolExecutor(max_workers=2))
    chunked = store.connect(tmp_path / "chunked.duckdb")
    r2 = store.import_file(chunked, data, table="regions", file_name="r.csv")
    assert not calls  # no workers: read whole
    assert (r1.rows_accepted, r1.rows_rejected) == (r2.rows_accepted, r2.rows_rejected) == (2, 1)
    cells = "SELECT r.region_id, r.n_cells, count(c.cell) FROM regions r LEFT JOIN region_cells c USING (region_id) " \
            "GROUP BY ALL ORDER BY 1"
    got = table_rows(chunked, cells)
    assert got == table_rows(whole, cells) and all(n == k > 0 for _, n, k in got)


def test_the_same_large_file_again_starts_no_workers_and_a_pool_that_cannot_start_falls_back(tmp_path, monkeypatch):
    """Into a table that holds rows, the hash is checked first: the same large file again changes nothing
    and starts no workers. A pool that fails as it is made leaves the import to this process."""
    from concurrent.futures.process import BrokenProcessPool

    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 5_000)
    made = []

    def broken():
        made.append(1)
        raise BrokenProcessPool("cannot start")

    monkeypatch.setattr(bulk, "pool", broken)
    data = complaints_csv(400)
    con = store.connect(tmp_path / "s.duckdb")
    worlds.import_world(con, tmp_path / "in")
    made.clear()
    first = store.import_file(con, data, table="complaints", file_name="c.csv", today=worlds_today())
    assert made and first.rows_accepted > 200 and first.duplicate_of is None
    made.clear()
    again = store.import_file(con, data, table="complaints", file_name="c.csv", today=worlds_today())
    assert again.duplicate_of == first.import_id and not made


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8", "utf-8-sig"])
def test_a_large_file_given_by_path_is_streamed_and_gives_the_same_store(tmp_path, monkeypatch, threads, encoding):
    """A path takes the chunked path without reading the file whole (UTF-8, with or without BOM, or
    Windows-1252, converted block by block). Checksum, counts and rows equal the whole-file path."""
    data = complaints_csv(700).decode("cp1252").encode(encoding)
    path = tmp_path / f"complaints-{encoding}.csv"
    path.write_bytes(data)
    whole = store.connect(tmp_path / "whole.duckdb")
    worlds.import_world(whole, tmp_path / "w")
    r1 = store.import_file(whole, data, table="complaints", file_name=path.name, today=worlds_today())
    chunked = store.connect(tmp_path / "chunked.duckdb")
    worlds.import_world(chunked, tmp_path / "c")
    monkeypatch.setattr(bulk, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 10_000)
    read_whole = []
    monkeypatch.setattr(type(path), "read_bytes", lambda p: read_whole.append(p) or open(p, "rb").read())
    r2 = store.import_file(chunked, path, table="complaints", today=worlds_today())
    assert not read_whole
    assert r2.checksum == r1.checksum and r2.file_name == path.name
    assert (r2.rows_total, r2.rows_accepted, r2.rows_rejected) == (r1.rows_total, r1.rows_accepted, r1.rows_rejected)
    assert table_rows(chunked, CONTENT_SUM) == table_rows(whole, CONTENT_SUM)
    umlauts = "SELECT count(*) FROM complaints WHERE text = 'Straße'"
    assert table_rows(chunked, umlauts) == table_rows(whole, umlauts) and table_rows(whole, umlauts)[0][0] > 300
    rej = 'SELECT "row", field, value, reason FROM rejected_rows ORDER BY ALL'
    assert table_rows(chunked, rej) == table_rows(whole, rej)
    log = 'SELECT encoding, rows_accepted FROM import_log ORDER BY import_id DESC LIMIT 1'
    assert table_rows(chunked, log) == table_rows(whole, log)


def tricky_csv(n: int, seed: int, stray: bool, crlf: bool, trailing_newline: bool) -> bytes:
    """Texts with quoted newlines, delimiters and doubled quotes; blank lines; optionally quotes inside
    unquoted fields (which pyarrow reads as plain characters, so that quote parity misleads the cuts)."""
    rnd = random.Random(seed)
    nl = "\r\n" if crlf else "\n"
    lines = [HEADER.rstrip("\n")]
    for i in range(n):
        text = rnd.choice(["kein Netz", '"Seit Tagen;\nnichts"', '"sagt ""bald"" -\n\nwieder"', "ok"])
        if stray and i % 37 == 3:
            text = 'Handy 5" Display'  # a literal quote in an unquoted field
        lines.append(f"K{i};2025-03-{1 + i % 28:02d} 10:00;51,{i % 9000:04d};9,5;slow_data;app;{text}")
        if i % 53 == 0:
            lines.append("")  # a blank line is no record
        if i % 71 == 9:
            lines.append(f"K{i}x;bad;row;with;too;many;fields;here")
    return (nl.join(lines) + (nl if trailing_newline else "")).encode()


@pytest.mark.parametrize("stray,crlf,trailing", [(False, False, True), (True, False, True), (False, True, False),
                                                 (True, True, False)])
def test_cuts_never_split_a_record(tmp_path, monkeypatch, threads, stray, crlf, trailing):
    """Quoted newlines, CRLF, blank lines, a missing last newline and literal quotes: the same store as
    the whole-file path, row numbers included; a cut that fell inside quotes was read again, joined."""
    data = tricky_csv(900, seed=3, stray=stray, crlf=crlf, trailing_newline=trailing)
    misplaced = []
    work = bulk.work

    def counting(job, r):
        part = work(job, r)
        misplaced.append(not part.cut_ok)
        return part

    monkeypatch.setattr(bulk, "work", counting)
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=1_500)
    assert len(misplaced) > 20
    assert any(misplaced) == stray  # literal quotes mislead the parity, and the sentinel catches it
    assert (r2.rows_total, r2.rows_accepted, r2.rows_rejected) == (r1.rows_total, r1.rows_accepted, r1.rows_rejected)
    assert r1.rows_accepted > 800 and r1.rows_rejected >= 12
    cols = "complaint_id, received_at, lat, lon, cell, category, channel, text"
    assert table_rows(chunked, f"SELECT {cols} FROM complaints ORDER BY ALL") == \
        table_rows(whole, f"SELECT {cols} FROM complaints ORDER BY ALL")
    rej = 'SELECT "row", field, value, reason, record FROM rejected_rows ORDER BY ALL'
    assert table_rows(chunked, rej) == table_rows(whole, rej)


@pytest.mark.parametrize("buf,cut", [
    (b'a;b\nc;d\ne', 8),  # after the last newline
    (b'a;"b\nc";d\ne;"f\ng', 10),  # the last newline is inside quotes: the one before
    (b'a;"b\nc"', 5),  # only a newline inside quotes: taken all the same, for the sentinel to check
    (b"no newline", -1),
])
def test_last_cut(buf, cut):
    assert csvranges.last_cut(buf) == cut


def test_a_byte_windows_1252_does_not_define_rejects_its_row_on_both_paths(tmp_path, monkeypatch, threads):
    """0x81 (one of the five bytes Windows-1252 leaves undefined) is not silently replaced: its row is
    rejected with the field and the reason, on the whole-file path and on the chunked one; the rest go in."""
    lines = [HEADER] + [f"K{i};2025-03-{1 + i % 28:02d} 10:00;51,{i % 9000:04d};9,5;slow_data;app;ok\n"
                        for i in range(1200)]
    lines[700] = lines[700].replace(";ok", ";Straße")
    data = "".join(lines).encode("cp1252").replace(b"K1100;", b"K1100\x81;")
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=8_000)
    for con, r in ((whole, r1), (chunked, r2)):
        assert (r.rows_total, r.rows_accepted, r.rows_rejected) == (1200, 1199, 1)
        (row, field, value, reason), = table_rows(con, 'SELECT "row", field, value, reason FROM rejected_rows')
        assert (row, field, value) == (1102, "complaint_id", "K1100\ufffd") and "Windows-1252 does not define" in reason
        assert table_rows(con, "SELECT count(*) FROM complaints WHERE text = 'Straße'") == [(1,)]


def test_a_windows_1252_byte_late_in_the_file_reads_the_whole_file_as_windows_1252(tmp_path, monkeypatch, threads):
    """The workers check UTF-8 as they read: a bad byte in a late range starts the import over as
    Windows-1252, with nothing of the first attempt left in the stage."""
    lines = [HEADER] + [f"K{i};2025-03-{1 + i % 28:02d} 10:00;51,{i % 9000:04d};9,5;slow_data;app;ok\n"
                        for i in range(2000)]
    lines[1900] = lines[1900].replace(";ok", ";Straße")
    data = "".join(lines).encode("cp1252")
    assert data[:60_000].decode("utf-8")  # the head is valid UTF-8: only a worker finds out
    whole, r1, chunked, r2 = import_both(tmp_path, data, monkeypatch, chunk_bytes=8_000)
    assert r1.warnings == r2.warnings == ["read as Windows-1252 (not valid UTF-8)"]
    assert (r2.rows_total, r2.rows_accepted, r2.rows_rejected) == (r1.rows_total, r1.rows_accepted, 0)
    assert table_rows(chunked, CONTENT_SUM) == table_rows(whole, CONTENT_SUM)
    assert table_rows(chunked, "SELECT complaint_id FROM complaints WHERE text = 'Straße'") == [("K1899",)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


KILLABLE_IMPORT = """import sys
from lib.ingest import bulk
bulk.MIN_BYTES, bulk.CHUNK_BYTES = 0, 400_000  # this file takes the workers' path, in many ranges
from lib import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_killed_import_takes_its_workers_along_and_its_folder_is_swept(tmp_path, monkeypatch):
    """`kill -9` of a CLI import while its workers validate: they end within seconds (they stayed for minutes,
    330 MB each), and the next import removes the temporary folder the killed one could not."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    src = tmp_path / "big.csv"
    src.write_bytes(complaints_csv(150_000))  # about 10 MB
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_IMPORT, "--db", str(tmp_path / "s.duckdb"), "import",
                             str(src), "--table", "complaints"], cwd=store.ROOT, env=os.environ | {"TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp.glob("netzausbau-import-*/part-*.parquet")):  # the workers are at work
            assert proc.poll() is None and time.monotonic() < deadline, "the import ended before it could be killed"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) >= bulk.WORKERS  # the workers (and multiprocessing's resource tracker)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while not all(map(_ended, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in workers if not _ended(p)]
    for pid in alive:  # not left running when this fails
        os.kill(pid, signal.SIGKILL)
    assert alive == []
    left = list(tmp.glob("netzausbau-import-*"))
    assert len(left) == 1  # the killed import's folder, until the next import
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    mine = lifeline.owned_folder("import")  # a live process's folder stays
    con = store.connect(tmp_path / "next.duckdb")
    worlds.import_world(con, tmp_path / "w")
    con.close()
    assert list(tmp.glob("netzausbau-import-*")) == [mine]


def test_the_sweep_removes_only_folders_whose_owner_is_gone(tmp_path):
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    me = os.getpid()
    folders = {
        "dead": tmp_path / f"netzausbau-import-{dead_pid}-{lifeline.start_time(me)}-abc",
        "reused": tmp_path / f"netzausbau-demo-{me}-{lifeline.start_time(me) + 1}-abc",  # my pid, not my start
        "mine": tmp_path / f"netzausbau-import-{me}-{lifeline.start_time(me)}-abc",
        "other": tmp_path / "netzausbau-import-abc",  # not named by its owner: never touched
    }
    for path in folders.values():
        path.mkdir()
    (folders["dead"] / "part-0.parquet").write_bytes(b"x")
    assert sorted(lifeline.sweep(tmp_path)) == sorted([folders["dead"], folders["reused"]])
    assert sorted(tmp_path.iterdir()) == sorted([folders["mine"], folders["other"]])
