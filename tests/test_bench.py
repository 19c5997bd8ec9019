"""The benchmarks run from a fresh clone: bench/engine.py at a small size from an empty output folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_benchmark_runs_from_an_empty_folder(tmp_path):
    out = tmp_path / "out"
    assert not out.exists()
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--complaints", "3000", "--sites", "500",
                          "--repeat", "1", "--out", str(out)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((out / "engine-3k.json").read_text())
    assert set(res["import"]) == {"regions", "sites", "transport_links", "upgrades", "complaints"}
    assert res["import"]["complaints"]["accepted"] == 3000
    assert res["agreement"]["cells_equal"] is True
    # both ratios compare like with like: end to end from the same files, and the query alone
    ours, base = res["ours"], res["baseline"]
    assert ours["end_to_end_s"] > ours["total_s"]
    assert res["ratio_end_to_end"] == base["total_s"] / ours["end_to_end_s"]
    assert res["ratio_query"] == base["query_s"] / ours["total_s"]
    assert "ratio end to end, baseline / ours" in run.stdout and "ratio query alone, baseline / ours" in run.stdout


def test_engines_benchmark_runs_on_a_small_store(demo_db, tmp_path):
    """bench/engines.py: a real PostgreSQL server, every table copied, each query on both engines."""
    db = tmp_path / "store.duckdb"
    shutil.copy(demo_db, db)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "engines.py"), "--db", str(db), "--repeat", "1",
                          "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((out / "engines.json").read_text())
    assert res["complaints"] == 8000 and res["copy_s"]["complaints"] > 0
    assert len(res["rows"]) == 10 and all(r["same_row_count"] for r in res["rows"])
    assert all(len(r["duckdb_ms"]) == len(r["postgres_ms"]) == 1 for r in res["rows"])
    assert "derive: complaint cube and region cells" in run.stdout


def test_pgstore_benchmark_runs_on_a_small_store(tmp_path):
    """bench/pgstore.py: the same files into DuckDB and a real PostgreSQL server, then the map under load on the
    DuckDB file and on two app processes on the one database."""
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "pgstore.py"), "--complaints", "3000", "--sites", "500",
                          "--processes", "2", "--sessions", "2", "--seconds", "3", "--out", str(out)],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    res = json.loads((out / "pgstore-3000.json").read_text())
    for kind in ("import_duckdb_s", "import_postgres_s"):
        assert set(res[kind]) == {"regions", "sites", "transport_links", "upgrades_baseline", "upgrades", "complaints",
                                  "status_notes", "total"}
    assert [(r["store"], r["processes"], len(r["warm_up_s"])) for r in res["pages"]] == [("duckdb", 1, 1),
                                                                                         ("postgres", 2, 2)]
    assert all(r["errors"] == 0 and r["median_ms"] > 0 and r["runs_per_s"] > 0 for r in res["pages"])
    assert all(s.startswith("warm-up done in ") for r in res["pages"] for s in r["warm_up_steps"])


def test_pages_benchmark_runs_on_a_small_store(demo_db, tmp_path):
    """bench/pages.py in a real browser: the Overview's first views and answers, each with its script's end, which
    comes before the page is drawn."""
    out = tmp_path / "out"
    default = ROOT / "bench" / "out"
    before = set(default.iterdir()) if default.exists() else set()
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "pages.py"), "--db", str(demo_db), "--page", "overview",
                          "--inputs", "1", "--out", str(out)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    res = json.loads((out / "pages.json").read_text())["results"]["this"]
    assert len(res["floor"]) == 3 and all(v > 0 for v in res["floor"])
    view = res["overview"]
    assert 0 < view["script_done_after_warm_up_s"] <= view["first_view_after_warm_up_s"]
    (drawn,), (ended,) = view["answers_s"]["level"], view["answers_script_s"]["level"]
    assert 0 < ended <= drawn
    assert "of which until its script ended" in run.stdout
    assert (out / "pages-trace-this-overview.json").stat().st_size > 0  # the traced view
    assert set(view["gpu_s"]) == {"busy", "longest"} and 0 <= view["gpu_s"]["longest"] <= view["gpu_s"]["busy"]
    assert (set(default.iterdir()) if default.exists() else set()) == before  # every file went to --out


def test_gpu_busy_counts_the_gpu_threads_tasks_once():
    """bench/pages.py's GPU figure: top-level tasks of the GPU thread only, nested or overlapping time counted once."""
    sys.path.insert(0, str(ROOT / "bench"))
    import pages

    def task(tid, ts, dur, name="ThreadControllerImpl::RunTask"):
        return {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name}

    meta = [{"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "CrGpuMain"}},
            {"ph": "M", "pid": 1, "tid": 8, "name": "thread_name", "args": {"name": "CrRendererMain"}}]
    events = meta + [task(7, 0, 1_000_000), task(7, 200_000, 300_000),  # nested: counted once
                     task(7, 900_000, 600_000),  # overlaps the first by 0.1 s: 0.5 s more
                     task(7, 2_000_000, 250_000), task(7, 2_000_000, 9_000_000, "GPUTask"),  # not a top-level task
                     task(7, 3_000_000, 100_000), task(7, 3_000_000, 1_200_000),  # one within another from its start
                     task(8, 0, 5_000_000)]  # another thread
    assert pages.gpu_busy({"traceEvents": events}) == {"busy": 2.95, "longest": 1.2}
