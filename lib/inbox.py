"""The inbox: a folder the dashboard's server imports files from while it serves (scheduled feeds, the command line).

    <inbox>/            files waiting ($NETZAUSBAU_INBOX, default: inbox/ beside the store)
    <inbox>/done/       files imported (some of their rows may have been rejected), each with NAME.report.json
    <inbox>/refused/    files of which nothing was stored: refused whole, failed, or every row rejected

A file is taken when it is complete, by either convention:
- a marker `NAME.ready` beside it (written after the file): taken at the next look (every POLL_SECONDS); or
- unchanged (size and modification time) for QUIET_SECONDS: a feed that just copies files in.
Names starting with "." or ending in .part, .tmp or .ready are never taken, so a writer may also write under
such a name and rename the file when complete. A marker may hold JSON: {"table": NAME} for a file whose table
its columns do not tell, or {"files": [{"name": ..., "table": ..., "file_name": ...}, ...]} making several
files ready at once (the command line hands files over so).

Every file goes through the same import as the Data page and the command line (`store.import_file`: one
transaction, rejected rows kept, a row in the import log, `by` INBOX_BY); the files found ready together go in
table order (regions, sites, links, upgrades, complaints). The report says what happened: status, table,
import id, counts, warnings, the first rejected rows (row, field, value, reason) and the error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from lib import store
from lib.errors import NetzausbauError
from lib.ingest import bulk, schema
from lib.ingest.readers import peek_columns, sniff_format
from lib.ingest.validation import closest_table, detect_table

log = logging.getLogger(__name__)

INBOX_ENV = "NETZAUSBAU_INBOX"
INBOX_LOCK = "netzausbau inbox"
"""The lock (on a PostgreSQL store) held by the one app process of several that takes the inbox's files."""
INBOX_BY = "inbox"
"""Who the import log and the audit trail say imported a file from the inbox."""
QUIET_ENV = "NETZAUSBAU_INBOX_QUIET"
QUIET_SECONDS = 5.0
"""A file without a marker is taken once unchanged for this long ($NETZAUSBAU_INBOX_QUIET seconds, if set)."""
POLL_SECONDS = 1.0
"""How often the server looks into the inbox."""
READY = ".ready"
REPORT = ".report.json"
DONE, REFUSED = "done", "refused"
IGNORED = (".part", ".tmp", READY, REPORT)
SHOWN_REJECTS = 20
"""Rejected rows a report lists (all of them: python -m lib.cli rejects IMPORT_ID)."""


def folder(db: str | Path | None = None) -> Path:
    """The inbox: $NETZAUSBAU_INBOX, else inbox/ beside the store file (in data/ for a PostgreSQL store)."""
    return Path(os.environ.get(INBOX_ENV) or store.local_folder(db) / "inbox").resolve()


def quiet_seconds() -> float:
    """How long a file without a marker must stay unchanged: $NETZAUSBAU_INBOX_QUIET, else QUIET_SECONDS."""
    try:
        return float(os.environ.get(QUIET_ENV) or QUIET_SECONDS)
    except ValueError:
        return QUIET_SECONDS


@dataclass(frozen=True)
class Waiting:
    """A file ready to be taken: its path, the table asked for (None: from its columns) and the name it is
    logged under."""

    path: Path
    table: str | None
    file_name: str


@dataclass
class Report:
    """What taking one file did (written beside it as NAME.report.json)."""

    file: str
    status: str  # imported, unchanged, refused, failed
    moved_to: str = ""
    table: str | None = None
    import_id: int | None = None
    rows_total: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    reject_entries: int = 0  # rejected rows by field (a row may fail on several); the first few are in `rejects`
    summary: str = ""
    warnings: list[str] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    error: str | None = None
    by: str = INBOX_BY
    finished_at: str = ""


def waiting(inbox: Path, now: float | None = None, quiet: float = QUIET_SECONDS) -> list[Waiting]:
    """The files ready in `inbox`, in table order (then by name)."""
    now = time.time() if now is None else now
    try:
        entries = sorted(p for p in inbox.iterdir() if p.is_file())
    except OSError:
        return []
    names = {p.name for p in entries}
    asked: dict[str, Waiting] = {}
    for marker in (p for p in entries if p.name.endswith(READY)):
        for w in _marked(marker, names):
            asked[w.path.name] = w
    ready = []
    for p in entries:
        if p.name.startswith(".") or p.name.endswith(IGNORED):
            continue
        if p.name in asked:
            ready.append(asked[p.name])
        elif now - p.stat().st_mtime >= quiet:
            ready.append(Waiting(p, None, p.name))
    return sorted(ready, key=lambda w: (_rank(w), w.path.name))


def _marked(marker: Path, names: set[str]) -> list[Waiting]:
    """The files a marker makes ready (those present)."""
    try:
        text = marker.read_text(encoding="utf-8").strip()
        doc = json.loads(text) if text else {}
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    items = doc.get("files") or [{"name": marker.name[: -len(READY)], "table": doc.get("table")}]
    out = []
    for item in items:
        name = str(item.get("name", ""))
        if name in names and "/" not in name:
            out.append(Waiting(marker.parent / name, item.get("table"), str(item.get("file_name") or name)))
    return out


def _rank(w: Waiting) -> int:
    """The place of a file's table in import order (files of no known table last)."""
    order = list(schema.TABLES)
    table = w.table
    if table is None:
        try:
            head = bulk.head(w.path)
            data = head if sniff_format(head, w.file_name) == "csv" else w.path.read_bytes()
        except OSError:
            return len(order)
        columns = list(map(str, peek_columns(data, w.file_name)))
        table = detect_table(columns) or closest_table(columns)
    return order.index(table) if table in order else len(order)


def take(con: duckdb.DuckDBPyConnection, w: Waiting, progress: Callable[[str, float], None] | None = None) -> Report:
    """Import one waiting file, move it to done/ or refused/ and write its report beside it."""
    try:
        res = store.import_file(con, w.path, table=w.table, file_name=w.file_name, progress=progress, by=INBOX_BY)
    except duckdb.TransactionException:
        raise  # a concurrent import touched the same rows: the file stays and is taken again
    except NetzausbauError as exc:
        report = Report(w.file_name, "refused", table=w.table, error=str(exc))
    except Exception as exc:  # a fault of ours: rolled back; the file is kept in refused/ for a person to look at
        log.exception("inbox: importing %s failed", w.path)
        report = Report(w.file_name, "failed", table=w.table,
                        error=f"could not be imported ({type(exc).__name__}: {exc}); nothing of it was stored")
    else:
        report = _imported(w.file_name, res)
    return _file(w, report)


def _imported(name: str, res: store.ImportResult) -> Report:
    rows = []
    if res.rejects is not None and len(res.rejects):  # as JSON takes them: numpy numbers and NaN converted
        rows = json.loads(res.rejects.drop(columns="record").head(SHOWN_REJECTS).to_json(orient="records"))
    if res.duplicate_of is not None:
        status = "unchanged"
    elif res.rows_total and not res.rows_accepted:
        status = "refused"  # every row rejected: nothing of it is in the store (the log and the rejects are)
    else:
        status = "imported"
    return Report(name, status, table=res.table, import_id=res.import_id, rows_total=res.rows_total,
                  rows_accepted=res.rows_accepted, rows_rejected=res.rows_rejected, rows_new=res.rows_new,
                  rows_updated=res.rows_updated, rows_unchanged=res.rows_unchanged,
                  reject_entries=0 if res.rejects is None else len(res.rejects), summary=res.summary(),
                  warnings=list(res.warnings), rejects=rows,
                  error="every row was rejected" if status == "refused" else None)


def _file(w: Waiting, report: Report) -> Report:
    """Move the file to done/ or refused/ (a free name), then write its report beside it; drop its marker."""
    target_dir = w.path.parent / (DONE if report.status in ("imported", "unchanged") else REFUSED)
    target_dir.mkdir(exist_ok=True)
    target = target_dir / w.path.name
    n = 1
    while target.exists() or target.with_name(target.name + REPORT).exists():
        n += 1
        target = target_dir / f"{w.path.stem}.{n}{w.path.suffix}"
    os.replace(w.path, target)
    (w.path.parent / (w.path.name + READY)).unlink(missing_ok=True)
    report.moved_to = str(target)
    report.finished_at = dt.datetime.now().replace(microsecond=0).isoformat()
    tmp = target.with_name(f".{target.name}{REPORT}.part")
    tmp.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, target.with_name(target.name + REPORT))
    return report


def _drop_batch_markers(inbox: Path) -> None:
    """Remove markers whose files have all been taken."""
    names = {p.name for p in inbox.iterdir() if p.is_file()}
    for marker in (p for p in inbox.iterdir() if p.name.endswith(READY) and p.is_file()):
        if not _marked(marker, names):
            marker.unlink(missing_ok=True)


@dataclass
class Status:
    """What the inbox is doing: the file being imported and how far, for the command line's progress."""

    current: str | None = None
    message: str = ""
    fraction: float = 0.0
    taken: int = 0


class Watcher:
    """A thread that takes the inbox's ready files into the store `connect()` returns, every POLL_SECONDS."""

    def __init__(self, inbox: Path, connect: Callable[[], duckdb.DuckDBPyConnection],
                 poll: float = POLL_SECONDS, quiet: float | None = None,
                 claim: Callable[[], AbstractContextManager[bool]] | None = None):
        """`claim()`, when given, is entered before files are taken and says whether this process may take them
        (of several processes serving one PostgreSQL store, one at a time: the others leave them, and look again
        while holding the claim, so that no file is taken twice)."""
        self.inbox, self.connect, self.poll, self.claim = inbox, connect, poll, claim
        self.quiet = quiet_seconds() if quiet is None else quiet
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status = Status()
        self._thread = threading.Thread(target=self._run, name="netzausbau-inbox", daemon=True)

    def start(self) -> Watcher:
        self.inbox.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop looking; an import under way finishes first (up to `timeout`; else it is rolled back at exit)."""
        self._stop.set()
        self._thread.join(timeout)

    def status(self) -> dict:
        with self._lock:
            return asdict(self._status)

    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._status, k, v)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.once()
            except Exception:  # noqa: BLE001 - the watcher keeps going; the next look tries again
                log.warning("inbox: a look into %s failed", self.inbox, exc_info=True)

    def once(self) -> list[Report]:
        """Take every file ready now, in table order; their reports."""
        found = waiting(self.inbox, quiet=self.quiet)
        if not found:
            return []
        if self.claim is None:
            return self._take(found)
        with self.claim() as mine:  # another process may have taken them meanwhile: looked at again
            return self._take(waiting(self.inbox, quiet=self.quiet)) if mine else []

    def _take(self, found: list[Waiting]) -> list[Report]:
        con = self.connect()
        reports = []
        for w in found:
            if self._stop.is_set():
                break
            self._set(current=w.path.name, message="starting", fraction=0.0)
            with con.cursor() as cur:
                try:
                    reports.append(take(cur, w, lambda m, f, self=self: self._set(message=m, fraction=f)))
                except duckdb.TransactionException:
                    log.info("inbox: %s met a concurrent import; taken again at the next look", w.path.name)
            with self._lock:
                self._status = Status(taken=self._status.taken + 1)
        _drop_batch_markers(self.inbox)
        return reports
