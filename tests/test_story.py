"""The story of one hotspot or site, on tests/worlds.py's hand-built world whose every answer is known."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lib import cells
from lib.views import story

D = dt.date



@pytest.fixture
def world_con(world_store):
    """The tiny world on a DuckDB file and on a PostgreSQL server in turn."""
    return world_store

def cell(lat: float, lon: float, res: int = 8) -> int:
    return int(cells.parent(cells.latlng_to_cells([lat], [lon]), res)[0])


S1 = cell(51.25, 9.25)  # K1 (slow_data, hotline, Sunday 2025-01-05) lies here; served by S1 only (U1, no link)
S2 = cell(51.10, 9.10)  # served by S2 only (U2 waits on link L1)


@pytest.mark.parametrize(("day", "status", "relief", "actual", "delay"), [
    (D(2025, 3, 1), "on_track", D(2025, 4, 1), None, None),
    (D(2025, 4, 5), "late", D(2025, 4, 1), None, 4),  # on air planned 04-01, not yet: 4 days overdue
    (D(2025, 4, 12), "relieved", D(2025, 4, 10), D(2025, 4, 10), 9),  # on air 04-10: 9 days late
])
def test_hotspot_story_replays_the_upgrade(world_con, day, status, relief, actual, delay):
    s = story.hotspot(world_con, S1, 8, day)
    assert (s.relief["status"], s.relief["relief_date"]) == (status, relief)
    assert s.sites["site_id"].tolist() == ["S1"] and s.sites["rank"].tolist() == [1]
    u = s.upgrades.iloc[0]
    assert s.upgrades["upgrade_id"].tolist() == ["U1"]
    assert (u["on_air_planned"], u["on_air_actual"]) == (D(2025, 4, 1), actual)
    assert (None if pd.isna(u["delay_days"]) else int(u["delay_days"])) == delay
    assert s.links.empty
    assert s.weekly["n"].sum() == 1 and s.weekly.loc[s.weekly["n"] == 1, "week"].tolist() == [D(2024, 12, 30)]
    assert list(s.upgrades.columns) == ["site_id", "share", *story.UPGRADE_COLUMNS[1:]]
    assert s.upgrades["share"].tolist() == [1.0] and s.relief["relief_share"] == (1.0 if status == "relieved" else 0.0)


def test_hotspot_story_counts_only_the_chosen_channels(world_con):
    assert story.hotspot(world_con, S1, 8, D(2025, 3, 1), channels=("hotline",)).weekly["n"].sum() == 1
    assert story.hotspot(world_con, S1, 8, D(2025, 3, 1), channels=("app",)).weekly["n"].sum() == 0
    assert story.hotspot(world_con, S1, 8, D(2025, 3, 1), kind="coverage").weekly["n"].sum() == 0


def test_a_hotspot_waiting_on_transport_names_the_link(world_con):
    s = story.hotspot(world_con, S2, 8, D(2025, 5, 10))
    assert (s.relief["status"], s.relief["blocking_link_id"]) == ("blocked_by_transport", "L1")
    assert s.links[["link_id", "state", "completion_planned"]].values.tolist() == [["L1", "planned", D(2025, 6, 1)]]
    assert s.impact is None


def test_impact_of_a_relieved_hotspot(world_con):
    s = story.hotspot(world_con, S1, 8, D(2025, 7, 1))
    im = s.impact
    assert (im.relieved_on, im.before, im.after, im.weeks, im.complete) == (D(2025, 4, 10), 0.0, 0.0, 8, True)
    assert im.pct_change is None
    assert story.hotspot(world_con, S1, 8, D(2025, 5, 1)).impact.complete is False


def test_impact_by_hand():
    """Relief on Wednesday 2025-04-02: its week (from Monday 03-31) is left out; 8 weeks either side."""
    weeks = pd.date_range("2025-01-06", "2025-07-28", freq="7D").date
    n = [10 if w < D(2025, 3, 31) else (100 if w == D(2025, 3, 31) else 3) for w in weeks]
    weekly = pd.DataFrame({"week": weeks, "n": n})
    im = story.hotspot_impact(weekly, {"status": "relieved", "relief_date": D(2025, 4, 2)}, D(2025, 8, 1))
    assert (im.before, im.after, im.change, im.pct_change, im.complete) == (10.0, 3.0, -7.0, -70.0, True)
    assert story.hotspot_impact(weekly, {"status": "late", "relief_date": D(2025, 4, 2)}, D(2025, 8, 1)) is None
    early = story.hotspot_impact(weekly, {"status": "relieved", "relief_date": D(2025, 4, 2)}, D(2025, 5, 1))
    assert early.complete is False


def test_site_story(world_con):
    s = story.site(world_con, "S2", D(2025, 5, 10))
    assert s.site["status"] == "late"
    assert s.upgrades["upgrade_id"].tolist() == ["U2"] and int(s.upgrades["delay_days"].iloc[0]) == 9
    assert s.links["link_id"].tolist() == ["L1"]
    assert story.site(world_con, "nope", D(2025, 5, 10)) is None


@pytest.mark.parametrize(("day", "state", "actual"), [
    (D(2025, 2, 1), "planned", None),
    (D(2025, 3, 15), "late", None),  # done on 03-20: not yet on 03-15
    (D(2025, 3, 25), "done", D(2025, 3, 20)),
])
def test_link_story_as_of(world_con, day, state, actual):
    row = story.link(world_con, "L2", day).iloc[0]
    assert (row["state"], row["completion_actual"], row["kind"]) == (state, actual, "microwave")


def test_weekly_figure_marks_the_relief_date(world_con):
    fig = story.weekly_figure(story.hotspot(world_con, S1, 8, D(2025, 4, 12)))
    assert fig.layout.shapes[0].x0 == pd.Timestamp(D(2025, 4, 10))
    assert "relieved 2025-04-10" in fig.layout.annotations[0].text
    planned = story.weekly_figure(story.hotspot(world_con, S1, 8, D(2025, 3, 1)))
    assert "relief planned 2025-04-01" in planned.layout.annotations[0].text


@pytest.mark.parametrize(("day", "status", "relief", "own_cell", "in_window"), [
    (D(2025, 2, 1), "planned", D(2025, 4, 1), 1, 2),  # K1 (its own cell) and K2 (next door) in the 90 days
    (D(2025, 4, 12), "relieved", D(2025, 4, 10), 0, 0),  # U1 on air 04-10; the January complaints are too old
])
def test_site_story_shows_the_cells_it_serves(world_con, day, status, relief, own_cell, in_window):
    """S1 carries the complaints of K1 (its own cell) and K2 (the next res-8 cell) alone: S2 lies 19 km away,
    beyond a macro site's reach; K3 lies far east, near S3 only."""
    import h3

    s = story.site(world_con, "S1", day)
    k2 = cell(51.251, 9.251)
    assert k2 != S1
    assert sorted(s.served["cell"]) == sorted([h3.int_to_str(S1), h3.int_to_str(k2)])
    assert s.served["share"].tolist() == [1.0, 1.0]
    own = s.served[s.served["cell"] == h3.int_to_str(S1)]
    assert own["complaints"].tolist() == [own_cell] and own["km"].iloc[0] < 0.5
    assert s.served["complaints"].sum() == in_window
    assert (s.relief["status"], s.relief["relief_date"]) == (status, relief)
    assert s.weekly["n"].sum() == 2  # the 52 weeks before the date hold K1 and K2
    fig = story.weekly_figure(s)
    assert fig.layout.shapes[0].x0 == pd.Timestamp(relief)
