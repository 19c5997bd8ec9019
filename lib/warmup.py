"""Ahead of the first view: read what the pages hold in memory per store content, in a background thread.

At 10M complaints the first map view after a start reads the complaints (lib/heldcounts, about 1.5-3 s),
builds the Gi* grids (0.1 s at resolution 7, 0.4-0.8 s at 8) and reads the network (lib/network). The app
starts this when it opens the store (lib/cache), so a planner who opens the map a few seconds later finds
them held; one who comes sooner waits for the same build (lib/kept), not for a second one.
"""

from __future__ import annotations

import logging
import threading

import duckdb

from lib import cells, hotspots, network

log = logging.getLogger(__name__)

RESOLUTIONS = (7, cells.REGION_RES)
"""Grids built ahead: the map's whole-Germany resolution and the rollout's (regions') resolution."""


def warm(con: duckdb.DuckDBPyConnection) -> None:
    """Hold the network, the complaints and their grids at `RESOLUTIONS` for the store behind `con`."""
    cur = con.cursor()
    try:
        network.held(cur)
        for res in RESOLUTIONS:
            hotspots.held_grid(cur, res)
    finally:
        cur.close()


def start(con: duckdb.DuckDBPyConnection) -> threading.Thread:
    """`warm` in a daemon thread; a failure is logged, never raised (the first view then builds it)."""

    def run() -> None:
        try:
            warm(con)
        except Exception:  # noqa: BLE001 - a warm-up must not take the app down; the view reports real errors
            log.warning("warm-up of the held store data failed", exc_info=True)

    thread = threading.Thread(target=run, name="netzausbau-warmup", daemon=True)
    thread.start()
    return thread
