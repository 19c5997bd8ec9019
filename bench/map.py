"""Map benchmark: the whole-Germany planner map view, payload and build time, against a naive baseline.

    python bench/map.py STORE.duckdb [--repeat 10] [--baseline-repeat 3]

Builds the Planner map's default view of all of Germany (every layer, default filters, as of the
store's data date) the way the page does on a cache miss: `mapdraw.fitted` (queries, filters, feature
budget, payload check) and the Deck JSON the browser receives. The baseline, measured in the same
run, ships what a straightforward page would: every resolution-9 cell with a complaint in the same
window (with its relief status), every site and every link, in pydeck's own (indented) JSON. Prints
figures; asserts no timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pydeck as pdk  # noqa: E402

from lib import basemap  # noqa: E402
from lib.engine import asof  # noqa: E402
from lib.views import mapdraw, maps, overview  # noqa: E402


def ours(con: duckdb.DuckDBPyConnection, p: maps.Params) -> tuple[maps.View, str]:
    """The page's cache-miss path: the fitted view and its Deck JSON."""
    v = mapdraw.fitted(con, p)
    return v, mapdraw.deck(v).to_json()


def baseline(con: duckdb.DuckDBPyConnection, p: maps.Params) -> tuple[dict, str]:
    """Every res-9 cell with complaints (relief included), all sites and links, pydeck's default JSON."""
    hot = asof.hotspots_as_of(con, p.as_of, p.window_days, 9, p.kind)
    hot = hot[hot["n"] > 0].assign(significance=lambda h: maps.significance(h))
    sites, links = asof.sites_as_of(con, p.as_of), asof.links_as_of(con, p.as_of)
    layers = [
        pdk.Layer("H3HexagonLayer", id="hotspots", data=mapdraw.hotspot_records(hot), get_hexagon="id",
                  get_fill_color="c", pickable=True),
        pdk.Layer("ScatterplotLayer", id="sites", data=mapdraw.site_records(sites), get_position="p",
                  get_fill_color="c", pickable=True),
        pdk.Layer("LineLayer", id="links", data=mapdraw.link_records(links.dropna(subset=["a_lat", "b_lat"])),
                  get_source_position="a", get_target_position="b", get_color="c", pickable=True),
    ]
    d = pdk.Deck(layers=layers, **basemap.deck_args())
    return {"hotspots": len(hot), "sites": len(sites), "links": len(links)}, d.to_json()


def timed(fn, repeat: int):
    """(median s, p95 s, first s, last result) over `repeat` calls."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), float(np.percentile(times, 95)), times[0], out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("store", type=Path, help="a store file (e.g. bench/out/store-1m.duckdb)")
    a.add_argument("--repeat", type=int, default=10, help="runs of our view")
    a.add_argument("--baseline-repeat", type=int, default=3, help="runs of the baseline")
    args = a.parse_args(argv)
    con = duckdb.connect(str(args.store), read_only=True)
    info = overview.summary(con)
    p = maps.Params(as_of=info.data_as_of.date())
    o_med, o_p95, o_first, (v, o_json) = timed(lambda: ours(con, p), args.repeat)
    every = dataclasses.replace(p, significant_only=False, site_statuses=asof.SITE_STATUSES,
                                link_states=asof.LINK_STATES)
    w_med, w_p95, _, (w, w_json) = timed(lambda: ours(con, every), max(1, args.repeat // 2))
    b_med, b_p95, b_first, (b_counts, b_json) = timed(lambda: baseline(con, p), args.baseline_repeat)
    drawn = {k: len(f) for k, f in v.layers.items()}
    rows = [
        ("store", f"{args.store} ({info.counts['complaints']:,} complaints, {info.counts['sites']:,} sites, "
                  f"{info.counts['transport_links']:,} links), as of {p.as_of}"),
        ("ours: features drawn", f"{v.features + len(v.outlines):,} (hotspots res {p.resolution} "
                                 f"{drawn['hotspots']:,}, sites {drawn['sites']:,}, links {drawn['links']:,}, "
                                 f"outlines {len(v.outlines)}); limit {maps.MAX_FEATURES:,}"),
        ("ours: left out by the budget", ", ".join(f"{k} {t - d:,}" for k, (d, t) in v.capped.items()) or "none"),
        ("ours: Deck JSON", f"{len(o_json.encode()) / 1e6:.2f} MB; limit {maps.MAX_BYTES / 1e6:.0f} MB"),
        ("ours: build, cache miss", f"median {o_med:.2f} s, p95 {o_p95:.2f} s, first {o_first:.2f} s "
                                    f"({args.repeat} runs)"),
        ("ours, every cell/site/link on", f"{w.features + len(w.outlines):,} features drawn of "
                                          f"{sum(w.totals.values()) + len(w.outlines):,} ("
                                          + ", ".join(f"{k} {d:,} of {t:,}" for k, (d, t) in w.capped.items())
                                          + f"); {len(w_json.encode()) / 1e6:.2f} MB; build median {w_med:.2f} s, "
                                          f"p95 {w_p95:.2f} s"),
        ("baseline: features", f"{sum(b_counts.values()):,} (res-9 cells {b_counts['hotspots']:,}, sites "
                               f"{b_counts['sites']:,}, links {b_counts['links']:,})"),
        ("baseline: Deck JSON", f"{len(b_json.encode()) / 1e6:.2f} MB"),
        ("baseline: build", f"median {b_med:.2f} s, p95 {b_p95:.2f} s, first {b_first:.2f} s "
                            f"({args.baseline_repeat} runs)"),
        ("ratio baseline / ours", f"payload {len(b_json.encode()) / len(o_json.encode()):.1f}x, "
                                  f"features {sum(b_counts.values()) / (v.features + len(v.outlines)):.1f}x, "
                                  f"build {b_med / o_med:.1f}x"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {val}" for k, val in rows))
    json.loads(o_json)  # both payloads are valid JSON
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
