"""lib/views/overview on the tiny world: every figure against an independent count from its input records."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from shapely.geometry import Point, box

from lib import store
from lib.views import overview


@pytest.fixture(params=["duckdb", "postgres"])
def con(request):
    """The tiny world on a DuckDB file and on a PostgreSQL server in turn."""
    c = store.connect(request.getfixturevalue("tiny_db" if request.param == "duckdb" else "tiny_pg"))
    yield c
    c.close()


def _inside(region: dict, lat: float, lon: float) -> bool:
    return box(*region["box"]).contains(Point(lon, lat))


def expected_regions(world, level: str) -> pd.DataFrame:
    """The region table computed in plain Python: shapely point-in-polygon and counting."""
    site_region = {}
    rows = []
    for r in (r for r in world.regions if r["level"] == level):
        sites = {s["site_id"] for s in world.sites if _inside(r, s["lat"], s["lon"])}
        site_region[r["region_id"]] = sites
        ups = [u for u in world.upgrades if u["site_id"] in sites and u["status"] != "cancelled"]
        on_air = sum(u["on_air_actual"] is not None for u in ups)
        links = sum(_inside(r, x["a_lat"], x["a_lon"]) for x in world.links)
        complaints = sum(_inside(r, k["lat"], k["lon"]) for k in world.complaints)
        pop = r["population"]
        rows.append({"region_id": r["region_id"], "name": r["name"], "population": pop, "sites": len(sites),
                     "upgrades": len(ups), "upgrades_on_air": on_air,
                     "pct_on_air": 100 * on_air / len(ups) if ups else None, "transport_links": links,
                     "complaints": complaints, "complaints_per_10k": 10_000 * complaints / pop if pop else None})
    return pd.DataFrame(rows).sort_values(["name", "region_id"]).reset_index(drop=True)


@pytest.mark.parametrize("level", ["state", "cluster"])
def test_region_table_equals_point_in_polygon_counts(con, tiny_world, level):
    got = overview.region_table(con, level)
    want = expected_regions(tiny_world, level)
    assert list(got.columns) == overview.REGION_COLUMNS
    assert got["region_id"].tolist() == want["region_id"].tolist()
    for col in ["name", "sites", "upgrades", "upgrades_on_air", "transport_links", "complaints"]:
        assert got[col].tolist() == want[col].tolist(), col
    assert got["population"].astype("float64").fillna(-1).tolist() == want["population"].astype(
        "float64").fillna(-1).tolist()
    for col in ["pct_on_air", "complaints_per_10k"]:
        pd.testing.assert_series_equal(got[col], want[col].astype("float64"), check_names=False, rtol=1e-12)


def test_the_world_is_not_trivial(tiny_world, con):
    """Guard the test data: points fall in every state, outside all regions, and some upgrades are on air."""
    table = overview.region_table(con, "state")
    assert (table["complaints"] > 0).all() and (table["sites"] > 0).all()
    assert table["complaints"].sum() < len(tiny_world.complaints)  # some lie outside every region
    assert 0 < table["upgrades_on_air"].sum() < table["upgrades"].sum()
    assert any(u["status"] == "cancelled" for u in tiny_world.upgrades)
    assert table["complaints_per_10k"].isna().tolist() == [False, False, True]  # Ostsee has no population


def test_on_air_counts_the_current_version_not_the_baseline(con, tiny_world):
    on_air_now = sum(u["status"] == "on_air" for u in tiny_world.upgrades)
    baseline = con.execute("SELECT count(*) FROM upgrades_versions WHERE version_import_id = 4 "
                           "AND on_air_actual IS NOT NULL").fetchall()[0][0]
    counted = con.execute("SELECT count(*) FROM upgrades WHERE on_air_actual IS NOT NULL").fetchall()[0][0]
    assert counted == on_air_now == baseline + 3


def test_summary(con, tiny_world):
    s = overview.summary(con)
    assert s.counts == {"regions": 4, "sites": len(tiny_world.sites), "transport_links": len(tiny_world.links),
                        "upgrades": len(tiny_world.upgrades), "complaints": len(tiny_world.complaints),
                        "status_notes": 0,
                        overview.CANCELLED: sum(u.get("status") == "cancelled" for u in tiny_world.upgrades)}
    assert not s.empty
    received = [dt.datetime.strptime(k["received_at"], "%Y-%m-%d %H:%M") for k in tiny_world.complaints]
    assert s.date_ranges["Complaints received"] == (min(received).date(), max(received).date())
    planned = [dt.date.fromisoformat(u["on_air_planned"]) for u in tiny_world.upgrades]
    assert s.date_ranges["Upgrades on air (planned)"] == (min(planned), max(planned))
    links = [dt.date.fromisoformat(x["completion_planned"]) for x in tiny_world.links]
    assert s.date_ranges["Transport links complete (planned)"] == (min(links), max(links))
    actual = [dt.datetime.fromisoformat(u["on_air_actual"]) for u in tiny_world.upgrades if u["on_air_actual"]]
    actual += [dt.datetime.fromisoformat(x["completion_actual"]) for x in tiny_world.links if x["completion_actual"]]
    assert s.data_as_of == max(actual + received)
    assert s.imports == len(tiny_world.files)
    assert (s.last_import.import_id, s.last_import.table, s.last_import.file_name) == (
        len(tiny_world.files), "complaints", "complaints.csv")


def test_summary_of_an_empty_store(tmp_path):
    c = store.connect(tmp_path / "empty.duckdb")
    s = overview.summary(c)
    assert s.empty and s.last_import is None and s.data_as_of is None and s.imports == 0
    assert set(s.date_ranges.values()) == {(None, None)}
    assert overview.region_table(c).empty and overview.levels(c) == []


def test_levels_in_schema_order(con):
    assert overview.levels(con) == ["state", "cluster"]


def test_level_counts_match_the_regions(con, tiny_world):
    """Regions per level, in schema order, counted apart from the store's own query."""
    want: dict[str, int] = {}
    for r in tiny_world.regions:
        want[r["level"]] = want.get(r["level"], 0) + 1
    got = overview.level_counts(con)
    assert got == want and list(got) == [lv for lv in overview.schema.LEVELS if lv in want]
