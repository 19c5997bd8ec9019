"""The demo generator: well-formed, deterministic files with the story the dashboard should find."""

from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree

from lib import demo
from lib.demo import DEMO_AS_OF, FOCUS, build_demo_files, plans
from lib.demo.geo import in_country, load_geography, state_of, xy
from lib.ingest import schema

SIZE = dict(sites=600, complaints=5000)
AS_OF = pd.Timestamp(DEMO_AS_OF)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo files at a small size, with the progress reports."""
    calls = []
    paths = build_demo_files(tmp_path_factory.mktemp("demo"), seed=42, progress=lambda m, f: calls.append(f), **SIZE)
    return paths, calls


@pytest.fixture(scope="module")
def frames(built) -> dict[str, pd.DataFrame]:
    """Every table as text columns (empty cells as NaN); regions from the GeoJSON properties."""
    paths, _ = built
    out = {name: pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
           for name, p in paths.items() if name != "regions"}
    features = json.loads(paths["regions"].read_text("utf-8"))["features"]
    out["regions"] = pd.DataFrame([f["properties"] for f in features])
    return out


@pytest.fixture(scope="module")
def geo():
    """The derived geography the files were built from."""
    return load_geography()


def test_one_file_per_table_in_schema_order(built):
    """One file a table, in import order, and the plan's first version before the current plan."""
    paths, calls = built
    assert [demo.file_table(k) for k in paths if k != demo.BASELINE] == list(schema.TABLES)
    assert [p.name for p in paths.values()] == ["regions.geojson", "sites.csv", "transport_links.csv",
                                                "upgrades_baseline.csv", "upgrades.csv", "complaints.csv",
                                                "status_notes.csv"]
    assert calls[-1] == 1.0 and calls == sorted(calls) and all(0 <= f <= 1 for f in calls)


def test_same_seed_same_bytes_other_seed_other_data(built, tmp_path):
    paths, _ = built
    again = build_demo_files(tmp_path / "again", seed=42, **SIZE)
    assert all(again[name].read_bytes() == p.read_bytes() for name, p in paths.items())
    other = build_demo_files(tmp_path / "other", seed=43, complaints_format="parquet", **SIZE)
    for name in ("sites", "transport_links", "upgrades"):
        assert other[name].read_bytes() != paths[name].read_bytes()
    complaints = pq.read_table(other["complaints"])
    assert complaints.column_names == schema.COMPLAINTS.names and complaints.num_rows == SIZE["complaints"]


@pytest.mark.parametrize("name", list(schema.TABLES))
def test_exact_canonical_columns_and_choices(built, frames, name):
    table, df = schema.TABLES[name], frames[name]
    if name == "regions":
        features = json.loads(built[0]["regions"].read_text("utf-8"))["features"]
        assert {f["geometry"]["type"] for f in features} <= {"Polygon", "MultiPolygon"}
        assert list(df.columns) + ["geometry"] == table.names
    else:
        assert built[0][name].read_text("utf-8").splitlines()[0] == ",".join(table.names)
    assert df[table.key].is_unique
    for f in table.fields:
        if f.required and f.type != schema.GEOMETRY:
            assert df[f.name].notna().all(), f.name
        if f.type == schema.CHOICE:
            assert set(df[f.name].dropna()) <= set(f.choices), f.name


@pytest.mark.parametrize("name", ["sites", "transport_links", "complaints"])
def test_coordinates_in_country_box(frames, name):
    s, w, n, e = schema.COUNTRY_BBOX
    limits = {schema.LAT: (s, n), schema.LON: (w, e)}
    for f in (f for f in schema.TABLES[name].fields if f.type in limits):
        assert frames[name][f.name].astype(float).between(*limits[f.type]).all(), f.name


@pytest.mark.parametrize("name", ["transport_links", "upgrades"])
def test_dates_iso_ordered_and_never_after_as_of(frames, name):
    df, table = frames[name], schema.TABLES[name]
    dates = [f.name for f in table.fields if f.type == schema.DATE]
    for c in dates:
        assert df[c].dropna().str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), c
    when = {c: pd.to_datetime(df[c]) for c in dates}
    for order in table.date_order:
        for a, b in zip(order[:-1], order[1:], strict=True):
            assert not (when[a] > when[b]).any(), (a, b)
            if a.endswith("_actual"):
                assert not (when[a].isna() & when[b].notna()).any(), (a, b)
    for c in (c for c in dates if c.endswith("_actual")):
        assert (when[c].dropna() <= AS_OF).all(), c
        planned = when[c.replace("_actual", "_planned")]
        assert not (when[c].notna() & (planned > AS_OF)).any(), c


def test_upgrade_status_and_late_share(frames):
    up = frames["upgrades"]
    done = {s: up[f"{s}_actual"].notna() for s in ("permit", "installed", "on_air")}
    assert (up.status.eq("on_air") == done["on_air"]).all()
    assert (up.status.eq("installed") <= (done["installed"] & ~done["on_air"])).all()
    due = pd.to_datetime(up.on_air_planned) <= AS_OF
    assert 0.1 < (due & ~done["on_air"]).sum() / due.sum() < 0.35


def test_references_hold(frames):
    sites, links, up = frames["sites"], frames["transport_links"], frames["upgrades"]
    assert set(up.site_id) <= set(sites.site_id)
    assert set(sites.transport_link_id) == set(links.link_id)
    assert sites.groupby("transport_link_id").size().max() <= 3
    waits = up.dropna(subset=["transport_link_id"]).merge(sites[["site_id", "transport_link_id"]], on="site_id")
    assert (waits.transport_link_id_x == waits.transport_link_id_y).all()
    assert links.set_index("link_id").loc[waits.transport_link_id_x, "completion_planned"].notna().all()


def test_upgrades_held_by_transport_never_on_air_before_their_link(frames):
    up, links = frames["upgrades"], frames["transport_links"].set_index("link_id")
    waits = up.dropna(subset=["transport_link_id"])
    link_done = pd.to_datetime(links.loc[waits.transport_link_id, "completion_actual"]).to_numpy()
    on_air = pd.to_datetime(waits.on_air_actual).to_numpy()
    assert not (pd.isna(link_done) & ~pd.isna(on_air)).any()
    assert not (on_air < link_done).any()
    assert (pd.isna(link_done) & waits.installed_actual.notna().to_numpy()).any()  # some are blocked


def test_sixteen_states_and_clusters(frames):
    regions = frames["regions"]
    states = regions[regions.level == "state"]
    assert sorted(states.region_id) == [f"{i:02d}" for i in range(1, 17)]
    assert states.set_index("region_id").name["09"] == "Bayern"
    assert 83e6 < states.population.sum() < 86e6
    clusters = regions[regions.level == "cluster"]
    assert set(FOCUS) <= set(clusters.region_id) and len(clusters) >= 14
    assert set(clusters.parent_id) <= set(states.region_id)


def test_districts_tile_their_states(frames, geo):
    """Every cell of a state lies in exactly one district of that state, as the regions file says."""
    regions = frames["regions"]
    districts = regions[regions.level == "district"]
    assert 380 <= len(districts) <= 440 and districts.region_id.is_unique  # Germany has 400 Kreise
    assert districts.name.str.startswith("Raum ").all()  # not taken for the official ones
    assert (districts.region_id.str[:2] == districts.parent_id).all()
    assert set(districts.parent_id) == {f"{i:02d}" for i in range(1, 17)}
    owner = pd.concat([pd.Series(r, index=c) for r, c in geo.district_cells.items()])
    assert owner.index.is_unique and set(owner.index) == set(geo.cells.tolist())
    state = pd.Series(geo.cell_ags, index=geo.cells)
    assert (state[owner.index].to_numpy() == owner.str[:2].to_numpy()).all()
    assert sorted(geo.districts.region_id) == sorted(districts.region_id)


def test_district_seats_are_the_towns_far_enough_apart(geo):
    """Each state's biggest town is a seat; seats of a state lie DISTRICT_SEAT_KM apart or more, and every
    other town big enough lies nearer than that to a seat of its state (else it would be one)."""
    from lib.demo.geo import DISTRICT_SEAT_KM, DISTRICT_SEAT_POPULATION
    seats = geo.districts.assign(town=geo.districts.name.str.removeprefix("Raum "))
    towns = geo.places[geo.places.population >= DISTRICT_SEAT_POPULATION]
    for ags, mine in seats.groupby("ags"):
        theirs = towns[towns.ags == ags]
        assert theirs.sort_values("population").name.iloc[-1] in set(mine.town)
        d = np.hypot(*(xy(mine.lat, mine.lon)[:, None, :] - xy(mine.lat, mine.lon)[None, :, :]).transpose(2, 0, 1))
        assert (d[~np.eye(len(mine), dtype=bool)] >= DISTRICT_SEAT_KM).all(), ags
        others = theirs[~theirs.name.isin(set(mine.town))]
        nearest = cKDTree(xy(mine.lat, mine.lon)).query(xy(others.lat, others.lon))[0]
        assert (nearest < DISTRICT_SEAT_KM).all(), ags
    # the population of a state's districts is that of its places
    cell_of = h3.latlng_to_cell
    place_cells = np.array([h3.str_to_int(cell_of(a, b, 7)) for a, b in zip(geo.places.lat, geo.places.lon,
                                                                               strict=True)])
    for ags in ("02", "09", "11"):
        mine = seats[seats.ags == ags]
        inside = np.isin(place_cells, np.concatenate([geo.district_cells[r] for r in mine.region_id]))
        assert mine.population.sum() == geo.places.population[inside].sum()


def test_sites_stand_in_their_state(frames, geo):
    sites = frames["sites"]
    lat, lon = sites.lat.astype(float), sites.lon.astype(float)
    assert in_country(geo.cells, lat, lon).all()
    assert (state_of(geo, lat, lon) == sites.region_id).all()


def test_state_shapes_look_like_germany(geo):
    area = pd.Series([h3.cell_area(h3.int_to_str(int(c))) for c in geo.cells], index=geo.cell_ags)
    area = area.groupby(level=0).sum()
    assert area.idxmax() == "09" and 300_000 < area.sum() < 400_000
    assert all(area[k] < 3_000 for k in ("02", "04", "11"))


def test_named_cities_are_the_top_complaint_areas(frames, geo):
    complaints, places, cities = frames["complaints"], geo.places, geo.clusters
    near = cKDTree(xy(complaints.lat.astype(float), complaints.lon.astype(float)))
    counts = np.array([len(i) for i in near.query_ball_point(xy(cities.lat, cities.lon), 15)])
    people = cKDTree(xy(places.lat, places.lon)).query_ball_point(xy(cities.lat, cities.lon), 15)
    rate = pd.Series(counts / [places.population.to_numpy()[i].sum() for i in people], index=cities.region_id)
    assert set(rate.nlargest(len(FOCUS)).index) == set(FOCUS)
    assert (rate[list(FOCUS)] > 2 * rate.median()).all()


def test_complaints_fall_after_relief(frames):
    complaints, sites, up = frames["complaints"], frames["sites"], frames["upgrades"]
    assert complaints.received_at.str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
    capacity = complaints[complaints.category.isin(schema.CAPACITY_CATEGORIES)]
    when = pd.to_datetime(capacity.received_at)
    assert when.max() < AS_OF and when.min() >= pd.Timestamp("2025-05-01")
    relief = pd.to_datetime(up.groupby("site_id").on_air_actual.max()).dropna()
    relieved = sites.set_index("site_id").loc[relief.index]
    near = cKDTree(xy(capacity.lat.astype(float), capacity.lon.astype(float))).query_ball_point(
        xy(relieved.lat.astype(float), relieved.lon.astype(float)), 0.5)
    window, seen, expected = pd.Timedelta(days=60), 0, 0.0
    for idx, day in zip(near, relief, strict=True):
        if len(idx) < 15 or not when.min() + window < day < AS_OF - window:
            continue
        local = when.iloc[idx]
        before, after = local.between(day - window, day, "left").sum(), local.between(day, day + window, "left").sum()
        trend = when.between(day, day + window, "left").sum() / when.between(day - window, day, "left").sum()
        seen, expected = seen + after, expected + before * trend  # as many as before, adjusted for the overall trend
    assert expected > 10
    assert seen < 0.6 * expected


def test_the_first_plan_is_the_baseline_some_upgrades_slipped_from(built):
    """About a third of the upgrades were due earlier in the first plan; none later; it holds no actuals."""
    paths, _ = built
    first, now = (pd.read_csv(paths[k], parse_dates=["on_air_planned"]) for k in (demo.BASELINE, "upgrades"))
    assert first["upgrade_id"].tolist() == now["upgrade_id"].tolist()
    slip = (now["on_air_planned"] - first["on_air_planned"]).dt.days
    assert (slip >= 0).all() and abs((slip > 0).mean() - plans.REPLANNED) < 0.05 and 30 < slip[slip > 0].mean() < 90
    assert first["on_air_actual"].isna().all() and (first["status"] == "planned").all()
