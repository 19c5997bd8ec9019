"""Command-line commands while the dashboard serves and holds the store, and the inbox it imports from.

A real `streamlit run serve.py` on a free port holds a copy of the tiny world's store (DuckDB then refuses every
other process, read-only ones too); the command line runs as a user runs it, in its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

from lib import inbox, running, store

READS = [["log"], ["rejects", "7"], ["audit"], ["figures", "--no-impact", "--json"]]
"""Reading commands run without and with the server; their output must be the same (import 7: `served`'s file
with a rejected row, after the tiny world's six)."""


def cli(db: Path, *argv: str, cwd: Path = store.ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.cli", "--db", str(db), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(store.ROOT)})


@pytest.fixture(scope="module")
def served(tiny_world, tmp_path_factory):
    """The tiny world's store plus a file with a rejected row, served by serve.py; each reading command's output
    from before the server started."""
    from tests.browser import ServerFailed, streamlit_server

    folder = tmp_path_factory.mktemp("serving")
    db = folder / "store.duckdb"
    shutil.copy(tiny_world.template, db)
    rejected = folder / "more.csv"
    rejected.write_text("complaint_id,received_at,lat,lon,category,channel\n"
                        "M1,2024-06-01 10:00,52.2,8.2,no_signal,app\nM2,2024-06-01 10:00,48.85,2.35,no_signal,app\n")
    assert "(import #7)" in cli(db, "import", str(rejected)).stdout
    before = {tuple(a): cli(db, *a) for a in READS}
    box = folder / "feed"
    env = {store.DB_ENV: str(db), inbox.INBOX_ENV: str(box), inbox.QUIET_ENV: "1"}
    try:
        with streamlit_server(env, folder / "server.log", target="serve.py") as url:
            deadline = time.monotonic() + 30
            while running.find(db) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            yield db, box, url, before
    except ServerFailed as exc:
        pytest.fail(str(exc))
    assert not running.serving_file(db).exists()  # withdrawn when the server stopped


def test_reading_commands_answer_the_same_while_the_server_holds_the_store(served, tmp_path):
    db, _, _, before = served
    with pytest.raises(duckdb.IOException):  # the server holds the store: nobody else may open it
        duckdb.connect(str(db), read_only=True)
    for argv, old in before.items():
        now = cli(db, *argv)
        assert (now.returncode, now.stdout, now.stderr) == (old.returncode, old.stdout, old.stderr), argv
        assert old.returncode == 0 and old.stdout.strip()
    assert "lon" in before[("rejects", "7")].stdout  # the rejected row is there to compare
    out = cli(db, "rejects", "7", "--csv", "rej.csv", cwd=tmp_path)  # the file lands where the command runs
    assert (out.returncode, out.stdout) == (0, "1 rejected row entries written to rej.csv\n")
    assert "outside Germany" in (tmp_path / "rej.csv").read_text(encoding="utf-8-sig")
    assert cli(db, "figures", "--region", "XX", "--no-impact").returncode == 2  # an error is an error still


def test_the_serving_file_is_private_and_the_routes_want_its_token(served):
    db, _, url, _ = served
    path = running.serving_file(db)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    me = running.find(db)
    assert me.url == url and me.inbox
    for token in ("", "wrong"):
        req = urllib.request.Request(f"{url}{running.PREFIX}/cli", data=json.dumps({"argv": ["log"]}).encode(),
                                     headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 403
    with pytest.raises(running.Unreachable, match="400"):  # a writing command is not run
        running.ask(me, "cli", {"argv": ["import", "x.csv"]})


def _wait_for(path: Path, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.2)
    return json.loads(path.read_text())


def test_a_dropped_file_is_imported_and_a_bad_one_refused(served, tmp_path):
    db, box, _, _ = served
    (box / "feed-sites.csv").write_text("site_id,name,lat,lon,site_type\nS99,Neu,52.2,8.2,macro\n")  # by a feed
    (box / "feed-bad.csv").write_text("complaint_id,received_at,lat,lon,category,channel\n"
                                      "Q1,2024-06-01 10:00,48.85,2.35,no_signal,app\n")
    ok = _wait_for(box / "done" / "feed-sites.csv.report.json")
    assert ok["status"] == "imported" and ok["rows_new"] == 1 and ok["by"] == "inbox"
    assert (box / "done" / "feed-sites.csv").exists()
    bad = _wait_for(box / "refused" / "feed-bad.csv.report.json")
    assert bad["file"] == "feed-bad.csv" and [(r["row"], r["field"]) for r in bad["rejects"]] == [(2, "lon")]
    log = cli(db, "log")  # through the server: the store holds the imports, by the inbox
    assert log.returncode == 0
    rows = [line for line in log.stdout.splitlines() if "feed-sites.csv" in line or "feed-bad.csv" in line]
    assert len(rows) == 2 and all(line.rstrip().endswith("inbox") for line in rows)


def test_the_command_line_import_works_while_serving(served, tmp_path):
    db, box, _, _ = served
    good = tmp_path / "upgrades.csv"
    good.write_text("upgrade_id,site_id,kind,permit_planned,installed_planned,on_air_planned,status\n"
                    "U900,S00,hardware_swap,2024-01-10,2024-02-10,2025-06-01,planned\n")
    refused = tmp_path / "nothing.csv"
    refused.write_text("site_id,name\nS1,x\n")
    out = cli(db, "import", str(good), str(refused))
    assert out.returncode == 2, out.stderr  # one refused, as without the server
    assert "upgrades.csv -> upgrades (import #" in out.stdout and "1 new" in out.stdout
    assert "refused: nothing.csv: missing required column(s) for sites" in out.stderr
    assert "handed to its inbox" in out.stderr and "upgrades.csv:" in out.stderr  # progress on the terminal
    log = cli(db, "log").stdout
    assert any("upgrades.csv" in line and line.rstrip().endswith("inbox") for line in log.splitlines())
    assert good.exists()  # the user's file stays where it was
