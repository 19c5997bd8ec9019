"""What hotspots wait on, ranked by the pain waiting, and the what-if of moving one date (never saved)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lib import store
from lib.engine import linkage, network, serving
from lib.views import bottlenecks, maps
from tests.test_linkage import AS_OF, H, link, two_places, upgrade

D = dt.date.fromisoformat


@pytest.fixture
def world(new_store):
    """H: 30 complaints on S1 (U1 installed, waiting on link L1 due 2025-12-01), 10 on S2 (U2 due 2025-09-01)."""
    con = two_places(new_store, 30, 10, [upgrade("U1", "2025-04-01", link_id="L1", installed="2025-03-01"),
                                        upgrade("U2", "2025-09-01", site_id="S2")], [link("L1", "2025-12-01")])
    yield con
    con.close()


def _relief(con, net):
    return linkage.relief_of(net, [H], 8, AS_OF, serving.served_load(con, network.held(con))).iloc[0]


def test_a_hotspot_waits_on_every_open_item_of_the_sites_its_relief_needs(world):
    net = network.held(world)
    got = linkage.waits_on(net, [H], 8, AS_OF, serving.served_load(world, net))
    assert got[["site_id", "upgrade_id", "link_id", "date"]].values.tolist() == [
        ["S1", "U1", "L1", D("2025-12-01")], ["S2", "U2", None, D("2025-09-01")]]
    assert _relief(world, net)["relief_date"] == D("2025-12-01")  # S1 carries 75 %: its link sets the date


def test_moving_the_link_moves_the_relief_date_and_nothing_is_saved(world):
    net = network.held(world)
    moved = network.with_plan(net, D("2025-08-01"), link_id="L1")
    row = _relief(world, moved)
    assert row["relief_date"] == D("2025-09-01")  # 75 % on 08-01 is short of 80 %: S2's date completes it
    assert _relief(world, network.held(world))["relief_date"] == D("2025-12-01")  # the store is unchanged
    assert world.execute("SELECT completion_planned FROM transport_links").fetchall()[0][0] == D("2025-12-01")


def test_moving_the_small_site_earlier_changes_nothing(world):
    net = network.with_plan(network.held(world), D("2025-07-01"), upgrade_id="U2")
    assert _relief(world, net)["relief_date"] == D("2025-12-01")


def test_a_what_if_needs_one_known_item(world):
    net = network.held(world)
    with pytest.raises(ValueError, match="either one link or one upgrade"):
        network.with_plan(net, AS_OF)
    with pytest.raises(ValueError, match="no upgrade waits on transport link 'L9'"):
        network.with_plan(net, AS_OF, link_id="L9")
    with pytest.raises(ValueError, match="no upgrade 'U9'"):
        network.with_plan(net, AS_OF, upgrade_id="U9")


@pytest.fixture(scope="module")
def demo(demo_db):
    con = store.connect(demo_db, read_only=True)
    yield con, maps.Params(as_of=D("2026-11-01"), region=None, res=8)
    con.close()


def test_the_ranking_sums_the_pain_of_the_hotspots_waiting(demo):
    con, p = demo
    links, ups = bottlenecks.ranking(con, p)
    hot = maps.view(con, p).hotspots
    net = network.held(con)
    waits = linkage.waits_on(net, hot["cell"], p.resolution, p.as_of, serving.served_load(con, net)).merge(
        hot[["cell", "n", "pain"]], on="cell")
    assert len(links) + len(ups) > 0
    for row in links.itertuples():
        mine = waits[waits["link_id"] == row.link_id]
        assert (row.hotspots, row.complaints, row.pain) == (len(mine), mine["n"].sum(), mine["pain"].sum())
    assert list(links["pain"]) == sorted(links["pain"], reverse=True)
    for row in ups.itertuples():
        mine = waits[(waits["upgrade_id"] == row.upgrade_id) & waits["link_id"].isna()]
        assert (row.hotspots, row.pain) == (len(mine), mine["pain"].sum())


def test_later_never_relieves_sooner_and_the_same_date_changes_nothing(demo):
    con, p = demo
    links, ups = bottlenecks.ranking(con, p)
    item = ("link", links.iloc[0]) if len(links) else ("upgrade", ups.iloc[0])
    kind, row = item
    ids = (row["link_id"], None) if kind == "link" else (None, row["upgrade_id"])
    assert bottlenecks.what_if(con, p, row["date"], *ids).empty  # its own date: nothing moves
    later = bottlenecks.what_if(con, p, D("2028-06-30"), *ids)
    assert len(later) > 0 and (later["pain_change"] >= 0).all()
    assert (pd.to_datetime(later["relief_after"]).fillna(pd.Timestamp.max)
            >= pd.to_datetime(later["relief_before"]).fillna(pd.Timestamp.min)).all()
    sooner = bottlenecks.what_if(con, p, p.as_of + dt.timedelta(days=1), *ids)
    assert (sooner["pain_change"] <= 0).all()
