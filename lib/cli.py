"""Command line: build the demo store, import files, show the import log, publish, print the headline figures.

    python -m lib.cli demo [--if-missing] [--complaints N] [--sites N] [--seed N]
    python -m lib.cli import FILE [FILE ...] [--table NAME]
    python -m lib.cli log
    python -m lib.cli rejects IMPORT_ID [--csv OUT]
    python -m lib.cli audit [--csv OUT]
    python -m lib.cli publish [--k K] [--out PATH] [--as-of YYYY-MM-DD] [--if-missing]
    python -m lib.cli figures [--as-of YYYY-MM-DD] [--region ID] [--level state] [--json] [--no-impact]
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import time
from pathlib import Path

import duckdb

from lib import audit, export, store
from lib.errors import NetzausbauError
from lib.ingest import lifeline
from lib.public import snapshot

DEMO_SIZES = {"default": 200_000, "1m": 1_000_000, "10m": 10_000_000}


def print_progress(message: str, fraction: float) -> None:
    """A progress line on stderr."""
    bar = "#" * int(fraction * 20)
    print(f"\r[{bar:<20}] {fraction:4.0%} {message[:70]:<70}", end="", file=sys.stderr, flush=True)
    if fraction >= 1:
        print(file=sys.stderr)


def build_demo_store(db: str | Path | None = None, seed: int = 42, sites: int = 30_000,
                     complaints: int = 200_000, progress=print_progress, keep_files: Path | None = None,
                     complaints_format: str = "csv") -> list[store.ImportResult]:
    """Generate the demo input files and import them, in order, through the normal importer.

    The store is built in a temporary file and moved into place only when complete, so an
    interrupted build never leaves a half-filled store behind.
    """
    from lib import demo  # imported here: the generator is only needed for this command

    target = store.db_path(db)
    lifeline.sweep()
    work = lifeline.owned_folder("demo")
    try:
        files_dir = keep_files or work / "files"
        files = demo.build_demo_files(files_dir, seed=seed, sites=sites, complaints=complaints,
                                      complaints_format=complaints_format,
                                      progress=lambda m, f: progress(f"Generating: {m}", 0.5 * f))
        tmp_db = work / "store.duckdb"
        con = store.connect(tmp_db)
        results = []
        for i, (table, path) in enumerate(files.items()):
            share = 0.5 + 0.5 * i / len(files)
            progress(f"Importing {table}", share)
            results.append(store.import_file(con, path, table=demo.file_table(table), today=demo.DEMO_AS_OF))
        con.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_db), str(target))
        progress("Demo store ready", 1.0)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m lib.cli", description="Netzausbau-Monitor store commands")
    p.add_argument("--db", help=f"store file (default: ${store.DB_ENV} or {store.DEFAULT_DB})")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="build the demo store (replaces the store file)")
    d.add_argument("--if-missing", action="store_true", help="do nothing if the store exists")
    d.add_argument("--size", choices=DEMO_SIZES, help="complaints: default 200k, 1m or 10m")
    d.add_argument("--complaints", type=int, help="number of complaints (overrides --size)")
    d.add_argument("--sites", type=int, default=30_000)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--keep-files", type=Path, help="also keep the generated input files in this folder")
    i = sub.add_parser("import", help="import files into the store")
    i.add_argument("files", nargs="+", type=Path)
    i.add_argument("--table", help="table name (default: detected from the columns)")
    sub.add_parser("log", help="show the import log")
    r = sub.add_parser("rejects", help="show the rejected rows of one import")
    r.add_argument("import_id", type=int)
    r.add_argument("--csv", type=Path, help="write them to this CSV file")
    a = sub.add_parser("audit", help="show the audit trail: who imported, noted, published or changed a setting")
    a.add_argument("--csv", type=Path, help="write it to this CSV file")
    pub = sub.add_parser("publish", help="write the public snapshot (the public page's only source)")
    pub.add_argument("--k", type=int, default=None,
                     help="minimum complaints per published figure (5 or more; default: the store's setting, else 10)")
    pub.add_argument("--out", type=Path, help="snapshot file (default: $NETZAUSBAU_SNAPSHOT or "
                                              "data/public/snapshot.json)")
    pub.add_argument("--as-of", type=datetime.date.fromisoformat, help="data date (default: the store's)")
    pub.add_argument("--if-missing", action="store_true",
                     help="do nothing if the snapshot file exists (one of an older format is written again)")
    fig = sub.add_parser("figures", help="print the headline figures the pages show, for one region")
    fig.add_argument("--as-of", type=datetime.date.fromisoformat, help="date of the figures (default: the data's)")
    fig.add_argument("--region", default="ALL", help="region id (default: ALL, the whole network)")
    fig.add_argument("--level", default="state", help="region level: state, district or cluster (default: state)")
    fig.add_argument("--json", action="store_true", help="print JSON instead of text")
    fig.add_argument("--no-impact", action="store_true", help="leave out the impact (the slowest figure)")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except NetzausbauError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except duckdb.IOException as exc:  # the store is held by another process (a running dashboard or import)
        print(f"error: the store cannot be opened: {exc}. Is the dashboard or another import using it? "
              "Stop it, or import on the Data page.", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "demo":
        target = store.db_path(args.db)
        if args.if_missing and target.exists():
            print(f"store exists: {target}")
            return 0
        n = args.complaints or DEMO_SIZES[args.size or "default"]
        started = time.perf_counter()
        results = build_demo_store(target, seed=args.seed, sites=args.sites, complaints=n, keep_files=args.keep_files)
        for res in results:
            print(res.summary())
        print(f"demo store built at {target} in {time.perf_counter() - started:.1f} s")
        return 0
    if args.cmd == "publish":
        from lib.views import publish

        if args.if_missing and snapshot.snapshot_path(args.out).exists():
            if snapshot.older_format(args.out):  # ours, from before this version: written again in this one
                print(f"the snapshot {snapshot.snapshot_path(args.out)} is of an older format; publishing it again",
                      file=sys.stderr)
            else:
                print(f"snapshot exists: {snapshot.snapshot_path(args.out)}")
                return 0
        try:
            con = store.connect(args.db)  # for writing: the audit trail records who published
            try:
                k = args.k or int(store.setting(con, "public_k", str(snapshot.DEFAULT_K)))
                print(publish.publish(con, args.out, k=k, as_of=args.as_of, by=audit.cli_user()).summary())
            finally:
                con.close()
        except (NetzausbauError, duckdb.Error) as exc:
            if not args.if_missing:
                raise
            # at start-up (make run) a missing snapshot must not stop the dashboard: the Public page says so
            print(f"warning: no public snapshot written ({exc}); publish from the Data page later", file=sys.stderr)
        return 0
    if args.cmd == "figures":
        return _figures(args)
    con = store.connect(args.db)
    if args.cmd == "import":
        status = 0
        for f in args.files:
            try:
                res = store.import_file(con, f, table=args.table, progress=print_progress)
            except NetzausbauError as exc:
                print(f"refused: {exc}", file=sys.stderr)
                status = 2
                continue
            except Exception as exc:  # a fault of ours: the transaction was rolled back, the next file goes on
                print(f"failed: {f}: {type(exc).__name__}: {exc}; nothing of it was stored", file=sys.stderr)
                status = 1
                continue
            print(res.summary())
            for w in res.warnings:
                print(f"  warning: {w}")
            if res.rejects is not None and len(res.rejects):
                print(res.rejects.drop(columns="record").head(20).to_string(index=False))
                if len(res.rejects) > 20:
                    print(f"  ... and more: python -m lib.cli rejects {res.import_id}")
        return status
    if args.cmd == "log":
        print(store.import_log(con).drop(columns=["checksum"]).to_string(index=False))
        return 0
    if args.cmd == "rejects":
        rej = store.rejected_rows(con, args.import_id)
        if args.csv:
            args.csv.write_bytes(export.csv_bytes(rej))  # formula cells escaped, as the Data page's download
            print(f"{len(rej)} rejected row entries written to {args.csv}")
        else:
            print(rej.to_string(index=False))
        return 0
    if args.cmd == "audit":
        trail = audit.readable(audit.entries(con))
        if args.csv:
            args.csv.write_bytes(export.csv_bytes(trail))  # the same file as the Data page's download
            print(f"{len(trail)} audit entries written to {args.csv}")
        else:
            print(trail.to_string(index=False) if len(trail) else "nothing recorded yet")
        return 0
    return 1


def _open_for_reading(db) -> duckdb.DuckDBPyConnection:
    """The store opened read-only; one written by an older version is first brought up to date (opened once for
    writing, which adds the columns it lacks)."""
    if store.outdated(db):
        store.connect(db).close()
    return store.connect(db, read_only=True)


def _figures(args) -> int:
    import json

    from lib.views import figures

    con = _open_for_reading(args.db)
    try:
        fig = figures.headline(con, args.as_of, args.region, args.level, with_impact=not args.no_impact)
    except figures.UnknownRegion as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    print(json.dumps(fig, indent=2, ensure_ascii=False) if args.json else figures.text(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
