"""The store's connections: the embedded DuckDB file, or a PostgreSQL server (`NETZAUSBAU_DB=postgresql://...`).

The store, the engine and the views speak to a store through the surface of a DuckDB connection: `execute(sql,
params)` with `?` parameters and `fetchall`, `fetchone` and `df` on its result (`arrays` for large numeric
columns), `cursor()` for a connection of a thread's own, `close()`. `Postgres` gives a PostgreSQL server that
surface (psycopg, autocommit, so that `BEGIN TRANSACTION`, `COMMIT` and `ROLLBACK` are statements as on DuckDB);
its cursors come from a small pool of open connections. The few statements that differ between the two are chosen
by `dialect(con)`, next to the statement (the store's bookkeeping, the content hashes of lib/engine/network and
heldcounts).

Queries are Ibis expressions either way (`engine.backend(con)`): on PostgreSQL each connection has an Ibis
backend over the same psycopg connection, so a query inside an import's transaction sees the import.
"""

from __future__ import annotations

import contextlib
import select
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

URL_SCHEMES = ("postgresql://", "postgres://")
"""How `NETZAUSBAU_DB` names a PostgreSQL server rather than a DuckDB file."""

POOL_SIZE = 8
"""Open connections a PostgreSQL store keeps for its cursors when idle."""


def is_server(name) -> bool:
    """Whether `name` (a path or a URL) names a PostgreSQL server."""
    return str(name).startswith(URL_SCHEMES)


DIALECTS = ("duckdb", "postgres")
"""The SQL the two kinds of store speak (`dialect`)."""


def hash_sum(dialect_: str, columns: Sequence[str]) -> str:
    """SQL of the sum of a 64-bit hash over each row's `columns`: a table's content as one number, the same
    for the same rows in any order (the keys of what is held in memory)."""
    if dialect_ == "postgres":
        return f"sum(hashtextextended(row({', '.join(columns)})::text, 0))"
    return f"sum(hash({', '.join(columns)})::HUGEINT)"


def epoch_us(dialect_: str, column: str) -> str:
    """SQL of a timestamp column as microseconds since 1970 (BIGINT)."""
    if dialect_ == "postgres":
        return f"(extract(epoch FROM {column}) * 1000000)::BIGINT"
    return f"epoch_us({column})"


def shown(url: str) -> str:
    """A server's URL as it may be shown to a person or written to a log: without its password (given before the
    host or as a `password=` parameter)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    query = [(k, "***" if k == "password" else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))


def without_password(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with the URL's password, as written and as decoded, replaced by
    `***`: libpq quotes a URL it cannot parse."""
    parts = urllib.parse.urlsplit(url)
    secrets = {parts.password or "", *(v for k, v in urllib.parse.parse_qsl(parts.query) if k == "password")}
    for secret in sorted(secrets | {urllib.parse.unquote(s) for s in secrets}, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def dialect(con) -> str:
    """"duckdb" or "postgres": the SQL a store connection speaks."""
    return "postgres" if isinstance(con, Postgres) else "duckdb"


def holds(con) -> bool:
    """Whether `con` is a store's connection (DuckDB or PostgreSQL), whose content the engine holds in memory per
    version (lib/engine/network, heldcounts), rather than another engine queried as it is (`engine.backend`)."""
    return isinstance(con, (duckdb.DuckDBPyConnection, Postgres))


def insert_frame(con, table: str, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> None:
    """Append `frame`'s rows to `table` (its columns `columns`, by default the frame's own, in order): on DuckDB
    through a registered frame, on PostgreSQL by COPY."""
    columns = list(columns or frame.columns)
    if isinstance(con, Postgres):
        con.copy_rows(table, columns, frame)
        return
    con.register("_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} ({_quoted(columns)}) SELECT {_quoted(frame.columns)} FROM _frame")
    finally:
        con.unregister("_frame")


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


# -- PostgreSQL ---------------------------------------------------------------------------------------------

_DATETIME_OIDS = {1082, 1114, 1184}  # date, timestamp, timestamptz
_INT_OIDS = {20: "int64", 21: "int16", 23: "int32"}


class Result:
    """The rows of one statement, read the ways a DuckDB result is read."""

    def __init__(self, names: list[str], oids: list[int], rows: list[tuple]):
        self._names, self._oids, self._rows = names, oids, rows

    @property
    def description(self) -> list[tuple]:
        """The columns as DB-API describes them: (name, type code, and five Nones) each."""
        return [(name, oid, None, None, None, None, None) for name, oid in zip(self._names, self._oids, strict=True)]

    def fetchall(self) -> list[tuple]:
        return list(self._rows)

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def df(self) -> pd.DataFrame:
        """A frame typed as DuckDB types it: dates and times as datetime64[us], integers as int (Int when a value
        is missing), text as str."""
        columns = {}
        for i, (name, oid) in enumerate(zip(self._names, self._oids, strict=True)):
            values = [r[i] for r in self._rows]
            if oid in _DATETIME_OIDS:
                columns[name] = pd.to_datetime(pd.Series(values, dtype=object)).astype("datetime64[us]")
            elif oid in _INT_OIDS:  # exact, also with a value missing (H3 cells exceed a float's 53 bits)
                kind = _INT_OIDS[oid]
                columns[name] = pd.array(values, dtype=kind if None not in values else kind.capitalize())
            elif oid == 701:
                columns[name] = pd.array(values, dtype="float64")
            else:
                columns[name] = pd.Series(values, dtype=object).infer_objects()
        return pd.DataFrame(columns, columns=self._names)



class Postgres:
    """A PostgreSQL store with the surface of a DuckDB connection (see the module's text)."""

    def __init__(self, url: str, *, _pool: _Pool | None = None):
        self.url = url
        self._pool = _pool or _Pool(url)
        self._link = self._pool.take()
        self._lock = threading.RLock()

    def _live(self) -> _Link:
        """This connection's link; a new one when the server has ended the old one between transactions (it
        restarted, or ended the session). Ended within a transaction, the transaction is lost: the next
        statement fails, and the one after it runs on a new link."""
        if self._link is None:
            raise duckdb.ConnectionException("the connection to the PostgreSQL store is closed")
        if not self._link.alive():
            self._link.pg.close()
            self._link = self._pool.take()
        return self._link

    @property
    def _pg(self):
        return self._live().pg

    @property
    def backend(self):
        """The Ibis backend over this very connection (made once per link)."""
        with self._lock:
            return self._live().backend()

    def execute(self, sql: str, params: Sequence | None = None) -> Result:
        """Run one statement (or several, without parameters); `?` marks a parameter."""
        if params is not None:
            sql = sql.replace("%", "%%").replace("?", "%s")
            params = [_plain(v) for v in params]
        with self._lock, self._pg.cursor() as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return Result([], [], [])
            return Result([d.name for d in cur.description], [d.type_code for d in cur.description],
                          cur.fetchall())

    def arrays(self, sql: str, types: Mapping[str, str]) -> dict[str, np.ndarray]:
        """The columns of `sql`'s rows as numpy arrays (`types`: name -> int16, int32, int64 or float64, in the
        query's order, every value given), read by a binary COPY into one buffer and viewed as numpy records,
        without a Python object per value (the held complaints: 10M rows). A NULL is refused (ValueError)."""
        with self._lock, self._pg.cursor() as cur:
            data = bytearray()
            with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)") as copy:
                for block in copy:
                    data += block
        return _binary_columns(data, types)

    def copy_rows(self, table: str, columns: Sequence[str], frame: pd.DataFrame) -> None:
        """Append `frame`'s rows (its columns in order) to `table`'s `columns` by COPY; missing values as NULL."""
        with self._lock, self._pg.cursor() as cur, cur.copy(f"COPY {table} ({_quoted(columns)}) FROM STDIN") as copy:
            for row in _rows(frame):
                copy.write_row(row)

    @contextlib.contextmanager
    def claimed(self, name: str) -> Iterator[bool]:
        """Whether this process took the server-wide lock `name` (False: another session holds it), held until
        the block ends, on a connection of its own: what only one process of several may do at a time. A
        connection that breaks lets go of the lock with it."""
        with self.cursor() as cur:
            got = bool(cur.execute("SELECT pg_try_advisory_lock(hashtext(?))", [name]).fetchone()[0])
            try:
                yield got
            finally:
                if got:  # a broken connection has let go of it already
                    with contextlib.suppress(Exception):
                        cur.execute("SELECT pg_advisory_unlock(hashtext(?))", [name])

    def cursor(self) -> Postgres:
        """A connection of the caller's own (from the pool), closed (given back) by `close` or `with`."""
        return Postgres(self.url, _pool=self._pool)

    def close(self) -> None:
        if self._link is not None:
            self._pool.give(self._link)
            self._link = None

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Link:
    """One open psycopg connection (autocommit) and, once asked for, its Ibis backend."""

    def __init__(self, url: str):
        import psycopg

        self.pg = psycopg.connect(url, autocommit=True)
        self._backend = None
        said = self._said = {"ended": False}  # what the server said; not this link, which holds the connection

        def notice(diagnostic) -> None:
            """A session's end comes as a FATAL message; with no query under way libpq hands it on as a notice."""
            if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
                said["ended"] = True

        self.notice = notice
        self.pg.add_notice_handler(notice)

    @property
    def ended(self) -> bool:
        """Whether the server said it ends this session."""
        return self._said["ended"]

    def alive(self) -> bool:
        """False once the server has ended this connection. Between transactions nothing is due from the
        server: when its socket has something to read, that is read, and the connection is alive unless the
        server said it ends the session (a restart, or the session ended: a FATAL message, then the end of the
        stream, which may not have come yet) rather than sent a notice or notification. Within a transaction
        (or closed) this tells only whether psycopg has seen it close."""
        import psycopg

        pg = self.pg
        if pg.closed:
            return False
        if pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return True  # its next statement fails: a transaction the server ended is lost, never carried over
        if self.ended:
            return False
        try:
            poller = select.poll()
            poller.register(pg.fileno(), select.POLLIN)
            for _ in range(8):  # a session's end is a last message, then the end of the stream
                if not poller.poll(0):
                    return pg.pgconn.status == psycopg.pq.ConnStatus.OK and not self.ended
                pg.pgconn.consume_input()  # raises at the end of the stream
                pg.pgconn.is_busy()  # takes in what came: a notice (`notice`), a notification
        except (OSError, ValueError, psycopg.Error):
            return False
        return False  # still more to read: not a quiet connection between transactions

    def backend(self):
        if self._backend is None:
            import ibis

            self._backend = ibis.postgres.from_connection(self.pg)
        return self._backend


class _Pool:
    """Open connections to one server, handed to cursors and taken back when they close."""

    def __init__(self, url: str):
        self.url, self._idle, self._lock = url, [], threading.Lock()

    def take(self) -> _Link:
        """An idle connection the server still holds (those it ended are closed), else a new one."""
        while True:
            with self._lock:
                link = self._idle.pop() if self._idle else None
            if link is None:
                return _Link(self.url)
            if link.alive():
                return link
            link.pg.close()

    def give(self, link: _Link) -> None:
        """Take a connection back (a transaction left open is rolled back); keep it while few are idle."""
        import psycopg

        pg = link.pg
        if pg.closed:
            return
        try:
            if pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                pg.rollback()
        except psycopg.Error:
            pg.close()
            return
        with self._lock:
            if len(self._idle) < POOL_SIZE:
                self._idle.append(link)
                return
        pg.close()


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _binary_columns(data: bytes | bytearray, types: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The columns of PostgreSQL's binary COPY output whose every field is a value of `types` (fixed width): each
    row is its field count, then each field's length and big-endian value, so the rows are records of one
    numpy dtype."""
    if not data.startswith(_SIGNATURE) or data[-2:] != b"\xff\xff":
        raise ValueError("not PostgreSQL's binary COPY format")
    start = len(_SIGNATURE) + 8 + int.from_bytes(data[len(_SIGNATURE) + 4:len(_SIGNATURE) + 8], "big")
    fields = [("count", ">i2")]
    for i, (name, kind) in enumerate(types.items()):
        fields += [(f"_length{i}", ">i4"), (name, ">" + np.dtype(kind).str[1:])]
    row = np.dtype(fields)
    body = memoryview(data)[start:len(data) - 2]  # the trailer: a field count of -1
    if len(body) % row.itemsize:
        raise ValueError("a NULL, or a value of another width, among the rows")
    rows = np.frombuffer(body, dtype=row)
    widths = [np.dtype(kind).itemsize for kind in types.values()]
    if (rows["count"] != len(types)).any() or any((rows[f"_length{i}"] != w).any() for i, w in enumerate(widths)):
        raise ValueError("a NULL, or a value of another width, among the rows")
    return {name: rows[name].astype(kind) for name, kind in types.items()}


def _plain(value):
    """A parameter as psycopg adapts it: numpy scalars as Python's, lists and tuples as arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _rows(frame: pd.DataFrame) -> Iterable[tuple]:
    """A frame's rows as Python values, missing ones (NaN, NaT, NA, None) as None."""
    plain = frame.astype(object)
    plain = plain.where(frame.notna(), None)
    return plain.itertuples(index=False, name=None)

