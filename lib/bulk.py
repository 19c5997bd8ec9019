"""Large CSV files: streamed in chunks, validated in worker processes, staged in the store.

The whole-file path (lib/readers + lib/ingest) holds the file as one DataFrame and
validates it on one core (the checks are GIL-bound pandas). For a large CSV this module
instead streams it with pyarrow (single-threaded, so every row keeps its number),
validates chunks of CHUNK_ROWS rows in WORKERS processes and appends each chunk's good
records to the import's staging table as it comes back, so the parent never holds more
than a few chunks. Repeated keys across chunks are found in SQL on the staging table.
The result is the same as the whole-file path's, row for row (tests/test_bulk.py).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lib import schema
from lib.ingest import Validated, check_columns, validate
from lib.readers import BOM, RawTable, csv_header, csv_options, decode_csv, is_utf8, is_utf8_stream

MIN_BYTES = 64 << 20
"""CSV files at least this large take the chunked path (about 600k complaint rows)."""
CHUNK_ROWS = 500_000
WORKERS = 2
IN_FLIGHT = WORKERS + 1  # chunks handed to workers at once: bounds the parent's memory


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


Source = bytes | Path
"""A large CSV: its bytes, or its path (read as a stream, never held whole)."""


def wanted(size: int, fmt: str) -> bool:
    """Whether a file of `size` bytes and format `fmt` should take the chunked path."""
    return fmt == "csv" and size >= MIN_BYTES


def head(source: Source, n: int = 1 << 16) -> bytes:
    """The first `n` bytes of the file."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            return f.read(n)
    return source[:n]


def utf8_stream(source: Source) -> tuple[pa.NativeFile, str]:
    """A stream of the CSV as UTF-8 (BOM skipped) and the encoding it was read in.

    Neither a path nor bytes are copied when the file is UTF-8; a Windows-1252 file is
    converted in memory (a copy as large as the file)."""
    bom = head(source, len(BOM)) == BOM
    if isinstance(source, Path):
        with source.open("rb") as f:
            utf8 = is_utf8_stream(f)
        if utf8:
            stream = pa.OSFile(str(source))
            stream.seek(len(BOM) if bom else 0)
            return stream, "utf-8-sig" if bom else "utf-8"
        source = source.read_bytes()
    if is_utf8(source):
        buf = pa.py_buffer(source)
        return pa.BufferReader(buf.slice(len(BOM)) if bom else buf), "utf-8-sig" if bom else "utf-8"
    converted, encoding = decode_csv(source)
    return pa.BufferReader(converted), encoding


def csv_chunks(source: Source, file_name: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[RawTable]:
    """The CSV as RawTables of about `chunk_rows` rows, each with its rows' numbers in the file."""
    stream, encoding = utf8_stream(source)
    delimiter, names = csv_header(decode_csv(head(source))[0], file_name)
    bad: list[tuple[int, str]] = []

    def on_bad(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    read, parse, convert = csv_options(delimiter, names, use_threads=False, on_bad=on_bad)
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    next_record, seen_bad, pending = 2, 0, []

    def emit(batches: list[pa.RecordBatch], rows: np.ndarray, bad_rows: list) -> RawTable:
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return RawTable(table, rows, "csv", encoding, delimiter, bad_rows=bad_rows)  # frame as Arrow: see _work

    rows_parts, bad_parts, count = [], [], 0
    for batch in reader:
        new_bad = bad[seen_bad:]
        seen_bad = len(bad)
        bad_numbers = {n for n, _ in new_bad}
        span = np.arange(next_record, next_record + batch.num_rows + len(new_bad), dtype="int64")
        good = span[~np.isin(span, list(bad_numbers))] if bad_numbers else span
        next_record = int(span[-1]) + 1 if len(span) else next_record
        pending.append(batch)
        rows_parts.append(good)
        bad_parts += new_bad
        count += batch.num_rows
        if count >= chunk_rows:
            yield emit(pending, np.concatenate(rows_parts), bad_parts)
            pending, rows_parts, bad_parts, count = [], [], [], 0
    if pending or bad_parts or bad[seen_bad:]:
        bad_parts += bad[seen_bad:]
        rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, dtype="int64")
        yield emit(pending or [pa.RecordBatch.from_pylist([], schema=reader.schema)], rows, bad_parts)


def _work(raw: RawTable, table_name: str, file_name: str, known: Mapping[str, set[str]],
          today: dt.date) -> Validated:
    """Validate one chunk (in a worker process)."""
    if isinstance(raw.frame, pa.Table):
        raw.frame = raw.frame.to_pandas()
    return validate(raw, schema.TABLES[table_name], file_name, known, today)


def pool() -> Executor:
    """Worker processes, started fresh (spawn): the parent holds DuckDB threads that fork would copy."""
    return ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"))


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
              known: Mapping[str, set[str]], today: dt.date, stage: Callable[[pd.DataFrame, bool], None],
              progress: Callable[[str, float], None], restart: Callable[[], None],
              chunk_rows: int | None = None) -> Staged:
    """Validate a large CSV chunk by chunk and hand each chunk's records to `stage(records, first)`.

    Worker processes are spawned, which re-imports the parent's main script; where that
    cannot work (a main read from stdin, say) the pool breaks at once, and the file is
    staged again from the start (`restart()` empties the stage) in this process.
    """
    try:
        return _stage_chunks(con, data, file_name, table, known, today, stage, progress, chunk_rows, pool())
    except BrokenProcessPool:
        restart()
        return _stage_chunks(con, data, file_name, table, known, today, stage, progress, chunk_rows, Inline())


def _stage_chunks(con: duckdb.DuckDBPyConnection, data: Source, file_name: str, table: schema.Table,
                  known: Mapping[str, set[str]], today: dt.date, stage: Callable[[pd.DataFrame, bool], None],
                  progress: Callable[[str, float], None], chunk_rows: int | None, executor: Executor) -> Staged:
    utf8, encoding = decode_csv(head(data))
    _, names = csv_header(utf8, file_name)
    _, warnings = check_columns(names, table, file_name, encoding)  # refuses the file before any work
    out = Staged(encoding="", warnings=warnings)
    futures: deque[Future] = deque()
    first = True
    try:
        for raw in csv_chunks(data, file_name, chunk_rows or CHUNK_ROWS):
            out.encoding = raw.encoding
            futures.append(executor.submit(_work, raw, table.name, file_name, known, today))
            while len(futures) >= IN_FLIGHT:
                first = _collect(futures.popleft().result(), out, stage, first)
                progress(f"Checked {out.rows_total:,} rows", min(0.55, 0.1 + out.rows_total / 2e7))
        while futures:
            first = _collect(futures.popleft().result(), out, stage, first)
    finally:
        executor.shutdown(cancel_futures=True)
    out.warnings = list(dict.fromkeys(out.warnings + _encoding_warning(out.encoding)))
    out.rejects.append(_cross_chunk_duplicates(con, table, out))
    return out


def _collect(v: Validated, out: Staged, stage: Callable[[pd.DataFrame, bool], None], first: bool) -> bool:
    out.rows_total += v.rows_total
    out.rows_accepted += len(v.records)
    out.rejects.append(v.rejects)
    if first or len(v.records):
        stage(v.records, first)
        return False
    return first


def _encoding_warning(encoding: str) -> list[str]:
    return ["read as Windows-1252 (not valid UTF-8)"] if encoding == "windows-1252" else []


def _cross_chunk_duplicates(con: duckdb.DuckDBPyConnection, table: schema.Table, out: Staged) -> pd.DataFrame:
    """Reject (and unstage) every repeat of a key after its first occurrence in an earlier chunk."""
    key = table.key
    # the repeated keys first (one hash aggregate), so that the window and the JSON of the
    # record only run over their rows, not over every staged row
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _dups AS
        WITH repeated AS (SELECT {key} FROM _incoming GROUP BY {key} HAVING count(*) > 1)
        SELECT "row", {key}, first_row, rec FROM (
            SELECT "row", {key}, row_number() OVER w AS n, first_value("row") OVER w AS first_row,
                   to_json(i) AS rec
            FROM _incoming i SEMI JOIN repeated USING ({key})
            WINDOW w AS (PARTITION BY {key} ORDER BY "row")) WHERE n > 1""")
    dups = con.execute("SELECT * FROM _dups").df()
    if not len(dups):
        return dups.iloc[0:0]
    con.execute('DELETE FROM _incoming WHERE "row" IN (SELECT "row" FROM _dups)')
    out.rows_accepted -= len(dups)
    return pd.DataFrame({"row": dups["row"].astype("int64"), "field": key, "value": dups[key].astype(str),
                         "reason": [f"duplicate {key} (first at row {r})" for r in dups["first_row"]],
                         "record": dups["rec"].astype(str)})
