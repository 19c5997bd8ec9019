"""Complaints per cell and time window, counted from the complaints held in memory (DuckDB stores).

A map's time slider and the rollout table ask for complaints per cell of a new window again and
again. As SQL that is a scan and a group-by of the window's complaints: at 10M complaints about
40 ms for 90 days at resolution 8, per kind. Here the complaints are read once per store content
into arrays (received_at as microseconds, a number for each res-9 cell, category, channel), grouped
by category and sorted by time in each. A window is then a binary search per category, and the
counts a `np.bincount` of the cells in it: a few ms.

The content is the import log's complaint imports (each one's id, checksum and time) and the number of
complaints: complaints change by import, each import adds to the log, so a new import of complaints gives
a new key (about 1 ms to read). A hand edit of complaints that keeps their number is not seen; the SQL path
(`hotspots.cell_counts_sql`) reads the table itself. Two versions are kept (13 bytes per complaint
each, and 4 more per resolution asked for but 9: `Held.nbytes`), shared read-only by every session;
a lock guards the map.

Counts are the same as the SQL's, cell for cell (tests/test_heldcounts.py): complaints with a cell
(cell > 0) received in [start, end), of the categories and channels asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from lib import cells
from lib.engine import kept, keptfiles, stores
from lib.ingest import schema

KEPT = 2
"""Store versions held at once (13 to 21 bytes per complaint each)."""

KEY_SQL = {dialect: f"""SELECT (SELECT {stores.hash_sum(dialect, ['import_id', 'checksum', 'imported_at'])}
               FROM import_log WHERE table_name = 'complaints'), (SELECT count(*) FROM complaints)"""
           for dialect in stores.DIALECTS}
"""Per store dialect: what the held complaints depend on: every import of complaints and their number (about 1
ms); an import of sites, say, keeps them."""

CONTENT_SQL = {dialect: f"SELECT count(*), {stores.hash_sum(dialect, ['cell', 'received_at', 'category', 'channel'])} "
                        "FROM complaints" for dialect in stores.DIALECTS}
"""Per store dialect: the complaints' content as far as the held arrays read it: their number and a hash over
every column read (40 ms at 10M complaints, 0.3 s on a cold start): the key of the arrays kept in files
(lib/engine/keptfiles), checked once per process and content, where `KEY_SQL` is asked on every call."""

CODE_FILES = (__file__, schema.__file__, cells.__file__)
CODE = keptfiles.code(*CODE_FILES)
"""The code that decides the held arrays (read when this module is imported): a change to it builds them anew,
whatever files were kept."""



def _code_sql(column: str, choices: tuple[str, ...]) -> str:
    """SQL of the position of `column`'s value in `choices`, NULL outside them."""
    whens = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(choices))
    return f"CASE {column} {whens} END"


CELLS_SQL = "SELECT DISTINCT cell FROM complaints WHERE cell > 0 ORDER BY cell"
"""The distinct res-9 cells of the complaints, sorted."""

def _read_sql(dialect: str) -> str:
    if dialect == "postgres":  # numbered and sorted in numpy: PostgreSQL sorts 10M rows on disk by default
        return f"""SELECT ({_code_sql('category', schema.CATEGORIES)})::SMALLINT AS category,
       {stores.epoch_us(dialect, 'received_at')} AS micros, cell,
       ({_code_sql('channel', schema.CHANNELS)})::SMALLINT AS channel
FROM complaints WHERE cell > 0 AND received_at IS NOT NULL"""
    return f"""WITH cells AS (SELECT cell, (row_number() OVER (ORDER BY cell) - 1)::INTEGER AS position
                      FROM (SELECT DISTINCT cell FROM complaints WHERE cell > 0) AS distinct_cells)
SELECT ({_code_sql("c.category", schema.CATEGORIES)})::TINYINT AS category,
       {stores.epoch_us(dialect, 'c.received_at')} AS micros,
       cells.position, ({_code_sql("c.channel", schema.CHANNELS)})::TINYINT AS channel
FROM complaints c JOIN cells USING (cell) WHERE c.received_at IS NOT NULL ORDER BY 1, 2"""


READ_SQL = {dialect: _read_sql(dialect) for dialect in stores.DIALECTS}
"""Per store dialect: the complaints with a cell and a time (no other falls in a window, as in SQL), by category
and time: category and channel as positions in the schema's choices, received_at as microseconds, the cell as
its position in `CELLS_SQL`. DuckDB sorts and numbers them: at 10M complaints 1.5 s in a new process, where
numbering and grouping them in numpy took 5 s (first touches of memory dominate there)."""


@dataclass(frozen=True)
class Held:
    """The complaints with a cell, grouped by category (in `schema.CATEGORIES` order), by time in each.

    starts[i]:starts[i+1] is category i's part of every array; `at` the received_at (int64 microseconds,
    sorted within each part), `cell` each complaint's res-9 cell as its position in `cells9` (sorted,
    distinct), `channel` its channel's position in `schema.CHANNELS`.
    """

    starts: np.ndarray
    at: np.ndarray
    cell: np.ndarray
    channel: np.ndarray
    cells9: np.ndarray
    content: tuple = field(default=(), compare=False, repr=False)
    """The `CONTENT_SQL` row these complaints were read under (() when not known)."""
    _at_res: kept.Once = field(default_factory=kept.Once, compare=False, repr=False)
    once: kept.Once = field(default_factory=kept.Once, compare=False, repr=False)
    """`once(key, build)`: `build()` computed once for these complaints (what depends on them but not on a
    window, such as the Gi* grid of a resolution: `hotspots`)."""

    @property
    def nbytes(self) -> int:
        """Bytes held: 13 per complaint, 4 more for each resolution asked for but 9, 8 per distinct cell."""
        held = [self.at, self.cell, self.channel, self.cells9]
        held += [a for pair in self._at_res.values() for a in pair if a is not self.cell and a is not self.cells9]
        return sum(a.nbytes for a in held)

    def at_res(self, res: int) -> tuple[np.ndarray, np.ndarray]:
        """The distinct cells at `res` (sorted) and each complaint's cell as its position among them (int32,
        in the order of `at`), computed once per resolution (4 bytes per complaint)."""
        return self._at_res(res, lambda: self._build_at_res(res))

    def _build_at_res(self, res: int) -> tuple[np.ndarray, np.ndarray]:
        if res == cells.CELL_RES:
            return self.cells9, self.cell
        up = cells.parent(self.cells9, res)  # sorted: a parent keeps its children's leading bits
        distinct = np.unique(up)
        out = distinct, np.searchsorted(distinct, up).astype("int32")[self.cell]
        for a in out:
            a.setflags(write=False)
        return out

    def dense(self, res: int, start=None, end=None, categories: Iterable[str] | None = None,
              channels: Iterable[str] | None = None) -> np.ndarray:
        """Complaints received in [start, end) in each of the distinct cells at `res` (`at_res`): int64, one per
        cell, zeros included. Categories and channels must be among the schema's (`hotspots.checked`)."""
        distinct, where = self.at_res(res)
        lo_at, hi_at = _micros(start, np.iinfo("int64").min), _micros(end, np.iinfo("int64").max)
        if lo_at is None or hi_at is None:  # a NaT bound: as in SQL, no complaint compares with it
            lo_at = hi_at = 0
        wanted = range(len(schema.CATEGORIES)) if categories is None else sorted(
            {schema.CATEGORIES.index(c) for c in categories})
        chans = None if channels is None else np.array(sorted({schema.CHANNELS.index(c) for c in channels}),
                                                        dtype="int8")
        n = np.zeros(distinct.size, dtype="int64")
        for i in wanted:
            a, b = self.starts[i], self.starts[i + 1]
            lo = a + int(np.searchsorted(self.at[a:b], lo_at, "left"))
            hi = a + int(np.searchsorted(self.at[a:b], hi_at, "left"))
            part = where[lo:hi]
            if chans is not None:
                part = part[np.isin(self.channel[lo:hi], chans)]
            if part.size:
                n += np.bincount(part, minlength=distinct.size)
        return n

    def counts(self, res: int, start=None, end=None, categories: Iterable[str] | None = None,
               channels: Iterable[str] | None = None) -> pd.DataFrame:
        """Complaints per cell at `res` received in [start, end): cell, n (int64, sorted by cell, n > 0)."""
        n = self.dense(res, start, end, categories, channels)
        nz = np.flatnonzero(n)
        return pd.DataFrame({"cell": self.at_res(res)[0][nz], "n": n[nz]})


def _micros(value, missing: int) -> int | None:
    """A window bound as int64 microseconds of a naive timestamp; `missing` when None, None when NaT."""
    if value is None:
        return missing
    if value is pd.NaT or (isinstance(value, np.datetime64) and np.isnat(value)):
        return None
    if isinstance(value, str):
        value = pd.Timestamp(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)  # the wall time, as the store keeps times (engine._naive)
    return int(np.datetime64(value, "us").astype("int64"))


def read(con: duckdb.DuckDBPyConnection) -> Held:
    """The complaints with a cell, read from the store grouped by category and sorted by time (`READ_SQL`; the
    cells and the positions come from one snapshot: a cursor's own transaction), or from the arrays an earlier
    process kept of the same content (`CONTENT_SQL`, lib/engine/keptfiles). Where nothing is kept (a store in
    memory or on a PostgreSQL server) the content is not asked for: () (at 10M complaints PostgreSQL takes 3 s)."""
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        kept = keptfiles.store_file(cur) is not None
        content = cur.execute(CONTENT_SQL[stores.dialect(cur)]).fetchall()[0] if kept else ()
        arrays = keptfiles.get(cur, "complaints", content, lambda: _read_arrays(cur), CODE)
        cur.execute("COMMIT")
    finally:
        cur.close()
    return Held(**arrays, content=content)


def _read_arrays(cur: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    if stores.dialect(cur) == "postgres":
        return _read_server_arrays(cur)
    cells9 = cur.execute(CELLS_SQL).fetchnumpy()["cell"]
    got = cur.execute(READ_SQL[stores.dialect(cur)]).fetchnumpy()
    return _arrays(_codes(got["category"], "category"), got["micros"], got["position"],
                   _codes(got["channel"], "channel"), cells9)


def _arrays(category, at, cell, channel, cells9) -> dict[str, np.ndarray]:
    """`Held`'s arrays of the complaints sorted by category and time (category and channel as positions in the
    schema's choices, the cell as its position in `cells9`)."""
    category = np.asarray(category, dtype="int8")
    return {"starts": np.searchsorted(category, np.arange(len(schema.CATEGORIES) + 1), "left"),
            "at": np.asarray(at, dtype="int64"), "cell": np.asarray(cell, dtype="int32"),
            "channel": np.asarray(channel, dtype="int8"), "cells9": np.asarray(cells9, dtype="int64")}


def _read_server_arrays(cur: stores.Postgres) -> dict[str, np.ndarray]:
    """`_read_arrays` on a PostgreSQL store: the rows of `READ_SQL` by a binary COPY, their cells numbered and the
    rows put in order (category, time) here. At 10M complaints PostgreSQL took minutes to number and sort them."""
    try:
        got = cur.arrays(READ_SQL["postgres"], {"category": "int16", "micros": "int64", "cell": "int64",
                                                "channel": "int16"})
    except ValueError as exc:  # a category or channel outside the schema's choices is NULL there
        raise ValueError(f"complaints hold category or channel values outside the schema's choices ({exc})") from exc
    order = np.lexsort((got["micros"], got["category"]))
    cells9 = np.sort(got["cell"])
    first = np.ones(cells9.size, dtype=bool)
    first[1:] = cells9[1:] != cells9[:-1]
    cells9 = cells9[first]  # the distinct cells (np.unique took five times as long)
    return _arrays(got["category"][order], got["micros"][order], np.searchsorted(cells9, got["cell"][order]),
                   got["channel"][order], cells9)


def _codes(values, name: str) -> np.ndarray:
    """The positions `READ_SQL` gave (int8); a value outside the schema's choices (NULL) is refused: the import
    lets none in."""
    if isinstance(values, np.ma.MaskedArray):
        if values.mask.any():
            raise ValueError(f"complaints hold {name} values outside the schema's choices")
        values = values.data
    return np.asarray(values, dtype="int8")


_HELD: kept.Kept[Held] = kept.Kept(KEPT)  # by `KEY_SQL`


def held(con: duckdb.DuckDBPyConnection) -> Held:
    """The complaints of the store behind `con`, read once per content."""
    return _HELD.get(con.execute(KEY_SQL[stores.dialect(con)]).fetchall()[0], lambda: read(con))


def clear() -> None:
    """Forget every held version (tests)."""
    _HELD.clear()
