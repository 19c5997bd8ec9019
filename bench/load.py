"""Load on the public page (or the Planner map): N concurrent sessions asking a server to rerun the page.

    .venv/bin/python bench/load.py                                   # N = 10 and 50, 20 s each, GC on and off
    .venv/bin/python bench/load.py --sessions 50 --seconds 30 --gc false
    .venv/bin/python bench/load.py --snapshot data/public/snapshot.json
    .venv/bin/python bench/load.py --sessions 100 --seconds 30 --gc false --baseline cceea02   # against older code
    .venv/bin/python bench/load.py --sessions 100 --seconds 30 --gc false --workers 2 --baseline cceea02
    .venv/bin/python bench/load.py --page map --sessions 20 --seconds 30 --gc true --baseline bbf9848 --rounds 2

`--page map` measures planners instead: the internal dashboard (`streamlit run serve.py`, no sign-in) on a copy
of the demo store per code, each session rerunning the Planner map of one view (Germany or a state) with
nothing changed, as a planner's browser does when another widget of the page or a second tab asks.

Each session is a small websocket client speaking Streamlit's own protocol (what the browser
does): it connects to /_stcore/stream, sends a BackMsg `rerun_script` (with the page's query
string, one region per session) and waits for the ForwardMsg `script_finished`; then it asks
again, for the whole measuring time. A session's first run (a new visitor: all N arrive at once)
is timed apart from the later ones (median and p95 are of the later reruns). Like the browser it
reports the hashes of the large (cacheable) messages it already holds, so the server sends those
as references. Latency = send to script_finished. An error is an exception element in the page,
a script that did not finish successfully, a closed connection or a rerun over 30 s.

The server is `streamlit run serve.py` in public mode (NETZAUSBAU_PUBLIC=1) with a store path
that does not exist, reading only the snapshot; it is started once per `runner.postScriptGC`
setting, so both settings are measured in the same run. `--workers N` serves it in N processes
instead, as `python serve.py --workers N` does: `uvicorn --workers N` on the checkout's `serve:app`
(through bench/asgi/loadserve.py, which sets runner.postScriptGC), so a baseline is served by the same
command. Server RSS is read from /proc. The
snapshot is published from the demo store (built once into bench/out/, 200k complaints) unless
--snapshot names one. Prints a table and writes bench/out/load.json; asserts nothing.

`--baseline REF` measures another commit in the same run, served the same way from the same data: a
`git worktree` of REF in bench/out/baseline-<commit>/ (made once, left for the next run), started from
there with the same interpreter, one after the other with this checkout (never at once: they share the
cores). It serves the same demo store's snapshot as its own code publishes it (an older server refuses a
newer snapshot format), unless --snapshot names one for both. Its rows say `baseline` in the `code` column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import cli, store  # noqa: E402
from lib.public import snapshot  # noqa: E402
from lib.views import publish  # noqa: E402

OUT = ROOT / "bench" / "out"
TIMEOUT = 30.0
REGIONS = ("ALL", "C-BER", "C-HAM", "09", "05", "11", "C-MST", "03")
MAP_VIEWS = ("", "region=11", "region=09", "region=05", "region=02", "region=14")
"""The Planner map views the sessions of --page map keep rerunning (Germany and states)."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its worker processes in MB (from /proc)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (from /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def served_snapshot(path: Path | None) -> Path:
    """The snapshot to serve: the one given, else published from the demo store (built once)."""
    if path:
        snapshot.load(path)
        return path
    db = OUT / "load-store.duckdb"
    if not db.exists():
        print("building the demo store (200k complaints) once ...", file=sys.stderr)
        cli.build_demo_store(db, progress=lambda m, f: None)
    con = store.connect(db, read_only=True)
    try:
        return publish.publish(con, OUT / "load-snapshot.json").path
    finally:
        con.close()


def baseline_snapshot(folder: Path) -> Path:
    """The demo store's snapshot as the baseline's own code publishes it (in its own format, which an older
    server needs): `lib.cli publish` run in the baseline's folder on a copy of the same store (made once)."""
    out = folder / "bench-load-snapshot.json"
    if not out.exists():
        served_snapshot(None)  # the store, built once
        db = folder / "bench-load-store.duckdb"
        shutil.copy(OUT / "load-store.duckdb", db)
        subprocess.run([sys.executable, "-m", "lib.cli", "publish", "--out", str(out)], cwd=folder, check=True,
                       env=os.environ | {store.DB_ENV: str(db)}, capture_output=True)
    return out


def baseline_checkout(ref: str) -> tuple[Path, str]:
    """(folder, short commit) of a git worktree of `ref` under bench/out/ (made once, then reused)."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    folder = OUT / f"baseline-{commit[:10]}"
    if not (folder / "serve.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=ROOT, check=True,
                       capture_output=True)
    return folder, commit[:10]


def healthy(url: str, proc: subprocess.Popen, log: str, timeout: float = 60) -> None:
    """Wait until the Streamlit server `proc` at `url` answers its health check; raise, naming its `log`, when
    it stops or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see " + log) from None
            time.sleep(0.3)


class Server:
    """`streamlit run serve.py` in public mode on a free port, from `root` (this checkout or a baseline's), with
    runner.postScriptGC set; with workers > 1, `uvicorn --workers` on its `serve:app` instead."""

    def __init__(self, snap: Path | None, gc: bool, root: Path = ROOT, label: str = "this", workers: int = 1,
                 db: Path | None = None, port: int | None = None):
        self.port = port or free_port()
        if db is None:  # the public server: the snapshot only
            env = os.environ | {snapshot.PUBLIC_ENV: "1", snapshot.SNAPSHOT_ENV: str(snap.resolve()),
                                store.DB_ENV: str(OUT / "no-store" / "none.duckdb")}
        else:  # the internal dashboard on its own copy of the store
            env = {k: v for k, v in os.environ.items() if k != snapshot.PUBLIC_ENV} | {store.DB_ENV: str(db)}
        env["NETZAUSBAU_LOAD_GC"] = str(gc).lower()
        self.log = (OUT / f"load-server-{label}-gc-{gc}-w{workers}.log").open("wb")
        if workers > 1:  # the settings of `python serve.py --workers N`
            command = ["-m", "uvicorn", "loadserve:app", "--app-dir", str(ROOT / "bench" / "asgi"), "--workers",
                       str(workers), "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                       "--ws-per-message-deflate", "false"]
        else:
            command = ["-m", "streamlit", "run", "serve.py", "--server.headless", "true", "--server.port",
                       str(self.port), "--server.address", "127.0.0.1", "--runner.postScriptGC", str(gc).lower(),
                       "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        self.proc = subprocess.Popen([sys.executable, *command], cwd=root, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        healthy(f"http://127.0.0.1:{self.port}", self.proc, self.log.name)
        if db is not None:
            return
        # the server must serve the snapshot (an older baseline may refuse a newer format)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/public/snapshot.json", timeout=30) as r:
            if r.status != 200:
                raise RuntimeError(f"{label}: the server does not serve the snapshot ({r.status})")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


async def session(port: int, query: str, until: float, lat: list[float], first: list[float],
                  errors: list[str], page: str = "") -> None:
    """One browser-like session: rerun the page again and again until `until`."""
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=None, open_timeout=TIMEOUT) as ws:
            cached: set[str] = set()  # as the browser does: large messages it holds are sent as references
            runs = 0
            while time.monotonic() < until:
                msg = BackMsg()
                msg.rerun_script.query_string = query
                msg.rerun_script.page_script_hash = ""
                msg.rerun_script.page_name = page
                msg.rerun_script.cached_message_hashes.extend(sorted(cached))
                started = time.monotonic()
                await ws.send(msg.SerializeToString())
                failed = ""
                while True:
                    fwd = ForwardMsg()
                    fwd.ParseFromString(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    kind = fwd.WhichOneof("type")
                    if fwd.metadata.cacheable and fwd.hash:
                        cached.add(fwd.hash)
                    if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element" \
                            and fwd.delta.new_element.WhichOneof("type") == "exception":
                        failed = fwd.delta.new_element.exception.message or "exception"
                    if kind == "script_finished":
                        if fwd.script_finished != ForwardMsg.FINISHED_SUCCESSFULLY:
                            failed = failed or f"script_finished {fwd.script_finished}"
                        break
                if failed:
                    errors.append(failed)
                else:
                    (lat if runs else first).append(time.monotonic() - started)
                runs += 1
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


async def drive(port: int, n: int, seconds: float, page: str = "public") -> tuple[list[float], list[float],
                                                                                list[str], float]:
    """(latencies of later reruns, of each session's first run, errors, wall seconds) of n sessions."""
    lat: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    until = started + seconds
    queries = [MAP_VIEWS[i % len(MAP_VIEWS)] if page == "map" else f"region={REGIONS[i % len(REGIONS)]}"
               for i in range(n)]
    await asyncio.gather(*(session(port, queries[i], until, lat, first, errors, "" if page == "public" else page)
                           for i in range(n)))
    return lat, first, errors, time.monotonic() - started


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, action="append", help="concurrent sessions (repeatable; default 10, 50)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per N")
    p.add_argument("--gc", choices=["both", "true", "false"], default="both", help="runner.postScriptGC")
    p.add_argument("--snapshot", type=Path, help="snapshot to serve (default: published from the demo store)")
    p.add_argument("--baseline", metavar="REF", help="also measure this git commit (a worktree), in the same run")
    p.add_argument("--workers", type=int, default=1, help="server processes (as `python serve.py --workers N`)")
    p.add_argument("--rounds", type=int, default=1, help="measure each code this many times, taking turns (the "
                                                            "machine's other load then falls on both alike)")
    p.add_argument("--page", choices=["public", "map"], default="public",
                   help="public: the public server's page; map: the internal dashboard's Planner map (planners "
                        "rerunning their views, on a copy of the demo store per code)")
    args = p.parse_args(argv)
    if args.page != "public" and args.workers != 1:
        p.error("the internal dashboard runs in one process (it holds the store's only writer)")
    OUT.mkdir(parents=True, exist_ok=True)
    snap = served_snapshot(args.snapshot)
    sizes = args.sessions or [10, 50]
    settings = {"both": [True, False], "true": [True], "false": [False]}[args.gc]
    codes = [("this", ROOT, snap)]
    if args.baseline:
        folder, commit = baseline_checkout(args.baseline)
        codes.insert(0, (f"base {commit}", folder, args.snapshot or baseline_snapshot(folder)))
    rows = []
    for (code, root, served), gc in [(c, g) for _ in range(args.rounds) for c in codes for g in settings]:
        label = code.replace(" ", "-")
        db = None
        if args.page != "public":
            db = OUT / f"load-store-{label}.duckdb"
            if not db.exists():
                shutil.copy(OUT / "load-store.duckdb", db)
        server = Server(served, gc, root, label, args.workers, db)
        try:
            # warm up: imports, the snapshot or every view once
            asyncio.run(drive(server.port, len(MAP_VIEWS) if db else 2, 3, args.page))
            idle = rss_mb(server.proc.pid)
            for n in sizes:
                lat, first, errors, wall = asyncio.run(drive(server.port, n, args.seconds, args.page))
                rows.append({"code": code, "page": args.page, "postScriptGC": gc, "workers": args.workers,
                             "sessions": n,
                             "reruns": len(lat) + len(first),
                             "reruns_per_s": (len(lat) + len(first)) / wall,
                             "first_median_ms": 1000 * statistics.median(first) if first else float("nan"),
                             "median_ms": 1000 * statistics.median(lat) if lat else float("nan"),
                             "p95_ms": 1000 * pct(lat, 0.95), "errors": len(errors),
                             "first_error": errors[0] if errors else "", "rss_idle_mb": idle,
                             "rss_after_mb": rss_mb(server.proc.pid)})
                r = rows[-1]
                print(f"{code:16} gc={str(gc):5} workers={args.workers} N={n:3}  reruns={r['reruns']:5}  "
                      f"{r['reruns_per_s']:6.1f}/s  "
                      f"first run median "
                      f"{r['first_median_ms']:6.0f} ms  then median {r['median_ms']:6.0f} ms  p95 {r['p95_ms']:6.0f} ms"
                      f"  errors {r['errors']}  RSS "
                      f"{r['rss_idle_mb']:.0f} -> {r['rss_after_mb']:.0f} MB", flush=True)
        finally:
            server.stop()
    (OUT / "load.json").write_text(json.dumps({"snapshot": str(snap), "seconds": args.seconds, "rows": rows},
                                              indent=1))
    print(f"\n{'code':<16} {'postScriptGC':>12} {'N':>4} {'reruns/s':>9} {'first ms':>9} {'median ms':>10} "
          f"{'p95 ms':>8} {'errors':>7} {'RSS MB idle->after':>19}")
    for r in rows:
        print(f"{r['code']:<16} {str(r['postScriptGC']).lower():>12} {r['sessions']:>4} {r['reruns_per_s']:>9.1f} "
              f"{r['first_median_ms']:>9.0f} {r['median_ms']:>10.0f} {r['p95_ms']:>8.0f} {r['errors']:>7} "
              f"{r['rss_idle_mb']:>9.0f} -> {r['rss_after_mb']:.0f}")
    if args.rounds > 1 or len(codes) > 1:
        print()
        for code, _, _ in codes:
            for gc in settings:
                for n in sizes:
                    mine = [r["median_ms"] for r in rows
                            if (r["code"], r["postScriptGC"], r["sessions"]) == (code, gc, n)]
                    print(f"{code:<16} gc={str(gc).lower():5} N={n:3}: median of the rounds' medians "
                          f"{statistics.median(mine):6.0f} ms  ({', '.join(f'{m:.0f}' for m in mine)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
