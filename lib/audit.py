"""The audit trail: who changed the data or the public snapshot, and when.

Every import (and every refused one), status note, publish and settings change writes one row to the
store's `audit_log`: when (UTC, to the second), who (`access.User.who`, "cli:<login>" on the command line,
"inbox" for files the server picked up), what (`ACTIONS`), on what, and the outcome in words. A row of an
import is written in the import's own transaction, so the trail and the data never disagree. Nothing
here deletes a row.
"""

from __future__ import annotations

import datetime as dt
import getpass

import duckdb
import pandas as pd

from lib.engine import stores

DDL = ("CREATE TABLE IF NOT EXISTS audit_log (happened_at TIMESTAMP, who VARCHAR, action VARCHAR, "
       "subject VARCHAR, outcome VARCHAR)")

ACTIONS = ("import", "import refused", "note", "publish", "setting")
COLUMNS = {"happened_at": "When (UTC)", "who": "Who", "action": "Action", "subject": "On",
           "outcome": "Outcome"}
"""Column -> the heading people read, on the Data page and in the export."""


def cli_user() -> str:
    """Who runs a command-line command: their login on this machine."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def record(con: duckdb.DuckDBPyConnection, who: str, action: str, subject: str, outcome: str = "") -> None:
    """Write one row (inside the caller's transaction, if one is open); the store made the table
    (`store.ensure_schema`)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    con.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?)", [now(), who or "unknown", action, subject, outcome])


def entries(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> pd.DataFrame:
    """The trail, newest first (`limit` rows, or all), with the columns of `COLUMNS`."""
    if not _has_table(con):
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c == "happened_at" else object)
                             for c in COLUMNS})
    row = "ctid" if stores.dialect(con) == "postgres" else "rowid"  # the order rows were written in
    sql = ("SELECT happened_at, who, action, subject, outcome FROM audit_log "
           f"ORDER BY happened_at DESC, {row} DESC")
    return con.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).df()


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The trail with the headings people read (the export's columns)."""
    return frame[list(COLUMNS)].rename(columns=COLUMNS)


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_name = 'audit_log'").fetchone()[0])
