"""The Planner map page through AppTest, on the demo store: widgets, URL, selection and detail panel.

Figures shown are checked against plain SQL over the store and the h3 library.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import h3
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import cache, demo, store
from lib.ingest import schema
from lib.views import mapdraw, maps, mapurl, places

APP = "../dashboard.py"
PAGE = "pages/map.py"
AS_OF = demo.DEMO_AS_OF


@pytest.fixture
def db(demo_db, monkeypatch):
    monkeypatch.setenv(store.DB_ENV, str(demo_db))
    return demo_db


def app(**query) -> AppTest:
    """The map page opened by a link carrying `query`, run once."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(PAGE)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def deck(at: AppTest) -> dict:
    return json.loads(at.get("deck_gl_json_chart")[0].proto.json)


def layer(at: AppTest, name: str) -> list[dict]:
    return next(x["data"] for x in deck(at)["layers"] if x["id"] == name)


def sql(path, query: str, params=None) -> list[tuple]:
    with duckdb.connect(str(path)) as con:
        return con.execute(query, params or []).fetchall()


def window_counts(path, res: int, day: dt.date, kind=("slow_data", "dropped_calls"), days: int = 90) -> dict:
    """Complaints per cell in the 90 days up to `day`, from the raw rows and the h3 library."""
    rows = sql(path, f"SELECT cell FROM complaints WHERE category IN {tuple(kind)} AND received_at >= ? "
                     "AND received_at < ?", [day - dt.timedelta(days=days - 1), day + dt.timedelta(days=1)])
    out: dict[str, int] = {}
    for (c,) in rows:
        p = h3.cell_to_parent(h3.int_to_str(c), res)
        out[p] = out.get(p, 0) + 1
    return out


def test_the_page_draws_every_layer_and_the_legend(db):
    at = app()
    assert [t.value for t in at.title] == ["Planner map"]
    assert [x["id"] for x in deck(at)["layers"]] == ["regions", "links", "sites", "hotspots", "towns"]
    counts = window_counts(db, 7, AS_OF)
    hexes = layer(at, "hotspots")
    assert hexes and all(x["n"] == counts.get(x["id"], 0) for x in hexes)  # a hot cell may have none itself
    assert sum(x["n"] for x in hexes) > 0
    sites = {x["id"] for x in layer(at, "sites")}
    n_sites = sql(db, "SELECT count(*) FROM sites")[0][0]
    assert 0 < len(sites) < n_sites  # the default hides sites without any upgrade
    legend = " ".join(e.proto.body for e in at.get("html"))
    assert "Hotspots by relief" in legend and "Transport links" in legend
    assert at.slider(key="map_date").value == AS_OF
    assert not at.warning


def test_the_ranked_table_orders_hotspots_by_pain(db):
    at = app()
    table = at.dataframe[0].value
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert (table["pain"] == table["n"] * table["days_open"]).all()
    assert table["pain"].is_monotonic_decreasing
    assert set(table["status"]) <= set(mapdraw.LABELS.values())  # statuses in words
    for _, row in table.iterrows():  # days until relief by the documented rule
        assert row["relief_date"] == "" or dt.date.fromisoformat(row["relief_date"])  # a day, or nothing
        relief = dt.date.fromisoformat(row["relief_date"]) if row["relief_date"] else None
        if row["status"] == "relieved":
            assert row["days_open"] == 0
        elif relief is None:
            assert row["days_open"] >= maps.NO_DATE_DAYS
        elif relief > AS_OF:
            assert row["days_open"] == (relief - AS_OF).days
        else:
            assert row["days_open"] == maps.OVERDUE_DAYS
    counts = window_counts(db, 7, AS_OF)
    assert all(counts.get(c, 0) == n for c, n in zip(table["cell"], table["n"], strict=True))
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download GeoJSON"]


def test_a_link_sets_every_widget_and_the_url_keeps_them(db):
    region = sql(db, "SELECT region_id FROM regions WHERE level = 'state' ORDER BY region_id")[3][0]
    at = app(date="2026-06-01", region=region, kind="all", colour="significance", ch="app,hotline", sig="0")
    assert at.slider(key="map_date").value == dt.date(2026, 6, 1)
    assert at.selectbox(key="map_region").value == region
    assert at.button_group(key="map_kind").value == "all"
    assert at.button_group(key="map_colour").value == "significance"
    assert at.multiselect(key="map_ch").value == ["hotline", "app"]
    assert at.toggle(key="map_sig").value is False
    assert not at.warning
    assert {k: at.query_params[k] for k in at.query_params} == {
        "date": "2026-06-01", "region": region, "kind": "all", "colour": "significance", "ch": "hotline,app",
        "sig": "0"}
    counts = window_counts(db, 8, dt.date(2026, 6, 1), kind=tuple(maps.schema.CATEGORIES))
    got = layer(at, "hotspots")
    assert got and all(x["id"] in counts for x in got)
    assert {tuple(x["c"]) for x in got} <= set(maps.SIGNIFICANCE_COLOURS.values())


def test_bad_link_parameters_fall_back_with_a_note(db):
    at = app(date="someday", region="Atlantis", res="12")
    notes = [w.value for w in at.warning]
    assert len(notes) == 3 and all(n.startswith("Link parameter ignored") for n in notes)
    assert "someday" in notes[0] and "Atlantis" in notes[1] and "res='12'" in notes[2]
    assert at.slider(key="map_date").value == AS_OF and at.selectbox(key="map_region").value == ""
    assert "date" not in at.query_params and "region" not in at.query_params


def test_a_widget_change_goes_into_the_url(db):
    at = app()
    at.button_group(key="map_kind").set_value("coverage").run()
    assert at.query_params["kind"] == "coverage"
    counts = window_counts(db, 7, AS_OF, kind=("no_signal", "no_indoor"))
    assert all(x["n"] == counts.get(x["id"], 0) for x in layer(at, "hotspots"))


def test_a_hotspot_picked_on_the_map_shows_its_story(db):
    at = app()
    top = layer(at, "hotspots")[0]
    at.session_state[mapurl.chart_key({})] = {"selection": {"indices": {"hotspots": [0]},
                                                            "objects": {"hotspots": [top]}}}
    at.run()
    assert not at.exception
    assert story_of(at) == top["id"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Complaints"] == f"{window_counts(db, 7, AS_OF)[top['id']]:,}" != "0"
    assert metrics["Relief status"] == mapdraw.LABELS[top["s"]]
    assert at.query_params["sel"] == f"hotspots:{top['id']}"
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"] == "complaints a week"
    view = deck(at)
    assert [x["id"] for x in view["layers"]][-2:] == ["picked", "towns"]
    lat, lon = h3.cell_to_latlng(top["id"])
    assert view["initialViewState"]["latitude"] == pytest.approx(lat, abs=1e-4)
    assert view["initialViewState"]["zoom"] == mapdraw.FOCUS_ZOOM


def clear(at: AppTest) -> None:
    """Click "Clear selection"."""
    next(b for b in at.button if b.label == "Clear selection").click().run()


def test_a_table_row_selects_its_hotspot(db):
    at = app()
    first = at.dataframe[0].value.iloc[0]
    at.session_state["map_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert story_of(at) == first["cell"]
    assert any("rank 1 by unrelieved pain" in m.value for m in at.markdown)
    clear(at)  # the row stays ticked in the table, but the story goes
    assert not [h for h in at.subheader if h.value.startswith("Hotspot ")]


def served_by(db, site_id: str) -> set[str]:
    """The res-8 cells (hex) holding a place with complaints that `site_id` serves: one of the place's nearest
    MAX_SERVERS sites within the reach of their type (equal distances by site id), by numpy over every site."""
    import numpy as np

    from lib.engine import serving
    sites = sql(db, "SELECT site_id, lat, lon, coalesce(site_type, 'macro') FROM sites ORDER BY site_id")
    ids = np.array([r[0] for r in sites])
    lat, lon = (np.radians([r[i] for r in sites]) for i in (1, 2))
    reach = np.array([serving.REACH_KM.get(r[3], serving.REACH_KM["macro"]) for r in sites])
    me = int(np.flatnonzero(ids == site_id)[0])
    out = set()
    for (cell,) in sql(db, "SELECT DISTINCT cell FROM complaints WHERE cell IS NOT NULL"):
        plat, plon = map(np.radians, h3.cell_to_latlng(h3.int_to_str(cell)))
        if abs(plat - lat[me]) > 0.002 or abs(plon - lon[me]) > 0.003:  # over 12 km apart: beyond every reach
            continue
        h = np.sin((lat - plat) / 2) ** 2 + np.cos(plat) * np.cos(lat) * np.sin((lon - plon) / 2) ** 2
        km = 2 * serving.EARTH_KM * np.arcsin(np.sqrt(h))
        near = [i for i in np.lexsort((np.arange(len(ids)), km)) if km[i] <= reach[i]][:serving.MAX_SERVERS]
        if me in near:
            out.add(h3.cell_to_parent(h3.int_to_str(cell), 8))
    return out


def test_a_site_picked_on_the_map_lists_its_upgrades(db):
    at = app()
    site = layer(at, "sites")[0]
    at.session_state[mapurl.chart_key({})] = {"selection": {"indices": {"sites": [0]}, "objects": {"sites": [site]}}}
    at.run()
    name = sql(db, "SELECT name FROM sites WHERE site_id = ?", [site["id"]])[0][0]
    assert name and f"Site {name}" in [h.value for h in at.subheader]  # by its name, its id below
    assert f"Site id {site['id']}" in [c.value for c in at.caption]
    n = sql(db, "SELECT count(*) FROM upgrades WHERE site_id = ? AND (status IS NULL OR status <> 'cancelled')",
            [site["id"]])[0][0]
    upgrades = next(d.value for d in at.dataframe if "upgrade_id" in d.value.columns)
    assert len(upgrades) == n > 0
    # the cells it serves: the res-8 cells of the places whose nearest three sites within reach include it,
    # worked out here with numpy over every site (haversine), with the window's complaints (raw SQL)
    carried = served_by(db, site["id"])
    served = next(d.value for d in at.dataframe if "share" in d.value.columns and "complaints" in d.value.columns)
    assert set(served["cell"]) == carried and len(carried) > 0
    counts = window_counts(db, 8, demo.DEMO_AS_OF)
    assert dict(zip(served["cell"], served["complaints"], strict=True)) == {c: counts.get(c, 0) for c in carried}
    metrics = [m.value for m in at.metric]
    assert metrics == [mapdraw.LABELS[site["s"]], f"{sum(counts.get(c, 0) for c in carried):,}"]


def test_a_sites_story_reads_in_words_with_no_none(db):
    """The site story's tables as people read them: kinds and states in words, dates as days or empty, never
    "None" or a code with underscores; each served cell named by its nearest town (checked with h3 and
    places.nearest_town on the cell's centre)."""
    at = app()
    site = next(s for s in layer(at, "sites") if s["id"] in {r[0] for r in sql(
        db, "SELECT u.site_id FROM upgrades u JOIN transport_links l ON l.link_id = u.transport_link_id "
            "WHERE l.completion_actual IS NULL")})
    at.session_state[mapurl.chart_key({})] = {"selection": {"indices": {"sites": [0]}, "objects": {"sites": [site]}}}
    at.run()
    shown = {tuple(d.value.columns): d for d in at.dataframe}
    tables = {c: d.value for c, d in shown.items()}
    stories = [d for c, d in shown.items() if "upgrade_id" in c or "completion_actual" in c or "share" in c]
    assert len(stories) == 3 and all(d.proto.HasField("placeholder") and d.proto.placeholder == "" for d in stories)
    # (a missing number, such as the delay of an upgrade not yet due, is then an empty cell, not "None")
    upgrades = next(v for c, v in tables.items() if "upgrade_id" in c)
    links = next(v for c, v in tables.items() if "completion_actual" in c)
    served = next(v for c, v in tables.items() if "share" in c and "cell" in c)
    for frame in (upgrades, links, served):
        text = frame.select_dtypes(exclude="number").astype(str)
        assert not text.isin(["None", "nan", "NaT", "<NA>"]).any().any()
        assert not text.apply(lambda col: col.str.contains("_")).any().any()
    assert (links["completion_actual"] == "").any()  # an open link's missing date is an empty cell
    assert set(upgrades["kind"]) <= {k.replace("_", " ") for k in schema.UPGRADE_KINDS}
    assert all(len(d) == 10 and d[4] == "-" for d in upgrades["on_air_planned"] if d)
    lat, lon = zip(*(h3.cell_to_latlng(c) for c in served["cell"]), strict=True)
    assert list(served["place"]) == list(places.nearest_town(list(lat), list(lon)))
    assert list(served.columns[:2]) == ["cell", "place"]


def test_the_filters_offer_channels_and_kinds_in_words_and_print_nothing_stray(db):
    at = app()
    assert at.multiselect(key="map_ch").options == [c.replace("_", " ") for c in schema.CHANNELS]
    assert at.multiselect(key="map_uk").options == [k.replace("_", " ") for k in schema.UPGRADE_KINDS]
    assert not at.get("json") and "near" not in [m.value for m in at.markdown]


def test_codes_read_in_words():
    assert mapdraw.words("blocked_by_transport") == "blocked by transport"  # a label of its own
    assert mapdraw.words("crowd_list") == "crowd list"
    assert [mapdraw.words(v) for v in (None, float("nan"), pd.NA)] == ["", "", ""]
    assert [mapdraw.column_label(c) for c in ("site_id", "completion_planned", "km")] == [
        "site", "completion planned", "km"]


def test_a_selection_in_the_link_opens_its_story_and_can_be_cleared(db):
    at = app()
    hexes = layer(at, "hotspots")
    at = app(sel=f"hotspots:{hexes[1]['id']}")
    assert story_of(at) == hexes[1]["id"]
    clear(at)
    assert "sel" not in at.query_params and not [h for h in at.subheader if h.value.startswith("Hotspot ")]


def test_play_steps_one_month(db):
    at = app(date="2026-05-10")
    at.toggle(key="map_play").set_value(True).run()
    assert not at.exception
    assert at.slider(key="map_date").value == dt.date(2026, 6, 10)
    assert at.query_params["date"] == "2026-06-10"


def test_a_view_over_the_budget_says_what_it_left_out(db, monkeypatch):
    monkeypatch.setattr(maps, "MAX_FEATURES", 500)
    at = app()
    notes = [c.value for c in at.caption if "drawn (at most 500 features" in c.value]
    assert notes and sum(len(x["data"]) for x in deck(at)["layers"] if x["id"] != "regions") <= 500


def test_empty_store_explains_how_to_get_data(empty_db):
    at = app()
    assert "lib.cli demo" in at.info[0].value


def test_the_bottlenecks_and_a_what_if_on_the_page(db):
    at = app(res="8")
    assert not [d for d in at.dataframe if "link_id" in d.value.columns]  # closed: nothing queried or drawn
    at.session_state["map_holds"] = True  # the expander opened
    at.run()
    frames = [d.value for d in at.dataframe]
    links = next(f for f in frames if "link_id" in f.columns and "pain" in f.columns)
    ups = next(f for f in frames if "upgrade_id" in f.columns and "pain" in f.columns)
    assert len(links) + len(ups) > 0
    assert not [d for d in frames if "pain_change" in d.columns]  # nothing tried yet
    first = at.selectbox(key="wi_item").options[0]
    at.selectbox(key="wi_item").set_value(first)
    at.date_input(key="wi_date").set_value(dt.date(2028, 6, 30))
    next(b for b in at.button if b.label == "Show what changes").click().run()
    assert not at.exception
    changes = next(d.value for d in at.dataframe if "pain_change" in d.columns)
    shown = [m.value for m in at.markdown if m.value.startswith("**What if")]
    assert shown and "nothing is saved" in shown[0] and f"{len(changes):,} hotspots change" in shown[0]
    assert len(changes) and list(changes.columns[:2]) == ["cell", "place"]  # each hotspot named by its town
    text = changes.select_dtypes(exclude="number").astype(str)
    assert not text.isin(["None", "nan", "NaT", "<NA>"]).any().any()
    assert not text.apply(lambda col: col.str.contains("_")).any().any()  # statuses in words
    assert all(d == "" or (len(d) == 10 and d[4] == "-") for d in changes["relief_after"])


def story_of(at) -> str | None:
    """The H3 cell of the hotspot whose story the page shows (its heading names the nearest town, its caption
    the cell), or None."""
    from lib import cells
    from lib.views import places

    heads = [h.value for h in at.subheader if h.value.startswith("Hotspot near ")]
    ids = [c.value.split()[2] for c in at.caption if c.value.startswith("H3 cell ")]
    if not heads:
        return None
    assert len(heads) == 1 and len(ids) == 1
    town = places.nearest_town(*cells.cells_to_latlng([cells.parse_cell(ids[0])]))[0]
    assert heads[0] == f"Hotspot near {town}"
    return ids[0]


def test_a_page_run_that_changes_nothing_on_the_map_builds_no_deck(db, monkeypatch):
    """The deck of a view is built and written once and shared: reruns (another session, a table click that
    selects nothing new) send the same bytes without building them; a new colour is a new deck."""

    from lib.views import mapdraw

    cache.clear()
    built = []
    real = mapdraw.deck
    monkeypatch.setattr(mapdraw, "deck",  # this view's decks (the warm-up makes the default view's besides)
                        lambda *a, **k: (a[0].params.region == "11" and built.append(a[1])) or real(*a, **k))
    at = app(region="11")
    first = at.get("deck_gl_json_chart")[0].proto.json
    at.run()
    app(region="11")  # another session, the same view
    assert built == ["relief"]
    assert at.get("deck_gl_json_chart")[0].proto.json == first
    at.segmented_control(key="map_colour").set_value("significance").run()
    assert built == ["relief", "significance"]
