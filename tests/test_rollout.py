"""lib/views/rollout, rollout_charts and report on tests/worlds.py's hand-built world, whose answers are
worked out by hand below.

The world: regions W and E; U1 (site S1 in W, planned on air 2025-04-01, on air 2025-04-10, no link),
U2 (S2 in W, planned 2025-05-01, not on air, waits on link L1: planned 2025-06-01, not done),
U3 (S3 in E, planned 2025-04-01, on air 2025-04-02, link L2 done 2025-03-20). Complaints: K1 (W, hotline,
2025-01-05), K2 (W, app, 2025-01-06), K3 (E, crowd list, 2025-02-05).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import numpy as np
import openpyxl
import pandas as pd
import pytest

from lib import basemap, cells, engine, export, store
from lib.engine import asof, network
from lib.views import report, rollout
from lib.views import rollout_charts as charts

D = dt.date



@pytest.fixture
def world_con(world_store):
    """The tiny world on a DuckDB file and on a PostgreSQL server in turn."""
    return world_store

def _row(table: pd.DataFrame, rid: str) -> dict:
    return table.set_index("region_id").loc[rid].to_dict()


def test_region_table_figures(world_con):
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    assert t["region_id"].tolist() == ["ALL", "E", "W"]  # the network first, then by name
    assert t["name"].tolist() == [rollout.NETWORK_NAME, "East", "West"]
    w, e, a = _row(t, "W"), _row(t, "E"), _row(t, "ALL")
    assert (w["total"], w["on_air"], w["pct_on_air"], w["late"], w["blocked"]) == (2, 1, 50.0, 1, 1)
    assert (e["total"], e["on_air"], e["pct_on_air"], e["late"], e["blocked"]) == (1, 1, 100.0, 0, 0)
    assert (a["total"], a["on_air"], a["late"], a["blocked"]) == (3, 2, 1, 1)
    assert a["pct_on_air"] == pytest.approx(200 / 3)
    # W: one upgrade on air in the 90 days up to 2025-05-15, one left: 90 days at that pace
    assert w["forecast"] == D(2025, 5, 15) + dt.timedelta(days=90)
    assert w["forecast_low"] < w["forecast"] < w["forecast_high"]
    assert e["forecast"] is None and e["forecast_note"].startswith("complete")
    # the sparkline: month ends from 2024-05-31 to 2025-04-30, then the as-of day
    assert len(w["trend"]) == rollout.TREND_MONTHS + 1
    assert w["trend"][-2:] == [50.0, 50.0] and w["trend"][0] == 0.0


def test_change_over_30_days(world_con):
    t = rollout.region_table(world_con, "state", D(2025, 4, 5))
    a, w = _row(t, "ALL"), _row(t, "W")
    # on 2025-03-06 nothing was on air; on 2025-04-05 U3 was (U1 came on 04-10)
    assert a["pct_change_pp"] == pytest.approx(100 / 3)
    assert (w["on_air"], w["pct_change_pp"], w["late"]) == (0, 0.0, 1)  # U1 due 04-01, not on air yet


@pytest.mark.parametrize(("as_of", "days", "problem"), [
    (D(2025, 5, 15), 14, rollout.PROBLEM_BOTH),  # 14 days past U2's planned on-air date; L1 due after it
    (D(2025, 6, 10), 40, rollout.PROBLEM_BOTH),  # 40 days past U2's date (L1 only 9 days past its own)
    (D(2025, 4, 20), None, None),  # U2 neither installed nor due yet: not blocked, not late
])
def test_late_list(world_con, as_of, days, problem):
    late = rollout.late_list(world_con, "state", as_of)
    if days is None:
        assert late.empty
        return
    assert late.columns.tolist() == rollout.LATE_COLUMNS
    assert late["upgrade_id"].tolist() == ["U2"]
    row = late.iloc[0].to_dict()
    assert (row["region_id"], row["region"], row["days_late"], row["problem"]) == ("W", "West", days, problem)
    assert (row["link_id"], row["link_due"], row["on_air_planned"]) == ("L1", D(2025, 6, 1), D(2025, 5, 1))


def test_blocked_before_it_is_late(world_con):
    """U2 installed on 2025-04-15 waits on L1, due 2025-06-01, after U2's own date: blocked, 0 days late."""
    world_con.execute("UPDATE upgrades SET installed_actual = DATE '2025-04-15' WHERE upgrade_id = 'U2'")
    late = rollout.late_list(world_con, "state", D(2025, 4, 20))
    assert late[["upgrade_id", "days_late", "problem"]].values.tolist() == [["U2", 0, rollout.PROBLEM_BLOCKED]]


def test_late_list_sorted_by_days_late_with_owners(world_con):
    world_con.execute("UPDATE upgrades SET on_air_actual = NULL, owner = '=HYPERLINK(1)' WHERE upgrade_id = 'U1'")
    world_con.execute("UPDATE transport_links SET owner = 'Team Nord' WHERE link_id = 'L1'")
    late = rollout.late_list(world_con, "state", D(2025, 5, 15))
    assert late["upgrade_id"].tolist() == ["U1", "U2"]  # 44 days late, then 14
    assert late["days_late"].tolist() == [44, 14]
    assert late["upgrade_owner"].tolist()[0] == "=HYPERLINK(1)"
    assert late["link_owner"].tolist()[1] == "Team Nord"
    sheets = rollout.export_sheets(rollout.region_table(world_con, "state", D(2025, 5, 15)), late, D(2025, 5, 15))
    book = openpyxl.load_workbook(io.BytesIO(export.xlsx_bytes(sheets)))
    rows = list(book["late_blocked"].values)
    col = rows[0].index("upgrade_owner")
    assert rows[1][col] == "'=HYPERLINK(1)"  # escaped: a spreadsheet shows it, never runs it
    assert "trend" not in book["regions"][1][0].value and [c.value for c in book["regions"][1]][-1] == "as_of"
    assert "'=HYPERLINK(1)" in export.csv_bytes(sheets["late_blocked"]).decode("utf-8-sig")


def test_the_region_export_holds_the_figures_rounded_as_the_page_shows_them(world_con):
    table = rollout.region_table(world_con, "state", D(2025, 5, 15))
    table.loc[0, ["pct_on_air", "pct_change_pp"]] = [100 / 3, -2 / 3]
    sheet = rollout.export_sheets(table, rollout.late_list(world_con, "state", D(2025, 5, 15)), D(2025, 5, 15))
    text = export.csv_bytes(sheet["regions"]).decode("utf-8-sig")
    first = pd.read_csv(io.StringIO(text)).iloc[0]
    assert first["pct_on_air"] == 33.3 and first["pct_change_pp"] == -0.7
    assert "33.33" not in text and "0.666" not in text


def test_upgrade_outside_every_region_is_listed_without_one(world_con):
    world_con.execute("UPDATE sites SET cell = 0 WHERE site_id = 'S2'")  # no cell: in no region
    late = rollout.late_list(world_con, "state", D(2025, 5, 15))
    assert late["upgrade_id"].tolist() == ["U2"] and pd.isna(late["region_id"].iloc[0])
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    assert (_row(t, "ALL")["blocked"], _row(t, "W")["blocked"], _row(t, "W")["total"]) == (1, 0, 1)


@pytest.mark.parametrize(("region", "as_of", "expected"), [
    ("ALL", D(2025, 2, 28), {("2025-01-01", "hotline"): 1, ("2025-01-01", "app"): 1,
                             ("2025-02-01", "crowd_list"): 1}),
    ("W", D(2025, 2, 28), {("2025-01-01", "hotline"): 1, ("2025-01-01", "app"): 1}),
    ("E", D(2025, 2, 28), {("2025-02-01", "crowd_list"): 1}),
    ("ALL", D(2025, 1, 5), {("2025-01-01", "hotline"): 1}),  # K1 came at 10:00 on the as-of day: counted
])
def test_channel_mix(world_con, region, as_of, expected):
    mix = rollout.channel_mix(world_con, "state", region, as_of)
    months = sorted({m for m, _ in expected})
    assert len(mix) == len(months) * len(rollout.CHANNELS)  # every channel of every month, zeros included
    got = {(f"{m:%Y-%m-%d}", c): n for m, c, n in mix.itertuples(index=False) if n}
    assert got == expected


def test_channel_mix_empty_before_the_first_complaint(world_con):
    mix = rollout.channel_mix(world_con, "state", "ALL", D(2024, 12, 31))
    assert mix.empty and mix.columns.tolist() == rollout.CHANNEL_COLUMNS


def test_open_hotspots_without_plan_per_region(world_con, monkeypatch):
    """A hot cell with no planned upgrade in W, one relieved in E, one quiet: W and ALL count one."""
    west, east = (int(cells.latlng_to_cells([51.4], [lon], cells.REGION_RES)[0]) for lon in (9.2, 9.8))
    hot = pd.DataFrame({"cell": [west, east, west + 1], "hot": [True, True, False]})
    status = {west: "no_upgrade_planned", east: "relieved", west + 1: "no_upgrade_planned"}
    monkeypatch.setattr(rollout.hotspots, "hot_cells", lambda *a, **k: np.sort(hot.loc[hot["hot"], "cell"].to_numpy()))
    def relief(con_or_network, cells_, *a, **k):  # asked for the hot cells only
        return pd.DataFrame({"cell": cells_["cell"], "status": cells_["cell"].map(status)})
    monkeypatch.setattr(rollout.linkage, "relief", relief)
    monkeypatch.setattr(rollout.linkage, "relief_of", relief)  # on the store: over the held network
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    assert t.set_index("region_id")["open_no_plan"].to_dict() == {"ALL": 1, "E": 0, "W": 1}


def test_shapes_are_simplified_polygons_of_the_level(world_con):
    shapes = rollout.shapes(world_con, "state")
    assert [f["properties"]["region_id"] for f in shapes["features"]] == ["E", "W"]
    ring = shapes["features"][1]["geometry"]["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((9.0, 9.5, 51.0, 51.5), abs=1e-3)


def test_map_colours_and_selection(world_con):
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    deck = json.loads(charts.region_map(rollout.shapes(world_con), t, D(2025, 5, 15), "W").to_json())
    props = {f["properties"]["region_id"]: f["properties"] for f in deck["layers"][0]["data"]["features"]}
    assert props["W"]["pct"] == "50.0%" and props["E"]["pct"] == "100.0%"
    # the scale is 0 to 100 % whatever the spread: 50 % is the ramp's middle colour, 100 % its last
    assert props["W"]["fill"][:3] == list(charts.RAMP[2]) and props["E"]["fill"][:3] == list(charts.RAMP[-1])
    assert props["W"]["line"] == charts.SELECTED_LINE and props["E"]["width"] == 0
    # no basemap, nothing to fetch: pydeck's "no style" value (an empty or missing style makes Streamlit's
    # frontend fall back to CARTO's basemap)
    assert deck.get("mapStyle") == basemap.NO_BASEMAP and "mapProvider" not in deck
    points = [p for f in rollout.shapes(world_con)["features"] for p in f["geometry"]["coordinates"][0]]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    view = deck["initialViewState"]  # fitted to the two regions, not to Germany
    assert view["longitude"] == pytest.approx((min(xs) + max(xs)) / 2, abs=0.01)
    assert view["latitude"] == pytest.approx((min(ys) + max(ys)) / 2, abs=0.01)
    assert view["zoom"] > 7


@pytest.mark.parametrize(("pct", "want"), [(0.0, charts.RAMP[0]), (100.0, charts.RAMP[-1]), (25.0, charts.RAMP[1]),
                                           (120.0, charts.RAMP[-1]), (-5.0, charts.RAMP[0])])
def test_the_colour_scale_is_zero_to_a_hundred(pct, want):
    assert charts.colour(pct)[:3] == list(want)


def test_nearby_percentages_get_nearby_colours():
    a, b = charts.colour(49.0), charts.colour(54.0)  # a 5-point spread looks like one
    assert max(abs(x - y) for x, y in zip(a[:3], b[:3], strict=True)) < 20
    assert charts.colour(float("nan")) == [200, 200, 200, 160]


def test_the_legend_shows_the_whole_scale_and_the_grey():
    html = charts.legend_html()
    assert all(f">{p}%<" in html for p in (0, 25, 50, 75, 100)) and "no upgrades planned" in html
    assert "rgb(255, 255, 204)" in html and "rgb(37, 52, 148)" in html


def test_burnup_traces(world_con):
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    fig = charts.burnup(rollout.series(world_con, ("W",)), t, D(2025, 5, 15))
    by_name = {tr.name: tr for tr in fig.data}
    on_air = by_name["West: on air"]
    assert list(on_air.y)[-1] == 1 and pd.Timestamp(list(on_air.x)[-1]) == pd.Timestamp("2025-05-15")
    fc = by_name[f"West: forecast {D(2025, 8, 13):%Y-%m-%d}"]
    assert list(fc.y) == [1, 2]
    assert "West: 90% band" in by_name and max(by_name["West: plan"].y) == 2


def test_the_burnup_in_percent_divides_each_region_by_its_own_plan(world_con):
    t = rollout.region_table(world_con, "state", D(2025, 5, 15))
    fig = charts.burnup(rollout.series(world_con, ("W", "E")), t, D(2025, 5, 15), percent=True)
    by_name = {tr.name: tr for tr in fig.data}
    rows = t.set_index("region_id")
    for rid, name in (("W", "West"), ("E", "East")):
        on_air = list(by_name[f"{name}: on air"].y)
        assert on_air[-1] == pytest.approx(rows.at[rid, "pct_on_air"])  # the figure the table shows
        assert max(by_name[f"{name}: plan"].y) == pytest.approx(100.0)
    assert fig.layout.yaxis.range == (0, 105) and fig.layout.yaxis.ticksuffix == "%"


def test_report_is_self_contained_and_dated(world_con):
    day = D(2025, 5, 15)
    t = rollout.region_table(world_con, "state", day)
    t.loc[t["region_id"] == "E", "name"] = "<script>alert(1)</script>"
    late = rollout.late_list(world_con, "state", day)
    html = report.render("West", day, _row(t, "W"), t, late, rollout.series(world_con, ("W",)))
    assert "Data as of <b>2025-05-15</b>" in html and html.count("2025-05-15") >= 4
    assert "<svg" in html and "<polyline" in html and "<polygon" in html  # burn-up with its forecast band
    assert "<script>" not in html and "&lt;script&gt;" in html
    for fetch in ("http://", "https://", "src=", "@import", "url("):
        assert fetch not in html
    assert ">U2<" in html and ">50.0%<" in html and "Late and blocked upgrades: 1" in html
    replay = report.render("West", day, _row(t, "W"), t, late, rollout.series(world_con, ("W",)),
                           data_day=D(2025, 9, 1))  # an earlier day than the data's says both
    assert "Figures as of <b>2025-05-15</b>, replayed from data as of <b>2025-09-01</b>" in replay


@pytest.mark.parametrize(("text", "ok"), [
    (None, True), ("2025-05-15", True), ("2025-01-01", True), ("2025-06-30", True), ("2025-07-01", False),
    ("2024-12-31", False), ("15.05.2025", False), ("", False), ("2025-02-30", False), ("today", False),
])
def test_valid_day_in_a_link(text, ok):
    assert rollout.valid_day(text, D(2025, 1, 1), D(2025, 6, 30)) is ok


@pytest.mark.parametrize("dialect", engine.DIALECTS)
def test_queries_compile_for_every_engine(world_con, dialect):
    exprs = [rollout.upgrade_states_expr(world_con, "state", D(2025, 5, 15)),
             rollout.channel_mix_expr(world_con, "W", D(2025, 5, 15)),
             rollout.cells_per_region_expr(world_con, "state", pd.DataFrame({"cell": [1, 2]}))]
    for expr in exprs:
        sql = engine.to_sql(expr, dialect).lower()
        assert "h3_" not in sql and "strftime" not in sql


@pytest.mark.parametrize("day", [D(2025, 3, 1), D(2025, 5, 15), D(2025, 8, 1), D(2026, 1, 1)])
def test_the_table_of_the_held_network_equals_the_queried_one(world_con, day):
    """On the store the blocked counts run in numpy and the upgrades per region are held per store content
    (lib/engine/network); on any other Ibis backend everything is queried: the two tables are the same."""
    held = rollout.region_table(world_con, "state", day)
    queried = rollout.region_table(engine.backend(world_con.cursor()), "state", day)
    pd.testing.assert_frame_equal(held, queried)
    assert rollout.blocked_counts(world_con, "state", day, network.held(world_con)) == rollout.blocked_counts(
        world_con, "state", day)


def test_the_demo_table_of_the_held_network_equals_the_queried_one(demo_db):
    con = store.connect(demo_db, read_only=True)
    try:
        for day in (D(2026, 3, 1), D(2026, 11, 1)):
            held = rollout.region_table(con, "state", day)
            assert held["blocked"].iloc[0] > 0 and held["late"].iloc[0] > 0 and held["open_no_plan"].iloc[0] > 0
            pd.testing.assert_frame_equal(held, rollout.region_table(engine.backend(con.cursor()), "state", day))
    finally:
        con.close()


def test_an_overdue_link_makes_no_upgrade_planned_later_late(world_con):
    """U2 (planned for 2026) waits on L1, whose completion was due 2025-06-01: on 2025-07-01 the link is late, the
    upgrade is not (its own day has not come), and it is not blocked yet (not due, not installed)."""
    world_con.execute("UPDATE upgrades SET on_air_planned = DATE '2026-01-01' WHERE upgrade_id = 'U2'")
    day = D(2025, 7, 1)
    assert "U2" not in set(rollout.late_list(world_con, "state", day)["upgrade_id"])
    row = rollout.region_table(world_con, "state", day).set_index("region_id").loc["ALL"]
    assert (row["late"], row["blocked"]) == (0, 0)
    assert asof.links_as_of(world_con, day).set_index("link_id").loc["L1", "state"] == "late"


@pytest.mark.parametrize(("top", "ticks"), [(1, [0, 1]), (4, [0, 1, 2, 3, 4]), (7, [0, 2, 4, 6]), (12, [0, 5, 10]),
                                            (1585, [0, 500, 1000, 1500]), (30561, [0, 10000, 20000, 30000])])
def test_the_report_chart_counts_in_round_steps(top, ticks):
    assert report._count_ticks(top) == ticks


def test_the_report_chart_labels_at_most_seven_dates_on_month_starts():
    ticks = report._date_ticks(pd.Timestamp("2025-03-17"), pd.Timestamp("2027-11-15"))
    assert 2 <= len(ticks) <= 7 and all(t.day == 1 for t in ticks)
    assert ticks[0] >= pd.Timestamp("2025-03-17") and ticks[-1] <= pd.Timestamp("2027-11-15")


def test_the_report_chart_text_is_as_large_as_the_report_text(world_con):
    day = D(2025, 5, 15)
    t = rollout.region_table(world_con, "state", day)
    row = t.set_index("region_id").loc["W"].to_dict()
    svg = report.burnup_svg(rollout.series(world_con, ("W",)), row, day)
    sizes = {float(v) for v in re.findall(r"font-size='([\d.]+)'", svg)}
    assert sizes == {report.FONT} and report.FONT / report.SVG_W * 140 >= 3.0  # >= 3 mm (8.5 pt) at 140 mm wide
    assert "plan" in svg and "baseline" in svg and "on air" in svg


def test_the_late_list_reads_in_words_and_never_says_none(world_con):
    world_con.execute("UPDATE sites SET name = 'Rathaus West' WHERE site_id = (SELECT min(site_id) FROM sites)")
    late = rollout.late_list(world_con, "state", D(2025, 5, 15))
    shown = rollout.readable_late(late)
    assert len(shown) == len(late) and list(shown.columns) == list(late.columns)
    for c in shown.columns:
        assert not shown[c].isna().any(), c
        assert "None" not in shown[c].astype(str).tolist() and "NaT" not in shown[c].astype(str).tolist(), c
    assert (shown["link_id"] == "no link").sum() == late["link_id"].isna().sum()
    assert not shown["kind"].str.contains("_").any()
    names = dict(world_con.execute("SELECT site_id, name FROM sites").fetchall())
    assert shown["site_name"].tolist() == [names.get(s) or "" for s in late["site_id"]]


def test_the_impact_table_reads_in_words_and_never_says_none():
    effects = pd.DataFrame({"name": ["Whole network", "Bremen"], "kind": ["capacity", "capacity"],
                            "pct": [-47.4, None], "pct_low": [-51.0, None], "pct_high": [-43.6, None],
                            "effect": [-0.0334, None], "n_treated": [5544, 18], "n_control": [25988, 0],
                            "note": ["", None]})
    shown = rollout.readable_impact(effects)
    assert shown.iloc[0][["pct", "pct_low", "pct_high", "effect"]].tolist() == ["-47%", "-51%", "-44%", "-0.033"]
    assert shown.iloc[1][["pct", "pct_low", "pct_high", "effect", "note"]].tolist() == [""] * 5
    assert "None" not in shown.astype(str).to_string() and "nan" not in shown.astype(str).to_string()
