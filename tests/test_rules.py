"""The rules of lib/engine/rules in numpy (the held network, lib/engine/network) vs the same rules in SQL, and the
relief against a plain loop, on random worlds imported through the store: per upgrade, site, link and hotspot."""

from __future__ import annotations

import datetime as dt

import h3
import numpy as np
import pandas as pd
import pytest

from lib import engine
from lib.engine import asof, linkage, network, rules
from tests.test_linkage import BASE, H, assert_relief_equal, build, reference_relief

DAY0 = dt.date(2025, 1, 1)
DATES = [DAY0 + dt.timedelta(days=d) for d in (-30, 0, 45, 90, 120, 180, 240, 400)]


def _date(rng, p_null: float = 0.3, far: float = 0.0) -> str | None:
    """A random ISO date in 2025 (some on the test dates themselves), or None; with probability `far` the
    placeholder 9999-12-31 (past what nanoseconds hold: such dates must come back as themselves)."""
    if rng.random() < p_null:
        return None
    if rng.random() < far:
        return "9999-12-31"
    if rng.random() < 0.2:
        return DATES[rng.integers(len(DATES))].isoformat()
    return (DAY0 + dt.timedelta(days=int(rng.integers(-60, 420)))).isoformat()


def random_world(new_store, seed: int):
    """Sites on the cells around the hotspot H, links, upgrades with random dates, links and statuses, and
    complaints in some of the resolution-9 cells there."""
    rng = np.random.default_rng(seed)
    near = sorted(h3.api.basic_int.grid_disk(H, 4))
    sites = []
    for i in range(int(rng.integers(3, 14))):
        lat, lon = h3.api.basic_int.cell_to_latlng(near[int(rng.integers(len(near)))])
        sites.append({"site_id": f"S{i:02d}", "lat": lat, "lon": lon,
                      "site_type": ["macro", "micro", "small_cell", None][int(rng.integers(4))],
                      "capacity_mbps": None if rng.random() < 0.5 else int(rng.integers(50, 2000)),
                      "azimuth_deg": None if rng.random() < 0.6 else int(rng.integers(0, 360)),
                      "beamwidth_deg": None if rng.random() < 0.5 else int(rng.integers(30, 240))})
    links = [{"link_id": f"L{i:02d}", "kind": "fibre", "a_lat": BASE[0], "a_lon": BASE[1], "b_lat": 51.3,
              "b_lon": 9.3, "completion_planned": _date(rng, far=0.15), "completion_actual": _date(rng, 0.6)}
             for i in range(int(rng.integers(1, 8)))]
    upgrades = []
    for i in range(int(rng.integers(0, 30))):
        # the import refuses milestones out of order and unknown sites or links: actual dates in order, some empty
        chain = sorted(_date(rng, 0.0) for _ in range(3))
        permit, installed, on_air = (x if rng.random() < 0.5 else None for x in chain)
        upgrades.append({
            "upgrade_id": f"U{i:03d}", "site_id": f"S{int(rng.integers(len(sites))):02d}", "kind": "hardware_swap",
            "permit_actual": permit, "installed_actual": installed, "on_air_planned": _date(rng, 0.0, far=0.05),
            "on_air_actual": on_air, "status": [None, "cancelled"][int(rng.random() < 0.2)],
            "transport_link_id": None if rng.random() < 0.3 else f"L{int(rng.integers(len(links))):02d}"})
    fine = sorted(c for cell in near for c in h3.api.basic_int.cell_to_children(cell, 9))
    picked = rng.integers(len(fine), size=int(rng.integers(0, 40)))
    complaints = {fine[int(i)]: int(rng.integers(1, 20)) for i in picked}
    return build(new_store, sites, links, upgrades, complaints)


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_upgrade_rules_agree_in_numpy_and_sql(new_store, seed):
    con = random_world(new_store, seed)
    inputs = engine.backend(con).execute(network.upgrade_inputs_expr(con)).sort_values("upgrade_id")
    u = {c: network.dates(inputs[c]) for c in (*rules.COLUMNS, "permit_actual") if c != "link_id"}
    u["link_id"] = inputs["link_id"].to_numpy(dtype=object)
    for d in DATES:
        want = engine.backend(con).execute(linkage.upgrade_flags_expr(con, d)).sort_values("upgrade_id")
        got = rules.evaluate(u, d)
        for name in rules.FLAGS:
            w = want[name]
            if name.endswith("_date"):
                np.testing.assert_array_equal(got[name], network.dates(w), err_msg=f"{name} {d}")
            else:
                np.testing.assert_array_equal(got[name], w.to_numpy(dtype="int64"), err_msg=f"{name} {d}")


@pytest.mark.parametrize("seed", SEEDS)
def test_sites_links_and_relief_of_the_held_network_equal_the_queried_ones(new_store, seed):
    con = random_world(new_store, seed)
    ibis_con = engine.backend(con.cursor())  # another engine: the rules run as SQL there
    hot = sorted(h3.api.basic_int.grid_disk(H, 5))
    for d in DATES:
        pd.testing.assert_frame_equal(asof.sites_as_of(con, d), asof.sites_as_of(ibis_con, d), check_dtype=False)
        pd.testing.assert_frame_equal(asof.links_as_of(con, d), asof.links_as_of(ibis_con, d), check_dtype=False)
        assert_relief_equal(linkage.relief(con, hot, as_of=d), reference_relief(con, hot, d))


def test_a_change_by_hand_is_seen_and_an_unchanged_store_is_read_once(new_store):
    con = random_world(new_store, 3)
    first = network.held(con)
    assert network.held(con) is first  # nothing changed: the same arrays
    site_id = con.execute("SELECT min(site_id) FROM upgrades WHERE status IS NULL OR status <> 'cancelled'"
                          ).fetchall()[0][0]
    before = asof.sites_as_of(con, DATES[-1]).set_index("site_id")["status"][site_id]
    con.execute("UPDATE upgrades SET on_air_actual = DATE '2024-01-01', permit_actual = NULL, status = NULL "
                "WHERE site_id = ?", [site_id])
    assert network.held(con) is not first
    after = asof.sites_as_of(con, DATES[-1]).set_index("site_id")["status"][site_id]
    assert after == "on_air" and (before != "on_air" or first.u is not network.held(con).u)
    hot = sorted(h3.api.basic_int.grid_disk(H, 5))
    assert_relief_equal(linkage.relief(con, hot, as_of=DATES[-1]), reference_relief(con, hot, DATES[-1]))


def test_pick_orders_unknown_first_then_latest_then_link():
    group = np.array([0, 0, 0, 1, 1, 2])
    date = np.array(["2025-03-01", "NaT", "NaT", "2025-01-01", "2025-02-01", "2025-05-01"], dtype="datetime64[D]")
    link = np.array([0, 5, 3, 1, 2, 4])
    out = rules.pick(group, np.array([True, True, True, True, True, False]), date, link, 4)
    assert out["pick_link_id"].tolist() == [3, 2, -1, -1]  # unknown first (ties: the smaller), then the latest
    assert out["pick_known"].tolist() == [0, 1, 0, 0]


def test_named_gives_text_of_pandas_str_dtype():
    got = rules.named(np.array([2, 0, 1, 1]), ("a", "b", "c"))
    pd.testing.assert_series_equal(got, pd.Series(["c", "a", "b", "b"], dtype="str"))


def test_far_dates_come_back_as_themselves(new_store):
    got = []
    for seed in SEEDS:
        con = random_world(new_store, seed)
        got += [d for d in linkage.relief(con, sorted(h3.api.basic_int.grid_disk(H, 5)), as_of=DATES[3])[
            "relief_date"] if d is not None]
    assert dt.date(9999, 12, 31) in got  # the random worlds reach the placeholder, and it is not wrapped


def test_the_held_network_is_per_store_and_sees_region_names(new_store):
    """Two stores with the same sites, upgrades and links but another name of a region: each shows its own."""
    a, b = random_world(new_store, 5), random_world(new_store, 5)
    for con, name in ((a, "West"), (b, "Westen")):
        con.execute("INSERT INTO regions (region_id, name, level) VALUES ('W', ?, 'state')", [name])
    from lib.views import rollout
    names = [rollout.region_table(random_con, "state", DATES[3]).set_index("region_id")["name"].get("W")
             for random_con in (a, b)]
    assert names == ["West", "Westen"]


def test_a_site_without_a_cell_leaves_the_others_exact(new_store):
    con = random_world(new_store, 2)
    want = asof.sites_as_of(con, DATES[3])
    con.execute("UPDATE sites SET cell = NULL WHERE site_id = 'S00'")
    got = asof.sites_as_of(con, DATES[3])
    assert got["cell"].dtype == "int64" and got.loc[got["site_id"] == "S00", "cell"].item() == 0
    pd.testing.assert_series_equal(got["cell"].iloc[1:], want["cell"].iloc[1:].astype("int64"))
