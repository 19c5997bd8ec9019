"""A large CSV as byte ranges that end at record boundaries, and one range read on its own.

`ranges` cuts the data after the header into ranges of about a given size, each ending just after a
newline with an even number of quote characters since the range's start (where fields are quoted as
RFC 4180 has it, that is a record boundary); only the bytes near each cut are read for this.
A quote that pyarrow reads as a plain character (one inside an unquoted field) can make the parity
lie, so `read_range` checks its own cut: it parses the range followed by a sentinel line, which comes
back as a record of its own only if the range ended outside a quoted field (else it answers None, and
lib/ingest/bulk joins the range with the next one). `head`, `on_disk` and `cp1252_to_utf8` give the file as
UTF-8 on disk without reading it whole into memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lib.ingest.readers import BOM, csv_options, is_utf8

SENTINEL = "\x00netzausbau: end of range\x00"
"""The line a worker parses after its range, to learn whether the range ended inside quotes."""
MAX_TRIES = 1000  # newlines tried from a range's end before a cut is left to the sentinel to check
BLOCK = 1 << 24

Source = bytes | Path
"""A large CSV: its bytes, or its path (never read whole)."""


@dataclass(frozen=True)
class Range:
    """Bytes [start, end) of the file; `last` when it runs to the file's end."""

    start: int
    end: int
    last: bool


def head(source: Source, n: int = 1 << 16) -> bytes:
    """The first `n` bytes of the file."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            return f.read(n)
    return source[:n]


def on_disk(source: Source, tmp: Path) -> Path:
    """The CSV as a file: a path as it is, bytes written to a file in `tmp`."""
    if isinstance(source, Path):
        return source
    out = tmp / "source.csv"
    out.write_bytes(source)
    return out


def cp1252_to_utf8(source: Source, tmp: Path) -> Path:
    """A Windows-1252 CSV converted to a UTF-8 file in `tmp`, block by block (one byte a character;
    undefined bytes replaced, as decode_csv does it whole)."""
    out = tmp / "converted.csv"
    with out.open("wb") as w:
        for block in _blocks(source):
            w.write(block.decode("cp1252", errors="replace").encode("utf-8"))
    return out


def _blocks(source: Source) -> Iterator[bytes]:
    if isinstance(source, Path):
        with source.open("rb") as f:
            yield from iter(lambda: f.read(BLOCK), b"")
    else:
        view = memoryview(source)
        for start in range(0, len(view), BLOCK):
            yield bytes(view[start:start + BLOCK])


def data_start(f: BinaryIO) -> int:
    """Offset of the first byte after the header line (and a BOM)."""
    f.seek(0)
    skip = len(BOM) if f.read(len(BOM)) == BOM else 0
    f.seek(skip)
    f.readline()
    return f.tell()


def last_cut(buf: bytes) -> int:
    """The index just after the last newline in `buf` with an even number of quote characters before
    it, else just after the last newline (the sentinel checks it), or -1 when `buf` has none."""
    end = buf.rfind(b"\n")
    if end < 0:
        return -1
    quotes = buf.count(b'"', 0, end)
    i = end
    for _ in range(MAX_TRIES):
        if quotes % 2 == 0:
            return i + 1
        j = buf.rfind(b"\n", 0, i)
        if j < 0:
            break
        quotes -= buf.count(b'"', j, i)
        i = j
    return end + 1


def ranges(f: BinaryIO, start: int, size: int, chunk: int) -> Iterator[Range]:
    """The file from `start` to `size` cut into ranges of about `chunk` bytes."""
    pos = start
    while pos < size:
        if size - pos <= chunk + chunk // 2:
            yield Range(pos, size, True)
            return
        f.seek(pos)
        buf = f.read(chunk)
        cut = last_cut(buf)
        while cut < 0:  # a record longer than a chunk: read on
            more = f.read(chunk)
            if not more:
                break
            buf += more
            cut = last_cut(buf)
        if cut < 0 or pos + cut >= size:
            yield Range(pos, size, True)
            return
        yield Range(pos, pos + cut, False)
        pos += cut


def read_range(path: str, delimiter: str, names: tuple[str, ...], encoding: str,
               r: Range) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]] | str | None:
    """The range's records as text columns, their row numbers (from 1) and the unreadable ones;
    None when the range ended inside a quoted field, "not utf-8" when it is not UTF-8."""
    with open(path, "rb") as f:
        f.seek(r.start)
        data = f.read(r.end - r.start)
    if not r.last:
        data += SENTINEL.encode() + b"\n"
    bad: list[tuple[int, str]] = []

    def on_bad(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    read, parse, convert = csv_options(delimiter, list(names), use_threads=False, on_bad=on_bad)
    read.column_names = list(names)
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse,
                               convert_options=convert)
    except pa.ArrowInvalid:  # invalid UTF-8 fails the text columns, or the text of a bad row
        if encoding != "windows-1252" and not is_utf8(data):
            return "not utf-8"
        raise
    if not r.last:
        if len(names) > 1 and bad and bad[-1][1] == SENTINEL:
            bad.pop()
        elif len(names) == 1 and table.num_rows and table.column(0)[-1].as_py() == SENTINEL:
            table = table.slice(0, table.num_rows - 1)
        else:
            return None
    n_records = table.num_rows + len(bad)
    numbers = np.arange(1, n_records + 1, dtype="int64")
    rows = numbers[~np.isin(numbers, [n for n, _ in bad])] if bad else numbers
    return table, rows, bad
