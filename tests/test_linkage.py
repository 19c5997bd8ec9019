"""Serving and relief on hand-built worlds whose answers are known, and against an independent computation."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import defaultdict

import h3
import numpy as np
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from lib import cells, engine, store
from lib.engine import linkage, network, serving
from tests import worlds

BASE = (51.25, 9.25)  # the hotspot, and the site serving it
H = int(cells.parent(cells.latlng_to_cells([BASE[0]], [BASE[1]]), 8)[0])  # as the store places a site
FAR = (52.52, 13.40)  # Berlin: far from every site
AS_OF = dt.date(2025, 6, 1)
D = dt.date.fromisoformat

SITE_COLS = ["site_id", "lat", "lon", "site_type", "capacity_mbps", "azimuth_deg", "beamwidth_deg"]
LINK_COLS = ["link_id", "kind", "a_lat", "a_lon", "b_lat", "b_lon", "completion_planned", "completion_actual"]
UP_COLS = ["upgrade_id", "site_id", "kind", "permit_actual", "installed_planned", "installed_actual", "on_air_planned",
           "on_air_actual", "transport_link_id", "status"]
COMPLAINT_COLS = ["complaint_id", "received_at", "cell", "category", "channel"]


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})
    return out.getvalue().encode()


def build(new_store, sites: list[dict], links: list[dict] = (), upgrades: list[dict] = (),
          complaints: dict[int, int] | None = None):
    """A store holding exactly these records (every row must be accepted); `complaints`: res-9 cell -> how many."""
    con = new_store()
    said = [{"complaint_id": f"K{cell}-{i}", "received_at": "2025-01-05 10:00", "cell": h3.int_to_str(cell),
             "category": "slow_data", "channel": "app"} for cell, n in (complaints or {}).items() for i in range(n)]
    for table, rows, cols in (("sites", sites, SITE_COLS), ("transport_links", links, LINK_COLS),
                              ("upgrades", upgrades, UP_COLS), ("complaints", said, COMPLAINT_COLS)):
        if rows:
            r = store.import_file(con, _csv(rows, cols), table=table, file_name=f"{table}.csv")
            assert r.rows_rejected == 0, store.rejected_rows(con, r.import_id)
    return con


def site(site_id: str, latlon=BASE, site_type: str = "macro", **optional) -> dict:
    return {"site_id": site_id, "lat": latlon[0], "lon": latlon[1], "site_type": site_type} | optional


def link(link_id: str, planned: str | None, actual: str | None = None) -> dict:
    return {"link_id": link_id, "kind": "fibre", "a_lat": BASE[0], "a_lon": BASE[1], "b_lat": 51.3, "b_lon": 9.3,
            "completion_planned": planned, "completion_actual": actual}


def upgrade(upgrade_id: str, planned: str, actual: str | None = None, link_id: str | None = None,
            site_id: str = "S1", installed: str | None = None, status: str | None = None) -> dict:
    return {"upgrade_id": upgrade_id, "site_id": site_id, "kind": "hardware_swap", "on_air_planned": planned,
            "on_air_actual": actual, "transport_link_id": link_id, "installed_actual": installed,
            "status": status}


# -- relief: one site at the hotspot, its upgrades and links ----------------------------

RELIEF_CASES = {
    "on air, no link -> relieved on the actual date": (
        [], [upgrade("U1", "2025-04-01", "2025-04-10")], AS_OF, "relieved", "2025-04-10", None),
    "on air, link done later -> relieved on the link's date": (
        [link("L1", "2025-04-20", "2025-05-01")], [upgrade("U1", "2025-04-01", "2025-04-10", "L1")], AS_OF,
        "relieved", "2025-05-01", None),
    "planned in the future -> on_track, planned date": (
        [], [upgrade("U1", "2026-09-01")], AS_OF, "on_track", "2026-09-01", None),
    "planned date passed, no actual -> late": (
        [], [upgrade("U1", "2025-03-01")], AS_OF, "late", "2025-03-01", None),
    "link planned after the upgrade's date -> blocked": (
        [link("L1", "2026-02-01")], [upgrade("U1", "2025-04-01", link_id="L1", installed="2025-03-01")], AS_OF,
        "blocked_by_transport", "2026-02-01", "L1"),
    "link late, upgrade installed -> blocked": (
        [link("L1", "2025-05-01")], [upgrade("U1", "2025-07-01", link_id="L1", installed="2025-05-15")], AS_OF,
        "blocked_by_transport", "2025-07-01", "L1"),
    "link on time before a future upgrade -> on_track": (
        [link("L1", "2026-01-01")], [upgrade("U1", "2026-03-01", link_id="L1")], AS_OF,
        "on_track", "2026-03-01", None),
    "later link of two blocked upgrades is named": (
        [link("L1", "2026-02-01"), link("L2", "2026-05-01")],
        [upgrade("U1", "2025-04-01", link_id="L1"), upgrade("U2", "2025-05-01", link_id="L2")], AS_OF,
        "blocked_by_transport", "2026-05-01", "L2"),
    "one on air, one late -> late, latest date": (
        [], [upgrade("U1", "2025-01-01", "2025-01-05"), upgrade("U2", "2025-05-01")], AS_OF,
        "late", "2025-05-01", None),
    "link with no planned completion -> blocked, date unknown": (
        [link("L1", None)], [upgrade("U1", "2025-04-01", link_id="L1")], AS_OF,
        "blocked_by_transport", None, "L1"),
    "cancelled only -> no_upgrade_planned": (
        [], [upgrade("U1", "2025-04-01", status="cancelled")], AS_OF, "no_upgrade_planned", None, None),
    "cancelled ignored beside an on-air upgrade": (
        [], [upgrade("U1", "2025-04-01", "2025-04-10"), upgrade("U2", "2025-09-01", status="cancelled")], AS_OF,
        "relieved", "2025-04-10", None),
    # time slider: the same records seen on earlier days
    "slider: before the planned date -> on_track": (
        [], [upgrade("U1", "2025-04-08", "2025-04-10")], dt.date(2025, 4, 5), "on_track", "2025-04-08", None),
    "slider: after planned, before actual -> late": (
        [], [upgrade("U1", "2025-04-08", "2025-04-10")], dt.date(2025, 4, 9), "late", "2025-04-08", None),
    "slider: on the actual date -> relieved": (
        [], [upgrade("U1", "2025-04-08", "2025-04-10")], dt.date(2025, 4, 10), "relieved", "2025-04-10", None),
    "slider: on air, link not yet done and due after it -> blocked": (
        [link("L1", "2025-05-01", "2025-05-03")], [upgrade("U1", "2025-04-01", "2025-04-01", "L1")],
        dt.date(2025, 4, 20), "blocked_by_transport", "2025-05-01", "L1"),
    "slider: same records once the link is done -> relieved": (
        [link("L1", "2025-05-01", "2025-05-03")], [upgrade("U1", "2025-04-01", "2025-04-01", "L1")],
        dt.date(2025, 5, 3), "relieved", "2025-05-03", None),
}


@pytest.mark.parametrize(("links", "upgrades", "as_of", "status", "date", "blocking"), RELIEF_CASES.values(),
                         ids=RELIEF_CASES.keys())
def test_relief_cases(new_store, links, upgrades, as_of, status, date, blocking):
    con = build(new_store, [site("S1")], links, upgrades)
    out = linkage.relief(con, [H], as_of=as_of)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["cell"] == H and row["n_sites"] == 1
    assert row["status"] == status
    assert row["relief_date"] == (D(date) if date else None)
    assert row["blocking_link_id"] == blocking
    assert row["n_upgrades"] == sum(u["status"] != "cancelled" for u in upgrades)


def test_hotspot_far_from_every_site(new_store):
    con = build(new_store, [site("S1")], [], [upgrade("U1", "2025-04-01", "2025-04-10")])
    far = int(cells.latlng_to_cells([FAR[0]], [FAR[1]], 8)[0])
    out = linkage.relief(con, pd.DataFrame({"cell": [far, H, far]}), as_of=AS_OF)
    assert list(out["cell"]) == sorted([far, H])
    got = out.set_index("cell")
    assert got.loc[far, "status"] == "no_upgrade_planned"
    assert got.loc[far, "n_sites"] == 0 and got.loc[far, "n_upgrades"] == 0
    assert got.loc[far, "blocking_link_id"] is None
    assert got.loc[H, "status"] == "relieved"
    assert linkage.hotspot_sites(con, [far]).empty


def test_site_without_upgrade_is_counted_but_plans_nothing(new_store):
    con = build(new_store, [site("S1")])
    row = linkage.relief(con, [H], as_of=AS_OF).iloc[0]
    assert (row["n_sites"], row["n_upgrades"], row["status"]) == (1, 0, "no_upgrade_planned")


# -- serving: the nearest few within reach, shares by inverse square distance -------------

def north_of(latlon: tuple[float, float], km: float) -> tuple[float, float]:
    """A point `km` due north (on the sphere of serving.EARTH_KM)."""
    return latlon[0] + math.degrees(km / serving.EARTH_KM), latlon[1]


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * serving.EARTH_KM * math.asin(math.sqrt(h))


CENTRE = h3.api.basic_int.cell_to_latlng(H)


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Degrees clockwise from north of the great circle from a to b."""
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360


def east_of(latlon: tuple[float, float], km: float) -> tuple[float, float]:
    return latlon[0], latlon[1] + math.degrees(km / (serving.EARTH_KM * math.cos(math.radians(latlon[0]))))


def test_the_nearest_three_share_by_inverse_square_distance(new_store):
    km = {"S1": 0.5, "S2": 1.0, "S3": 2.0, "S4": 3.0}
    con = build(new_store, [site(s, north_of(CENTRE, d)) for s, d in km.items()])
    out = linkage.hotspot_sites(con, [H])
    assert list(out["site_id"]) == ["S1", "S2", "S3"] and list(out["rank"]) == [1, 2, 3]
    weight = {s: 1 / haversine_km(CENTRE, north_of(CENTRE, d)) ** 2 for s, d in km.items() if s != "S4"}
    want = [weight[s] / sum(weight.values()) for s in ("S1", "S2", "S3")]  # 4 : 1 : 0.25
    np.testing.assert_allclose(out["share"], want, rtol=1e-9)
    np.testing.assert_allclose(out["km"], [0.5, 1.0, 2.0], rtol=1e-6)
    assert out["share"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize(("site_type", "km", "serves"), [
    ("macro", 7.9, True), ("macro", 8.1, False), ("", 7.9, True),  # an empty type counts as macro
    ("micro", 0.99, True), ("micro", 1.01, False), ("small_cell", 0.29, True), ("small_cell", 0.31, False)])
def test_a_site_serves_within_the_reach_of_its_type(new_store, site_type, km, serves):
    con = build(new_store, [site("S1", north_of(CENTRE, km), site_type)])
    assert len(linkage.hotspot_sites(con, [H])) == (1 if serves else 0)
    row = linkage.relief(con, [H], as_of=AS_OF).iloc[0]
    assert row["n_sites"] == (1 if serves else 0)


def test_sites_out_of_reach_do_not_crowd_out_one_in_reach(new_store):
    micro = [site(f"M{i:02d}", north_of(CENTRE, 1.5 + 0.01 * i), "micro") for i in range(20)]  # near, out of reach
    con = build(new_store, [*micro, site("FAR", north_of(CENTRE, 5.0))])
    assert list(linkage.hotspot_sites(con, [H])["site_id"]) == ["FAR"]


def test_sites_at_the_same_distance_go_by_site_id(new_store):
    con = build(new_store, [site(s, CENTRE) for s in ("S5", "S3", "S4", "S2")])
    out = linkage.hotspot_sites(con, [H])
    assert list(out["site_id"]) == ["S2", "S3", "S4"]  # four at the same place: the three smallest ids
    np.testing.assert_allclose(out["share"], [1 / 3] * 3)


@pytest.mark.parametrize(("azimuth", "beam", "serves"), [
    (180, None, True),  # pointing at the hotspot (south of the site)
    (0, None, False),  # pointing away
    (240, None, True), (241, None, False),  # the default beam is 120 degrees: 60 either side
    (270, 180, True), (271, 180, False),  # a 180-degree beam: 90 either side
])
def test_a_sector_site_serves_only_within_its_beam(new_store, azimuth, beam, serves):
    north = north_of(CENTRE, 0.5)
    con = build(new_store, [site("S1", north, azimuth_deg=azimuth, beamwidth_deg=beam)])
    assert bearing(north, CENTRE) == pytest.approx(180, abs=1e-6)
    assert len(linkage.hotspot_sites(con, [H])) == (1 if serves else 0)


def test_a_sector_site_serves_all_round_within_near_km(new_store):
    con = build(new_store, [site("S1", north_of(CENTRE, 0.05), azimuth_deg=0)])  # pointing away, but 50 m off
    assert len(linkage.hotspot_sites(con, [H])) == 1


def test_capacity_shares_the_traffic_with_the_distance(new_store):
    con = build(new_store, [site("S1", east_of(CENTRE, 0.5), capacity_mbps=200),
                           site("S2", east_of(CENTRE, -0.5), capacity_mbps=100),
                           site("S3", north_of(CENTRE, 1.0))])  # no capacity: the median of those given, 150
    out = linkage.hotspot_sites(con, [H]).set_index("site_id")["share"]
    d = {"S1": haversine_km(CENTRE, east_of(CENTRE, 0.5)), "S2": haversine_km(CENTRE, east_of(CENTRE, -0.5)),
         "S3": haversine_km(CENTRE, north_of(CENTRE, 1.0))}
    w = {"S1": 200 / d["S1"] ** 2, "S2": 100 / d["S2"] ** 2, "S3": 150 / d["S3"] ** 2}
    assert out.to_dict() == pytest.approx({k: v / sum(w.values()) for k, v in w.items()}, rel=1e-6)
    assert_relief_equal(linkage.relief(con, [H], as_of=AS_OF), reference_relief(con, [H], AS_OF))


def test_distances_below_near_km_weigh_alike(new_store):
    con = build(new_store, [site("S1", CENTRE), site("S2", north_of(CENTRE, 0.05)), site("S3", north_of(CENTRE, 0.2))])
    out = linkage.hotspot_sites(con, [H]).set_index("site_id")["share"]
    w = {"S1": 1 / serving.NEAR_KM ** 2, "S2": 1 / serving.NEAR_KM ** 2, "S3": 1 / 0.2 ** 2}
    assert out.to_dict() == pytest.approx({k: v / sum(w.values()) for k, v in w.items()}, rel=1e-6)


# -- relief as a share of the complaints, by hand ----------------------------------------

OUTER = sorted(c for c in h3.api.basic_int.cell_to_children(H, 9) if c != h3.api.basic_int.cell_to_center_child(H, 9))
A, B = OUTER[0], next(c for c in OUTER if h3.api.basic_int.grid_distance(OUTER[0], c) == 2)  # opposite corners


def two_places(new_store, n_a: int, n_b: int, upgrades: list[dict], links: list[dict] = ()):
    """Hotspot H with n_a complaints in cell A and n_b in cell B (about 0.6 km apart), each served only by a
    small cell at its centre: S1 carries A's complaints, S2 B's."""
    sites = [site("S1", h3.api.basic_int.cell_to_latlng(A), "small_cell"),
             site("S2", h3.api.basic_int.cell_to_latlng(B), "small_cell")]
    return build(new_store, sites, links, upgrades, {A: n_a, B: n_b})


SHARE_CASES = {
    "S1 on air (75 %), S2 ahead -> partly relieved, relieved when S2 is due": (
        30, 10, [upgrade("U1", "2025-04-01", "2025-04-10"), upgrade("U2", "2025-09-01", site_id="S2")],
        AS_OF, "partly_relieved", 0.75, "2025-09-01"),
    "S2 overdue -> late, with the share relieved so far": (
        30, 10, [upgrade("U1", "2025-04-01", "2025-04-10"), upgrade("U2", "2025-05-01", site_id="S2")],
        AS_OF, "late", 0.75, "2025-05-01"),
    "exactly the threshold -> relieved on S1's date": (
        40, 10, [upgrade("U1", "2025-04-01", "2025-04-10"), upgrade("U2", "2025-05-01", site_id="S2")],
        AS_OF, "relieved", 0.8, "2025-04-10"),
    "S2 has no upgrade, 75 % can never reach 80 % -> no upgrade planned": (
        30, 10, [upgrade("U1", "2025-04-01", "2025-04-10")], AS_OF, "no_upgrade_planned", 0.75, None),
    "the small site alone on air: exactly the partly share": (
        30, 10, [upgrade("U1", "2025-09-01"), upgrade("U2", "2025-04-01", "2025-04-10", site_id="S2")],
        AS_OF, "partly_relieved", 0.25, "2025-09-01"),
    "below the partly share -> on track": (
        31, 10, [upgrade("U1", "2025-09-01"), upgrade("U2", "2025-04-01", "2025-04-10", site_id="S2")],
        AS_OF, "on_track", 10 / 41, "2025-09-01"),
    "the big site waits on a late link -> blocked, the small site's own lateness aside": (
        30, 10, [upgrade("U1", "2025-04-01", link_id="L1", installed="2025-03-01"),
                 upgrade("U2", "2025-05-01", site_id="S2")], AS_OF, "blocked_by_transport", 0.0, "2025-12-01"),
    "a date equal to the as-of date: on air counts that day": (
        30, 10, [upgrade("U1", "2025-06-01", "2025-06-01"), upgrade("U2", "2025-06-01", "2025-06-01", site_id="S2")],
        AS_OF, "relieved", 1.0, "2025-06-01"),
}


@pytest.mark.parametrize(("n_a", "n_b", "upgrades", "as_of", "status", "share", "date"), SHARE_CASES.values(),
                         ids=SHARE_CASES.keys())
def test_relief_share_by_hand(new_store, n_a, n_b, upgrades, as_of, status, share, date):
    con = two_places(new_store, n_a, n_b, upgrades, [link("L1", "2025-12-01")])
    row = linkage.relief(con, [H], as_of=as_of).iloc[0]
    assert (row["status"], row["relief_date"]) == (status, D(date) if date else None)
    assert row["relief_share"] == pytest.approx(share, abs=1e-12)
    assert row["n_sites"] == 2
    sites = linkage.hotspot_sites(con, [H])
    assert dict(zip(sites["site_id"], sites["share"], strict=True)) == pytest.approx(
        {"S1": n_a / (n_a + n_b), "S2": n_b / (n_a + n_b)})
    assert row["blocking_link_id"] == ("L1" if status == "blocked_by_transport" else None)


def test_complaints_no_site_reaches_count_and_are_never_relieved(new_store):
    far_cell = int(cells.latlng_to_cells([FAR[0]], [FAR[1]], 9)[0])
    con = build(new_store, [site("S1", h3.api.basic_int.cell_to_latlng(A), "small_cell")], [],
                [upgrade("U1", "2025-04-01", "2025-04-10")], {A: 10, far_cell: 5})
    rel = linkage.relief(con, [H, int(cells.parent([far_cell], 8)[0])], as_of=AS_OF).set_index("cell")
    assert rel.loc[H, "status"] == "relieved" and rel.loc[H, "relief_share"] == 1.0
    far = rel.loc[int(cells.parent([far_cell], 8)[0])]
    assert (far["status"], far["n_sites"], far["relief_share"]) == ("no_upgrade_planned", 0, 0.0)


# -- an independent computation: plain loops over the store's rows ------------------------

NEVER = (True, dt.date.min)


def _plain_rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _day(v):
    return None if v is None else (v.date() if isinstance(v, dt.datetime) else v)


def _site_states(con, as_of: dt.date) -> dict[str, dict]:
    """Per site, the documented rules over its upgrades that are not cancelled, by a plain loop."""
    links = {r["link_id"]: r for r in _plain_rows(con, "SELECT link_id, completion_planned, completion_actual "
                                                       "FROM transport_links")}
    out = defaultdict(lambda: {"n": 0, "all_done": True, "blocked": False, "late": False, "undated": False,
                               "date": dt.date.min, "picks": []})
    for u in _plain_rows(con, "SELECT * FROM upgrades"):
        if u["status"] == "cancelled":
            continue
        planned, actual, installed = (_day(u[c]) for c in ("on_air_planned", "on_air_actual", "installed_actual"))
        on_air = actual is not None and actual <= as_of
        up_date = actual if on_air else planned
        lk = links.get(u["transport_link_id"])
        if lk is None:
            link_done, link_date = True, None
        else:
            done_at, plan_at = _day(lk["completion_actual"]), _day(lk["completion_planned"])
            link_done = done_at is not None and done_at <= as_of
            link_date = done_at if link_done else plan_at
        ready = (installed is not None and installed <= as_of) or on_air or planned <= as_of
        blocked = not link_done and ready and (link_date is None or link_date < as_of or link_date > planned)
        late = not on_air and planned < as_of
        st = out[u["site_id"]]
        st["n"] += 1
        st["all_done"] &= on_air and link_done
        st["blocked"] |= blocked
        st["late"] |= late
        st["undated"] |= not link_done and link_date is None
        st["date"] = max(st["date"], up_date if link_date is None else max(up_date, link_date))
        if blocked:
            st["picks"].append((link_date is not None, -(link_date or dt.date.min).toordinal(),
                                u["transport_link_id"]))
    return out


def reference_relief(con, hotspot_cells, as_of: dt.date, res: int = 8) -> pd.DataFrame:
    """`linkage.relief` by plain loops: haversine distances to every site, the reach of each type, the nearest
    three by distance then id, 1/d^2 shares, the documented relief rules, share threshold and statuses."""
    sites = _plain_rows(con, "SELECT site_id, lat, lon, site_type, capacity_mbps, azimuth_deg, beamwidth_deg "
                             "FROM sites ORDER BY site_id")
    given = sorted(s["capacity_mbps"] for s in sites if s["capacity_mbps"] and s["capacity_mbps"] > 0)
    median = float(np.median(given)) if given else 1.0
    load = {int(r["cell"]): r["n"] for r in _plain_rows(
        con, "SELECT cell, count(*) AS n FROM complaints WHERE cell IS NOT NULL GROUP BY cell")}
    states = _site_states(con, as_of)

    def serves(s, point, d) -> bool:
        if d > serving.REACH_KM.get(s["site_type"] or "macro") or (s["azimuth_deg"] is None or d <= serving.NEAR_KM):
            return d <= serving.REACH_KM.get(s["site_type"] or "macro")
        off = abs((bearing((s["lat"], s["lon"]), point) - s["azimuth_deg"] + 180) % 360 - 180)
        return off <= (s["beamwidth_deg"] or serving.DEFAULT_BEAMWIDTH) / 2 + 1e-9

    capacity = {s["site_id"]: s["capacity_mbps"] if s["capacity_mbps"] and s["capacity_mbps"] > 0 else median
                for s in sites}

    def servers(point):
        near = sorted((haversine_km(point, (s["lat"], s["lon"])), s["site_id"]) for s in sites
                      if serves(s, point, haversine_km(point, (s["lat"], s["lon"]))))
        w = {sid: capacity[sid] / max(d, serving.NEAR_KM) ** 2 for d, sid in near[:serving.MAX_SERVERS]}
        return {sid: x / sum(w.values()) for sid, x in w.items()}

    rows = []
    for h in sorted({int(c) for c in hotspot_cells}):
        places = {c: n for c, n in load.items() if h3.api.basic_int.cell_to_parent(c, res) == h} if \
            h3.api.basic_int.is_valid_cell(h) else {}
        if not places:
            places = {h: 1}
        weight, total = defaultdict(float), sum(places.values())
        for c, n in places.items():
            for sid, share in (servers(h3.api.basic_int.cell_to_latlng(c)) if h3.api.basic_int.is_valid_cell(c)
                               else {}).items():
                weight[sid] += n * share
        st = {sid: states.get(sid, {"n": 0}) for sid in weight}
        relieved = {sid for sid in weight if st[sid]["n"] and st[sid]["all_done"]}
        share = sum(weight[s] for s in relieved) / total
        planned = sum(weight[s] for s in weight if st[s]["n"]) / total
        key = {s: ((False, st[s]["date"]) if s in relieved or (st[s]["n"] and not st[s]["undated"]) else NEVER)
               for s in weight}  # (False, date): dated; NEVER sorts after every date, 9999-12-31 included
        reached, cum = None, 0.0
        for s in sorted(weight, key=lambda s: key[s]):
            cum += weight[s]
            if key[s] != NEVER and cum >= linkage.RELIEVED_SHARE * total * (1 - 1e-12) and reached is None:
                reached = key[s]
        needed = [s for s in weight if s not in relieved and st[s]["n"] and key[s] <= (reached or NEVER)]
        reached = reached and reached[1]
        if share >= linkage.RELIEVED_SHARE - 1e-12:
            status = "relieved"
        elif planned < linkage.RELIEVED_SHARE - 1e-12:
            status = "no_upgrade_planned"
        elif any(st[s]["blocked"] for s in needed):
            status = "blocked_by_transport"
        elif any(st[s]["late"] for s in needed):
            status = "late"
        elif share >= linkage.PARTLY_SHARE - 1e-12:
            status = "partly_relieved"
        else:
            status = "on_track"
        picks = sorted(p for s in needed for p in st[s]["picks"])
        rows.append({"cell": h, "n_sites": len(weight), "n_upgrades": sum(st[s]["n"] for s in weight),
                     "relief_share": share, "relief_date": reached, "status": status,
                     "blocking_link_id": picks[0][2] if status == "blocked_by_transport" and picks else None})
    out = pd.DataFrame(rows, columns=["cell", "n_sites", "n_upgrades", "relief_share", "relief_date", "status",
                                      "blocking_link_id"])
    for col in ("relief_date", "blocking_link_id"):
        out[col] = pd.Series([r[col] for r in rows], index=out.index, dtype=object)
    return out.astype({"cell": "int64", "n_sites": "int64", "n_upgrades": "int64", "relief_share": "float64",
                       "status": "str"})


def assert_relief_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got.drop(columns="relief_share"), want.drop(columns="relief_share"))
    np.testing.assert_allclose(got["relief_share"], want["relief_share"], rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linkage")
    con = store.connect(folder / "x.duckdb")
    worlds.import_world(con, folder / "in")
    assert store.import_log(con)["rows_rejected"].sum() == 0
    yield con
    con.close()


def _rows(text: str) -> list[dict]:
    return [{k: (v or None) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


def _disk_hotspots() -> list[int]:
    centres = [cells.parent(cells.latlng_to_cells([float(s["lat"])], [float(s["lon"])]), 8)[0]
               for s in _rows(worlds.SITES_CSV)]
    far = int(cells.latlng_to_cells([FAR[0]], [FAR[1]], 8)[0])
    return sorted({c for centre in centres for c in h3.api.basic_int.grid_disk(int(centre), 4)} | {far})


@pytest.mark.parametrize("as_of", [D("2025-03-01"), D("2025-04-05"), D("2025-05-15"), D("2025-07-01")])
def test_relief_equals_a_plain_loop_on_the_tiny_world(tiny_store, as_of):
    hot = _disk_hotspots()
    got = linkage.relief(tiny_store, hot, as_of=as_of)
    assert_relief_equal(got, reference_relief(tiny_store, hot, as_of))
    assert got["status"].nunique() >= 2 and got["relief_date"].notna().any() and got["relief_date"].isna().any()


@pytest.mark.parametrize(("links", "upgrades", "as_of"), [c[:3] for c in RELIEF_CASES.values()],
                         ids=RELIEF_CASES.keys())
def test_relief_cases_equal_a_plain_loop_with_two_sites(new_store, links, upgrades, as_of):
    con = build(new_store, [site("S1"), site("S2", north_of(CENTRE, 0.7), "micro")], links, upgrades,
                {A: 3, B: 1})
    hot = [H, *h3.api.basic_int.grid_ring(H, 1)]
    assert_relief_equal(linkage.relief(con, hot, as_of=as_of), reference_relief(con, hot, as_of))


def test_empty_and_invalid_hotspots(tiny_store):
    assert linkage.hotspot_sites(tiny_store, []).empty
    assert list(linkage.relief(tiny_store, [], as_of=AS_OF).columns) == list(linkage.relief(
        tiny_store, [H], as_of=AS_OF).columns)
    out = linkage.relief(tiny_store, [0, 12345], as_of=AS_OF)  # not cells: listed, served by nothing
    assert list(out["cell"]) == [0, 12345] and set(out["status"]) == {"no_upgrade_planned"}


def test_works_on_a_cursor_and_an_ibis_backend(tiny_store):
    hot = _disk_hotspots()
    want = linkage.relief(tiny_store, hot, as_of=AS_OF)
    cur = tiny_store.cursor()
    try:
        pd.testing.assert_frame_equal(linkage.relief(cur, hot, as_of=AS_OF), want)
        pd.testing.assert_frame_equal(linkage.relief(engine.backend(cur), hot, as_of=AS_OF), want)
    finally:
        cur.close()


# -- every query compiles for every engine, with no DuckDB-only function ----------------

DUCKDB_ONLY = {"LIST_VALUE", "LIST_EXTRACT", "LIST_AGGREGATE", "STRUCT_PACK", "STRFTIME", "STRPTIME", "EPOCH_MS",
               "REGEXP_MATCHES", "ARG_MIN", "ARG_MAX", "COUNT_STAR", "ANY_VALUE", "H3_CELL_TO_PARENT",
               "H3_GRID_DISK", "UNNEST", "GENERATE_SERIES", "RANGE", "TIME_BUCKET", "DATE_DIFF", "DATEDIFF"}
"""Functions DuckDB has and (some of) the other engines have not, or spell differently."""

NATIVE = {"duckdb": set(), "postgres": {"MAKE_DATE"}, "trino": {"FROM_ISO8601_DATE"}, "pyspark": {"MAKE_DATE"}}
"""Functions sqlglot does not model that ibis writes on purpose for an engine (date literals)."""


def function_names(sql: str, dialect: str) -> tuple[set[str], set[str]]:
    """(every function called, those sqlglot does not know in `dialect`), upper case."""
    tree = sqlglot.parse_one(sql, read={"pyspark": "spark"}.get(dialect, dialect))
    names, unknown = set(), set()
    for f in tree.find_all(exp.Func):
        name = (f.name if isinstance(f, exp.Anonymous) else f.sql_name()).upper()
        names.add(name)
        if isinstance(f, exp.Anonymous):
            unknown.add(name)
    return names, unknown


BUILDERS = {
    "upgrade_inputs": lambda con: network.upgrade_inputs_expr(con),
    "upgrade_flags": lambda con: linkage.upgrade_flags_expr(con, AS_OF),
    "upgrade_flags_of_sites": lambda con: linkage.upgrade_flags_expr(
        con, AS_OF, engine.backend(con).table("sites").site_id),
}


@pytest.mark.parametrize("dialect", engine.DIALECTS)
@pytest.mark.parametrize("name", BUILDERS)
def test_expressions_compile_for_every_engine(tiny_store, name, dialect):
    sql = engine.to_sql(BUILDERS[name](tiny_store), dialect)
    names, unknown = function_names(sql, dialect)
    assert unknown <= NATIVE[dialect], (name, dialect, unknown - NATIVE[dialect])
    if dialect != "duckdb":
        assert not names & DUCKDB_ONLY, (name, dialect, names & DUCKDB_ONLY)
        assert "h3_" not in sql.lower()
