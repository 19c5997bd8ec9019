"""Arrays built from a store's content, kept in files beside the store so that a new process reads them instead
of building them again.

At 10M complaints a server's start read the complaints into arrays (lib/engine/heldcounts, about 2 s) and found
the serving sites of every place (lib/engine/serving, about 6 s) before the first view. Both depend on the
store's content only, so they are written once, beside the store, and a later start (or a command) with the
same content maps them in. An entry is found by its content key: what the caller read from the store (the
complaints' count and a hash over every column read, say), and the code that builds it (the builder's source
files as imported, and the versions of DuckDB, numpy, scipy and h3: `code`). Any other content, code or
DuckDB builds it anew; a missing, partial or unreadable entry is built anew too, never trusted.

    <store>.kept/<name>-<digest>/   one entry: manifest.json and one .npy per array (the folder: mode 0700)

Each name keeps its newest entry only. Writing is best effort: a store in memory or in a folder this process
cannot write is served as before, from the arrays built in memory. The files hold what the store holds (times,
cells, channels of complaints; no text), with the store's own access; a public server has neither.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".kept"
MANIFEST = "manifest.json"

Arrays = dict[str, np.ndarray]


def store_file(con) -> Path | None:
    """The file of the DuckDB store behind `con`; None for a database in memory or another engine."""
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return None
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    path = row[0][0] if row else None
    return Path(path) if path and path != ":memory:" else None


def folder(store: Path) -> Path:
    """Where the entries of the store file `store` are kept."""
    return store.with_name(store.name + SUFFIX)


def _versions() -> tuple:
    """The libraries that decide what the arrays hold: DuckDB (its hash gives the keys, its SQL the rows),
    numpy, scipy (the servers' search) and h3 (cell centres)."""
    out = [duckdb.__version__, np.__version__]
    for name in ("scipy", "h3"):
        try:
            out.append(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            out.append(None)
    return tuple(out)


VERSIONS = _versions()


def code(*files: str) -> str:
    """A digest of the source `files` that build an entry, with the libraries' versions: call it when the
    builder's module is imported, so that it names the code this process runs (not a newer file on disk)."""
    h = hashlib.sha256(repr((FORMAT, VERSIONS)).encode())
    for f in sorted(files):
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def digest(name: str, key: tuple, code: str) -> str:
    """The entry's name part for the content `key` built by `code` (a `code()` digest)."""
    return hashlib.sha256(repr((name, tuple(key), code)).encode()).hexdigest()[:24]


def get(con, name: str, key: tuple, build: Callable[[], Arrays], code: str) -> Arrays:
    """The arrays of `name` for the content `key`: read from the store's kept files when an entry of this key
    and code (a `code()` digest) is there, else `build()` and kept there for the next process. Read-only arrays
    either way."""
    store = store_file(con)
    if store is None:
        return _frozen(build())
    entry = folder(store) / f"{name}-{digest(name, key, code)}"
    arrays = _read(entry)
    if arrays is not None:
        log.info("%s read from %s", name, entry)
        return arrays
    arrays = _frozen(build())
    _write(entry, arrays)
    return arrays


def _frozen(arrays: Arrays) -> Arrays:
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def _read(entry: Path) -> Arrays | None:
    """The arrays of a complete entry (mapped in, read-only), or None: missing, partial or unreadable."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        out = {}
        for name, (dtype, shape) in manifest["arrays"].items():
            a = np.asarray(np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False))
            if a.dtype != np.dtype(dtype) or list(a.shape) != shape:
                raise ValueError(f"{name}: {a.dtype}{a.shape}, the manifest says {dtype}{shape}")
            out[name] = a
        return _frozen(out)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is built again, never trusted
        log.warning("kept arrays at %s cannot be read (%s): built again", entry, exc)
        return None


def _write(entry: Path, arrays: Arrays) -> None:
    """Keep `arrays` as `entry` (written aside, then renamed: a reader sees all of it or none), and drop the
    older entries of its name. A failure is logged, never raised."""
    base = entry.parent
    tmp = None
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".writing-", dir=base))
        for name, a in arrays.items():
            _synced(tmp / f"{name}.npy", lambda f, a=a: np.save(f, np.ascontiguousarray(a), allow_pickle=False))
        manifest = {"arrays": {name: [a.dtype.str, list(a.shape)] for name, a in arrays.items()}}
        _synced(tmp / MANIFEST, lambda f: f.write(json.dumps(manifest).encode()))  # last: without it, no entry
        if entry.exists():  # damaged (`_read` refused it): replaced
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.rename(tmp, entry)
        except OSError:  # another process kept the same entry in the meantime: theirs serves
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
        prefix = entry.name.rsplit("-", 1)[0] + "-"
        stale = time.time() - 3600  # what a process killed while writing left
        for old in base.iterdir():
            if ((old.name.startswith(prefix) and old.name != entry.name)
                    or (old.name.startswith(".writing-") and old.stat().st_mtime < stale)):
                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        log.info("arrays not kept at %s: %s", entry, exc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _synced(path: Path, write: Callable) -> None:
    """`write(f)` to a new binary file at `path`, on the disk before this returns."""
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
