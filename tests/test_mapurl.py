"""The planner map's view in the URL: every parameter parsed, bad ones fall back with a note, round trips."""

from __future__ import annotations

import datetime as dt

import pytest

from lib.views import maps, mapurl

D = dt.date
FIRST, LAST = D(2025, 5, 1), D(2026, 11, 1)
REGIONS = ["01", "09", "C01"]


def parse(**q) -> mapurl.State:
    return mapurl.parse(q, FIRST, LAST, REGIONS)


def test_no_parameters_give_the_defaults():
    s = parse()
    assert s.params == maps.Params(as_of=LAST) and s.colour == "relief" and s.pick is None and not s.notes


def test_every_parameter_is_read():
    s = parse(date="2026-02-03", region="09", kind="coverage", ch="app,hotline", uk="5g", ss="late", ls="done",
              rs="late,relieved", layers="hotspots,regions", sig="0", res="9", colour="significance",
              sel="hotspots:881f1d4d2dfffff")
    p = s.params
    assert (p.as_of, p.region, p.kind, p.res, p.significant_only) == (D(2026, 2, 3), "09", "coverage", 9, False)
    assert p.channels == ("hotline", "app")  # in the schema's order
    assert (p.upgrade_kinds, p.site_statuses, p.link_states) == (("5g",), ("late",), ("done",))
    assert p.relief_statuses == ("relieved", "late") and p.layers == ("hotspots", "regions")
    assert (s.colour, s.pick, s.notes) == ("significance", ("hotspots", "881f1d4d2dfffff"), [])


@pytest.mark.parametrize(("query", "field", "default", "words"), [
    ({"date": "yesterday"}, "as_of", LAST, "not a date"),
    ({"date": "2024-01-01"}, "as_of", LAST, "outside the data"),
    ({"date": "2027-01-01"}, "as_of", LAST, "outside the data"),
    ({"region": "Atlantis"}, "region", None, "not a known region"),
    ({"kind": "weather"}, "kind", "capacity", "not one of"),
    ({"ch": "pigeon,app"}, "channels", None, "unknown pigeon"),
    ({"ss": "late,burning"}, "site_statuses", maps.Params(as_of=LAST).site_statuses, "unknown burning"),
    ({"layers": "x"}, "layers", maps.LAYERS, "unknown x"),
    ({"sig": "yes"}, "significant_only", True, "must be 0 or 1"),
    ({"res": "12"}, "res", None, "not one of"),
    ({"study": "galaxy"}, "study", "near", "not one of"),
])
def test_a_bad_parameter_falls_back_with_a_note(query, field, default, words):
    s = mapurl.parse(query, FIRST, LAST, REGIONS)
    assert getattr(s.params, field) == default
    assert len(s.notes) == 1 and words in s.notes[0] and list(query)[0] in s.notes[0]


@pytest.mark.parametrize("query", [{"colour": "rainbow"}, {"sel": "hotspots:zzz"}, {"sel": "towers:1"},
                                   {"sel": "nothing"}])
def test_bad_colour_or_selection_falls_back(query):
    s = mapurl.parse(query, FIRST, LAST, REGIONS)
    assert (s.colour, s.pick) == ("relief", None) and len(s.notes) == 1


def test_lists_from_streamlit_take_the_last_value():
    assert mapurl.parse({"region": ["01", "09"]}, FIRST, LAST, REGIONS).params.region == "09"


@pytest.mark.parametrize("query", [
    {},
    {"date": "2026-02-03"},
    {"region": "C01", "kind": "all", "sig": "0", "res": "8"},
    {"ch": "crowd_list", "uk": "hardware_swap,new_site", "rs": "no_upgrade_planned", "ls": "late,done"},
    {"ss": "no_upgrade,planned,permit,installed,on_air,late", "layers": "sites", "colour": "significance"},
    {"sel": "sites:S000001"},
    {"ch": ""},
    {"study": "country", "res": "8"},
])
def test_query_round_trips(query):
    s = parse(**query)
    assert not s.notes
    assert mapurl.query(s, LAST) == {k: v for k, v in query.items()}


def test_defaults_are_left_out_of_the_url():
    p = maps.Params(as_of=LAST, channels=("crowd_list", "hotline", "app", "social"), layers=maps.LAYERS)
    assert mapurl.query(mapurl.State(p), LAST) == {}


@pytest.mark.parametrize(("day", "expected"), [
    (D(2025, 5, 1), D(2025, 6, 1)),
    (D(2026, 1, 31), D(2026, 2, 28)),
    (D(2026, 10, 15), D(2026, 11, 1)),
    (LAST, FIRST),
])
def test_play_steps_a_month_and_starts_over_at_the_end(day, expected):
    assert mapurl.next_month(day, FIRST, LAST) == expected


@pytest.mark.parametrize("query", [
    {},
    {"date": "2026-02-03", "region": "09", "kind": "coverage", "ch": "app", "uk": "5g,new_site", "ss": "late",
     "ls": "", "rs": "late", "layers": "sites,hotspots", "sig": "0", "res": "9", "colour": "significance"},
    {"ch": "crowd_list,hotline,app,social", "uk": "hardware_swap,new_carrier,5g,new_site"},
])
def test_widgets_show_the_state_and_give_it_back(query):
    s = parse(**query)
    values = mapurl.widget_values(s)
    assert set(values) == {*mapurl.WIDGETS, "map_colour", "map_pick"}
    assert mapurl.params_from(values) == s.params
    assert values["map_colour"] == s.colour


def test_widgets_for_every_channel_mean_no_channel_filter():
    values = mapurl.widget_values(parse())
    values["map_ch"] = ["social", "app", "hotline", "crowd_list"]
    assert mapurl.params_from(values).channels is None
    values["map_ch"] = ["social", "app"]
    assert mapurl.params_from(values).channels == ("app", "social")


def test_the_channel_and_kind_filters_start_empty_and_empty_means_all():
    values = mapurl.widget_values(parse())
    assert values["map_ch"] == [] and values["map_uk"] == []  # picking one is one click, not removing three
    assert mapurl.params_from(values).channels is None and mapurl.params_from(values).upgrade_kinds is None
    values["map_ch"] = ["hotline"]
    assert mapurl.params_from(values).channels == ("hotline",)
    assert mapurl.widget_values(parse(ch="hotline"))["map_ch"] == ["hotline"]


def test_the_newest_selection_wins():
    memory: dict = {}
    ranked = ["871f15375ffffff", "871f1d4d2ffffff"]
    hex_a = {"objects": {"hotspots": [{"id": "88aaaaaaaaaaaaa"}]}}
    assert mapurl.choose(memory, None, [], ranked) is None
    assert mapurl.chart_key(memory) == "map_chart_0"
    assert mapurl.choose(memory, hex_a, [], ranked) == ("hotspots", "88aaaaaaaaaaaaa")  # a map click
    assert mapurl.choose(memory, hex_a, [1], ranked) == ("hotspots", ranked[1])  # then a table row
    assert mapurl.chart_key(memory) == "map_chart_1"  # ... starts the chart afresh: nothing selected in it
    assert mapurl.choose(memory, None, [1], ranked) == ("hotspots", ranked[1])  # nothing new: kept
    assert mapurl.choose(memory, hex_a, [1], ranked) == ("hotspots", "88aaaaaaaaaaaaa")  # the same place clicked
    site = {"objects": {"sites": [{"id": "S1"}]}}
    assert mapurl.choose(memory, site, [1], ranked) == ("sites", "S1")  # a new click
    assert mapurl.choose(memory, None, [1], ranked) == ("sites", "S1")  # the click undone: kept
    assert mapurl.chart_key(memory) == "map_chart_1"  # clicks keep the chart
    mapurl.clear(memory)  # "Clear selection"
    assert mapurl.chart_key(memory) == "map_chart_2"
    assert mapurl.choose(memory, None, [1], ranked) is None
    assert mapurl.choose(memory, site, [1], ranked) == ("sites", "S1")  # the same site again, in the new chart
    mapurl.clear(memory)
    assert mapurl.choose(memory, None, [5], ranked) is None  # a row that is no longer listed


def test_the_whole_country_is_studied_at_resolution_7_and_8_only():
    assert parse(study="country").params.study_area == "country"  # all of Germany: resolution 7
    assert parse(study="country", region="09").params.study_area == "country"  # a region: 8
    assert parse(study="country", res="9").params.study_area == "near"
    assert parse(res="8").params.study_area == "near"


def test_play_steps_only_after_a_pause_since_its_last_step_and_the_last_page_run():
    seconds = 2.5  # a step is due 2.25 s (the interval less 10 %) after the later of the two
    assert mapurl.play_due(now=102.25, stepped=100.0, ran=0.0, seconds=seconds)  # exactly then
    assert not mapurl.play_due(now=102.24, stepped=100.0, ran=0.0, seconds=seconds)
    # a page run that ended at 104 (a slow one, or a person's edit): the next step waits from its end
    assert not mapurl.play_due(now=105.0, stepped=100.0, ran=104.0, seconds=seconds)
    assert mapurl.play_due(now=106.25, stepped=100.0, ran=104.0, seconds=seconds)
    assert mapurl.play_due(now=2.25, stepped=0.0, ran=0.0, seconds=seconds)  # a new session
