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
    """bench/pages.py in a real browser: the Overview's first views and answers, each with the server's part seen
    on the wire, which lies within the time until the page is drawn."""
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
    for when in ("at_start", "after_warm_up", "at_restart"):
        assert 0 < view[f"first_view_{when}_server_s"] <= view[f"first_view_{when}_s"]
    (drawn,), (server,) = view["answers_s"]["level"], view["answers_server_s"]["level"]
    assert 0 < server <= drawn
    assert run.stdout.count("of which the server (on the wire)") == 4
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


def _frame(opcode: int, payload: bytes, masked: bool = False) -> bytes:
    """One websocket frame (FIN set) as RFC 6455 writes it."""
    n = len(payload)
    size = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big") if n < 1 << 16 else \
        bytes([127]) + n.to_bytes(8, "big")
    size = bytes([size[0] | (0x80 if masked else 0)]) + size[1:]
    key = b"\x01\x02\x03\x04" if masked else b""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([0x80 | opcode]) + size + key + body


def test_wire_frames_end_at_each_data_frames_last_byte():
    """bench/wire.py's frame reader: fed one byte at a time, it says a message ended exactly at the last byte of
    the upgrade and of each data frame (short, 16- and 64-bit lengths, masked or not, empty), never at a ping or
    pong; fed all at once, once."""
    sys.path.insert(0, str(ROOT / "bench"))
    import wire

    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    frames = [(0x2, b"x" * 5, False), (0x9, b"ping", False), (0x2, b"y" * 300, True), (0xA, b"pong", True),
              (0x1, b"z" * 70_000, False), (0x2, b"", False), (0x2, b"w" * 200, True)]
    stream = upgrade + b"".join(_frame(*f) for f in frames)
    ends, at = {len(upgrade) - 1}, len(upgrade)
    for f in frames:
        at += len(_frame(*f))
        if f[0] < 0x8:
            ends.add(at - 1)
    reader = wire.Frames()
    assert {i for i in range(len(stream)) if reader.feed(stream[i:i + 1])} == ends
    assert reader.skip == 0 and reader.head == b""
    assert wire.Frames().feed(stream) is True
    assert wire.Frames().feed(upgrade[:-1]) is False


def test_wire_times_the_servers_part_of_a_page_stream():
    """bench/wire.py relays a websocket stream and a plain request; the server's part runs from the browser's
    message to the server's last message (after the server's own wait), not counting a ping after it, nor the
    plain request."""
    import asyncio
    import threading
    import time
    import urllib.request

    import websockets

    sys.path.insert(0, str(ROOT / "bench"))
    import load
    import wire

    wait = 0.3
    sent: list[float] = []

    async def handler(ws):
        async for _ in ws:
            await asyncio.sleep(wait)
            for size in (10, 300, 70_000):
                await ws.send(b"m" * size)
            sent.append(time.monotonic())
            await asyncio.sleep(0.2)
            await ws.ping()

    async def http(conn, request):
        if request.path != "/_stcore/stream":
            return conn.respond(200, "ok\n")
        return None

    port, to = load.free_port(), load.free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    def serve():
        async def main():
            async with websockets.serve(handler, "127.0.0.1", to, process_request=http):
                ready.set()
                await stop

        loop.run_until_complete(main())

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    assert ready.wait(10)
    relay = wire.Wire(port, to)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.read() == b"ok\n"
        assert relay.mark() == 0  # a plain request is relayed, not noted

        async def client():
            async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream") as ws:
                at = relay.mark()
                asked = time.monotonic()
                await ws.send(b"rerun")
                got = [len(await ws.recv()) for _ in range(3)]
                await asyncio.sleep(0.5)  # the ping comes in this time
                return at, asked, got

        at, asked, got = asyncio.run(client())
        assert got == [10, 300, 70_000]
        part = relay.server_part(at)
        assert part >= wait  # the server's wait is in it
        assert asked + part <= sent[0] + 0.1  # and it ends with the last message, not with the ping after it
    finally:
        relay.close()
        loop.call_soon_threadsafe(stop.set_result, None)
        server.join(10)
