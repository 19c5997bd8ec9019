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
import base64
import datetime
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import duckdb
import pandas as pd

from lib import audit, export, inbox, running, store
from lib.engine import stores
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
    interrupted build never leaves a half-filled store behind. On a PostgreSQL server (`db` a URL) the files
    are imported into it, each in its own transaction.
    """
    from lib import demo  # imported here: the generator is only needed for this command

    url = store.server_url(db)
    target = None if url else store.db_path(db)
    lifeline.sweep()
    work = lifeline.owned_folder("demo")
    try:
        files_dir = keep_files or work / "files"
        files = demo.build_demo_files(files_dir, seed=seed, sites=sites, complaints=complaints,
                                      complaints_format=complaints_format,
                                      progress=lambda m, f: progress(f"Generating: {m}", 0.5 * f))
        tmp_db = work / "store.duckdb"
        con = store.connect(url or tmp_db)
        results = []
        for i, (table, path) in enumerate(files.items()):
            share = 0.5 + 0.5 * i / len(files)
            progress(f"Importing {table}", share)
            results.append(store.import_file(con, path, table=demo.file_table(table), today=demo.DEMO_AS_OF))
        con.close()
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp_db), str(target))
        progress("Demo store ready", 1.0)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    """The command line's arguments (a server answering a reading command parses them alike: `answer`)."""
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
    dv = sub.add_parser("derive", help="compute the derived tables again (the complaint cube, the regions' cells), "
                                       "here or on Spark")
    dv.add_argument("--spark", metavar="MASTER", nargs="?", const="local[2]",
                    help="compute them on Spark at MASTER (spark://host:7077, or local[2] when left out) from the "
                         "same expressions; needs pyspark and Java 17")
    dv.add_argument("--tables", metavar="LOCATION",
                    help="with --spark: Spark reads the tables from the Parquet files LOCATION/<table>.parquet (a "
                         "folder or URL its workers read; export-tables writes them) instead of from this process")
    ex = sub.add_parser("export-tables", help="write the tables the derivations read as Parquet files, for Spark")
    ex.add_argument("folder", type=Path, help="the folder (FOLDER/<table>.parquet; a file of that name is replaced)")
    fig = sub.add_parser("figures", help="print the headline figures the pages show, for one region")
    fig.add_argument("--as-of", type=datetime.date.fromisoformat, help="date of the figures (default: the data's)")
    fig.add_argument("--region", default="ALL", help="region id (default: ALL, the whole network)")
    fig.add_argument("--level", default="state", help="region level: state, district or cluster (default: state)")
    fig.add_argument("--json", action="store_true", help="print JSON instead of text")
    fig.add_argument("--no-impact", action="store_true", help="leave out the impact (the slowest figure)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return _run(args)
    except NetzausbauError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except duckdb.IOException as exc:  # the store is held by another process (a running dashboard or import)
        if args.cmd in ("derive", "export-tables"):
            print(f"error: the store cannot be opened: {exc}. {args.cmd} needs the store to itself: stop the "
                  "dashboard (or wait for the import) first.", file=sys.stderr)
            return 2
        print(f"error: the store cannot be opened: {exc}. Another import, or a dashboard started without serve.py "
              "(which answers the command line while it serves), is using it: wait for it, or stop it.",
              file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "demo":
        target = store.server_url(args.db) or store.db_path(args.db)
        if args.if_missing and _has_store(args.db):
            print(f"store exists: {stores.shown(str(target))}")
            return 0
        n = args.complaints or DEMO_SIZES[args.size or "default"]
        started = time.perf_counter()
        results = build_demo_store(target, seed=args.seed, sites=args.sites, complaints=n, keep_files=args.keep_files)
        for res in results:
            print(res.summary())
        print(f"demo store built at {stores.shown(str(target))} in {time.perf_counter() - started:.1f} s")
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
    if args.cmd in READS:
        return _read(args)
    if args.cmd == "import" and (server := _announced(args.db)) is not None and server.inbox:
        return _hand_over(args, server)
    if (args.cmd == "export-tables" or args.cmd == "derive" and args.spark) and store.server_url(args.db):
        print(f"error: {args.cmd}{' --spark' if args.cmd == 'derive' else ''} works on a DuckDB store file; a "
              "PostgreSQL store derives its tables itself at every import (or with `derive`)", file=sys.stderr)
        return 2
    if args.cmd == "derive" and args.tables and not args.spark:
        print("error: --tables needs --spark: the store derives from its own tables", file=sys.stderr)
        return 2
    if args.cmd == "export-tables":
        from lib.engine import spark

        con = store.connect(args.db, read_only=True)
        try:
            written = spark.export_tables(con, args.folder)
        finally:
            con.close()
        print(f"wrote {args.folder}: " + ", ".join(f"{name}.parquet {n:,} rows" for name, n in written.items()))
        return 0
    con = store.connect(args.db)
    if args.cmd == "derive":
        return _derive(con, args.spark, args.tables)
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
            rejects = res.rejects.drop(columns="record") if res.rejects is not None else pd.DataFrame()
            _print_outcome(res.summary(), res.warnings, rejects.head(inbox.SHOWN_REJECTS), len(rejects), res.import_id)
        return status
    return 1


def _derive(con: duckdb.DuckDBPyConnection, master: str | None, tables: str | None = None) -> int:
    """`derive`: the derived tables computed again, in the store or on Spark at `master` (reading the tables at
    `tables`, or handed over by the store), and stored."""
    from lib.engine import derive, spark

    started = time.perf_counter()
    try:
        if master:
            written = spark.derive_on_spark(con, master, progress=lambda m: print(f"{m}...", file=sys.stderr),
                                            tables=tables)
        else:
            derive.rebuild(con)
            written = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in derive.TABLES}
        where = f"on Spark at {master}" if master else "in the store"
        print(f"derived {where} in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{name} {n:,} rows" for name, n in written.items())
              + ("" if derive.current(con) else " (not current: the store changed meanwhile; the pages read the "
                                                "raw tables until the next derivation)"))
        return 0
    finally:
        con.close()


HANDOVER_POLL = 0.3
"""Seconds between looks at the inbox while the dashboard imports files handed to it."""


def _hand_over(args, server: running.Server) -> int:
    """`import` while a dashboard holds the store: hand the files to its inbox (one marker makes them ready
    together, so they go in table order), show its progress, and print each report as an import here would."""
    box = Path(server.inbox)
    tag = f"cli-{os.getpid()}-{secrets.token_hex(3)}"
    items = []
    for i, f in enumerate(args.files):
        if not f.is_file():
            raise NetzausbauError(f"{f}: no such file")
        name = f"{tag}-{i}-{f.name}"
        part = box / f".{name}.part"
        try:
            try:
                os.link(f, part)  # no copy where the inbox is on the same file system
            except OSError:
                shutil.copyfile(f, part)
            os.replace(part, box / name)
        except OSError as exc:
            raise NetzausbauError(f"{f}: cannot be handed to the dashboard's inbox {box} ({exc})") from exc
        items.append({"name": name, "table": args.table, "file_name": f.name})
    part = box / f".{tag}.ready.part"
    part.write_text(json.dumps({"files": items}), encoding="utf-8")
    os.replace(part, box / f"{tag}{inbox.READY}")
    print(f"The dashboard (pid {server.pid}) holds the store: {len(items)} file(s) handed to its inbox {box}",
          file=sys.stderr)
    pending = {it["name"]: it["file_name"] for it in items}
    status = 0
    while pending:
        for name in list(pending):
            report = _report(box, name)
            if report is not None:
                del pending[name]
                status = max(status, _print_report(report))
        if not pending:
            break
        if not lifeline.alive(server.pid, server.started):
            print(f"error: the dashboard stopped; {', '.join(pending.values())} stay(s) in its inbox {box} and are "
                  "imported when it starts again", file=sys.stderr)
            return 1
        try:
            now = running.ask(server, "inbox", timeout=10)
        except running.Unreachable:
            now = {}
        if now.get("current") in pending:
            print_progress(f"{pending[now['current']]}: {now['message']}", min(float(now["fraction"]), 0.99))
        time.sleep(HANDOVER_POLL)
    return status


def _report(box: Path, name: str) -> dict | None:
    """The report of a file handed to the inbox, once it is written."""
    for sub in ("done", "refused"):
        path = box / sub / f"{name}.report.json"
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def _print_report(report: dict) -> int:
    """Print an inbox report as `import` prints a result; the exit code it stands for."""
    if report["import_id"] is None and report["status"] == "refused":
        print(f"\nrefused: {report['error']}", file=sys.stderr)
        return 2
    if report["status"] == "failed":
        print(f"\nfailed: {report['file']}: {report['error']}", file=sys.stderr)
        return 1
    print_progress(f"{report['file']}: done", 1.0)
    _print_outcome(report["summary"], report["warnings"], pd.DataFrame(report["rejects"]), report["reject_entries"],
                   report["import_id"])
    print(f"  moved to {report['moved_to']}")
    return 0


def _print_outcome(summary: str, warnings: list[str], shown: pd.DataFrame, entries: int, import_id) -> None:
    """What an import prints, here or through the inbox: its summary, warnings and the first rejected rows."""
    print(summary)
    for w in warnings:
        print(f"  warning: {w}")
    if len(shown):
        print(shown.to_string(index=False))
        if entries > len(shown):
            print(f"  ... and more: python -m lib.cli rejects {import_id}")


def _open_for_reading(db) -> duckdb.DuckDBPyConnection:
    """The store opened read-only; one written by an older version is first brought up to date (opened once for
    writing, which adds the columns it lacks)."""
    if store.outdated(db):
        store.connect(db).close()
    return store.connect(db, read_only=True)


@dataclass
class Answer:
    """What a reading command has to say: its output, its exit code and the file it was asked to write (`--csv`),
    which the command line writes itself, also when a server answered."""

    stdout: str = ""
    stderr: str = ""
    code: int = 0
    file: bytes | None = None

    def to_json(self) -> dict:
        return asdict(self) | {"file": None if self.file is None else base64.b64encode(self.file).decode()}

    @classmethod
    def from_json(cls, doc: dict) -> Answer:
        return cls(doc["stdout"], doc["stderr"], int(doc["code"]),
                   None if doc["file"] is None else base64.b64decode(doc["file"]))


def _log(con, args) -> Answer:
    return Answer(store.import_log(con).drop(columns=["checksum"]).to_string(index=False))


def _rejects(con, args) -> Answer:
    rej = store.rejected_rows(con, args.import_id)
    if args.csv:  # formula cells escaped, as the Data page's download
        return Answer(f"{len(rej)} rejected row entries written to {args.csv}", file=export.csv_bytes(rej))
    return Answer(rej.to_string(index=False))


def _audit(con, args) -> Answer:
    trail = audit.readable(audit.entries(con))
    if args.csv:  # the same file as the Data page's download
        return Answer(f"{len(trail)} audit entries written to {args.csv}", file=export.csv_bytes(trail))
    return Answer(trail.to_string(index=False) if len(trail) else "nothing recorded yet")


def _figures(con, args) -> Answer:
    from lib.views import figures

    try:
        fig = figures.headline(con, args.as_of, args.region, args.level, with_impact=not args.no_impact)
    except figures.UnknownRegion as exc:
        return Answer(stderr=f"error: {exc}", code=2)
    return Answer(json.dumps(fig, indent=2, ensure_ascii=False) if args.json else figures.text(fig))


READS = MappingProxyType({"log": _log, "rejects": _rejects, "audit": _audit, "figures": _figures})
"""The commands that only read the store: while a dashboard holds it, its server answers them (`answer`)."""


def answer(con: duckdb.DuckDBPyConnection, argv: list[str]) -> Answer:
    """Run the reading command `argv` (the command line's words) on `con`: what the server does for a command
    line that cannot open the store it holds (lib/localapi.py). Any other command is refused."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        raise ValueError(f"not a command: {argv}") from exc
    if args.cmd not in READS:
        raise ValueError(f"{args.cmd} is not a reading command")
    try:
        return READS[args.cmd](con, args)
    except NetzausbauError as exc:
        return Answer(stderr=f"error: {exc}", code=2)


def _has_store(db) -> bool:
    """Whether the store holds data already: its file exists, or the PostgreSQL server's store has an import."""
    if not store.server_url(db):
        return store.db_path(db).exists()
    con = store.connect(db)
    try:
        return bool(con.execute("SELECT count(*) FROM import_log").fetchall()[0][0])
    finally:
        con.close()


def _announced(db) -> running.Server | None:
    """The dashboard serving the store file `db` (None on a PostgreSQL store: every process opens it itself)."""
    return None if store.server_url(db) else running.find(store.db_path(db))


def _read(args) -> int:
    """A reading command: answered by the dashboard that holds the store, else from the store opened read-only."""
    out = None
    server = _announced(args.db)
    if server is not None:
        try:
            out = Answer.from_json(running.ask(server, "cli", {"argv": args.argv}))
        except running.Unreachable as exc:  # then the store may be free: try it
            print(f"note: {exc}; reading the store itself", file=sys.stderr)
    if out is None:
        con = _open_for_reading(args.db)
        try:
            out = READS[args.cmd](con, args)
        finally:
            con.close()
    if out.file is not None and out.code == 0:
        args.csv.write_bytes(out.file)
    if out.stdout:
        print(out.stdout)
    if out.stderr:
        print(out.stderr, file=sys.stderr)
    return out.code


if __name__ == "__main__":
    raise SystemExit(main())
