"""Large CSV files: cut into byte ranges at record boundaries, each read and validated by a worker.

The whole-file path (lib/ingest/readers + lib/ingest/validation) holds the file as one DataFrame and validates it
on one core (the checks are GIL-bound pandas). For a large CSV this module instead

1. makes sure the file is UTF-8 on disk: a path is used as it is, an upload (bytes) is written to
   a temporary file, a Windows-1252 file is converted block by block into one;
2. cuts the data after the header into ranges of about CHUNK_BYTES at record boundaries
   (lib/ingest/csvranges: quote parity, checked by each worker with a sentinel line; a range that ended
   inside a quoted field is joined with the next and read again); the parent only reads the file
   for this;
3. has WORKERS processes each read one range from the file, parse it (pyarrow), validate it
   (lib.ingest.validation.validate, with its rows numbered from 1), write its good records to a Parquet file
   and send back only counts and rejected rows;
4. takes the results in file order: numbers their rows (the header is row 1, then every record of
   the earlier ranges) and has DuckDB append the records from the Parquet file to the import's
   staging table, or, into an empty table, straight to that table with their keys and rows in
   `_keys` (lib/store decides). (Not from an Arrow table: DuckDB keeps every Python object an open
   transaction scanned alive until it ends, so the parent would hold the whole file.)

Repeated keys, within a range or across ranges, are found in SQL over all the staged keys at the end
(`_repeated_keys`). The result is the same as the whole-file path's, row for row (tests/test_bulk.py),
and no process holds more than a few ranges.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import shutil
import sys
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lib.ingest import lifeline, schema
from lib.ingest.csvranges import Range, Source, cp1252_to_utf8, data_start, head, on_disk, ranges, read_range
from lib.ingest.readers import BOM, RawTable, csv_header, decode_csv
from lib.ingest.validation import Validated, check_columns, duplicate_reason, shift_rows, validate

MIN_BYTES = 64 << 20
"""CSV files at least this large take the chunked path (about 600k complaint rows)."""
CHUNK_BYTES = 24 << 20
"""Bytes of CSV a worker reads at a time (about 200k complaint rows)."""
WORKERS = 2
IN_FLIGHT = WORKERS + 1  # ranges handed to workers at once: bounds the Arrow files waiting on disk


@dataclass
class Staged:
    """What staging a file did: counts and the rejected rows, for the import log."""

    rows_total: int = 0
    rows_accepted: int = 0
    encoding: str = ""
    warnings: list[str] = field(default_factory=list)
    rejects: list[pd.DataFrame] = field(default_factory=list)

    def reject_frame(self) -> pd.DataFrame:
        """All rejected rows, in file order."""
        parts = [r for r in self.rejects if len(r)]
        if not parts:
            return pd.DataFrame({"row": pd.Series(dtype="int64"), "field": [], "value": [], "reason": [],
                                 "record": []})
        return pd.concat(parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Job:
    """What a worker needs besides its range: the file, how to read it and what to check against."""

    path: str
    delimiter: str
    names: tuple[str, ...]
    encoding: str
    table_name: str
    file_name: str
    known: Mapping[str, set[str]]
    today: dt.date
    out_dir: str


@dataclass
class Part:
    """A worker's answer for one range; `cut_ok` is False when the range ended inside a quoted field
    or is not UTF-8 (`utf8` False); then nothing else is set."""

    cut_ok: bool
    utf8: bool = True
    records: int = 0  # records read in the range (good and bad): the next range's row numbers start after them
    validated: Validated | None = None
    parquet: str | None = None


def wanted(size: int, fmt: str, table: str | None = None) -> bool:
    """Whether a file of `size` bytes and format `fmt` for `table` (None: not known yet) should take the
    chunked path. Regions never do: they are few, and their cells are placed per record
    (lib/ingest/validation._place_regions), which the chunked path does not store."""
    return fmt == "csv" and size >= MIN_BYTES and table != "regions"


def work(job: Job, r: Range) -> Part:
    """Read and validate one range (in a worker process); the good records go to an Arrow file."""
    got = read_range(job.path, job.delimiter, job.names, job.encoding, r)
    if got is None or isinstance(got, str):
        return Part(cut_ok=False, utf8=got is None)
    table, rows, bad = got
    raw = RawTable(table.to_pandas(), rows, "csv", job.encoding, job.delimiter, bad_rows=bad)
    v = validate(raw, schema.TABLES[job.table_name], job.file_name, job.known, job.today, dedupe=False)
    path = os.path.join(job.out_dir, f"part-{r.start}.parquet")
    # read once, at once: uncompressed, no statistics; choices and free text as dictionaries, which DuckDB
    # appends to a table a third quicker (at 10M complaints 5.2 s against 7.6 s, for 0.2 s in the workers)
    pq.write_table(pa.Table.from_pandas(v.records, preserve_index=False), path, compression="none",
                   use_dictionary=_dictionary_columns(schema.TABLES[job.table_name]), write_statistics=False)
    v.records = v.records.iloc[0:0]  # the records travel by file, not through the pipe
    return Part(cut_ok=True, records=len(rows) + len(bad), validated=v, parquet=path)


def _dictionary_columns(table: schema.Table) -> list[str]:
    """The columns a worker writes dictionary-encoded: text and choices, but not the key (all distinct)."""
    return [f.name for f in table.fields if f.type in (schema.TEXT, schema.CHOICE) and f.name != table.key]


def pool() -> Executor:
    """Worker processes, started fresh (spawn): the parent holds DuckDB threads that fork would copy. Each
    ends when this process ends, even when killed (lib/ingest/lifeline.watch_parent)."""
    return ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"),
                               initializer=lifeline.watch_parent, initargs=(os.getpid(),))


def _ready() -> None:
    """A worker's first task: it has imported this module (and pandas, pyarrow) by the time it runs."""


@contextmanager
def workers(wanted: bool = True) -> Iterator[Executor | None]:
    """The worker pool for one import, started at once (None unless `wanted`): the workers start up
    (about a second of imports each) while the parent does other work, such as hashing the file.
    Shut down on exit. A pool that cannot start is left to `stage_csv`, which then stages in this process."""
    if not wanted:
        yield None
        return
    executor = None
    try:
        with _main_hidden():  # each submit starts one worker, until there are WORKERS
            executor = pool()
            for _ in range(WORKERS):
                executor.submit(_ready)
    except BrokenProcessPool:  # then staging finds it broken too, and falls back to this process
        executor = executor or Inline()
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _main_hidden() -> Iterator[None]:
    """While workers start, the parent's main module is a blank one. A spawned process runs its parent's
    main script again first (for what it may define); ours need only this module, which a task imports.
    Under Streamlit that script is the page script (dashboard.py), which fails outside a session, so the
    pool broke and every large upload was read in this one process; a main read from stdin failed alike."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


class Inline(Executor):
    """Runs each task at once in this process: the fallback when worker processes cannot start."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def stage_csv(con: duckdb.DuckDBPyConnection, data: Source, file_name: str, table: schema.Table,
              known: Mapping[str, set[str]], today: dt.date, stage: Callable[[str, int], None],
              progress: Callable[[str, float], None], restart: Callable[[], None],
              executor: Executor, chunk_bytes: int | None = None, into: str | None = None) -> Staged:
    """Validate a large CSV range by range; `stage(parquet_path, row_offset)` stages each range's records:
    into the staging table `_incoming`, or (`into`) straight into that table with keys and rows in `_keys`.

    The ranges go to `executor` (from `workers`), which is shut down once the file is staged. Worker
    processes are spawned without the parent's main script (`_main_hidden`); where they still cannot
    start the pool breaks at once, and the file is staged again from the start (`restart()` empties the
    stage) in this process.
    """
    utf8, _ = decode_csv(head(data))
    delimiter, names = csv_header(utf8, file_name)
    _, warnings = check_columns(names, table, file_name, "")  # refuses the file before any work
    tmp = lifeline.owned_folder("import")  # removed below, or by a later import's sweep if this one is killed
    try:
        path = on_disk(data, tmp)
        encoding = "utf-8-sig" if head(data, len(BOM)) == BOM else "utf-8"
        job = Job(str(path), delimiter, tuple(names), encoding, table.name, file_name, known, today, str(tmp))
        try:
            out = _stage_file(job, stage, progress, restart, chunk_bytes or CHUNK_BYTES, executor)
        except NotUtf8:  # the workers check as they read: no pass over the file beforehand
            restart()
            encoding = "windows-1252"
            job = replace(job, path=str(cp1252_to_utf8(data, tmp)), encoding=encoding)
            out = _stage_file(job, stage, progress, restart, chunk_bytes or CHUNK_BYTES, executor)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # staged: the workers' memory is given back now
        shutil.rmtree(tmp, ignore_errors=True)
    out.warnings = list(dict.fromkeys(warnings + out.warnings + _encoding_warning(encoding)))
    out.encoding = encoding
    out.rejects.append(_repeated_keys(con, table, out, into))
    return out


class NotUtf8(Exception):
    """A range of the file is not valid UTF-8: the file is read as Windows-1252."""


def _stage_file(job: Job, stage: Callable[[str, int], None], progress: Callable[[str, float], None],
                restart: Callable[[], None], chunk: int, executor: Executor) -> Staged:
    try:
        return _stage_ranges(job, stage, progress, chunk, executor)
    except BrokenProcessPool:
        restart()
        return _stage_ranges(job, stage, progress, chunk, Inline())


def _stage_ranges(job: Job, stage: Callable[[str, int], None], progress: Callable[[str, float], None], chunk: int,
                  executor: Executor) -> Staged:
    out = Staged()
    offset = 1  # the header is row 1
    with open(job.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        cuts = ranges(f, data_start(f), size, chunk)
        todo: deque[tuple[Range, Future]] = deque()

        def submit(r: Range) -> tuple[Range, Future]:
            return r, executor.submit(work, job, r)

        try:
            for r in cuts:
                todo.append(submit(r))
                while len(todo) >= IN_FLIGHT:
                    offset = _take(todo, cuts, submit, out, offset, stage)
                    done = todo[0][0].start if todo else size
                    progress(f"Checked {out.rows_total:,} rows", 0.1 + 0.5 * done / size)
            while todo:
                offset = _take(todo, cuts, submit, out, offset, stage)
        finally:  # the pool belongs to the caller: only this file's tasks are stopped, or waited for
            for _, fut in todo:
                fut.cancel()
            wait([fut for _, fut in todo])
    return out


def _take(todo: deque, cuts: Iterator[Range], submit: Callable, out: Staged, offset: int,
          stage: Callable[[str, int], None]) -> int:
    """Take the first range's answer: stage it (rows renumbered from `offset`), or, when its cut
    was inside a quoted field, join it with the next range and read it again. The next offset."""
    r, fut = todo.popleft()
    part = fut.result()
    if not part.utf8:
        raise NotUtf8
    if not part.cut_ok:
        nxt = todo.popleft() if todo else None
        if nxt is None:
            nxt = (next(cuts), None)
        elif (dropped := nxt[1].result()).parquet:  # started at a wrong place: thrown away
            os.remove(dropped.parquet)
        todo.appendleft(submit(Range(r.start, nxt[0].end, nxt[0].last)))
        return offset
    v = part.validated
    shift_rows(v, offset)  # the rejects; the records are numbered as they are staged
    out.rows_total += v.rows_total
    out.rows_accepted += pq.read_metadata(part.parquet).num_rows
    out.rejects.append(v.rejects)
    out.warnings += v.warnings
    stage(part.parquet, offset)
    os.remove(part.parquet)
    return offset + part.records


def _encoding_warning(encoding: str) -> list[str]:
    return ["read as Windows-1252 (not valid UTF-8)"] if encoding == "windows-1252" else []


def _repeated_keys(con: duckdb.DuckDBPyConnection, table: schema.Table, out: Staged,
                            into: str | None = None) -> pd.DataFrame:
    """Reject (and unstage) every repeat of a key after its first occurrence in the file: from
    `_incoming`, or from the table `into` when the records went there in place (keys and rows in `_keys`)."""
    key = table.key
    staged = "_keys" if into else "_incoming"
    # the repeated keys first, so that the window and the JSON of the record only run over their rows, not
    # over every staged row; found among the keys whose hash repeats (an aggregate over integers: at 10M
    # complaints 1.1 s against 3.1 over the text keys), then checked on the keys themselves
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _dups AS
        WITH hashes AS (SELECT hash({key}) AS h FROM {staged} GROUP BY 1 HAVING count(*) > 1),
        repeated AS (SELECT {key} FROM {staged} SEMI JOIN hashes ON hash({key}) = hashes.h
                     GROUP BY {key} HAVING count(*) > 1)
        SELECT "row", {key}, n, first_row FROM (
            SELECT "row", {key}, row_number() OVER w AS n, first_value("row") OVER w AS first_row
            FROM {staged} SEMI JOIN repeated USING ({key})
            WINDOW w AS (PARTITION BY {key} ORDER BY "row")) WHERE n > 1""")
    if not con.execute("SELECT count(*) FROM _dups").fetchall()[0][0]:
        return _duplicate_rejects(key, pd.DataFrame({"row": [], key: [], "first_row": [], "rec": []}))
    if into:
        # the ranges went into the table in file order, so the n-th row of a key by rowid is its n-th in
        # the file; its record as the staging table's would be (with its row number)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _dups AS
            SELECT d."row", d.{key}, d.first_row, c._rid,
                   json_merge_patch(c.rec, json_object('row', d."row")) AS rec
            FROM _dups d JOIN (
                SELECT rowid AS _rid, {key}, row_number() OVER (PARTITION BY {key} ORDER BY rowid) AS n,
                       to_json(t) AS rec
                FROM {into} t SEMI JOIN _dups USING ({key})) c USING ({key}, n)""")
        con.execute(f"DELETE FROM {into} WHERE rowid IN (SELECT _rid FROM _dups)")
    else:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _dups AS
            SELECT d."row", d.{key}, d.first_row, to_json(i) AS rec
            FROM _dups d JOIN _incoming i USING ("row")""")
        con.execute('DELETE FROM _incoming WHERE "row" IN (SELECT "row" FROM _dups)')
    dups = con.execute('SELECT "row", ' + key + ', first_row, rec FROM _dups ORDER BY "row"').df()
    out.rows_accepted -= len(dups)
    return _duplicate_rejects(key, dups)


def _duplicate_rejects(key: str, dups: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"row": dups["row"].astype("int64"), "field": key, "value": dups[key].astype(str),
                         "reason": [duplicate_reason(key, r) for r in dups["first_row"]],
                         "record": dups["rec"].astype(str)})
