"""The inbox: which files are taken and in what order, where they land, their reports, and the app seeing the data."""

from __future__ import annotations

import json
import os
import time

import pytest

from lib import cache, inbox, store
from tests import worlds

BAD_ROWS = """complaint_id,received_at,lat,lon,category,channel
Z1,2025-01-05 10:00,48.85,2.35,slow_data,hotline
Z2,2025-01-05 10:00,51.25,9.25,weather,app
"""
"""Every row bad: row 2 lies in Paris (lon), row 3 has an unknown category."""


def _old(path, seconds: float = 60) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_only_complete_files_are_taken_in_table_order(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    files = worlds.write_world(tmp_path / "w")
    for table in ("complaints", "upgrades", "sites"):  # dropped out of order
        (box / files[table].name).write_bytes(files[table].read_bytes())
        _old(box / files[table].name)
    (box / "links.csv").write_bytes(files["transport_links"].read_bytes())  # still being written: fresh, no marker
    (box / "regions.geojson.part").write_text("{")  # a writer's temporary name
    (box / ".hidden.csv").write_text("x")
    assert [w.path.name for w in inbox.waiting(box)] == ["sites.csv", "upgrades.csv", "complaints.csv"]
    (box / "links.csv.ready").touch()  # the writer says it is complete
    assert [w.path.name for w in inbox.waiting(box)] == ["sites.csv", "links.csv", "upgrades.csv", "complaints.csv"]
    assert [w.path.name for w in inbox.waiting(box, now=time.time() + 10)][1] == "links.csv"  # or quiet long enough


def test_a_marker_names_files_and_their_table(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "a1.csv").write_text(worlds.SITES_CSV)
    (box / "b1.csv").write_text("x\n")
    (box / "batch.ready").write_text(json.dumps({"files": [
        {"name": "b1.csv", "table": "regions", "file_name": "plan.csv"}, {"name": "a1.csv"},
        {"name": "../escape.csv"}]}))
    got = inbox.waiting(box)
    assert [(w.path.name, w.table, w.file_name) for w in got] == [("b1.csv", "regions", "plan.csv"),
                                                                  ("a1.csv", None, "a1.csv")]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The tiny world's store as the app's store, opened as the app holds it, and an inbox beside it."""
    db = tmp_path / "store.duckdb"
    monkeypatch.setenv(store.DB_ENV, str(db))
    con = store.connect(db)
    worlds.import_world(con, tmp_path / "w")
    con.close()
    box = inbox.folder()
    assert box == tmp_path / "inbox"  # the default: beside the store
    box.mkdir()
    return cache.get_store(), box


def test_files_land_in_done_or_refused_with_a_report_and_the_app_sees_the_data(served):
    con, box = served
    before = cache.summary(con)  # cached, as a page holds it
    (box / "more.csv").write_text("complaint_id,received_at,lat,lon,category,channel\n"
                                  "K7,2025-02-01 10:00,51.2,9.2,slow_data,app\n"
                                  "K8,2025-02-01 11:00,48.85,2.35,slow_data,app\n")
    (box / "bad_rows.csv").write_text(BAD_ROWS)
    (box / "no_key.csv").write_text("site_id,name\nS9,x\n")
    for p in box.iterdir():
        _old(p)
    reports = inbox.Watcher(box, cache.get_store).once()
    assert {r.file: r.status for r in reports} == {"more.csv": "imported", "bad_rows.csv": "refused",
                                                   "no_key.csv": "refused"}
    assert sorted(p.name for p in box.iterdir()) == ["done", "refused"]
    done = json.loads((box / "done" / "more.csv.report.json").read_text())
    assert done["rows_accepted"] == 1 and done["rows_rejected"] == 1 and done["by"] == "inbox"
    assert done["rejects"] == [{"row": 3, "field": "lon", "value": "2.35",
                                "reason": "outside Germany (lon must be 5.8 to 15.1)"}]
    assert (box / "done" / "more.csv").exists()
    bad = json.loads((box / "refused" / "bad_rows.csv.report.json").read_text())
    assert bad["file"] == "bad_rows.csv" and bad["rows_accepted"] == 0 and bad["error"] == "every row was rejected"
    assert [(r["row"], r["field"]) for r in bad["rejects"]] == [(2, "lon"), (3, "category")]
    whole = json.loads((box / "refused" / "no_key.csv.report.json").read_text())
    assert whole["import_id"] is None and whole["error"].startswith("no_key.csv: missing required column(s)")
    with con.cursor() as cur:
        log = store.import_log(cur)
    mine = log[log["file_name"].isin(["more.csv", "bad_rows.csv"])]
    assert set(mine["imported_by"]) == {"inbox"}  # the same log as any import, with who
    after = cache.summary(con)  # the cached view sees the new import at once
    assert after.counts["complaints"] == before.counts["complaints"] + 1
    assert after.imports == before.imports + 2


def test_the_same_name_again_keeps_both_files(served):
    con, box = served
    for _ in range(2):
        (box / "sites.csv").write_text(worlds.SITES_CSV)
        (box / "sites.csv.ready").touch()
        inbox.Watcher(box, cache.get_store).once()
    assert sorted(p.name for p in (box / "done").iterdir()) == ["sites.2.csv", "sites.2.csv.report.json",
                                                                 "sites.csv", "sites.csv.report.json"]
    assert json.loads((box / "done" / "sites.2.csv.report.json").read_text())["status"] == "unchanged"
    assert not list(box.glob("*.ready"))
