"""The network as of a date: sites, links and hotspots replayed on hand-built worlds."""

from __future__ import annotations

import csv
import datetime as dt
import io

import ibis
import pytest

from lib import cells, engine, store
from lib.engine import asof, linkage

D = dt.date.fromisoformat
BASE = (51.25, 9.25)
FAR = (52.52, 13.40)

SITES = [
    {"site_id": "S1", "lat": BASE[0], "lon": BASE[1], "site_type": "macro"},
    {"site_id": "S2", "lat": 51.10, "lon": 9.10, "site_type": "macro"},
    {"site_id": "S3", "lat": 51.25, "lon": 9.75, "site_type": "micro"},
    {"site_id": "S4", "lat": 51.40, "lon": 9.40, "site_type": "macro"},
    {"site_id": "S5", "lat": 51.05, "lon": 9.90, "site_type": "macro"},
    {"site_id": "S6", "lat": 51.45, "lon": 9.90, "site_type": "small_cell"},
]
LINKS = [
    {"link_id": "L1", "kind": "fibre", "completion_planned": "2025-03-01", "completion_actual": "2025-04-15"},
    {"link_id": "L2", "kind": "microwave", "completion_planned": "2025-06-01"},
    {"link_id": "L3", "kind": "leased_line"},
    {"link_id": "L4", "kind": "fibre", "completion_actual": "2025-02-10"},
]
UPGRADES = [
    {"upgrade_id": "U1", "site_id": "S1", "permit_actual": "2025-02-01", "installed_actual": "2025-03-01",
     "on_air_planned": "2025-04-01", "on_air_actual": "2025-04-10"},
    {"upgrade_id": "U2", "site_id": "S2", "on_air_planned": "2025-05-01"},
    {"upgrade_id": "U3", "site_id": "S2", "permit_actual": "2025-01-20", "on_air_planned": "2025-09-01"},
    {"upgrade_id": "U4", "site_id": "S3", "installed_actual": "2025-03-15", "on_air_planned": "2025-06-01",
     "on_air_actual": "2025-05-20"},
    {"upgrade_id": "U5", "site_id": "S4", "on_air_planned": "2025-02-01", "status": "cancelled"},
    {"upgrade_id": "U6", "site_id": "S6", "on_air_planned": "2025-03-10", "on_air_actual": "2025-03-01"},
]
AS_OF_DATES = ["2025-01-10", "2025-01-20", "2025-02-15", "2025-03-05", "2025-04-01", "2025-04-05", "2025-04-12",
               "2025-05-01", "2025-05-25", "2025-07-01", "2025-10-01"]


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c) or "" for c in columns})
    return out.getvalue().encode()


def _import(con, table: str, rows: list[dict], columns: list[str]) -> None:
    r = store.import_file(con, _csv(rows, columns), table=table, file_name=f"{table}.csv")
    assert r.rows_rejected == 0, store.rejected_rows(con, r.import_id)


@pytest.fixture(scope="module")
def world(new_module_store):
    """The store of SITES, LINKS (endpoints around BASE), UPGRADES and COMPLAINTS, of each kind in turn."""
    con = new_module_store()
    links = [{**r, "a_lat": 51.2, "a_lon": 9.2 + i / 10, "b_lat": 51.3, "b_lon": 9.3 + i / 10}
             for i, r in enumerate(LINKS)]
    _import(con, "sites", SITES, ["site_id", "lat", "lon", "site_type"])
    _import(con, "transport_links", links, ["link_id", "kind", "a_lat", "a_lon", "b_lat", "b_lon",
                                            "completion_planned", "completion_actual"])
    ups = [{"kind": "hardware_swap", **u} for u in UPGRADES]
    _import(con, "upgrades", ups, ["upgrade_id", "site_id", "kind", "permit_actual", "installed_actual",
                                   "on_air_planned", "on_air_actual", "status"])
    _import(con, "complaints", COMPLAINTS, ["complaint_id", "received_at", "lat", "lon", "category", "channel"])
    yield con
    con.close()


def reference_site_status(site_id: str, day: dt.date) -> str:
    """The rules of `asof.sites_as_of`, by a plain loop over the upgrade rows."""
    def reached(u, milestone):
        return bool(u.get(f"{milestone}_actual")) and D(u[f"{milestone}_actual"]) <= day

    mine = [u for u in UPGRADES if u["site_id"] == site_id and u.get("status") != "cancelled"]
    if not mine:
        return "no_upgrade"
    if any(not reached(u, "on_air") and D(u["on_air_planned"]) < day for u in mine):
        return "late"
    stages = []
    for u in mine:
        stage = next((i for i, m in ((3, "on_air"), (2, "installed"), (1, "permit")) if reached(u, m)), 0)
        stages.append(stage)
    return asof.STAGES[min(stages)]


def reference_link_state(link: dict, day: dt.date) -> str:
    planned, actual = link.get("completion_planned"), link.get("completion_actual")
    if actual and D(actual) <= day:
        return "done"
    if not planned and not actual:
        return "no_expansion"
    if planned and D(planned) < day:
        return "late"
    return "planned"


@pytest.mark.parametrize("day", AS_OF_DATES)
def test_sites_as_of_follow_the_milestones_reached_by_that_day(world, day):
    out = asof.sites_as_of(world, D(day))
    assert list(out.columns) == asof.SITE_COLUMNS
    assert out["site_id"].tolist() == [s["site_id"] for s in SITES]
    got = dict(zip(out["site_id"], out["status"], strict=True))
    assert got == {s["site_id"]: reference_site_status(s["site_id"], D(day)) for s in SITES}
    assert set(out["status"]) <= set(asof.SITE_STATUSES)
    want_cells = cells.latlng_to_cells([s["lat"] for s in SITES], [s["lon"] for s in SITES]).tolist()
    assert out["cell"].tolist() == want_cells


@pytest.mark.parametrize(("day", "expected"), [
    ("2025-01-10", {"S1": "planned", "S2": "planned", "S3": "planned", "S6": "planned"}),
    ("2025-03-05", {"S1": "installed", "S2": "planned", "S3": "planned", "S6": "on_air"}),  # S2: U2 holds U3 back
    ("2025-04-05", {"S1": "late", "S2": "planned", "S3": "installed"}),  # U1 on air only on 04-10
    ("2025-04-12", {"S1": "on_air"}),
    ("2025-05-25", {"S2": "late", "S3": "on_air", "S4": "no_upgrade", "S5": "no_upgrade"}),
])
def test_sites_as_of_by_hand(world, day, expected):
    out = asof.sites_as_of(world, D(day)).set_index("site_id")["status"]
    assert {k: out[k] for k in expected} == expected


@pytest.mark.parametrize("day", AS_OF_DATES)
def test_links_as_of_follow_their_completion_dates(world, day):
    out = asof.links_as_of(world, D(day))
    assert list(out.columns) == asof.LINK_COLUMNS
    got = dict(zip(out["link_id"], out["state"], strict=True))
    assert got == {r["link_id"]: reference_link_state(r, D(day)) for r in LINKS}
    assert out["kind"].tolist() == [r["kind"] for r in LINKS]


def test_links_as_of_by_hand(world):
    states = {d: asof.links_as_of(world, D(d)).set_index("link_id")["state"].to_dict()
              for d in ("2025-02-01", "2025-03-05", "2025-04-20")}
    assert states["2025-02-01"] == {"L1": "planned", "L2": "planned", "L3": "no_expansion", "L4": "planned"}
    assert states["2025-03-05"] == {"L1": "late", "L2": "planned", "L3": "no_expansion", "L4": "done"}
    assert states["2025-04-20"]["L1"] == "done"


def _complaints() -> list[dict]:
    """Capacity complaints at the S1 hotspot every 4 days through 2025 H1, a few far away, some coverage ones."""
    rows = []
    start = dt.datetime(2025, 1, 2, 9, 0)
    for i in range(45):
        rows.append({"received_at": start + dt.timedelta(days=4 * i), "lat": BASE[0], "lon": BASE[1],
                     "category": "slow_data"})
    for i in range(6):
        rows.append({"received_at": start + dt.timedelta(days=30 * i), "lat": FAR[0], "lon": FAR[1],
                     "category": "dropped_calls"})
        rows.append({"received_at": start + dt.timedelta(days=30 * i + 1), "lat": BASE[0], "lon": BASE[1],
                     "category": "no_signal"})
    rows.append({"received_at": dt.datetime(2025, 4, 5, 23, 59), "lat": BASE[0], "lon": BASE[1],
                 "category": "slow_data"})
    return [{**r, "complaint_id": f"K{i}", "channel": "app", "received_at": r["received_at"].strftime("%Y-%m-%d %H:%M")}
            for i, r in enumerate(rows)]


COMPLAINTS = _complaints()


def hotspot_cell(latlon) -> int:
    """The resolution-8 hotspot cell of a place, as the store derives it (parent of the resolution-9 cell)."""
    return int(cells.parent(cells.latlng_to_cells([latlon[0]], [latlon[1]]), 8)[0])


@pytest.mark.parametrize(("day", "status", "relief_date"), [
    ("2025-03-05", "on_track", "2025-04-01"),
    ("2025-04-05", "late", "2025-04-01"),
    ("2025-04-12", "relieved", "2025-04-10"),
])
def test_hotspots_as_of_count_the_window_and_replay_relief(world, day, status, relief_date):
    day = D(day)
    out = asof.hotspots_as_of(world, day, window_days=30)
    start = day - dt.timedelta(days=29)
    want = {}
    for r in COMPLAINTS:
        when = dt.datetime.strptime(r["received_at"], "%Y-%m-%d %H:%M").date()
        if r["category"] in ("slow_data", "dropped_calls") and start <= when <= day:
            cell = hotspot_cell((r["lat"], r["lon"]))
            want[cell] = want.get(cell, 0) + 1
    assert {c: n for c, n in zip(out["cell"], out["n"], strict=True) if n > 0} == want
    row = out.set_index("cell").loc[hotspot_cell(BASE)]
    assert (row["status"], row["relief_date"]) == (status, D(relief_date))
    far = out.set_index("cell").loc[hotspot_cell(FAR)] if hotspot_cell(FAR) in set(out["cell"]) else None
    assert far is None or far["status"] == "no_upgrade_planned"
    assert set(out["status"]) <= set(linkage.STATUSES)


class SparkOptions(ibis.config.Config):
    """The one option of ibis's PySpark backend its SQL compiler reads."""

    treat_nan_as_null: bool = False


@pytest.mark.parametrize("dialect", engine.DIALECTS)
def test_queries_compile_for_every_engine(world, dialect, monkeypatch):
    if ibis.options.pyspark is None:  # set only once pyspark is installed
        monkeypatch.setattr(ibis.options, "pyspark", SparkOptions())
    for expr in (asof.sites_as_of_expr(world, D("2025-04-01")), asof.links_as_of_expr(world, D("2025-04-01"))):
        assert "SELECT" in engine.to_sql(expr, dialect)


def test_hotspots_as_of_count_only_the_chosen_channels(world_con):
    """worlds.py: K1 (hotline) and K2 (app) are the two capacity complaints, both in January 2025."""
    day = D("2025-01-31")
    every = asof.hotspots_as_of(world_con, day, window_days=60)
    assert every["n"].sum() == 2
    for channel in ("app", "hotline"):
        assert asof.hotspots_as_of(world_con, day, window_days=60, channels=[channel])["n"].sum() == 1
    assert asof.hotspots_as_of(world_con, day, window_days=60, channels=["social"])["n"].sum() == 0
