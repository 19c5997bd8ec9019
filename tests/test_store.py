"""Store: one transaction per import, an import log, re-imports that change nothing, plan versions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from lib import store
from lib.errors import StoreError
from lib.ingest import schema
from tests import worlds

TABLES = [*schema.TABLES, "import_log", "rejected_rows", "region_cells", "upgrades_versions",
          "transport_links_versions"]


def snapshot(con) -> dict:
    """Every row of every table, to compare before and after."""
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


@pytest.fixture
def con(world_con):
    """A store holding the tiny world (tests/worlds.py)."""
    return world_con


def test_import_log_has_one_entry_per_import_with_counts(con):
    log = store.import_log(con)
    assert list(log["table_name"])[::-1] == [t for t in schema.TABLES if t != "status_notes"]  # the world has none
    assert list(log["rows_accepted"])[::-1] == [2, 3, 2, 3, 3]
    assert (log["rows_rejected"] == 0).all() and (log["checksum"].str.len() == 64).all()


def test_reimporting_the_same_file_changes_nothing(con, tmp_path):
    before = snapshot(con)
    res = store.import_file(con, tmp_path / "in" / "upgrades.csv", table="upgrades")
    assert res.duplicate_of is not None and res.import_id is None
    assert "nothing changed" in res.summary()
    assert snapshot(con) == before


def test_same_rows_in_a_new_file_are_unchanged(con):
    data = (worlds.UPGRADES_CSV + "\n").encode()  # other bytes, same records
    res = store.import_file(con, data, table="upgrades", file_name="again.csv")
    assert (res.rows_new, res.rows_updated, res.rows_unchanged) == (0, 0, 3)
    assert con.execute("SELECT count(*) FROM upgrades_versions").fetchall()[0][0] == 3


def test_newer_plan_updates_by_id_and_keeps_the_baseline(con):
    newer = worlds.UPGRADES_CSV.replace("U2,S2,5g,2025-01-01,2025-03-01,2025-05-01",
                                        "U2,S2,5g,2025-01-01,2025-03-01,2025-09-01")
    newer += "U4,S3,5g,2025-02-01,2025-04-01,2025-06-01,,\n"
    res = store.import_file(con, newer.encode(), table="upgrades", file_name="plan-v2.csv")
    assert (res.rows_new, res.rows_updated, res.rows_unchanged) == (1, 1, 2)
    cur = con.execute("SELECT on_air_planned::VARCHAR FROM upgrades WHERE upgrade_id = 'U2'").fetchall()
    assert cur == [("2025-09-01",)]
    hist = store.versions(con, "upgrades", "U2")
    assert [str(d.date()) for d in hist["on_air_planned"]] == ["2025-05-01", "2025-09-01"]
    assert con.execute("SELECT count(*) FROM upgrades").fetchall()[0][0] == 4


def test_a_failure_mid_import_changes_nothing(con, monkeypatch):
    before = snapshot(con)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_log", boom)  # fails after the records were written
    data = (worlds.SITES_CSV + "S7,New,51.3,9.3,macro,4G,\n").encode()
    with pytest.raises(RuntimeError):
        store.import_file(con, data, table="sites", file_name="sites-v2.csv")
    assert snapshot(con) == before


def test_a_crashed_process_mid_import_changes_nothing(con, tmp_path):
    """A real crash: the importing process dies inside the transaction; the file is intact."""
    db = tmp_path / "world.duckdb"
    before = snapshot(con)
    con.close()
    script = textwrap.dedent(f"""
        import os
        from lib import store
        def die(*a, **k):
            os._exit(9)
        store._log = die
        c = store.connect({str(db)!r})
        store.import_file(c, b"site_id,lat,lon\\nS8,51.3,9.3\\n", table="sites", file_name="x.csv")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=store.ROOT, capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    again = store.connect(db)
    try:
        assert snapshot(again) == before
    finally:
        again.close()


def test_cli_import_and_log(tmp_path):
    db = tmp_path / "cli.duckdb"
    files = worlds.write_world(tmp_path / "in")
    run = [sys.executable, "-m", "lib.cli", "--db", str(db)]
    out = subprocess.run([*run, "import", *map(str, files.values())], cwd=store.ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "complaints.csv -> complaints (import #5): 3 of 3 rows accepted" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("site_id,name\nS1,x\n")
    out = subprocess.run([*run, "import", str(bad)], cwd=store.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "bad.csv" in out.stderr and "missing required column" in out.stderr
    log = subprocess.run([*run, "log"], cwd=store.ROOT, capture_output=True, text=True, timeout=120)
    assert log.stdout.count(".csv") + log.stdout.count(".geojson") == 5


def test_files_uploaded_together_are_imported_in_table_order(tmp_path):
    """Upgrades uploaded before their sites still find them: files go in table order."""
    files = worlds.write_world(tmp_path / "in")
    shuffled = [(p.name, p.read_bytes()) for p in reversed(list(files.values()))]
    shuffled.insert(2, ("notes.csv", b"foo,bar\n1,2\n"))
    ordered = [name for name, _ in store.import_order(shuffled)]
    assert ordered == ["regions.geojson", "sites.csv", "links.csv", "upgrades.csv", "complaints.csv", "notes.csv"]
    con = store.connect(tmp_path / "o.duckdb")
    for name, data in store.import_order([f for f in shuffled if f[0] != "notes.csv"]):
        assert store.import_file(con, data, file_name=name).rows_rejected == 0


def test_every_import_leaves_the_derived_tables_current(con):
    from lib.engine import derive

    assert derive.current(con)
    store.import_file(con, (worlds.SITES_CSV + "S9,Neu,51.3,9.3,macro,4G,\n").encode(), table="sites",
                      file_name="sites-v2.csv")
    assert derive.current(con)
    n = con.execute("SELECT sum(n) FROM complaint_cube WHERE res = 9").fetchall()[0][0]
    assert n == con.execute("SELECT count(*) FROM complaints").fetchall()[0][0]


@pytest.mark.parametrize(("change", "updated"), [
    (("U3,S3,new_carrier,2025-01-01,2025-03-01,2025-04-01,2025-04-02,L2",
      "U3,S3,new_carrier,2025-01-01,2025-03-01,2025-04-01,2025-04-02,"), 1),  # a value emptied
    (("U2,S2,5g,2025-01-01,2025-03-01,2025-05-01,,L1", "U2,S2,5g,2025-01-01,2025-03-01,2025-05-01,,L2"), 1),
    (("U1,S1,hardware_swap,", "U1,S1,hardware_swap,"), 0),
])
def test_a_row_counts_as_updated_when_any_input_field_differs(con, change, updated):
    res = store.import_file(con, worlds.UPGRADES_CSV.replace(*change).encode() + b"\n", table="upgrades",
                            file_name="plan-v2.csv")
    assert (res.rows_new, res.rows_updated, res.rows_unchanged) == (0, updated, 3 - updated)
    assert con.execute("SELECT count(*) FROM upgrades_versions").fetchall()[0][0] == 3 + updated


def test_a_store_from_before_row_hash_was_dropped_still_takes_imports(con):
    """Stores made before 2026-11-22 hold a row_hash column in each input and versions table."""
    for t in (*schema.TABLES, "upgrades_versions", "transport_links_versions"):
        con.execute(f"ALTER TABLE {t} ADD COLUMN row_hash BIGINT")
    newer = worlds.UPGRADES_CSV.replace(",2025-05-01,,L1", ",2025-09-01,,L1")
    res = store.import_file(con, newer.encode(), table="upgrades", file_name="plan-v2.csv")
    assert (res.rows_new, res.rows_updated, res.rows_unchanged) == (0, 1, 2)
    hist = store.versions(con, "upgrades", "U2")
    assert [str(d.date()) for d in hist["on_air_planned"]] == ["2025-05-01", "2025-09-01"]


def test_a_file_with_rejected_rows_can_go_in_again_once_they_fit(tmp_path):
    """Upgrades imported before their sites are rejected; after the sites, the same file goes in (it is
    not refused as already imported), and a file that had nothing rejected still changes nothing."""
    files = worlds.write_world(tmp_path / "in")
    con = store.connect(tmp_path / "s.duckdb")
    store.import_file(con, files["regions"])
    early = store.import_file(con, files["upgrades"], table="upgrades")
    assert early.rows_accepted == 0 and early.rows_rejected == 3
    store.import_file(con, files["sites"])
    store.import_file(con, files["transport_links"])
    again = store.import_file(con, files["upgrades"], table="upgrades")
    assert again.duplicate_of is None and (again.rows_new, again.rows_rejected) == (3, 0)
    before = snapshot(con)
    third = store.import_file(con, files["upgrades"], table="upgrades")
    assert third.duplicate_of == again.import_id and snapshot(con) == before


def test_cli_rejects_csv_defuses_formulas_and_a_held_store_is_a_clear_error(tmp_path):
    db = tmp_path / "cli.duckdb"
    files = worlds.write_world(tmp_path / "in")
    run = [sys.executable, "-m", "lib.cli", "--db", str(db)]
    subprocess.run([*run, "import", *map(str, files.values())], cwd=store.ROOT, capture_output=True, timeout=120)
    bad = tmp_path / "c.csv"
    bad.write_text("complaint_id,received_at,lat,lon,category,channel\nK9,2025-01-01,51.5,9.5,=HYPERLINK(1),app\n")
    out = subprocess.run([*run, "import", str(bad)], cwd=store.ROOT, capture_output=True, text=True, timeout=120)
    import_id = int(out.stdout.split("(import #")[1].split(")")[0])
    target = tmp_path / "rej.csv"
    out = subprocess.run([*run, "rejects", str(import_id), "--csv", str(target)], cwd=store.ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = target.read_text(encoding="utf-8-sig")
    assert ",'=HYPERLINK(1)," in text and ",=HYPERLINK" not in text  # the rejected value, defused
    holder = store.connect(db)  # as a running dashboard does
    try:
        out = subprocess.run([*run, "log"], cwd=store.ROOT, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert out.returncode == 2 and "cannot be opened" in out.stderr and "Traceback" not in out.stderr


def test_a_store_of_an_older_version_is_brought_up_to_date(tmp_path):
    path = tmp_path / "old.duckdb"
    store.connect(path).close()
    old = duckdb.connect(str(path))
    old.execute("ALTER TABLE sites DROP COLUMN azimuth_deg")  # as a store written before the column existed
    old.close()
    with pytest.raises(StoreError, match=r"older version \(it lacks sites\.azimuth_deg\)"):
        store.connect(path, read_only=True)
    con = store.connect(path)  # for writing: the column is added
    assert store.missing_columns(con) == []
    con.close()
    store.connect(path, read_only=True).close()
