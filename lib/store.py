"""The store: tables from lib/ingest/schema, imports as single transactions, in the embedded DuckDB file or on
a PostgreSQL server (`NETZAUSBAU_DB=postgresql://...`, lib/engine/stores).

Every import writes one import_log row and keeps its rejected rows. Records are
upserted by key; for versioned tables (plans) every changed version is kept, the
first being the baseline. Records are never deleted by an import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from lib import audit, changes
from lib.engine import derive, stores
from lib.errors import ImportRefused, NetzausbauError, StoreError
from lib.ingest import bulk, lifeline, schema
from lib.ingest.readers import peek_columns, read_file, sniff_format
from lib.ingest.validation import closest_table, detect_table, validate

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
DEFAULT_DB = DATA_DIR / "netzausbau.duckdb"
DB_ENV = "NETZAUSBAU_DB"

Progress = Callable[[str, float], None]

EXTRA_COLUMNS = {
    "regions": {"n_cells": "BIGINT"},
    "sites": {"cell": "BIGINT"},
    "complaints": {},  # cell is an input field already
    "transport_links": {"a_cell": "BIGINT", "b_cell": "BIGINT"},
    "upgrades": {},
    "status_notes": {},
}
BOOKKEEPING = {"import_id": "INTEGER"}
"""Columns the store adds to every input table (stores made before 2026-11-22 also hold an unused row_hash)."""

LOG_DDL = """
CREATE TABLE IF NOT EXISTS import_log (
    import_id INTEGER, table_name VARCHAR, file_name VARCHAR, checksum VARCHAR, format VARCHAR,
    encoding VARCHAR, imported_at TIMESTAMP, rows_total BIGINT, rows_accepted BIGINT, rows_rejected BIGINT,
    rows_new BIGINT, rows_updated BIGINT, rows_unchanged BIGINT, seconds DOUBLE PRECISION, warnings VARCHAR,
    imported_by VARCHAR);
CREATE TABLE IF NOT EXISTS rejected_rows (
    import_id INTEGER, "row" BIGINT, field VARCHAR, value VARCHAR, reason VARCHAR, record VARCHAR);
CREATE TABLE IF NOT EXISTS region_cells (region_id VARCHAR, cell BIGINT);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
"""


@dataclass
class ImportResult:
    """What one import did."""

    import_id: int | None
    table: str
    file_name: str
    checksum: str
    rows_total: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    seconds: float = 0.0
    duplicate_of: int | None = None  # the earlier import of this identical file; nothing changed
    warnings: list[str] = field(default_factory=list)
    rejects: pd.DataFrame | None = None

    def summary(self) -> str:
        """One line for a person."""
        if self.duplicate_of is not None:
            return (f"{self.file_name}: identical to import #{self.duplicate_of} of {self.table}; nothing changed.")
        return (f"{self.file_name} -> {self.table} (import #{self.import_id}): {self.rows_accepted:,} of "
                f"{self.rows_total:,} rows accepted ({self.rows_new:,} new, {self.rows_updated:,} updated, "
                f"{self.rows_unchanged:,} unchanged), {self.rows_rejected:,} rejected, {self.seconds:.1f} s.")


def db_path(path: str | Path | None = None) -> Path:
    """The store's file: the argument, else $NETZAUSBAU_DB, else data/netzausbau.duckdb."""
    return Path(path or os.environ.get(DB_ENV) or DEFAULT_DB)


def local_folder(path: str | Path | None = None) -> Path:
    """The folder beside the store on this machine: the store file's, or data/ for a PostgreSQL store."""
    return DATA_DIR if server_url(path) else db_path(path).resolve().parent


def server_url(path: str | Path | None = None) -> str | None:
    """The PostgreSQL server the store is on (the argument, else $NETZAUSBAU_DB, when it is a
    postgresql:// URL), or None for a DuckDB file."""
    name = str(path or os.environ.get(DB_ENV) or "")
    return name if stores.is_server(name) else None


def table_columns(name: str) -> dict[str, str]:
    """Column name -> SQL type of an input table in the store."""
    t = schema.TABLES[name]
    cols = {f.name: schema.SQL_TYPES[f.type] for f in t.fields}
    return cols | EXTRA_COLUMNS[name] | BOOKKEEPING


def connect(path: str | Path | None = None, read_only: bool = False):
    """Open (and if new, create) the store: a DuckDB connection, or on a PostgreSQL server a `stores.Postgres`."""
    if url := server_url(path):
        con, name = _connect_server(url), stores.shown(url)
    else:
        p = db_path(path)
        if read_only and not p.exists():
            raise StoreError(f"no store at {p}: build the demo data (make run) or import files first")
        p.parent.mkdir(parents=True, exist_ok=True)
        con, name = duckdb.connect(str(p), read_only=read_only), p
    if not read_only:
        ensure_schema(con)
    elif missing := missing_columns(con):
        con.close()
        raise StoreError(f"the store {name} was written by an older version (it lacks {', '.join(missing)}): open "
                         "it once for writing (make run, or any import) and it is brought up to date")
    return con


def _connect_server(url: str) -> stores.Postgres:
    import psycopg

    try:
        return stores.Postgres(url)
    except psycopg.Error as exc:
        raise StoreError(f"the PostgreSQL store {stores.shown(url)} cannot be reached: "
                         f"{stores.without_password(str(exc), url)}") from None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table that does not exist yet, and add the columns a store of an older version lacks: only
    those, since on a PostgreSQL server an ALTER TABLE waits for every reader of the table and holds up the next.
    On a PostgreSQL server in one transaction under a lock: app processes started together make it once."""
    if stores.dialect(con) != "postgres":
        _ensure_schema(con)
        return
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("SELECT pg_advisory_xact_lock(hashtext(?))", ["netzausbau schema"])
        _ensure_schema(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LOG_DDL)
    con.execute(audit.DDL)
    for name, t in schema.TABLES.items():
        cols = ", ".join(f'"{c}" {typ}' for c, typ in table_columns(name).items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")
        if t.versioned:
            con.execute(f"CREATE TABLE IF NOT EXISTS {name}_versions (version_import_id INTEGER, {cols})")
    have = _columns(con)
    for table, columns in _added_columns().items():
        for c, typ in columns.items():
            if (table, c) not in have:
                con.execute(f'ALTER TABLE {table} ADD COLUMN "{c}" {typ}')


def _added_columns() -> dict[str, dict[str, str]]:
    """Table -> the columns (name -> type) a store of an older version may lack."""
    out = {"import_log": {"imported_by": "VARCHAR"}}
    for name, t in schema.TABLES.items():
        for table in (name, f"{name}_versions") if t.versioned else (name,):
            out[table] = table_columns(name)
    return out


def _columns(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(table, column) of every column the store's tables have."""
    return {(t, c) for t, c in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                           "WHERE table_schema = current_schema()").fetchall()}


def outdated(path: str | Path | None = None) -> bool:
    """Whether the store file exists and was written by an older version (lacks columns of the schema)."""
    if url := server_url(path):
        con = _connect_server(url)
    else:
        p = db_path(path)
        if not p.exists():
            return False
        con = duckdb.connect(str(p), read_only=True)
    try:
        return bool(missing_columns(con))
    finally:
        con.close()


def missing_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The input tables' columns a store lacks (one written by an older version): `table.column` each."""
    have = _columns(con)
    tables = {t for t, _ in have}
    return [f"{name}.{c}" for name in schema.TABLES if name in tables for c in table_columns(name)
            if (name, c) not in have]


def known_ids(con: duckdb.DuckDBPyConnection, table: schema.Table) -> dict[str, set[str]]:
    """Keys of the tables `table` references, as they are in the store."""
    out = {}
    for _, ref, key in table.references:
        out[ref] = {r[0] for r in con.execute(f"SELECT {key} FROM {ref}").fetchall()}
    return out


def import_file(con: duckdb.DuckDBPyConnection, source: str | Path | bytes, table: str | None = None,
                file_name: str | None = None, progress: Progress | None = None,
                today: dt.date | None = None, by: str | None = None) -> ImportResult:
    """Read, validate and store one file in one transaction; refuse it whole if unreadable.

    The file is hashed in a thread beside the rest (hashlib lets go of the GIL): an import of the same
    bytes as an earlier one changes nothing (`_same_file`). That is checked before any work, except for
    a large file going into an empty table (`_in_place`): there the workers start at once and the check
    comes once the file is staged, so that hashing 1 GB (about a second) overlaps the work.

    `by` is who imports (`access.User.who`, "inbox"; by default this process's login): the audit trail
    records every import, a refused one and an identical file again too.
    """
    by = by or audit.cli_user()
    try:
        return _import_file(con, source, table, file_name, progress, today, by)
    except NetzausbauError as exc:
        name = file_name or (Path(source).name if isinstance(source, (str, Path)) else "upload")
        audit.record(con, by, "import refused", name, str(exc))
        raise


def _import_file(con: duckdb.DuckDBPyConnection, source: str | Path | bytes, table: str | None,
                 file_name: str | None, progress: Progress | None, today: dt.date | None, by: str) -> ImportResult:
    progress = progress or (lambda msg, frac: None)
    started = time.perf_counter()
    lifeline.sweep()  # the temporary folders of imports that were killed
    if isinstance(source, (str, Path)):
        path = Path(source)
        file_name = file_name or path.name
        size = path.stat().st_size
    else:
        path, size = None, len(source)
    file_name = file_name or "upload"
    progress(f"Reading {file_name}", 0.05)
    head = bulk.head(path or source)
    fmt = sniff_format(head, file_name)
    # a large CSV is streamed in chunks (a path is never read whole); its header names its table
    name = _table_name(table, peek_columns(head, file_name), file_name) if bulk.wanted(size, fmt) else None
    big = name is not None and bulk.wanted(size, fmt, name)
    data = path if big and path else path.read_bytes() if path else source
    with ThreadPoolExecutor(1) as hasher:
        digest = hasher.submit(_sha256, data)
        raw = None if big else read_file(data, file_name)
        name = name or _table_name(table, raw.frame.columns, file_name)
        t = schema.TABLES[name]
        in_place = big and stores.dialect(con) == "duckdb" and _in_place(con, t)
        try:
            if not in_place:
                _refuse_same_file(con, digest.result(), name)
            apart = big and stores.dialect(con) == "postgres"
            with bulk.workers(big) as executor, (_checked_apart(con, data, file_name, t, today, progress, executor)
                                                 if apart else contextlib.nullcontext()) as checked:
                result = _import(con, t, data, raw, file_name, fmt, executor, in_place, digest, progress, today,
                                 started, by, checked)
        except _SameFile as same:
            result = ImportResult(None, name, file_name, same.checksum, duplicate_of=same.earlier,
                                  seconds=time.perf_counter() - started)
            audit.record(con, by, _action(name), f"{file_name} -> {name}",
                         f"identical to import #{same.earlier}; nothing changed")
            return result
    progress("Done", 1.0)
    return result


def _import(con: duckdb.DuckDBPyConnection, t: schema.Table, data: bytes | Path, raw, file_name: str, fmt: str,
            executor, in_place: bool, digest, progress: Progress, today: dt.date | None,
            started: float, by: str, checked: _Apart | None = None) -> ImportResult:
    """`import_file`'s transaction: validate (`raw`, or `data` range by range on `executor`; or take what was
    `checked` apart), stage, apply, log and derive; rolled back whole on any failure, or when the file turns out
    the same (`_SameFile`)."""
    known = known_ids(con, t) if checked is None else checked.known
    result = ImportResult(None, t.name, file_name, "")
    _new_stage(con, t, in_place)  # before the transaction: see _new_stage
    con.execute("BEGIN TRANSACTION")
    try:
        if stores.dialect(con) == "postgres":  # one import at a time, whichever app process makes it
            con.execute("LOCK TABLE import_log IN SHARE ROW EXCLUSIVE MODE")
            _refuse_same_file(con, digest.result(), t.name)  # these bytes, imported by another process meanwhile
        result.import_id = _next_import_id(con)
        if raw is None:
            if checked is not None:
                staged = checked.send(con, result.import_id)
            else:
                stage = _stage_in_place if in_place else _stage
                staged = bulk.stage_csv(con, data, file_name, t, known, today or dt.date.today(),
                                        lambda part, offset: stage(con, part, t, result.import_id, offset),
                                        progress, restart=lambda: _restart(con, t, in_place), executor=executor,
                                        into=t.name if in_place else None)
            rejects, region_cells, encoding = staged.reject_frame(), None, staged.encoding
            result.rows_total, result.rows_accepted, result.warnings = (staged.rows_total, staged.rows_accepted,
                                                                        staged.warnings)
        else:
            progress(f"Checking {len(raw.frame):,} rows of {t.name}", 0.2)
            v = validate(raw, t, file_name, known, today=today)
            _stage(con, v.records, t, result.import_id)
            rejects, region_cells, encoding = v.rejects, v.region_cells, raw.encoding
            result.rows_total, result.rows_accepted, result.warnings = v.rows_total, len(v.records), v.warnings
        result.checksum = digest.result()
        if in_place:
            _refuse_same_file(con, result.checksum, t.name)
        result.rejects = rejects
        result.rows_rejected = int(rejects["row"].nunique()) if len(rejects) else 0
        progress(f"Writing {result.rows_accepted:,} rows", 0.6)
        _apply(con, t, result, region_cells, rejects, in_place)
        result.seconds = time.perf_counter() - started
        _log(con, result, fmt, encoding, by)
        audit.record(con, by, _action(t.name), f"{file_name} -> {t.name} (import #{result.import_id})",
                     f"{result.rows_accepted:,} of {result.rows_total:,} rows accepted, "
                     f"{result.rows_rejected:,} rejected")
        derive.refresh(con)  # derived tables are recomputed in the same transaction: never stale
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        _drop_stage(con)  # made outside the transaction
        raise
    changes.bump()
    return result


def _table_name(table: str | None, columns, file_name: str) -> str:
    """The table a file goes into: the one asked for, else the one its columns fit; or refuse it."""
    columns = list(map(str, columns))
    name = table or detect_table(columns) or closest_table(columns)
    if name is None:
        raise ImportRefused(file_name, f"cannot tell which table this is: its columns ({', '.join(columns)}) "
                                       f"match none of {', '.join(schema.TABLES)}; choose the table")
    if name not in schema.TABLES:
        raise ImportRefused(file_name, f"unknown table {name!r} (choose one of {', '.join(schema.TABLES)})")
    return name


class _SameFile(Exception):
    """These bytes were imported into this table before, and importing them again would change nothing."""

    def __init__(self, checksum: str, earlier: int):
        super().__init__(earlier)
        self.checksum, self.earlier = checksum, earlier


def _refuse_same_file(con: duckdb.DuckDBPyConnection, checksum: str, name: str) -> None:
    earlier = _same_file(con, checksum, name)
    if earlier is not None:
        raise _SameFile(checksum, earlier)


def _same_file(con: duckdb.DuckDBPyConnection, checksum: str, name: str) -> int | None:
    """The earlier import of these very bytes into table `name`, when importing them again would change
    nothing: None when there is none, or when its latest import rejected rows for an unknown reference
    (say, upgrades of sites not yet imported) and a referenced table has been imported since, so that
    those rows may fit now."""
    rows = con.execute("SELECT import_id FROM import_log WHERE checksum = ? AND table_name = ? ORDER BY import_id",
                       [checksum, name]).fetchall()
    if not rows:
        return None
    refs = schema.TABLES[name].references
    if refs:
        last = rows[-1][0]
        fields, tables = [f for f, _, _ in refs], [r for _, r, _ in refs]
        may_fit = con.execute(
            f"SELECT EXISTS (SELECT 1 FROM rejected_rows WHERE import_id = ? AND field IN "
            f"({', '.join('?' * len(fields))}) AND reason LIKE 'unknown %') AND EXISTS (SELECT 1 FROM import_log "
            f"WHERE import_id > ? AND table_name IN ({', '.join('?' * len(tables))}))",
            [last, *fields, last, *tables]).fetchall()[0][0]
        if may_fit:
            return None
    return rows[-1][0]


def _sha256(data: bytes | Path) -> str:
    """Hex SHA-256 of bytes, or of a file read block by block."""
    if isinstance(data, Path):
        with data.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    return hashlib.sha256(data).hexdigest()


def import_order(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Files sorted into the order their tables must be imported (regions, sites, links, upgrades,
    complaints), judged from their columns; files of no known table keep their place at the end."""
    rank = {name: i for i, name in enumerate(schema.TABLES)}

    def key(item: tuple[str, bytes]) -> int:
        columns = list(map(str, peek_columns(item[1], item[0])))
        table = detect_table(columns) or closest_table(columns)
        return rank.get(table, len(rank))

    return sorted(files, key=key)


def _in_place(con: duckdb.DuckDBPyConnection, t: schema.Table) -> bool:
    """Whether a large file's records go straight into the table rather than through the staging table:
    only when the table is empty (nothing to compare with) and keeps no versions. At 10M complaints this
    saves copying every row a second time (3.2 s)."""
    return not t.versioned and _empty(con, t.name)


def _empty(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether table `name` holds no rows (without counting them)."""
    return not con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT 1) AS one").fetchall()[0][0]


def _new_stage(con: duckdb.DuckDBPyConnection, t: schema.Table, in_place: bool = False,
               temporary: bool = True) -> None:
    """An empty staging table with the store table's columns and the rows' numbers in the file; when the
    records go into the table in place, only their keys and row numbers (`_keys`, for repeated keys).
    Temporary, unless `temporary` is false: a table of the database file (DuckDB holds temporary ones in memory).

    Created outside the import's transaction on purpose: in DuckDB 2.0.0, rows inserted in one
    transaction into a table created empty in that same transaction are lost to scans once they
    pass one row group (about 123k rows; count(*) still reports them). tests/test_bulk.py guards it.
    """
    if in_place:
        _temp_table(con, "_keys", f'SELECT {t.key}, CAST(0 AS BIGINT) AS "row" FROM {t.name} LIMIT 0', temporary)
        return
    _temp_table(con, "_incoming", f'SELECT *, CAST(0 AS BIGINT) AS "row" FROM {t.name} LIMIT 0', temporary)


def _temp_table(con: duckdb.DuckDBPyConnection, name: str, select: str, temporary: bool = True) -> None:
    """A new temporary table `name` of `select`'s rows (a table of the database with `temporary` false),
    replacing one of that name."""
    con.execute(f"DROP TABLE IF EXISTS {name}")
    con.execute(f"CREATE {'TEMP ' if temporary else ''}TABLE {name} AS {select}")


def _restart(con: duckdb.DuckDBPyConnection, t: schema.Table, in_place: bool) -> None:
    """Empty what was staged so far (the table itself, when staged in place: it was empty)."""
    con.execute(f"DELETE FROM {t.name}; DELETE FROM _keys" if in_place else "DELETE FROM _incoming")


def _stage(con: duckdb.DuckDBPyConnection, records: pd.DataFrame | str, t: schema.Table, import_id: int,
           row_offset: int = 0) -> None:
    """Append validated records (a DataFrame, or a Parquet file of them from lib/ingest/bulk, whose rows are
    numbered from `row_offset`) to the staging table."""
    cols = [c for c in table_columns(t.name) if c not in BOOKKEEPING]
    quoted = ", ".join(f'"{c}"' for c in cols)
    insert = f'INSERT INTO _incoming ({quoted}, "row", import_id) SELECT {quoted}, "row" + ?, ? FROM '
    if isinstance(records, str):
        con.execute(insert + "read_parquet(?)", [row_offset, import_id, records])
        return
    staged = records[cols].assign(row=records["row"] + row_offset, import_id=import_id)
    stores.insert_frame(con, "_incoming", staged)


SEND_ROWS = 200_000
"""Rows of a large file's validated records sent to a PostgreSQL server in one COPY (`_Apart.send`)."""
STAGE_MEMORY = "1GB"
"""Memory the DuckDB file that stages a large file for a PostgreSQL server may use; the rest goes to disk."""


def _next_import_id(con) -> int:
    """The id the next import gets."""
    return con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM import_log").fetchall()[0][0]


class _Apart:
    """A large CSV for a store on a PostgreSQL server, validated range by range and staged as on a DuckDB store
    (the same rejects, repeated keys included) in a DuckDB file of the import's own (`local`), on disk, before the
    import's transaction begins: the server's lock is held only while its records are sent and applied. Checked
    against the keys the store holds then, as the import the store expects next."""

    def __init__(self, con: stores.Postgres, local: duckdb.DuckDBPyConnection, data: bytes | Path, file_name: str,
                 t: schema.Table, today: dt.date, progress: Progress):
        self.local, self.data, self.file_name, self.t, self.today, self.progress = (local, data, file_name, t, today,
                                                                                    progress)
        self.known, self.import_id = known_ids(con, t), _next_import_id(con)
        self.staged = bulk.Staged()

    def check(self, executor) -> None:
        """Check the file against `known` and stage its records as import `import_id` (anew)."""
        _restart(self.local, self.t, False)
        self.staged = bulk.stage_csv(
            self.local, self.data, self.file_name, self.t, self.known, self.today,
            lambda part, offset: _stage(self.local, part, self.t, self.import_id, offset), self.progress,
            restart=lambda: _restart(self.local, self.t, False), executor=executor)

    def send(self, con: stores.Postgres, import_id: int) -> bulk.Staged:
        """Send the staged records to the server's staging table by COPY, `SEND_ROWS` at a time, as import
        `import_id` (in its transaction); what staging did. When another import came first, the file is checked
        again if that changed the keys it is checked against, else the records of repeated keys in the rejects
        are given this import's id."""
        if import_id != self.import_id:
            known = known_ids(con, self.t)
            if known != self.known:
                self.known, self.import_id = known, import_id
                with bulk.workers() as executor:
                    self.check(executor)
            else:
                was = re.compile(f'"import_id":{int(self.import_id)}(?=[,}}])')
                for part in self.staged.rejects:
                    if len(part):
                        part["record"] = part["record"].astype(str).str.replace(
                            was, f'"import_id":{int(import_id)}', regex=True)
                self.import_id = import_id
        sent, total = 0, self.staged.rows_accepted
        rows = self.local.sql(f"SELECT * REPLACE ({int(import_id)} AS import_id) FROM _incoming")
        for batch in rows.to_arrow_reader(SEND_ROWS):
            self.progress(f"Sending rows to the server: {sent:,} of {total:,}", 0.6)
            stores.insert_frame(con, "_incoming", batch.to_pandas(types_mapper=pd.ArrowDtype))
            sent += batch.num_rows
        self.progress(f"Sent {sent:,} rows to the server", 0.6)
        return self.staged


@contextlib.contextmanager
def _checked_apart(con: stores.Postgres, data: bytes | Path, file_name: str, t: schema.Table,
                   today: dt.date | None, progress: Progress, executor) -> Iterator[_Apart]:
    """`_Apart` of a large CSV for the store `con`, checked on `executor`; the app never holds the whole file. Its
    folder is removed when the block ends, or by a later import's sweep if this one is killed."""
    folder = lifeline.owned_folder("import")
    local = None
    try:
        local = duckdb.connect(str(folder / "stage.duckdb"))
        local.execute(f"SET memory_limit = '{STAGE_MEMORY}'; SET temp_directory = '{folder / 'spill'}'")
        _ensure_schema(local)
        _new_stage(local, t, temporary=False)  # on disk, with the file
        apart = _Apart(con, local, data, file_name, t, today or dt.date.today(), progress)
        apart.check(executor)
        yield apart
    finally:
        if local is not None:
            local.close()
        shutil.rmtree(folder, ignore_errors=True)


def _stage_in_place(con: duckdb.DuckDBPyConnection, part: str, t: schema.Table, import_id: int,
                    row_offset: int) -> None:
    """Append a Parquet file of validated records (rows numbered from `row_offset`) straight to the empty
    table, and their keys and row numbers to `_keys`, in the same order (lib/ingest/bulk finds repeated keys)."""
    cols = [c for c in table_columns(t.name) if c not in BOOKKEEPING]
    quoted = ", ".join(f'"{c}"' for c in cols)
    con.execute(f"INSERT INTO {t.name} ({quoted}, import_id) SELECT {quoted}, ? FROM read_parquet(?)",
                [import_id, part])
    con.execute(f'INSERT INTO _keys SELECT {t.key}, "row" + ? FROM read_parquet(?)', [row_offset, part])


def _apply(con: duckdb.DuckDBPyConnection, t: schema.Table, result: ImportResult,
           region_cells: pd.DataFrame | None, rejects: pd.DataFrame, in_place: bool = False) -> None:
    """Upsert the staged records by key, keep versions of plans, store region cells and rejects."""
    quoted = ", ".join(f'"{c}"' for c in table_columns(t.name))
    if in_place:  # the records are in the table already (`_in_place`): every one is new
        result.rows_new, result.rows_updated, result.rows_unchanged = result.rows_accepted, 0, 0
    elif not _empty(con, t.name):
        _apply_changes(con, t, result, quoted)
    else:
        _apply_first(con, t, result, quoted)  # nothing to compare with: every staged row is new
    if region_cells is not None:
        changed = [r[0] for r in con.execute("SELECT region_id FROM _changed").fetchall()]
        con.execute("DELETE FROM region_cells WHERE region_id IN (SELECT region_id FROM _changed)")
        stores.insert_frame(con, "region_cells",
                            region_cells.loc[region_cells["region_id"].isin(changed), ["region_id", "cell"]])
    if len(rejects):
        rj = rejects.assign(import_id=result.import_id)[["import_id", "row", "field", "value", "reason", "record"]]
        stores.insert_frame(con, "rejected_rows", rj)
    _drop_stage(con)


def _drop_stage(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the staging tables of an import (temporary: they go with the connection in any case)."""
    con.execute("DROP TABLE IF EXISTS _incoming; DROP TABLE IF EXISTS _keys; DROP TABLE IF EXISTS _changed; "
                "DROP TABLE IF EXISTS _dups")


def _apply_changes(con: duckdb.DuckDBPyConnection, t: schema.Table, result: ImportResult, quoted: str) -> None:
    """New and changed records replace the stored ones; unchanged ones (every input field equal) stay."""
    key = t.key
    differs = " OR ".join(f'c."{n}" IS DISTINCT FROM i."{n}"' for n in t.names if n != key)
    _temp_table(con, "_changed", f"""SELECT i.{key}, c.{key} IS NOT NULL AS existed FROM _incoming i
        LEFT JOIN {t.name} c USING ({key}) WHERE c.{key} IS NULL OR {differs or 'false'}""")
    result.rows_new, result.rows_updated = con.execute(
        "SELECT count(*) FILTER (WHERE NOT existed), count(*) FILTER (WHERE existed) FROM _changed").fetchall()[0]
    result.rows_unchanged = result.rows_accepted - result.rows_new - result.rows_updated
    con.execute(f"DELETE FROM {t.name} WHERE {key} IN (SELECT {key} FROM _changed WHERE existed)")
    changed = f"FROM _incoming WHERE {key} IN (SELECT {key} FROM _changed)"
    con.execute(f"INSERT INTO {t.name} ({quoted}) SELECT {quoted} {changed}")
    if t.versioned:
        con.execute(f"INSERT INTO {t.name}_versions (version_import_id, {quoted}) SELECT {result.import_id}, "
                    f"{quoted} {changed}")


def _apply_first(con: duckdb.DuckDBPyConnection, t: schema.Table, result: ImportResult, quoted: str) -> None:
    """The first import into an empty table: every staged row goes in, without comparing."""
    if t.name == "regions":  # the keys of what changed: which regions' cells to store (`_apply`)
        _temp_table(con, "_changed", f"SELECT {t.key}, false AS existed FROM _incoming")
    result.rows_new, result.rows_updated, result.rows_unchanged = result.rows_accepted, 0, 0
    con.execute(f"INSERT INTO {t.name} ({quoted}) SELECT {quoted} FROM _incoming")
    if t.versioned:
        con.execute(f"INSERT INTO {t.name}_versions (version_import_id, {quoted}) SELECT {result.import_id}, "
                    f"{quoted} FROM _incoming")


def _action(table: str) -> str:
    """What the audit trail calls an import into `table`: a status note is a note."""
    return "note" if table == "status_notes" else "import"


def _log(con: duckdb.DuckDBPyConnection, r: ImportResult, fmt: str, encoding: str, by: str) -> None:
    con.execute(
        "INSERT INTO import_log (import_id, table_name, file_name, checksum, format, encoding, imported_at, "
        "rows_total, rows_accepted, rows_rejected, rows_new, rows_updated, rows_unchanged, seconds, warnings, "
        "imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [r.import_id, r.table, r.file_name, r.checksum, fmt, encoding, dt.datetime.now().replace(microsecond=0),
         r.rows_total, r.rows_accepted, r.rows_rejected, r.rows_new, r.rows_updated, r.rows_unchanged,
         round(r.seconds, 3), "; ".join(r.warnings), by])


SETTINGS = {"public_k": "minimum complaints per published figure (k)"}
"""Settings an admin changes on the Data page (kept in `meta`, each change in the audit trail)."""


def setting(con: duckdb.DuckDBPyConnection, key: str, default: str | None = None) -> str | None:
    """A setting's value, or `default` when it was never set."""
    row = con.execute("SELECT value FROM meta WHERE key = ? LIMIT 1", [key]).fetchone()
    return default if row is None else row[0]


def set_setting(con: duckdb.DuckDBPyConnection, key: str, value: str, by: str) -> None:
    """Change a setting of `SETTINGS` and record who did, in one transaction."""
    if key not in SETTINGS:
        raise StoreError(f"unknown setting {key!r}")
    before = setting(con, key)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM meta WHERE key = ?", [key])
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, str(value)])
        audit.record(con, by, "setting", SETTINGS[key], f"{before if before is not None else 'default'} -> {value}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def import_log(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every import, newest first."""
    return con.execute("SELECT * FROM import_log ORDER BY import_id DESC").df()


def rejected_rows(con: duckdb.DuckDBPyConnection, import_id: int) -> pd.DataFrame:
    """The rejected rows of one import, in file order."""
    return con.execute('SELECT "row", field, value, reason, record FROM rejected_rows WHERE import_id = ? '
                       'ORDER BY "row", field', [import_id]).df()


def versions(con: duckdb.DuckDBPyConnection, table: str, key: str) -> pd.DataFrame:
    """Every stored version of one plan record, oldest (the baseline) first."""
    t = schema.TABLES[table]
    if not t.versioned:
        raise StoreError(f"{table} keeps no versions")
    return con.execute(f"SELECT * FROM {table}_versions WHERE {t.key} = ? ORDER BY version_import_id",
                       [key]).df()
