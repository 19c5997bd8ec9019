"""Time the Rollout page's queries on a store and the page itself (AppTest); prints figures, asserts nothing.

    .venv/bin/python bench/rollout.py --db data/netzausbau.duckdb --repeat 5

Each query of `lib.views.rollout` (as the page calls it through `lib.cache`, uncached here) runs `--repeat`
times on a fresh cursor: first run and median in ms. Then the map's JSON and the report's size, and a
whole page run in AppTest: cold (empty caches) and again with the region changed (the page's cached
queries hit, only the region's own ones run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import export, store  # noqa: E402
from lib.views import overview, report, rollout  # noqa: E402
from lib.views import rollout_charts as charts  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, out = [], None  # the first run includes building the Ibis expression
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(1000 * (time.perf_counter() - t))
    return times[0], statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=str(ROOT / "data" / "netzausbau.duckdb"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--level", default="state")
    args = ap.parse_args()
    con = store.connect(args.db)
    day = overview.summary(con).data_as_of.date()
    regions = rollout.regions(con, args.level)
    rid = regions["region_id"].iloc[0]
    print(f"store {args.db}: {store.connect(args.db).execute('SELECT count(*) FROM complaints').fetchone()[0]:,} "
          f"complaints, {con.execute('SELECT count(*) FROM upgrades').fetchone()[0]:,} upgrades; as of {day}")
    queries = {
        "region_table": lambda c: rollout.region_table(c, args.level, day),
        "late_list": lambda c: rollout.late_list(c, args.level, day),
        "series (ALL + 1 region)": lambda c: rollout.series(c, ("ALL", rid), args.level),
        "channel_mix (1 region)": lambda c: rollout.channel_mix(c, args.level, rid, day),
        "impact_table": lambda c: rollout.impact_table(c, args.level, day),
        "shapes": lambda c: rollout.shapes(c, args.level),
    }
    results = {}
    print(f"{'query':28s} {'first ms':>9s} {'median ms':>10s}")
    for name, fn in queries.items():
        first, median, results[name] = timed(lambda fn=fn: fn(con.cursor()), args.repeat)
        print(f"{name:28s} {first:9.0f} {median:10.0f}")
    table = results["region_table"]
    deck = charts.region_map(results["shapes"], table, day, rid).to_json()
    row = table.set_index("region_id").loc["ALL"].to_dict()
    html = report.render(rollout.NETWORK_NAME, day, row, table, results["late_list"],
                         rollout.series(con, ("ALL",), args.level))
    print(f"map JSON {len(deck) / 1e3:,.0f} kB ({len(json.loads(deck)['layers'][0]['data']['features'])} regions); "
          f"report HTML {len(html) / 1e3:,.0f} kB; late list {len(results['late_list']):,} rows")
    sheets = rollout.export_sheets(table, results["late_list"], day)
    first, median, xlsx = timed(lambda: export.xlsx_bytes(sheets), 2)
    print(f"Excel export (region table + network late list) {median:,.0f} ms, {len(xlsx) / 1e3:,.0f} kB")
    con.close()

    from streamlit.testing.v1 import AppTest

    os.environ[store.DB_ENV] = str(Path(args.db).resolve())
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=600)
    t = time.perf_counter()
    at.switch_page("pages/rollout.py").run()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    at.selectbox(key="region").select(rid).run()
    warm = time.perf_counter() - t
    errors = [e.value for e in at.exception]
    print(f"page run (AppTest) cold {cold:.2f} s; region changed {warm:.2f} s; exceptions: {errors or 'none'}")


if __name__ == "__main__":
    main()
