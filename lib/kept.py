"""What is read from the store once per content and kept in memory, shared read-only by every session.

`Kept` maps a content key (a fingerprint query's row) to what was built from that content, keeping the
newest few; `Once` holds what is built once from one such value (a memo). Both are guarded by a lock: the
map, not the data, which is read only (numpy arrays with their write flag off).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    """The last `size` values built by content key, the newest last."""

    def __init__(self, size: int):
        self.size, self._map, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value of `key`, built (outside the lock) when it is not kept."""
        with self._lock:
            if key in self._map:
                self._map.move_to_end(key)
                return self._map[key]
        value = build()
        with self._lock:
            self._map[key] = value
            while len(self._map) > self.size:
                self._map.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._map.clear()


class Once:
    """Values built once by key (what depends on one kept value but not on a date or window)."""

    def __init__(self):
        self._memo, self._lock = {}, threading.Lock()

    def __call__(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = build()  # outside the lock: two may build at once, the first one kept serves both
        with self._lock:
            return self._memo.setdefault(key, value)

    def values(self) -> list:
        with self._lock:
            return list(self._memo.values())
