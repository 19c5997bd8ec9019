"""Read an input file (CSV, Excel, Parquet, GeoJSON) into raw columns with row numbers.

Nothing is validated here beyond "can the file be read at all"; a file that cannot
is refused whole with an ImportRefused naming it. Row numbers follow a spreadsheet:
the header is row 1, the first record row 2 (for GeoJSON: feature 1, 2, ...).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lib.errors import ImportRefused

BOM = b"\xef\xbb\xbf"
DELIMITERS = (";", ",", "\t")
FORMATS = ("csv", "xlsx", "parquet", "geojson")
EXTENSIONS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".parquet": "parquet", ".pq": "parquet", ".geojson": "geojson", ".json": "geojson",
}


@dataclass
class RawTable:
    """A file's columns as read, before validation."""

    frame: pd.DataFrame  # original column names; values as text, or typed (Parquet, Excel dates)
    rows: np.ndarray  # row number of each frame row in the file
    format: str
    encoding: str = ""
    delimiter: str = ""
    row_label: str = "row"  # "row" or "feature"
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # unreadable records: (row, text)


def sniff_format(data: bytes, file_name: str) -> str:
    """The file's format, from its extension or else its first bytes."""
    ext = PurePath(file_name).suffix.lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if data[:4] == b"PAR1":
        return "parquet"
    if data.lstrip(BOM).lstrip()[:1] == b"{":
        return "geojson"
    return "csv"


def read_file(data: bytes, file_name: str) -> RawTable:
    """Read any supported format; refuse the whole file if it cannot be read."""
    fmt = sniff_format(data, file_name)
    if not data.strip():
        raise ImportRefused(file_name, "the file is empty")
    reader = {"csv": read_csv, "xlsx": read_xlsx, "parquet": read_parquet, "geojson": read_geojson}[fmt]
    try:
        raw = reader(data, file_name)
    except ImportRefused:
        raise
    except Exception as exc:  # any parser failure means the file cannot be read at all
        raise ImportRefused(file_name, f"cannot be read as {fmt.upper()}: {exc}") from exc
    if raw.frame.shape[1] == 0:
        raise ImportRefused(file_name, "no columns found")
    return raw


def decode_csv(data: bytes) -> tuple[bytes, str]:
    """UTF-8 bytes of a CSV (BOM removed) and the encoding it was read in."""
    if data.startswith(BOM):
        return data[len(BOM):], "utf-8-sig"
    if is_utf8(data):
        return data, "utf-8"
    return data.decode("cp1252", errors="replace").encode("utf-8"), "windows-1252"


def is_utf8(data: bytes, block: int = 1 << 24) -> bool:
    """Whether `data` is valid UTF-8, checked block by block (decoding a large file whole would
    hold a second, up to four times larger, copy of it as text)."""
    view = memoryview(data)
    return _utf8_blocks(view[start:start + block] for start in range(0, len(view), block))


def is_utf8_stream(f: BinaryIO, block: int = 1 << 24) -> bool:
    """Whether what `f` reads from here on is valid UTF-8 (read block by block)."""
    return _utf8_blocks(iter(lambda: f.read(block), b""))


def _utf8_blocks(blocks: Iterable) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for b in blocks:
            decoder.decode(b)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(header: str) -> str:
    """The delimiter used most often outside quotes in the header line."""
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(data: bytes, file_name: str) -> RawTable:
    """CSV with comma, semicolon or tab; UTF-8 (with or without BOM) or Windows-1252."""
    utf8, encoding = decode_csv(data)
    delimiter, names = csv_header(utf8, file_name)
    table, bad = _arrow_csv(utf8, delimiter, names, use_threads=True)
    if bad:  # row numbers are only known single-threaded; bad rows are rare, so read again
        table, bad = _arrow_csv(utf8, delimiter, names, use_threads=False)
    n_records = table.num_rows + len(bad)
    bad_numbers = {b[0] for b in bad}
    rows = np.array([r for r in range(2, n_records + 2) if r not in bad_numbers], dtype="int64") if bad \
        else np.arange(2, table.num_rows + 2, dtype="int64")
    frame = table.to_pandas()
    return RawTable(frame, rows, "csv", encoding, delimiter, bad_rows=bad)


def csv_header(utf8: bytes, file_name: str) -> tuple[str, list[str]]:
    """The delimiter and column names of a UTF-8 CSV; refuses duplicate column names."""
    first_line = utf8.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    delimiter = sniff_delimiter(first_line)
    names = next(csv.reader([first_line], delimiter=delimiter))
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ImportRefused(file_name, f"duplicate column name(s) in the header: {', '.join(dupes)}")
    return delimiter, names


def csv_options(delimiter: str, names: list[str], use_threads: bool, on_bad) -> tuple:
    """pyarrow read, parse and convert options: every column as text, blanks as empty strings."""
    return (pacsv.ReadOptions(use_threads=use_threads, block_size=1 << 24),
            pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_bad),
            pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                 quoted_strings_can_be_null=False))


def _arrow_csv(utf8: bytes, delimiter: str, names: list[str], use_threads: bool):
    bad: list[tuple[int, str]] = []

    def on_bad(row) -> str:
        bad.append((row.number if row.number is not None else -1, row.text))
        return "skip"

    read, parse, convert = csv_options(delimiter, names, use_threads, on_bad)
    table = pacsv.read_csv(io.BytesIO(utf8), read_options=read, parse_options=parse, convert_options=convert)
    return table, bad


def read_xlsx(data: bytes, file_name: str) -> RawTable:
    """First sheet of an Excel workbook, header in row 1."""
    frame = pd.read_excel(io.BytesIO(data), sheet_name=0, dtype=object, engine="openpyxl")
    frame = frame.dropna(how="all")
    rows = frame.index.to_numpy(dtype="int64") + 2
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return RawTable(frame, rows, "xlsx")


def read_parquet(data: bytes, file_name: str) -> RawTable:
    """A Parquet file; typed columns are kept as they are."""
    frame = pd.read_parquet(io.BytesIO(data))
    return RawTable(frame.reset_index(drop=True), np.arange(2, len(frame) + 2, dtype="int64"), "parquet")


def read_geojson(data: bytes, file_name: str) -> RawTable:
    """A GeoJSON FeatureCollection: properties as columns, the geometry as GeoJSON text."""
    doc = json.loads(data.decode("utf-8-sig"))
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ImportRefused(file_name, "GeoJSON must be a FeatureCollection")
    features = doc.get("features") or []
    records = []
    for feature in features:
        props = dict(feature.get("properties") or {}) if isinstance(feature, dict) else {}
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        props["geometry"] = json.dumps(geometry) if geometry else ""
        if isinstance(feature, dict) and "id" in feature and "id" not in props:
            props["id"] = feature["id"]
        records.append(props)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"geometry": []})
    return RawTable(frame, np.arange(1, len(frame) + 1, dtype="int64"), "geojson", row_label="feature")


def peek_columns(data: bytes, file_name: str) -> list[str]:
    """A file's column names, read cheaply (the header only where the format allows); [] if unreadable."""
    fmt = sniff_format(data, file_name)
    try:
        if fmt == "csv":
            head, _ = decode_csv(data[: 1 << 16])
            line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
            return next(csv.reader([line], delimiter=sniff_delimiter(line)))
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(io.BytesIO(data)).names)
        return [str(c) for c in read_file(data, file_name).frame.columns]
    except Exception:  # an unreadable file sorts last; importing it then says why
        return []
