"""Ahead of the first view: read what the pages hold in memory per store content, in a background thread.

At 10M complaints the first map view after a start reads the complaints (lib/engine/heldcounts, about 1.5-3 s),
builds the Gi* grids (0.1 s at resolution 7, 0.4-0.8 s at 8), reads the network (lib/engine/network) and finds
the serving sites of every place with complaints (lib/engine/serving, about 6 s at 10M complaints). The app
starts this when it opens the store (lib/cache), and then makes the view each page opens with
(`cache.warm_pages`), so a planner who opens a page once the warm-up is done (the server logs "warm-up done")
finds them held; one who comes sooner waits for the same build (lib/engine/kept), not for a second one. The
complaints' arrays and the servers are kept in files beside the store (lib/engine/keptfiles): a later start
with the same content reads them (at 10M complaints about 0.3 s instead of 9).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import duckdb

from lib import cells
from lib.engine import hotspots, network, serving

log = logging.getLogger(__name__)

RESOLUTIONS = (7, cells.REGION_RES)
"""Grids built ahead: the map's whole-Germany resolution and the rollout's (regions') resolution."""


Steps = tuple[tuple[str, Callable[[], object]], ...]


def warm(con: duckdb.DuckDBPyConnection, also: Steps = ()) -> dict[str, float]:
    """Hold the network, the complaints, their grids at `RESOLUTIONS` and their serving sites for the store
    behind `con`; then run each of `also` ((name, function): what the pages read besides the store, such as
    the towns). Returns the seconds of each step, by name (the server logs them)."""
    took: dict[str, float] = {}

    def step(name: str, f: Callable[[], object]):
        began = time.monotonic()
        out = f()
        took[name] = time.monotonic() - began
        return out

    cur = con.cursor()
    try:
        net = step("network", lambda: network.held(cur))
        for i, res in enumerate(RESOLUTIONS):  # the first also reads the complaints
            step(f"complaints, grid {res}" if i == 0 else f"grid {res}", lambda res=res: hotspots.held_grid(cur, res))
        step("servers", lambda: serving.served_load(cur, net))
    finally:
        cur.close()
    for name, f in also:
        step(name, f)
    return took


_RUNNING: set[threading.Thread] = set()  # warm-ups not yet finished (`wait`)
_RUNNING_LOCK = threading.Lock()


def start(con: duckdb.DuckDBPyConnection, also: Steps = ()) -> threading.Thread:
    """`warm` in a daemon thread; a failure is logged, never raised (the first view then builds it)."""

    def run() -> None:
        began = time.monotonic()
        try:
            took = warm(con, also)
            log.info("warm-up done in %.1f s (%s)", time.monotonic() - began,
                     ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items()))
        except Exception:  # noqa: BLE001 - a warm-up must not take the app down; the view reports real errors
            log.warning("warm-up of the held store data failed", exc_info=True)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(threading.current_thread())

    thread = threading.Thread(target=run, name="netzausbau-warmup", daemon=True)
    with _RUNNING_LOCK:
        _RUNNING.add(thread)
    thread.start()
    return thread


def wait(timeout: float = 60.0) -> None:
    """Wait for every running warm-up: before its connection is closed (DuckDB refuses to close a connection
    whose cursor is running a query), and between tests."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for thread in running:
        thread.join(timeout)
