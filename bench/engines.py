"""The store's queries on PostgreSQL against DuckDB, in the same run, on the same data.

    .venv/bin/python bench/engines.py                                   # the 1M demo store (built if missing)
    .venv/bin/python bench/engines.py --db bench/out/store-10m.duckdb   # make demo-10m's store

1. Start a PostgreSQL server in a temporary directory (tests/pgserver.py: Debian's postgresql package) and copy
   every table of the DuckDB store into it with COPY (timed per table), then ANALYZE.
2. Run each query below on both engines, `--repeat` times each, from the same Ibis expression
   (`engine.backend(...).execute`): the pages' store queries and the derivations (`derive.compute`, what
   `lib.cli derive` runs on another engine), median and fastest per engine and the ratio of the medians.

Nothing is asserted; the figures go to bench/out/engines.json. Both engines run on this machine: DuckDB in
this process, PostgreSQL with its default settings but fsync off (no tuning, no indexes) on the same cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ibis  # noqa: E402
import psycopg  # noqa: E402

from lib import engine, store  # noqa: E402
from lib.engine import asof, derive, hotspots, linkage, network  # noqa: E402
from lib.views import overview, rollout  # noqa: E402
from tests.pgserver import postgres_server  # noqa: E402

OUT = ROOT / "bench" / "out"
PG_TYPES = {"VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "DOUBLE": "double precision",
            "DATE": "date", "TIMESTAMP": "timestamp", "BOOLEAN": "boolean", "HUGEINT": "numeric"}


def queries(as_of: dt.date) -> list[tuple[str, callable]]:
    """(label, builder(con) -> Ibis expression) of the page queries, as of the store's data date."""
    start = as_of - dt.timedelta(days=90)
    return [
        ("map: hotspot counts, 90 days, res 8", lambda c: hotspots.cell_counts_expr(
            c, 8, start=start, end=as_of, categories=hotspots.KINDS["capacity"])),
        ("map: hotspot counts, all time, res 7 (cube)", lambda c: hotspots.cell_counts_expr(c, 7, derived=True)),
        ("overview: region table, states (cube)", lambda c: overview.region_table_expr(c, "state", derived=True)),
        ("overview: region table, states (raw)", lambda c: overview.region_table_expr(c, "state")),
        ("rollout: upgrade states as of", lambda c: rollout.upgrade_states_expr(c, "state", as_of)),
        ("relief: upgrade flags as of", lambda c: linkage.upgrade_flags_expr(c, as_of)),
        ("map: sites as of", lambda c: asof.sites_as_of_expr(c, as_of)),
        ("map: links as of", lambda c: asof.links_as_of_expr(c, as_of)),
        ("network: upgrade inputs", lambda c: network.upgrade_inputs_expr(c)),
    ]


def copy_into(duck, url: str) -> dict[str, float]:
    """Every base table of the DuckDB store, into the PostgreSQL database at `url` by COPY: seconds per table."""
    tables = [r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                         "'main' AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    took = {}
    with psycopg.connect(url, autocommit=True) as pg, tempfile.TemporaryDirectory() as tmp:
        for name in tables:
            began = time.perf_counter()
            cols = duck.execute(f"DESCRIBE {name}").fetchall()
            pg.execute(f"CREATE TABLE {name} ("
                       + ", ".join(f'"{c[0]}" {PG_TYPES.get(c[1], "text")}' for c in cols) + ")")
            path = Path(tmp) / f"{name}.csv"
            duck.execute(f"COPY {name} TO '{path}' (HEADER false, DELIMITER ',', QUOTE '\"', NULLSTR '')")
            with pg.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as cp, path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
            took[name] = time.perf_counter() - began
        began = time.perf_counter()
        pg.execute("ANALYZE")
        took["ANALYZE"] = time.perf_counter() - began
    return took


def _count(result) -> int:
    """Rows of a query's answer (a frame, or a dict of Arrow tables for the derivations)."""
    return sum(t.num_rows for t in result.values()) if isinstance(result, dict) else len(result)


def timed(f, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        f()
        out.append(time.perf_counter() - began)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, default=OUT / "store-1m.duckdb",
                   help="a DuckDB store (default: bench/out/store-1m.duckdb, built with the 1M demo when missing)")
    p.add_argument("--repeat", type=int, default=5, help="runs per query and engine")
    p.add_argument("--out", type=Path, default=OUT, help="folder for engines.json (default: bench/out)")
    args = p.parse_args(argv)
    if not args.db.exists():
        print(f"building the 1M demo store at {args.db} ...", flush=True)
        subprocess.run([sys.executable, "-m", "lib.cli", "--db", str(args.db), "demo", "--size", "1m"], cwd=ROOT,
                       check=True)
    duck = store.connect(args.db)
    if not derive.current(duck):
        derive.rebuild(duck)
    n = duck.execute("SELECT count(*) FROM complaints").fetchone()[0]
    as_of = overview.summary(duck).data_as_of.date()
    rows = []
    with postgres_server() as url:
        print(f"{n:,} complaints, as of {as_of}; copying every table into PostgreSQL ...", flush=True)
        loaded = copy_into(duck, url)
        pg = ibis.connect(url)
        for name in loaded.keys() - {"ANALYZE"}:  # the copy holds every row
            want, got = duck.execute(f"SELECT count(*) FROM {name}").fetchone()[0], pg.table(name).count().execute()
            if got != want:
                print(f"error: {name} has {got:,} rows in PostgreSQL, {want:,} in the store", file=sys.stderr)
                return 1
        print(f"copied in {sum(loaded.values()):.1f} s (complaints {loaded['complaints']:.1f} s, ANALYZE "
              f"{loaded['ANALYZE']:.1f} s)\n", flush=True)
        work = [(label, (lambda b, build=build: b.execute(build(b)))) for label, build in queries(as_of)]
        work.append(("derive: complaint cube and region cells", derive.compute))
        print(f"{'query':<46} {'DuckDB median':>14} {'PostgreSQL median':>18} {'ratio':>7}")
        for label, run in work:
            duck_s = timed(lambda run=run: run(engine.backend(duck.cursor())), args.repeat)
            pg_s = timed(lambda run=run: run(pg), args.repeat)
            r = {"query": label, "duckdb_ms": [1000 * s for s in duck_s], "postgres_ms": [1000 * s for s in pg_s],
                 "same_row_count": _count(run(engine.backend(duck.cursor()))) == _count(run(pg))}
            r["duckdb_median_ms"], r["postgres_median_ms"] = (statistics.median(r["duckdb_ms"]),
                                                              statistics.median(r["postgres_ms"]))
            rows.append(r)
            print(f"{label:<46} {r['duckdb_median_ms']:>11.0f} ms {r['postgres_median_ms']:>15.0f} ms "
                  f"{r['postgres_median_ms'] / max(r['duckdb_median_ms'], 1e-9):>6.1f}x", flush=True)
        pg.disconnect()
    duck.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines.json").write_text(json.dumps({"store": str(args.db), "complaints": n, "as_of": str(as_of),
                                                  "repeat": args.repeat, "copy_s": loaded, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
