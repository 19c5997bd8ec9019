"""A count of the writes this process has committed to a store (imports, derived tables): what keeps a store's
version in memory (lib/cache) reads it again only when this count has moved, instead of asking the store on
every cached call. No other process can write a store this process holds open (DuckDB excludes it), and a
store replaced on disk is opened as a new connection, so the count sees every change a reader could miss.

No database and no streamlit here: lib/store and lib/engine/derive call `bump` after each commit.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_now = 0


def bump() -> None:
    """Say that a write to a store was committed (call after the commit, never before)."""
    global _now
    with _LOCK:
        _now += 1


def now() -> int:
    """The number of the last committed write (0 before any)."""
    return _now
