"""Engine benchmark: import, derive, query latency, map payload, memory, and a GeoPandas baseline.

    python bench/engine.py --complaints 1000000 [--complaints 10000000] [--repeat 20] [--sites 30000] [--out DIR]

Prints one table per size and writes <out>/engine-<size>.json (default bench/out/). It never asserts a
timing; the only check is that our answers agree with the baseline's (printed). Two ratios against the
GeoPandas baseline, each like with like: end to end (from the same complaints CSV and regions file to
the same answers: our import of both plus our counts, against the baseline's read, sjoin, h3 and
group-bys) and the query alone (the counts on data each side has prepared once: our counts on the
store, against the baseline's own group-bys on its joined frame and its cell column).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if __name__ != "__mp_main__":  # the import's spawned workers run this script again under that name and need
    # none of this (they import lib.ingest.bulk themselves): without it each starts in 0.6 s instead of 1.8
    import duckdb
    import geopandas as gpd
    import h3
    import numpy as np
    import pandas as pd
    from rss import TreePeak

    from lib import cells, demo, store
    from lib.engine import asof, hotspots, linkage, progress
    from lib.views import mapdraw, maps, overview, rollout

OUT = ROOT / "bench" / "out"
SITES = 30_000
FILES = ("regions", "sites", "transport_links", "upgrades", "complaints")
"""The input files imported, in order (the demo also writes a baseline plan, which this benchmark leaves out)."""
LEVEL = "state"


def size_label(n: int) -> str:
    """1000000 -> 1m, 200000 -> 200k."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def clock(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def latency(con: duckdb.DuckDBPyConnection, fn, repeat: int) -> dict:
    """Median and p95 (ms) of `fn(cursor, i)` over `repeat` runs (i = 0, 1, ...), each on a fresh con.cursor()."""
    times = []
    for i in range(repeat):
        cur = con.cursor()
        try:
            times.append(clock(fn, cur, i)[0] * 1000)
        finally:
            cur.close()
    return {"median_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)), "runs": repeat}


def build_files(n: int, out: Path, sites: int) -> dict[str, Path]:
    """Demo input files for n complaints in <out>/files-<size>/, generated once: table -> path."""
    folder = out / f"files-{size_label(n)}-{size_label(sites)}s" if sites != SITES else out / f"files-{size_label(n)}"
    paths = {name: folder / f"{name}.{'geojson' if name == 'regions' else 'csv'}" for name in FILES}
    if not all(p.exists() for p in paths.values()):
        print(f"generating demo files for {n:,} complaints in {folder} ...", file=sys.stderr)
        written = demo.build_demo_files(folder, sites=sites, complaints=n)
        assert all(written[name] == path for name, path in paths.items()), written
    return paths


def import_all(paths: dict[str, Path], db: Path) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """Import every file into a fresh store; seconds per table and rows accepted/rejected."""
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    con = store.connect(db)
    out = {}
    for table, path in paths.items():
        secs, res = clock(store.import_file, con, path, table=table, today=demo.DEMO_AS_OF)
        out[table] = {"seconds": secs, "accepted": res.rows_accepted, "rejected": res.rows_rejected}
    return con, out


def page_latencies(con: duckdb.DuckDBPyConnection, repeat: int) -> dict:
    """The queries the pages make. Those that take a date get a new one each run (a week earlier each time),
    as a planner moving the map's slider does: no cached answer, only the compiled SQL is reused."""
    day = demo.DEMO_AS_OF

    def back(i: int) -> dt.date:
        return day - dt.timedelta(days=7 * i)

    def window_hotspots(c, i):
        return hotspots.hotspots(c, 7, *asof.window(back(i), asof.WINDOW_DAYS), "capacity")

    drawn = {i: window_hotspots(con, i)[["cell", "significant"]] for i in range(repeat)}  # the cells a view draws
    drawn = {i: h.loc[h["significant"], ["cell"]] for i, h in drawn.items()}

    return {
        "map: hotspots as of a date (Gi*, 90 days, res 7)": latency(con, window_hotspots, repeat),
        "map: relief of the drawn cells as of a date": latency(
            con, lambda c, i: linkage.relief(c, drawn[i], 7, back(i)), repeat),
        "map: sites as of a date": latency(con, lambda c, i: asof.sites_as_of(c, back(i)), repeat),
        "map: links as of a date": latency(con, lambda c, i: asof.links_as_of(c, back(i)), repeat),
        "region_table(state)": latency(con, lambda c, i: overview.region_table(c, LEVEL), repeat),
        "progress_series(['11'])": latency(con, lambda c, i: progress.progress_series(c, ["11"], LEVEL, "week"),
                                           repeat),
        "hotspots(res=7)": latency(con, lambda c, i: hotspots.hotspots(c, res=7, kind="capacity"), repeat),
        "map view, Germany, as of a date": latency(con, lambda c, i: mapdraw.fitted(c, maps.Params(as_of=back(i))),
                                                   repeat),
        "rollout region_table, as of a date": latency(con, lambda c, i: rollout.region_table(c, LEVEL, back(i)),
                                                      repeat),
        "rollout impact, every region, both kinds, as of a date": latency(
            con, lambda c, i: rollout.impact_table(c, LEVEL, back(i)), repeat),
    }


def derive(con: duckdb.DuckDBPyConnection) -> dict:
    """Hotspots (res 8, capacity) + relief of the hot cells + weekly progress per state."""
    t_hot, hot = clock(hotspots.hotspots, con, res=8, kind="capacity")
    hot_cells = hot.loc[hot["hot"], "cell"]
    t_rel, rel = clock(linkage.relief, con, hot_cells, res=8, as_of=demo.DEMO_AS_OF)
    t_prog, prog = clock(progress.progress_series, con, level=LEVEL, freq="week")
    return {"hotspots_s": t_hot, "relief_s": t_rel, "progress_s": t_prog, "total_s": t_hot + t_rel + t_prog,
            "hot_cells": int(len(hot_cells)), "relief_rows": int(len(rel)), "progress_rows": int(len(prog))}


def map_payload(con: duckdb.DuckDBPyConnection) -> dict:
    """The zoomed-out map payload: Germany's res-7 hotspots as JSON records (cell hex, n, z)."""
    frame = hotspots.hotspots(con, res=7, kind="capacity")
    records = [{"cell": h3.int_to_str(int(c)), "n": int(n), "z": round(float(z), 3)}
               for c, n, z in zip(frame["cell"], frame["n"], frame["z"], strict=True)]
    body = json.dumps(records, separators=(",", ":")).encode()
    return {"bytes": len(body), "features": len(records)}


def region_sql(assign: bool = False) -> str:
    """Complaints per state by cell membership; with `assign`, each complaint's state instead."""
    sql = f"""
SELECT rc.region_id, count(*) AS n FROM complaints k
JOIN region_cells rc ON rc.cell = {cells.parent_sql("k.cell", cells.REGION_RES)}
JOIN regions r ON r.region_id = rc.region_id AND r.level = '{LEVEL}'
GROUP BY rc.region_id ORDER BY rc.region_id"""
    return sql.split("GROUP BY")[0].replace("rc.region_id, count(*) AS n", "k.complaint_id, rc.region_id") \
        if assign else sql


def ours(con: duckdb.DuckDBPyConnection) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Our path for the baseline's answers: complaints per state (cell membership), per res-8 cell."""
    t_reg, by_region = clock(lambda: con.execute(region_sql()).df())
    t_cell, by_cell = clock(hotspots.cell_counts, con, 8)
    return {"region_s": t_reg, "cell_s": t_cell, "total_s": t_reg + t_cell}, by_region, by_cell


def baseline(paths: dict[str, Path]) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What an analyst writes: GeoPandas points, sjoin with the state polygons, pandas group-bys,
    h3 per point in a list comprehension. The res-8 cell is the parent of the point's res-9 cell:
    the store's definition (a point's res-8 cell is not always the parent of its res-9 cell).
    `query_s` is the two group-bys alone, on the frames the baseline has prepared (its query)."""
    t = {}
    t["read_csv_s"], df = clock(pd.read_csv, paths["complaints"], usecols=["complaint_id", "lat", "lon"])
    t0 = time.perf_counter()
    regions = gpd.read_file(paths["regions"])
    regions = regions[regions["level"] == LEVEL][["region_id", "geometry"]]
    points = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")
    joined = gpd.sjoin(points, regions.to_crs(points.crs), how="inner", predicate="within")
    t_reg, by_region = clock(lambda: joined.groupby("region_id").size().rename("n").reset_index())
    t["sjoin_groupby_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    df["cell"] = [h3.str_to_int(h3.cell_to_parent(h3.latlng_to_cell(la, lo, 9), 8))
                  for la, lo in zip(df["lat"], df["lon"], strict=True)]
    t_cell, by_cell = clock(lambda: df.groupby("cell").size().rename("n").reset_index())
    t["h3_groupby_s"] = time.perf_counter() - t0
    t["total_s"] = sum(t.values())
    t["query_s"] = t_reg + t_cell
    return t, by_region, by_cell, joined[["complaint_id", "region_id"]]


def agreement(con, base_region, base_cell, base_assign, our_region, our_cell, df_points) -> dict:
    """How far the two answers agree: per complaint region, per region count, per cell count."""
    ours_assign = con.execute(region_sql(assign=True)).df()
    a = base_assign.drop_duplicates("complaint_id").set_index("complaint_id")["region_id"]
    b = ours_assign.set_index("complaint_id")["region_id"]
    both = pd.concat([a.rename("base"), b.rename("ours")], axis=1)
    differ = int((both["base"].fillna("-") != both["ours"].fillna("-")).sum())
    reg = pd.merge(base_region, our_region, on="region_id", how="outer", suffixes=("_base", "_ours")).fillna(0)
    rel = (reg["n_base"] - reg["n_ours"]).abs() / reg["n_base"].clip(lower=1)
    cel = pd.merge(base_cell, our_cell, on="cell", how="outer", suffixes=("_base", "_ours")).fillna(0)
    direct8 = cells.latlng_to_cells(df_points["lat"], df_points["lon"], 8)
    via9 = cells.parent(cells.latlng_to_cells(df_points["lat"], df_points["lon"], 9), 8)
    return {"complaints_region_differs": differ, "share_region_differs": differ / max(len(both), 1),
            "max_region_rel_diff": float(rel.max()), "cells_base": len(base_cell), "cells_ours": len(our_cell),
            "cells_equal": bool((cel["n_base"] == cel["n_ours"]).all()),
            "share_res8_cell_not_parent_of_res9": float((direct8 != via9).mean())}


def run(n: int, repeat: int, out: Path = OUT, sites: int = SITES) -> dict:
    """Every figure for one size."""
    out.mkdir(parents=True, exist_ok=True)
    paths = build_files(n, out, sites)
    with TreePeak() as peak:  # this process and its import workers, sampled: our side before the baseline runs
        con, imp = import_all(paths, out / f"store-{size_label(n)}.duckdb")
        res = {"complaints": n, "sites": sites, "repeat": repeat, "import": imp,
               "import_total_s": sum(v["seconds"] for v in imp.values()), "derive": derive(con)}
        res["latency"] = page_latencies(con, repeat)
        res["payload_res7"] = map_payload(con)
        res["ours"], our_region, our_cell = ours(con)
    res["peak_tree_ours_mb"] = peak.peak / 2**20
    res["peak_rss_ours_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["baseline"], base_region, base_cell, base_assign = baseline(paths)
    res["ours"]["end_to_end_s"] = imp["regions"]["seconds"] + imp["complaints"]["seconds"] + res["ours"]["total_s"]
    res["ratio_end_to_end"] = res["baseline"]["total_s"] / res["ours"]["end_to_end_s"]
    res["ratio_query"] = res["baseline"]["query_s"] / res["ours"]["total_s"]
    points = pd.read_csv(paths["complaints"], usecols=["lat", "lon"])
    res["agreement"] = agreement(con, base_region, base_cell, base_assign, our_region, our_cell, points)
    con.close()
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def table(r: dict) -> str:
    """The figures of one size as an aligned plain-text table."""
    rows = [("import + derive (target 30 s)", f"{r['import_total_s'] + r['derive']['total_s']:.1f} s"),
            ("import total (5 files, CSV -> store)", f"{r['import_total_s']:.1f} s")]
    for t, v in r["import"].items():
        rows.append((f"  import {t}", f"{v['seconds']:.1f} s ({v['accepted']:,} rows, {v['rejected']:,} rejected)"))
    d = r["derive"]
    rows += [("derive total", f"{d['total_s']:.2f} s"),
             ("  hotspots(res 8, capacity)", f"{d['hotspots_s']:.2f} s ({d['hot_cells']:,} hot cells)"),
             ("  relief(hot cells)", f"{d['relief_s']:.2f} s ({d['relief_rows']:,} rows)"),
             ("  progress_series(state, week)", f"{d['progress_s']:.2f} s ({d['progress_rows']:,} rows)")]
    for q, v in r["latency"].items():
        rows.append((f"query {q}", f"median {v['median_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms ({v['runs']} runs)"))
    p = r["payload_res7"]
    rows.append(("map payload res 7 (JSON)", f"{p['bytes'] / 1024:.0f} KiB, {p['features']:,} cells"))
    rows.append(("peak memory, ours (import, derive, queries)", f"{r['peak_tree_ours_mb']:.0f} MB, this process "
                 f"and its import workers together (target 4 GB)"))
    rows.append(("peak RSS, whole process incl. baseline", f"{r['peak_rss_mb']:.0f} MB"))
    o, b, a = r["ours"], r["baseline"], r["agreement"]
    rows += [("end to end, ours: import regions + complaints, counts", f"{o['end_to_end_s']:.1f} s"),
             ("end to end, baseline: GeoPandas + h3 per point", f"{b['total_s']:.1f} s (read CSV "
              f"{b['read_csv_s']:.1f}, sjoin {b['sjoin_groupby_s']:.1f}, h3 {b['h3_groupby_s']:.1f})"),
             ("ratio end to end, baseline / ours", f"{r['ratio_end_to_end']:.1f}x"),
             ("query alone, ours: per-state + per-cell counts", f"{o['total_s']:.3f} s (region {o['region_s']:.3f}, "
              f"cell {o['cell_s']:.3f})"),
             ("query alone, baseline: its two group-bys", f"{b['query_s']:.3f} s"),
             ("ratio query alone, baseline / ours", f"{r['ratio_query']:.1f}x"),
             ("region differs (cells vs polygons)", f"{a['complaints_region_differs']:,} complaints "
              f"({a['share_region_differs']:.3%}); max per-state diff {a['max_region_rel_diff']:.3%}"),
             ("res-8 cell counts equal", f"{a['cells_equal']} ({a['cells_ours']:,} cells)"),
             ("  res-8 cell of point != parent of res-9", f"{a['share_res8_cell_not_parent_of_res9']:.3%}")]
    width = max(len(k) for k, _ in rows)
    head = f"== {r['complaints']:,} complaints, {r['sites']:,} sites =="
    return "\n".join([head, *(f"{k:<{width}}  {v}" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--complaints", type=int, action="append", help="complaints per size (repeatable)")
    p.add_argument("--repeat", type=int, default=20, help="runs per query latency")
    p.add_argument("--sites", type=int, default=SITES, help=f"sites of the generated network (default {SITES:,})")
    p.add_argument("--out", type=Path, default=OUT, help="folder for files, stores and results (default bench/out)")
    args = p.parse_args(argv)
    for n in args.complaints or [1_000_000]:
        started = time.perf_counter()
        res = run(n, args.repeat, args.out, args.sites)
        res.update(date=dt.date.today().isoformat(), wall_s=time.perf_counter() - started,
                   machine=f"{platform.machine()}, {platform.python_version()}, duckdb {duckdb.__version__}")
        result = args.out / f"engine-{size_label(n)}.json"
        result.write_text(json.dumps(res, indent=2, default=str))
        print(table(res), flush=True)
        print(f"(wall {res['wall_s']:.0f} s incl. file generation; JSON in {result})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
