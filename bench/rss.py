"""Peak resident memory of this process and all its descendants, sampled from /proc."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_rss(pid: int | None = None) -> int:
    """Resident bytes of `pid` (default: this process) and every descendant, now."""
    total, todo = 0, [pid or os.getpid()]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
        todo += _children(p)
    return total


class TreePeak:
    """Context manager: samples `tree_rss` every `interval` seconds; `.peak` holds the largest (bytes).

    ru_maxrss is no use for spawned workers: Linux keeps a process's maxrss across
    execve, so a worker started by a 4 GB parent reports 4 GB before it does anything.
    """

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        self.peak = tree_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss())
