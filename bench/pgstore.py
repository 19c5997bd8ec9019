"""The store on a PostgreSQL server against the DuckDB file, in the same run, from the same files.

    .venv/bin/python bench/pgstore.py                                  # 1M complaints, 1, 2 and 4 app processes
    .venv/bin/python bench/pgstore.py --complaints 10000000 --processes 1 --processes 2
    .venv/bin/python bench/pgstore.py --complaints 200000 --sessions 20 --seconds 30 --page rollout

1. Import and derive: the demo input files (`lib.demo.build_demo_files`, seed 42, 30,000 sites, into
   bench/out/files-<N>/, made once and reused) imported with `store.import_file` into a new DuckDB file and into a
   new database on a PostgreSQL server started here (tests/pgserver.py: Debian's package, fsync off, default
   settings otherwise), one after the other: seconds per file (each import derives its tables in its own
   transaction) and in total.
2. Whole pages under load: `streamlit run serve.py` on each store, one configuration after the other: the DuckDB
   file in one process (all a DuckDB file allows: one process holds it), then the PostgreSQL database in 1, 2 and
   4 processes at once (`--processes`). Each process first finishes its warm-up (its log says "warm-up done";
   the seconds from the start to that line are its first view's wait). Then `--sessions` sessions (bench/load.py's
   websocket clients, spread over the processes in turn) rerun the page (`--page`: the Planner map of Germany and
   five states, or the Rollout page) for `--seconds`: median and p95 of the reruns, page runs per second, every
   session's first run, errors, and the processes' resident memory.

Both stores run on this machine's cores, beside the benchmark's clients. Nothing is asserted; the figures go to
bench/out/pgstore-<N>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402

from lib import demo, store  # noqa: E402
from tests.pgserver import postgres_server  # noqa: E402

OUT = ROOT / "bench" / "out"
ROLLOUT_VIEWS = ("", "level=state&region=11", "level=state&region=09", "level=cluster", "level=state&region=05")
"""The Rollout views the sessions of --page rollout keep rerunning."""


def demo_files(n: int, sites: int, out: Path) -> dict[str, Path]:
    """The demo input files of `n` complaints, made once in <out>/files-<n>/."""
    folder = out / f"files-{n}"
    marker = folder / ".complete"
    if not marker.exists():
        print(f"generating the demo files ({n:,} complaints) into {folder}", flush=True)
        files = demo.build_demo_files(folder, sites=sites, complaints=n)
        files = {k: v.resolve() for k, v in files.items()}
        marker.write_text(json.dumps({k: str(v) for k, v in files.items()}))
    return {k: Path(v) for k, v in json.loads(marker.read_text()).items()}


def import_all(db: str, files: dict[str, Path]) -> dict[str, float]:
    """Seconds per file imported into the store `db` (a new one), in order, and their total."""
    con = store.connect(db)
    took = {}
    try:
        for key, path in files.items():
            started = time.perf_counter()
            r = store.import_file(con, path, table=demo.file_table(key), today=demo.DEMO_AS_OF, by="bench")
            took[key] = time.perf_counter() - started
            print(f"  {key:<16} {took[key]:7.1f} s  {r.rows_accepted:,} rows", flush=True)
    finally:
        con.close()
    took["total"] = sum(took.values())
    return took


def warm_seconds(server: load.Server, started: float, timeout: float = 1800) -> tuple[float, str]:
    """Seconds from `started` until the server's log says its warm-up is done, and that line (its steps)."""
    log = Path(server.log.name)
    while time.monotonic() - started < timeout:
        done = [line for line in log.read_text(errors="replace").splitlines() if "warm-up done" in line]
        if done:
            return time.monotonic() - started, done[0].split("lib.warmup: ", 1)[-1]
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server stopped: see {log}")
        time.sleep(0.2)
    raise RuntimeError(f"no warm-up within {timeout} s: see {log}")


async def drive(ports: list[int], n: int, seconds: float, page: str) -> tuple[list[float], list[float], list[str],
                                                                             float]:
    """(latencies of later reruns, of each session's first run, errors, wall seconds) of n sessions spread over
    the servers on `ports`."""
    lat: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    views = load.MAP_VIEWS if page == "map" else ROLLOUT_VIEWS
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(load.session(ports[i % len(ports)], views[i % len(views)], until, lat, first, errors,
                                        page) for i in range(n)))
    return lat, first, errors, time.monotonic() - started


def serve(label: str, db: str, processes: int, args) -> dict:
    """One configuration: `processes` app servers on the store `db`, warmed up, then under the sessions' load."""
    servers, warm, steps = [], [], []
    try:
        for i in range(processes):
            started = time.monotonic()
            server = load.Server(None, False, label=f"pgstore-{label}-{processes}-{i}", db=db)
            servers.append(server)
            seconds, line = warm_seconds(server, started)
            warm.append(seconds)
            steps.append(line)
        lat, first, errors, wall = asyncio.run(drive([s.port for s in servers], args.sessions, args.seconds,
                                                     args.page))
        rss = [load.rss_mb(s.proc.pid) for s in servers]
    finally:
        for s in servers:
            s.stop()
    row = {"store": label, "processes": processes, "warm_up_s": [round(w, 1) for w in warm], "warm_up_steps": steps,
           "median_ms": round(1000 * statistics.median(lat), 1) if lat else None,
           "p95_ms": round(1000 * load.pct(lat, 0.95), 1) if lat else None,
           "first_run_median_ms": round(1000 * statistics.median(first), 1) if first else None,
           "runs_per_s": round(len(lat) / wall, 1), "errors": len(errors), "error_kinds": sorted(set(errors))[:3],
           "rss_mb": [round(r) for r in rss]}
    print(f"  {label:<10} {processes} process(es): warm-up {', '.join(f'{w:.1f}' for w in warm)} s; reruns median "
          f"{row['median_ms']} ms, p95 {row['p95_ms']} ms, {row['runs_per_s']} runs/s, first runs median "
          f"{row['first_run_median_ms']} ms, {len(errors)} errors, RSS {row['rss_mb']} MB", flush=True)
    for line in steps:
        print(f"    {line}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--complaints", type=int, default=1_000_000)
    p.add_argument("--sites", type=int, default=30_000)
    p.add_argument("--processes", type=int, action="append", help="app processes on PostgreSQL (default 1, 2, 4)")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--page", choices=["map", "rollout"], default="map")
    p.add_argument("--out", type=Path, default=OUT, help="folder of the files, the DuckDB store and the figures")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    load.OUT = args.out  # the servers' logs
    processes = args.processes or [1, 2, 4]
    files = demo_files(args.complaints, args.sites, args.out)
    duck = args.out / f"pgstore-{args.complaints}.duckdb"
    result: dict = {"complaints": args.complaints, "sessions": args.sessions, "seconds": args.seconds,
                    "page": args.page}
    with postgres_server() as url:
        duck.unlink(missing_ok=True)
        print(f"import and derive, {args.complaints:,} complaints: DuckDB file {duck}", flush=True)
        result["import_duckdb_s"] = import_all(str(duck), files)
        print(f"import and derive: PostgreSQL {url}", flush=True)
        result["import_postgres_s"] = import_all(url, files)
        result["import_ratio"] = round(result["import_postgres_s"]["total"] / result["import_duckdb_s"]["total"], 2)
        print(f"  total: DuckDB {result['import_duckdb_s']['total']:.1f} s, PostgreSQL "
              f"{result['import_postgres_s']['total']:.1f} s (x{result['import_ratio']})", flush=True)
        print(f"{args.sessions} sessions rerunning the {args.page} page for {args.seconds:.0f} s", flush=True)
        result["pages"] = [serve("duckdb", str(duck), 1, args)]
        result["pages"] += [serve("postgres", url, n, args) for n in processes]
    out = args.out / f"pgstore-{args.complaints}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
