"""What is read from the store once per content and kept in memory, shared read-only by every session.

`Kept` maps a content key (a fingerprint query's row) to what was built from that content, keeping the
newest few; `Once` holds what is built once from one such value (a memo). A value is built once: a second
caller asking for a key being built waits for it (the first view after a start may find the warm-up,
lib/warmup, half way), and a build that fails leaves the next caller to build it. A lock guards the map,
not the data, which is read only (numpy arrays with their write flag off).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    """The last `size` values built by key (None: all of them), the newest last."""

    def __init__(self, size: int | None):
        self.size, self._map, self._lock = size, OrderedDict(), threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value of `key`, built when it is not kept (outside the map's lock, under the key's own)."""
        with self._lock:
            if key in self._map:
                self._map.move_to_end(key)
                return self._map[key]
            mine = self._building.setdefault(key, threading.Lock())
        with mine:  # one build per key at a time: who comes second waits, then finds the value
            with self._lock:
                if key in self._map:
                    self._map.move_to_end(key)
                    return self._map[key]
            value = build()  # when it fails, the key's lock stays: who waits, or comes next, builds under it
            with self._lock:
                self._map[key] = value
                while self.size is not None and len(self._map) > self.size:
                    self._map.popitem(last=False)
                if self._building.get(key) is mine:
                    del self._building[key]
        return value

    def values(self) -> list:
        with self._lock:
            return list(self._map.values())

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._map.clear()


class Once(Kept):
    """Values built once by key (what depends on one kept value but not on a date or window): `once(key, build)`."""

    def __init__(self):
        super().__init__(None)

    def __call__(self, key: Hashable, build: Callable[[], T]) -> T:
        return self.get(key, build)
