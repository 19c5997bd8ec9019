"""The planner map's lib: the feature budget, region filter, pain ranking, payload, deck and exports.

Figures are checked against independent computations: plain SQL and the h3 library over the
demo store's raw tables, or hand-built frames with known answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json

import duckdb
import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import Point, shape

from lib import basemap, demo, engine, export, geonames
from lib.engine import asof
from lib.views import mapdraw, maps

AS_OF = demo.DEMO_AS_OF


@pytest.fixture(scope="module")
def con(demo_db):
    c = duckdb.connect(str(demo_db), read_only=True)
    yield c
    c.close()


@pytest.fixture(scope="module")
def full(con):
    """The whole-Germany view with every hotspot that has complaints, all sites and links (no cap in effect: not
    even the country map's cap on sites)."""
    p = maps.Params(as_of=AS_OF, significant_only=False, site_statuses=maps.asof.SITE_STATUSES,
                    link_states=maps.asof.LINK_STATES)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(maps, "COUNTRY_SITES", 10**9)
        return maps.view(con, p)


# -- the budget -----------------------------------------------------------------------------

@pytest.mark.parametrize(("sizes", "total", "expected"), [
    ({"a": 10, "b": 10}, 100, {"a": 10, "b": 10}),
    ({"a": 10, "b": 100, "c": 100}, 50, {"a": 10, "b": 20, "c": 20}),
    ({"a": 500, "b": 30_000, "c": 20_000}, 50_000, {"a": 500, "b": 29_500, "c": 20_000}),
    ({"a": 500, "b": 30_000, "c": 30_000}, 50_000, {"a": 500, "b": 24_750, "c": 24_750}),
    ({"a": 5, "b": 5, "c": 5}, 7, {"a": 3, "b": 2, "c": 2}),
    ({"a": 5}, 0, {"a": 0}),
    ({}, 10, {}),
])
def test_allot_by_hand(sizes, total, expected):
    assert maps.allot(sizes, total) == expected


@given(st.dictionaries(st.sampled_from("abcde"), st.integers(0, 10_000)), st.integers(0, 30_000))
def test_allot_fills_the_budget_fairly(sizes, total):
    got = maps.allot(sizes, total)
    assert sum(got.values()) == min(total, sum(sizes.values()))
    assert all(0 <= got[k] <= sizes[k] for k in sizes)
    cut = [k for k in sizes if got[k] < sizes[k]]  # a layer that lost rows got at least every other's share - 1
    assert all(got[k] >= max(got.values()) - 1 for k in cut)


def test_allot_refuses_a_negative_budget():
    with pytest.raises(ValueError, match="total"):
        maps.allot({"a": 1}, -1)


def test_a_capped_view_keeps_the_most_complained_hotspots_and_the_most_urgent_sites(con, full):
    p = full.params
    small = maps.view(con, p, max_features=300)
    assert small.features + len(small.outlines) + 1 <= 300  # one kept for a picked hexagon's outline
    assert set(small.capped) == {"hotspots", "sites", "links"}
    budget = maps.allot(full.totals, 300 - len(small.outlines) - 1)
    assert {k: len(f) for k, f in small.layers.items()} == budget
    top = full.hotspots.sort_values(["n", "cell"], ascending=[False, True]).head(budget["hotspots"])
    assert small.layers["hotspots"]["cell"].tolist() == top["cell"].tolist()
    order = {s: i for i, s in enumerate(["late", "installed", "permit", "planned", "on_air", "no_upgrade"])}
    sites = full.layers["sites"]
    want = sites.assign(o=sites["status"].map(order)).sort_values(["o", "site_id"]).head(budget["sites"])
    assert small.layers["sites"]["site_id"].tolist() == want["site_id"].tolist()
    assert small.capped["hotspots"] == (budget["hotspots"], len(full.hotspots))
    assert len(small.hotspots) == len(full.hotspots)  # the table and the exports keep every hotspot


def test_the_map_of_germany_draws_the_most_urgent_sites_only_and_says_so(con, full, monkeypatch):
    p = full.params
    sites = full.layers["sites"]
    monkeypatch.setattr(maps, "COUNTRY_SITES", 100)
    assert len(sites) == full.totals["sites"] > maps.COUNTRY_SITES
    v = maps.view(con, p)
    order = {s: i for i, s in enumerate(["late", "installed", "permit", "planned", "on_air", "no_upgrade"])}
    want = sites.assign(o=sites["status"].map(order)).sort_values(["o", "site_id"]).head(maps.COUNTRY_SITES)
    assert v.layers["sites"]["site_id"].tolist() == want["site_id"].tolist()  # late first, then by urgency
    assert v.capped["sites"] == (maps.COUNTRY_SITES, len(sites))
    assert len(v.layers["hotspots"]) == len(full.layers["hotspots"])  # the hotspots are not touched
    assert [n for n in v.capped_notes() if n.startswith("sites")] == [
        f"sites: the {maps.COUNTRY_SITES:,} most urgent of {len(sites):,} drawn on the map of Germany (late first); "
        "choose a region to see all of its sites."]


def test_a_region_map_draws_every_site_of_the_region(con, monkeypatch):
    monkeypatch.setattr(maps, "COUNTRY_SITES", 10)
    v = maps.view(con, maps.Params(as_of=AS_OF, region="11", site_statuses=maps.asof.SITE_STATUSES))
    assert len(v.layers["sites"]) == v.totals["sites"] > 10 and "sites" not in v.capped


def test_a_map_of_germany_with_exactly_the_cap_of_sites_draws_them_all(con, full, monkeypatch):
    monkeypatch.setattr(maps, "COUNTRY_SITES", full.totals["sites"])
    v = maps.view(con, full.params)
    assert len(v.layers["sites"]) == full.totals["sites"] and "sites" not in v.capped and not [
        n for n in v.capped_notes() if n.startswith("sites")]


def test_the_default_germany_view_is_within_both_budgets(con):
    v = mapdraw.fitted(con, maps.Params(as_of=AS_OF))
    assert v.features <= maps.MAX_FEATURES
    for colour in maps.COLOUR_MODES:
        assert len(mapdraw.deck(v, colour).to_json().encode()) <= maps.MAX_BYTES
    assert v.params.resolution == maps.GERMANY_RES == 7


def test_shrink_cuts_the_payload_below_a_small_limit(full):
    before = mapdraw.payload_bytes(mapdraw.deck(full))
    empty = dataclasses.replace(full, layers={k: f.head(0) for k, f in full.layers.items()})
    fixed = mapdraw.payload_bytes(mapdraw.deck(empty))
    limit = fixed + (before - fixed) // 4
    small, size = mapdraw.shrink(full, max_bytes=limit)
    assert size <= limit < before and small.features < full.features / 3
    got = max(len(mapdraw.deck(small, c, ("hotspots", "0" * 15)).to_json().encode()) for c in maps.COLOUR_MODES)
    assert got == size
    for k, f in small.layers.items():  # each layer keeps a prefix of its priority order
        assert f["cell" if k == "hotspots" else f.columns[0]].tolist() == \
            full.layers[k][f.columns[0] if k != "hotspots" else "cell"].head(len(f)).tolist()


def test_compact_json_is_pydecks_json_without_the_indentation(full):
    d = mapdraw.deck(full)
    plain = mapdraw.pdk.Deck.to_json(d)
    assert json.loads(d.to_json()) == json.loads(plain)
    assert len(d.to_json()) < len(plain) / 2


# -- what the view holds --------------------------------------------------------------------

def _capacity_counts(con, res: int, as_of: dt.date, days: int = 90) -> dict[int, int]:
    """Capacity complaints per cell in the window, counted from the raw rows with the h3 library."""
    start = as_of - dt.timedelta(days=days - 1)
    rows = con.execute("SELECT cell FROM complaints WHERE category IN ('slow_data', 'dropped_calls') "
                       "AND received_at >= ? AND received_at < ?",
                       [start, as_of + dt.timedelta(days=1)]).fetchall()
    out: dict[int, int] = {}
    for (c,) in rows:
        parent = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), res))
        out[parent] = out.get(parent, 0) + 1
    return out


def test_hotspot_counts_match_the_raw_complaints(con, full):
    want = _capacity_counts(con, 7, AS_OF)
    got = dict(zip(full.hotspots["cell"], full.hotspots["n"], strict=True))
    assert got == want


def test_a_region_view_holds_exactly_what_lies_in_the_region(con):
    region = con.execute("SELECT region_id FROM regions WHERE level = 'state' ORDER BY region_id LIMIT 1 "
                         "OFFSET 8").fetchall()[0][0]
    p = maps.Params(as_of=AS_OF, region=region, significant_only=False, site_statuses=maps.asof.SITE_STATUSES,
                    link_states=maps.asof.LINK_STATES)
    v = maps.view(con, p)
    assert v.params.resolution == maps.REGION_RES == 8 and not v.capped
    area = {c for (c,) in con.execute("SELECT cell FROM region_cells WHERE region_id = ?", [region]).fetchall()}

    def inside(lat, lon):
        return h3.str_to_int(h3.latlng_to_cell(lat, lon, 8)) in area

    sites = con.execute("SELECT site_id, lat, lon FROM sites").fetchall()
    assert sorted(v.layers["sites"]["site_id"]) == sorted(s for s, la, lo in sites if inside(la, lo))
    links = con.execute("SELECT link_id, a_lat, a_lon, b_lat, b_lon FROM transport_links").fetchall()
    assert sorted(v.layers["links"]["link_id"]) == sorted(
        k for k, a, b, c, d in links if inside(a, b) or inside(c, d))
    want = {c: n for c, n in _capacity_counts(con, 8, AS_OF).items() if c in area}
    assert dict(zip(v.hotspots["cell"], v.hotspots["n"], strict=True)) == want
    within = [r for (r,) in con.execute("SELECT region_id FROM regions WHERE parent_id = ? AND geometry IS NOT NULL "
                                         "AND level = 'district' ORDER BY name, region_id", [region]).fetchall()]
    clusters = con.execute("SELECT count(*) FROM regions WHERE parent_id = ? AND level = 'cluster'", [region])
    assert within and clusters.fetchall()[0][0] > 0  # districts and city areas: the districts drawn, not both
    assert [f["properties"]["id"] for f in v.outlines] == [*within, region]
    assert [f["properties"]["inner"] for f in v.outlines] == [True] * len(within) + [False]


@pytest.mark.parametrize(("children", "drawn"), [
    (["district", "cluster", "district"], ["d0", "d2"]),  # a state's districts, not the city areas crossing them
    (["cluster"], ["d0"]),  # no districts: the city areas
    ([], []),
    (["cluster", "unknown"], ["d0"]),  # a level the schema does not know comes last
    (["district-", "cluster"], ["d1"]),  # districts without outlines draw nothing: the city areas instead
])
def test_a_region_is_drawn_with_its_children_of_one_level(children, drawn):
    rows = pd.DataFrame({"region_id": [f"d{i}" for i in range(len(children))] + ["S"],
                         "level": [c.rstrip("-") for c in children] + ["state"],
                         "geometry": [None if c.endswith("-") else "{}" for c in children] + ["{}"],
                         "inner": [True] * len(children) + [False]})
    assert list(maps._one_inner_level(rows)["region_id"]) == [*drawn, "S"]


@pytest.mark.parametrize("res", [7, 8, 9])
def test_within_agrees_with_h3(res):
    rng = np.random.default_rng(res)
    pts = [(rng.uniform(51.0, 51.5), rng.uniform(9.0, 10.0)) for _ in range(300)]
    area = np.array(sorted({h3.str_to_int(h3.latlng_to_cell(la, lo, 8)) for la, lo in pts[:100]}), dtype="int64")
    cells_ = [h3.str_to_int(h3.latlng_to_cell(la, lo, res)) for la, lo in pts]
    if res >= 8:
        want = [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), 8)) in set(area) for c in cells_]
    else:
        want = [any(h3.str_to_int(ch) in set(area) for ch in h3.cell_to_children(h3.int_to_str(c), 8))
                for c in cells_]
    assert maps.within(cells_, res, area).tolist() == want


def test_filters_apply_to_their_layers(con, full):
    p = maps.Params(as_of=AS_OF, significant_only=False, site_statuses=("late",), link_states=("done",),
                    relief_statuses=("late", "on_track"), upgrade_kinds=("5g",), layers=("hotspots", "sites", "links"))
    v = maps.view(con, p)
    assert set(v.hotspots["status"]) <= {"late", "on_track"}
    assert len(v.hotspots) == full.hotspots["status"].isin(["late", "on_track"]).sum()
    five_g = {s for (s,) in con.execute("SELECT site_id FROM upgrades WHERE kind = '5g' AND "
                                        "(status IS NULL OR status <> 'cancelled')").fetchall()}
    late = full.layers["sites"]
    assert sorted(v.layers["sites"]["site_id"]) == sorted(set(late.loc[late["status"] == "late", "site_id"]) & five_g)
    assert set(v.layers["links"]["state"]) == {"done"} and not v.outlines


def test_channels_filter_counts_only_those_channels(con):
    v = maps.view(con, maps.Params(as_of=AS_OF, significant_only=False, channels=("app",)))
    start = AS_OF - dt.timedelta(days=89)
    n = con.execute("SELECT count(*) FROM complaints WHERE channel = 'app' AND category IN ('slow_data', "
                    "'dropped_calls') AND received_at >= ? AND received_at < ?",
                    [start, AS_OF + dt.timedelta(days=1)]).fetchall()[0][0]
    assert v.hotspots["n"].sum() == n > 0


# -- pain ---------------------------------------------------------------------------------------

def test_pain_by_hand():
    day = dt.date(2026, 1, 1)
    hot = pd.DataFrame({
        "cell": [1, 2, 3, 4, 5],
        "n": [10, 10, 10, 3, 50],
        "status": ["relieved", "on_track", "late", "no_upgrade_planned", "blocked_by_transport"],
        "relief_date": [dt.date(2025, 12, 1), dt.date(2026, 1, 31), dt.date(2025, 12, 1), None, None],
    })
    out = maps.pain(hot, day).set_index("cell")
    assert out["days_open"].to_dict() == {1: 0, 2: 30, 3: maps.OVERDUE_DAYS, 4: 730, 5: 730}
    assert out["pain"].to_dict() == {1: 0, 2: 300, 3: 900, 4: 2190, 5: 36500}
    assert out["rank"].to_dict() == {5: 1, 4: 2, 3: 3, 2: 4, 1: 5}


def test_no_relief_date_waits_longer_than_any_dated_plan():
    day = dt.date(2026, 1, 1)
    hot = pd.DataFrame({"cell": [1, 2], "n": [5, 5], "status": ["on_track", "no_upgrade_planned"],
                        "relief_date": [dt.date(2029, 1, 1), None]})
    out = maps.pain(hot, day).set_index("cell")
    assert out.loc[1, "days_open"] == (dt.date(2029, 1, 1) - day).days == 1096
    assert out.loc[2, "days_open"] == 1097 and out.loc[2, "rank"] == 1


# -- drawing, selection, exports ----------------------------------------------------------------------

def test_deck_layers_records_and_colours(full):
    d = json.loads(mapdraw.deck(full, "relief", ("hotspots", "871f15375ffffff")).to_json())
    ids = [layer["id"] for layer in d["layers"]]
    assert ids == ["regions", "links", "sites", "hotspots", "picked", "towns"]  # town names on top
    hexes = d["layers"][3]["data"]
    hot = full.layers["hotspots"]
    assert [x["id"] for x in hexes] == [h3.int_to_str(int(c)) for c in hot["cell"]]
    assert [tuple(x["c"]) for x in hexes] == [maps.RELIEF_COLOURS[s] for s in hot["status"]]
    assert [x["n"] for x in hexes] == hot["n"].tolist()
    sig = json.loads(mapdraw.deck(full, "significance").to_json())["layers"][3]["data"]
    want = ["hot" if s and z > 0 else ("cold" if s else "not_significant")
            for s, z in zip(hot["significant"], hot["z"], strict=True)]
    assert [tuple(x["c"]) for x in sig] == [maps.SIGNIFICANCE_COLOURS[w] for w in want]
    sites = d["layers"][2]["data"]
    assert [x["p"] for x in sites[:3]] == [[round(lo, 5), round(la, 5)] for la, lo in
                                           zip(full.layers["sites"]["lat"][:3], full.layers["sites"]["lon"][:3],
                                               strict=True)]
    assert d["mapStyle"] == basemap.NO_BASEMAP and "mapProvider" not in d  # no third-party basemap by default
    with pytest.raises(ValueError, match="colour"):
        mapdraw.hotspot_records(hot, "rainbow")


@pytest.mark.parametrize(("selection", "expected"), [
    (None, None),
    ({}, None),
    ({"objects": {}}, None),
    ({"objects": {"hotspots": [{"id": "871f15375ffffff", "n": 3}]}}, ("hotspots", "871f15375ffffff")),
    ({"objects": {"sites": [{"id": "S000001"}]}, "indices": {"sites": [0]}}, ("sites", "S000001")),
    ({"objects": {"links": [{"id": "L1"}], "regions": [{"id": "x"}]}}, ("links", "L1")),
    ({"objects": {"regions": [{"id": "01"}]}}, None),
    ({"objects": {"hotspots": [{"n": 3}]}}, None),
])
def test_picked(selection, expected):
    assert mapdraw.picked(selection) == expected


def test_focus_is_the_picked_objects_place(full):
    cell = int(full.layers["hotspots"]["cell"].iloc[0])
    lat, lon = mapdraw.focus_of(("hotspots", h3.int_to_str(cell)), full)
    assert (lat, lon) == pytest.approx(h3.cell_to_latlng(h3.int_to_str(cell)))
    site = full.layers["sites"].iloc[5]
    assert mapdraw.focus_of(("sites", site["site_id"]), full) == (site["lat"], site["lon"])
    assert mapdraw.focus_of(("sites", "nope"), full) is None and mapdraw.focus_of(None, full) is None
    vs = mapdraw.view_state(full, (lat, lon))
    assert (vs.latitude, vs.longitude, vs.zoom) == (round(lat, 5), round(lon, 5), mapdraw.FOCUS_ZOOM)


def test_geojson_export_holds_each_hexagon(full):
    hot = full.hotspots.head(25)
    fc = json.loads(mapdraw.geojson_bytes(hot))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 25
    for f, (_, row) in zip(fc["features"], hot.iterrows(), strict=True):
        ring = f["geometry"]["coordinates"][0]
        assert len(ring) == 7 and ring[0] == ring[-1]
        poly = shape(f["geometry"])
        lat, lon = h3.cell_to_latlng(h3.int_to_str(int(row["cell"])))
        assert poly.contains(Point(lon, lat))  # lon/lat order, as GeoJSON wants
        props = f["properties"]
        assert (props["cell"], props["n"], props["status"], props["rank"]) == (
            h3.int_to_str(int(row["cell"])), int(row["n"]), row["status"], int(row["rank"]))
        assert props["relief_date"] == (None if pd.isna(row["relief_date"]) else str(row["relief_date"]))


def test_csv_export_is_the_table_with_formulas_escaped(full):
    hot = full.hotspots.head(3).copy()
    hot.loc[hot.index[0], "blocking_link_id"] = "=HYPERLINK(\"http://x\")"
    back = pd.read_csv(io.BytesIO(export.csv_bytes(mapdraw.table(hot))), encoding="utf-8-sig")
    assert list(back.columns) == mapdraw.TABLE_COLUMNS
    assert back["blocking_link_id"].iloc[0].startswith("'=")
    assert back["cell"].tolist() == [h3.int_to_str(int(c)) for c in hot["cell"]]
    assert back["pain"].tolist() == (hot["n"] * hot["days_open"]).tolist()


def test_outlines_are_the_states_simplified(con, full):
    n = con.execute("SELECT count(*) FROM regions WHERE level = 'state'").fetchall()[0][0]
    assert len(full.outlines) == n and not any(f["properties"]["inner"] for f in full.outlines)
    raw = {r: shape(json.loads(g)) for r, g in con.execute("SELECT region_id, geometry FROM regions").fetchall()}
    for f in full.outlines:
        simple = shape(f["geometry"])
        exact = raw[f["properties"]["id"]]  # simplifying moves the boundary by at most the tolerance
        assert simple.is_valid and simple.symmetric_difference(exact).area <= exact.length * maps.SIMPLIFY_DEGREES


def test_the_regions_within_a_region_are_drawn_thinner_and_lighter(con):
    region = con.execute("SELECT min(parent_id) FROM regions").fetchone()[0]
    deck = json.loads(mapdraw.deck(maps.view(con, maps.Params(as_of=AS_OF, region=region))).to_json())
    layer = next(x for x in deck["layers"] if x["id"] == "regions")
    assert layer["lineWidthUnits"] == "pixels"
    assert layer["getLineWidth"] == "@@=properties.inner ? 1 : 1.5"
    inner, outer = list(maps.INNER_REGION_COLOUR), list(maps.REGION_COLOUR)
    assert layer["getLineColor"] == f"@@=properties.inner ? {inner} : {outer}"
    assert "regions within it" in mapdraw.legend_html("relief", maps.LAYERS, region=True)
    assert "regions within it" not in mapdraw.legend_html("relief", maps.LAYERS)  # Germany: states only


def test_legend_names_every_colour_drawn():
    html = mapdraw.legend_html("relief", maps.LAYERS)
    for rgb in [*maps.RELIEF_COLOURS.values(), *maps.SITE_COLOURS.values(), *maps.LINK_COLOURS.values()]:
        assert f"rgb{rgb}" in html
    assert "blocked by transport" in html and "Hotspots by relief" in html
    sig = mapdraw.legend_html("significance", ("hotspots",))
    assert "hot spot (significant)" in sig and "Sites" not in sig


@pytest.mark.parametrize("every", [False, True])
def test_the_payload_bound_is_never_below_the_real_size(con, every):
    """`shrink` skips writing the JSON when `upper_bytes` fits: the bound must hold for both colour modes and a
    picked hexagon, on the default view and on one with every cell, site and link."""
    p = maps.Params(as_of=dt.date(2026, 11, 1))
    if every:
        p = dataclasses.replace(p, significant_only=False, site_statuses=asof.SITE_STATUSES,
                                link_states=asof.LINK_STATES)
    v = maps.view(con, p)
    real = max(mapdraw.payload_bytes(mapdraw.deck(v, colour, ("hotspots", "8" * 15))) for colour in maps.COLOUR_MODES)
    assert real <= mapdraw.upper_bytes(v) <= 1.6 * real


def test_the_view_of_the_held_network_equals_the_queried_one(con):
    """On the store the sites and links come from the network held in memory (lib/engine/network, rules in numpy),
    on any other Ibis backend from queries (rules in SQL; the relief reads the network there too, on every
    call, and tests/test_rules.py checks it against SQL): the two give the same frames, also for a region and
    an earlier date, with every site status and link state shown."""
    region = con.execute("SELECT min(region_id) FROM regions WHERE level = 'state'").fetchall()[0][0]
    for p in (maps.Params(as_of=AS_OF), maps.Params(as_of=AS_OF - dt.timedelta(days=200), region=region,
                                                     significant_only=False),
              maps.Params(as_of=AS_OF - dt.timedelta(days=90), significant_only=False, site_statuses=asof.SITE_STATUSES,
                          link_states=asof.LINK_STATES)):
        held, queried = maps.view(con, p), maps.view(engine.backend(con.cursor()), p)
        assert held.totals == queried.totals and held.totals["sites"] > 0
        for name in held.layers:
            pd.testing.assert_frame_equal(held.layers[name], queried.layers[name], check_dtype=False)
        pd.testing.assert_frame_equal(held.hotspots, queried.hotspots, check_dtype=False)


def test_the_nearest_town_is_the_one_a_plain_search_finds():
    from lib.views import places

    towns = geonames.german_places(geonames.TOWN_POPULATION)
    towns = towns.assign(german=places.labels(towns))  # the names people read
    rng = np.random.default_rng(7)
    lat, lon = rng.uniform(47.5, 54.8, 300), rng.uniform(6.0, 14.9, 300)
    got = places.nearest_town(lat, lon)
    for la, lo, name in zip(lat, lon, got, strict=True):  # great-circle distance to every town
        d = np.arccos(np.clip(np.sin(np.radians(la)) * np.sin(np.radians(towns["lat"])) + np.cos(np.radians(la))
                              * np.cos(np.radians(towns["lat"])) * np.cos(np.radians(towns["lon"] - lo)), -1, 1))
        best = towns["german"].iloc[int(np.argmin(d))]
        second = np.partition(d, 1)[1] - d.min()
        assert name == best or second * 6371 < 0.5, (la, lo, name, best)  # a tie within 500 m may go either way
    assert places.nearest_town(52.517, 13.389).tolist() == ["Berlin-Mitte"]  # a district, as geonames knows it
    assert places.nearest_town(48.137, 11.575).tolist() == ["München"]  # the German name
    assert places.nearest_town(52.3746, 9.7379).tolist() == ["Mitte (Hannover)"]  # a shared name, told apart


def test_tooltips_say_where_how_many_what_and_when_in_words(full, con):
    hot = full.layers["hotspots"]
    records = mapdraw.hotspot_records(hot)
    for rec, row in zip(records, hot.itertuples(index=False), strict=True):
        assert rec["t"].startswith("near ") and f"\n{int(row.n):,} complaint{'s' * (row.n != 1)}\n" in rec["t"]
        assert "<" not in rec["t"]  # plain text: the chart would show tags as written
        assert mapdraw.LABELS[row.status] in rec["t"] and "_" not in rec["t"] and "None" not in rec["t"]
        due = row.status != "relieved" and pd.notna(row.relief_date)
        assert ("relieved from" in rec["t"]) == due
        if due:
            assert f"relieved from {pd.Timestamp(row.relief_date):%Y-%m-%d}" in rec["t"]
    names = dict(con.execute("SELECT site_id, coalesce(name, '') FROM sites").fetchall())
    sites = mapdraw.site_records(full.layers["sites"])
    for rec in sites:  # a site by its name and id, or by its id where the input gave it no name
        who = f"{names[rec['id']]} ({rec['id']})" if names[rec["id"]] else rec["id"]
        assert rec["t"] == f"Site {who}: {mapdraw.LABELS[rec['s']]}"
    assert any(names[rec["id"]] for rec in sites)
    unnamed = full.layers["sites"].head(2).assign(name=["", "Rathaus"])
    assert [r["t"].split(":")[0] for r in mapdraw.site_records(unnamed)] == [
        f"Site {unnamed['site_id'].iloc[0]}", f"Site Rathaus ({unnamed['site_id'].iloc[1]})"]
    for rec in mapdraw.link_records(full.layers["links"]):
        assert rec["t"] == f"Transport link {rec['id']}: {mapdraw.LABELS[rec['s']]}"
    assert mapdraw.deck(full)._tooltip["text"] == "{t}"


def test_a_tooltip_counts_one_complaint_in_the_singular():
    tips = [mapdraw._hotspot_tip("Kiel", n, "late", None) for n in (0, 1, 2, 1001)]
    assert tips == ["near Kiel\n0 complaints\nlate", "near Kiel\n1 complaint\nlate", "near Kiel\n2 complaints\nlate",
                    "near Kiel\n1,001 complaints\nlate"]


def test_a_story_table_reads_dates_codes_and_gaps_in_words():
    import datetime as dt

    frame = pd.DataFrame({
        "link_id": pd.array(["L1", None], dtype="string"), "kind": ["leased_line", None],
        "status_before": ["blocked_by_transport", "on_track"], "done": [dt.date(2026, 3, 5), None],
        "due": pd.to_datetime(["2027-01-02", None]), "owner": [None, "Ost"], "n": [3, 4]})
    shown = mapdraw.readable_story(frame)
    assert shown.to_dict("list") == {
        "link_id": ["L1", ""], "kind": ["leased line", ""], "status_before": ["blocked by transport", "on track"],
        "done": ["2026-03-05", ""], "due": ["2027-01-02", ""], "owner": ["", "Ost"], "n": [3, 4]}


def test_a_sites_new_name_reaches_the_map(demo_db, tmp_path):
    """A site renamed by hand: the next view names it anew (the held network's content covers the names)."""
    import shutil

    path = tmp_path / "store.duckdb"
    shutil.copy(demo_db, path)
    c = duckdb.connect(str(path))
    try:
        p = maps.Params(as_of=AS_OF, region="11")
        site = maps.view(c, p).layers["sites"]["site_id"].iloc[0]
        c.execute("UPDATE sites SET name = 'Rathaus West' WHERE site_id = ?", [site])
        again = maps.view(c, p).layers["sites"].set_index("site_id")
        assert again.loc[site, "name"] == "Rathaus West"
        assert maps.site_names(c, None)[site] == "Rathaus West"  # the same name where nothing is held
    finally:
        c.close()
