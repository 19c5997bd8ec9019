"""The public snapshot: privacy (allowlist, k), determinism, and every figure against plain pandas over the store."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil

import duckdb
import h3
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib import cli, store
from lib.errors import NetzausbauError
from lib.public import snapshot
from lib.views import publish

# The allowlist as this test knows it: widening what is published needs an edit here too.
EXPECTED = {
    "regions": {"region_id", "name", "level", "parent_id", "upgrades_total", "upgrades_on_air", "upgrades_late",
                "pct_on_air", "forecast", "forecast_earliest", "forecast_latest"},
    "planned": {"region_id", "quarter", "upgrades"},
    "complaint_areas": {"cell", "complaints", "status", "expected_quarter", "region_ids"},
    "complaints_monthly": {"region_id", "month", "complaints"},
    "notes": {"note_id", "region_id", "published_on", "text", "language"},
    "places": {"name", "region_id"},
    "region_outlines": {"region_id", "geometry"},
}
TOP = {"schema_version", "data_as_of", "k", "round_base", "area_res", "tables"}
STATUSES = {"relieved", "in_progress", "planned", "no_plan"}


def frame(path, query: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query, params or []).df()


def complaint_cells(db, res: int) -> pd.Series:
    """Complaints per H3 cell at `res` (the parent of the point's resolution-9 cell, the store's rule), from the
    store's lat/lon with the h3 package (not lib.cells)."""
    k = frame(db, "SELECT lat, lon FROM complaints WHERE lat IS NOT NULL")
    return pd.Series([h3.cell_to_parent(h3.latlng_to_cell(a, b, 9), res)
                      for a, b in zip(k["lat"], k["lon"], strict=True)]).value_counts()


def region_of_cells(db) -> pd.DataFrame:
    """(region_id, res-8 cell as hex) of the published levels."""
    rc = frame(db, "SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) "
                   "WHERE r.level IN ('state', 'district', 'cluster')")
    return rc.assign(cell=[h3.int_to_str(int(c)) for c in rc["cell"]])


def check_privacy(path, db, k: int) -> dict:
    """Open the published file and fail on anything outside the allowlist or any area below k."""
    doc = json.loads(path.read_bytes())
    assert set(doc) == TOP
    assert doc["k"] == k >= snapshot.MIN_K
    assert set(doc["tables"]) == set(EXPECTED)
    for name, rows in doc["tables"].items():
        for row in rows:
            assert set(row) == EXPECTED[name], (name, row)
    published = {r["region_id"]: r["level"] for r in doc["tables"]["regions"]}
    for row in doc["tables"]["region_outlines"]:  # a region's own outline, nothing finer than 4 decimals
        assert published[row["region_id"]] in snapshot.LEVELS, row["region_id"]
        assert re.search(r"\.\d{5,}", json.dumps(row["geometry"])) is None, row["region_id"]
    base = doc["round_base"]
    counts = complaint_cells(db, 7)
    for area in doc["tables"]["complaint_areas"]:
        assert h3.get_resolution(area["cell"]) == 7
        assert counts.get(area["cell"], 0) >= k, area
        assert area["complaints"] % base == 0 and area["status"] in STATUSES
    for row in doc["tables"]["complaints_monthly"]:
        assert row["complaints"] is None or (row["complaints"] % base == 0 and row["complaints"] >= base)
    raw = path.read_text(encoding="utf-8")
    ids = frame(db, "SELECT site_id AS x FROM sites UNION ALL SELECT complaint_id FROM complaints "
                    "UNION ALL SELECT text FROM complaints WHERE text IS NOT NULL UNION ALL SELECT link_id "
                    "FROM transport_links UNION ALL SELECT upgrade_id FROM upgrades")["x"]
    for value in ids:
        assert json.dumps(value, ensure_ascii=False) not in raw, value
    return doc


def expected_round(n: int, k: int, base: int = 10) -> int | None:
    return None if n < k else max(base, int(math.floor(n / base + 0.5)) * base)


@pytest.fixture(scope="module")
def published(demo_db, tmp_path_factory):
    """The demo store published once (k = 10) to a fresh file."""
    out = tmp_path_factory.mktemp("pub") / "snapshot.json"
    con = store.connect(demo_db, read_only=True)
    try:
        publish.publish(con, out)
    finally:
        con.close()
    return out


def test_published_demo_passes_the_privacy_check(published, demo_db):
    doc = check_privacy(published, demo_db, 10)
    assert doc["tables"]["complaint_areas"], "the demo should publish some areas"
    assert {a["status"] for a in doc["tables"]["complaint_areas"]} >= {"relieved", "planned", "no_plan"}


def test_every_area_with_k_complaints_in_a_region_is_published(published, demo_db):
    check_areas(json.loads(published.read_bytes()), demo_db, 10)


def check_areas(doc: dict, db, k: int) -> None:
    """The published areas are exactly the res-7 cells with >= k complaints that touch a region, with rounded
    counts and the regions their complaint cells lie in."""
    counts = complaint_cells(db, 7)
    k8 = complaint_cells(db, 8)
    fine = pd.DataFrame({"cell": k8.index, "n": k8.to_numpy(), "area": [h3.cell_to_parent(c, 7) for c in k8.index]})
    own = fine.merge(region_of_cells(db), on="cell").groupby(["area", "region_id"])["n"].sum()
    touched = set(own.index.get_level_values("area"))
    want = {c for c, n in counts.items() if n >= k and c in touched}
    got = {a["cell"]: a for a in doc["tables"]["complaint_areas"]}
    assert set(got) == want
    for cell, area in got.items():
        assert area["complaints"] == expected_round(int(counts[cell]), k)
        assert area["region_ids"] == sorted(r for r, n in own[cell].items() if n >= k)


def test_publishing_twice_gives_the_same_bytes(demo_db, published, tmp_path):
    again = tmp_path / "again.json"
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(again)]) == 0
    assert again.read_bytes() == published.read_bytes()


def test_publish_if_missing_keeps_an_existing_snapshot(demo_db, tmp_path, capsys):
    """`make run` publishes the demo's snapshot on first start only: an operator's snapshot is never replaced."""
    out = tmp_path / "s.json"
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(out), "--if-missing"]) == 0
    assert out.exists() and snapshot.load(out)
    out.write_bytes(b"operator's own")
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(out), "--if-missing"]) == 0
    assert out.read_bytes() == b"operator's own" and "snapshot exists" in capsys.readouterr().out


def test_publish_if_missing_writes_a_snapshot_of_an_older_format_again(demo_db, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(out)]) == 0
    doc = json.loads(out.read_bytes())
    old = dict(doc, schema_version=snapshot.SCHEMA_VERSION - 1)
    out.write_text(json.dumps(old))
    assert snapshot.older_format(out)
    assert snapshot.load(out).doc["schema_version"] == 3  # served as it is until published again
    out.write_text(json.dumps(dict(doc, schema_version=2)))
    with pytest.raises(snapshot.SnapshotError, match="schema_version"):
        snapshot.load(out)
    out.write_text(json.dumps(old))
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(out), "--if-missing"]) == 0
    assert snapshot.load(out).doc == doc and "older format" in capsys.readouterr().err
    future = dict(doc, schema_version=snapshot.SCHEMA_VERSION + 1)
    out.write_text(json.dumps(future))
    assert not snapshot.older_format(out)  # not ours to replace: kept
    assert cli.main(["--db", str(demo_db), "publish", "--out", str(out), "--if-missing"]) == 0
    assert json.loads(out.read_bytes()) == future


def test_percent_done_and_late_match_the_store(published, demo_db):
    doc = json.loads(published.read_bytes())
    as_of = pd.Timestamp(doc["data_as_of"])
    ups = frame(demo_db, "SELECT u.upgrade_id, u.on_air_planned, u.on_air_actual, s.lat, s.lon FROM upgrades u "
                         "JOIN sites s USING (site_id) WHERE coalesce(u.status, '') <> 'cancelled'")
    ups["cell"] = [h3.cell_to_parent(h3.latlng_to_cell(a, b, 9), 8)
                   for a, b in zip(ups["lat"], ups["lon"], strict=True)]
    joined = ups.merge(region_of_cells(demo_db), on="cell")
    rows = {r["region_id"]: r for r in doc["tables"]["regions"]}
    groups = {**{rid: g for rid, g in joined.groupby("region_id")}, "ALL": ups}
    assert set(rows) == set(groups) | set(frame(demo_db, "SELECT region_id FROM regions WHERE level IN "
                                                         "('state', 'district', 'cluster')")["region_id"]) | {"ALL"}
    for rid, g in groups.items():
        done = (pd.to_datetime(g["on_air_actual"]) <= as_of).sum()
        late = ((pd.to_datetime(g["on_air_planned"]) < as_of) & ~(pd.to_datetime(g["on_air_actual"]) <= as_of)).sum()
        r = rows[rid]
        assert (r["upgrades_total"], r["upgrades_on_air"], r["upgrades_late"]) == (len(g), done, late), rid
        assert r["pct_on_air"] == round(100 * done / len(g), 1)


def test_planned_by_quarter_matches_the_store(published, demo_db):
    doc = json.loads(published.read_bytes())
    as_of = pd.Timestamp(doc["data_as_of"])
    ups = frame(demo_db, "SELECT on_air_planned AS p, on_air_actual AS a FROM upgrades "
                         "WHERE coalesce(status, '') <> 'cancelled'")
    p, a = pd.to_datetime(ups["p"]), pd.to_datetime(ups["a"])
    pending = p[(a.isna() | (a > as_of)) & (p >= as_of)]  # due on the data date counts in its quarter
    labels = [f"{q.year}-Q{q.quarter}" for q in pd.period_range(as_of, periods=4, freq="Q")]
    want = {q: int(((pending.dt.year.astype(str) + "-Q" + pending.dt.quarter.astype(str)) == q).sum()) for q in labels}
    want["later"] = len(pending) - sum(want.values())
    got = {r["quarter"]: r["upgrades"] for r in doc["tables"]["planned"] if r["region_id"] == "ALL"}
    assert got == want and sum(got.values()) > 0


def test_monthly_complaints_are_rounded_and_hidden_below_k(published, demo_db):
    doc = json.loads(published.read_bytes())
    k = frame(demo_db, "SELECT received_at, lat, lon FROM complaints")
    k["cell"] = [h3.cell_to_parent(h3.latlng_to_cell(a, b, 9), 8) for a, b in zip(k["lat"], k["lon"], strict=True)]
    k["month"] = pd.to_datetime(k["received_at"]).dt.strftime("%Y-%m")
    per = k.merge(region_of_cells(demo_db), on="cell").groupby(["region_id", "month"]).size()
    total = k.groupby("month").size()
    rows = doc["tables"]["complaints_monthly"]
    assert rows and any(r["complaints"] is None for r in rows) and any(r["complaints"] for r in rows)
    as_of = dt.date.fromisoformat(doc["data_as_of"])
    assert max(r["month"] for r in rows) == f"{as_of.replace(day=1) - dt.timedelta(days=1):%Y-%m}"  # complete only
    for r in rows:
        n = total.get(r["month"], 0) if r["region_id"] == "ALL" else per.get((r["region_id"], r["month"]), 0)
        assert r["complaints"] == expected_round(int(n), 10), r


def test_notes_are_published_as_written(published, demo_db):
    doc = json.loads(published.read_bytes())
    notes = frame(demo_db, "SELECT note_id, region_id, published_on, text, language FROM status_notes")
    want = sorted((r.note_id, r.region_id, pd.Timestamp(r.published_on).date().isoformat(), r.text, r.language)
                  for r in notes.itertuples())
    got = sorted((n["note_id"], n["region_id"], n["published_on"], n["text"], n["language"])
                 for n in doc["tables"]["notes"])
    assert got == want and len(got) == 10


def test_places_lie_in_their_regions(published, demo_db):
    doc = json.loads(published.read_bytes())
    places = {(p["name"], p["region_id"]) for p in doc["tables"]["places"]}
    assert ("Berlin", "C-BER") in places and ("Hamburg", "C-HAM") in places
    assert ("München", "09") in places  # Bavaria (AGS 09), with its German name


@pytest.mark.parametrize("k", [4, 0, -3, 2.5, True, "10"])
def test_k_below_five_or_not_a_number_is_refused(demo_db, tmp_path, k):
    con = store.connect(demo_db, read_only=True)
    try:
        with pytest.raises(snapshot.SnapshotError, match="at least 5"):
            publish.publish(con, tmp_path / "s.json", k=k)
    finally:
        con.close()
    assert not (tmp_path / "s.json").exists()


def test_cli_refuses_k_below_five(demo_db, tmp_path, capsys):
    assert cli.main(["--db", str(demo_db), "publish", "--k", "4", "--out", str(tmp_path / "s.json")]) == 2
    assert "k must be a whole number of at least 5" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def _tamper(doc: dict, change) -> bytes:
    doc = json.loads(json.dumps(doc))
    change(doc)
    return json.dumps(doc).encode()


TAMPERED = {
    "an extra table": (lambda d: d["tables"].update(sites=[]), "tables must be exactly"),
    "an extra column": (lambda d: d["tables"]["complaint_areas"][0].update(site_id="S1"), "columns"),
    "an extra top-level field": (lambda d: d.update(published_at="2026-11-22T08:00"), "top-level"),
    "a missing column": (lambda d: d["tables"]["regions"][0].pop("pct_on_air"), "columns"),
    "a cell finer than res 7": (lambda d: d["tables"]["complaint_areas"][0].update(cell="881f1d4811fffff"), "cell"),
    "an unrounded count": (lambda d: d["tables"]["complaint_areas"][0].update(complaints=13), "complaints"),
    "a monthly count below k": (lambda d: d["tables"]["complaints_monthly"][0].update(complaints=3), "complaints"),
    "k below five": (lambda d: d.update(k=3), "'k'"),
    "an unknown status": (lambda d: d["tables"]["complaint_areas"][0].update(status="late"), "status"),
    "a note in French": (lambda d: d["tables"]["notes"][0].update(language="fr"), "language"),
    "a duplicate cell": (lambda d: d["tables"]["complaint_areas"].append(d["tables"]["complaint_areas"][0]), "twice"),
    "a forecast that is no date": (lambda d: d["tables"]["regions"][0].update(forecast="soon"), "forecast"),
    "an outline of points": (lambda d: d["tables"]["region_outlines"][0].update(
        geometry={"type": "MultiPoint", "coordinates": [[13.4, 52.5]]}), "geometry"),
    "an outline point off the globe": (lambda d: d["tables"]["region_outlines"][0].update(geometry={
        "type": "Polygon", "coordinates": [[[200.0, 52.5], [10.0, 50.0], [11.0, 50.0], [200.0, 52.5]]]}), "geometry"),
    "an outline with a property": (lambda d: d["tables"]["region_outlines"][0]["geometry"].update(name="x"),
                                   "geometry"),
    "an outline of too many points": (lambda d: d["tables"]["region_outlines"][0].update(geometry={
        "type": "Polygon", "coordinates": [[[10.0, 50.0]] * (snapshot.MAX_OUTLINE_POINTS + 1)]}), "geometry"),
}


def test_an_outline_of_exactly_the_most_points_is_allowed():
    ring = [[10.0 + i / 1e5, 50.0] for i in range(snapshot.MAX_OUTLINE_POINTS)]
    assert snapshot._outline({"type": "Polygon", "coordinates": [ring]})
    assert snapshot._outline({"type": "MultiPolygon", "coordinates": [[ring[:10]], [ring[10:]]]})
    assert not snapshot._outline({"type": "MultiPolygon", "coordinates": [[ring], [ring[:1]]]})
    assert not snapshot._outline({"type": "Polygon", "coordinates": [[[10.0, True]]]})
    assert not snapshot._outline({"type": "Polygon", "coordinates": []})


@pytest.mark.parametrize("what", list(TAMPERED))
def test_load_refuses_anything_outside_the_allowlist(published, tmp_path, what):
    change, message = TAMPERED[what]
    bad = tmp_path / "bad.json"
    bad.write_bytes(_tamper(json.loads(published.read_bytes()), change))
    with pytest.raises(snapshot.SnapshotError, match=message) as exc:
        snapshot.load(bad)
    assert str(bad) in str(exc.value) and "refused" in str(exc.value)


@pytest.mark.parametrize("content, message", [(b"not json", "not a JSON snapshot"), (b"[]", "JSON object"),
                                               (b"\xff\xfe", "not a JSON snapshot")])
def test_load_refuses_a_file_that_is_not_a_snapshot(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(snapshot.SnapshotError, match=message):
        snapshot.load(bad)


def test_load_of_a_missing_file_says_how_to_publish(tmp_path):
    with pytest.raises(NetzausbauError, match="python -m lib.cli publish"):
        snapshot.load(tmp_path / "none.json")


def test_the_snapshot_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "x.json"))
    assert snapshot.snapshot_path() == tmp_path / "x.json"
    assert snapshot.snapshot_path(tmp_path / "y.json") == tmp_path / "y.json"


@pytest.mark.parametrize("day, month", [("2026-11-01", "2026-10"), ("2026-10-31", "2026-10"),
                                        ("2026-02-28", "2026-02"), ("2024-02-28", "2024-01")])
def test_only_months_that_have_ended_are_published(day, month):
    assert str(publish.last_full_month(dt.date.fromisoformat(day))) == month


@pytest.mark.parametrize("n, k, want", [(0, 10, None), (9, 10, None), (10, 10, 10), (14, 10, 10), (15, 10, 20),
                                        (5, 5, 10), (104, 10, 100), (105, 10, 110)])
def test_round_count(n, k, want):
    assert publish.round_count(n, k) == want


@pytest.mark.parametrize("statuses, want", [
    (["relieved", "relieved"], "relieved"), (["relieved", "planned"], "planned"),
    (["in_progress", "planned"], "planned"), (["relieved", "in_progress"], "in_progress"),
    (["relieved", "no_plan"], "no_plan")])
def test_an_area_is_as_far_as_its_least_advanced_cell(statuses, want):
    assert publish.area_status(statuses) == want


def test_every_relief_status_has_a_public_status():
    from lib.engine import linkage

    assert set(publish.STATUS_MAP) == set(linkage.STATUSES)
    assert set(publish.STATUS_MAP.values()) == STATUSES


def test_planned_by_quarter_counts_only_pending_upgrades_after_the_date():
    ts = pd.Timestamp
    frame_ = pd.DataFrame({
        "planned": [ts("2026-10-01"), ts("2026-12-01"), ts("2027-02-01"), ts("2027-12-31"), ts("2026-12-15")],
        "actual": [pd.NaT, pd.NaT, pd.NaT, pd.NaT, ts("2026-10-20")]}).astype("datetime64[us]")
    got = publish.planned_by_quarter(frame_, dt.date(2026, 11, 1))
    # the first is overdue (late), the last already on air
    assert got == {"2026-Q4": 1, "2027-Q1": 1, "2027-Q2": 0, "2027-Q3": 0, "later": 1}


# -- property: random small stores ------------------------------------------------------------

CENTRES = [(52.2, 8.2), (52.25, 8.7), (52.3, 9.2), (52.1, 8.05), (52.35, 8.35)]  # in the tiny world's regions


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 25), min_size=len(CENTRES), max_size=len(CENTRES)),
       spread=st.floats(0.001, 0.03), k=st.integers(5, 15), seed=st.integers(0, 10_000))
def test_random_stores_publish_nothing_below_k(tiny_world, tmp_path_factory, sizes, spread, k, seed):
    import random

    rng = random.Random(seed)
    folder = tmp_path_factory.mktemp("prop")
    db = folder / "store.duckdb"
    shutil.copy(tiny_world.template, db)
    lines = ["complaint_id,received_at,lat,lon,category,channel,text"]
    for c, ((lat, lon), n) in enumerate(zip(CENTRES, sizes, strict=True)):
        for i in range(n):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 390))
            lines.append(f"P{c}-{i},{day} 10:00,{lat + rng.uniform(-spread, spread):.5f},"
                         f"{lon + rng.uniform(-spread, spread):.5f},slow_data,app,secret text {c}-{i}")
    (folder / "more.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    con = store.connect(db)
    try:
        store.import_file(con, folder / "more.csv", table="complaints", today=dt.date(2025, 1, 31))
        publish.publish(con, folder / "s.json", k=k)
    finally:
        con.close()
    doc = check_privacy(folder / "s.json", db, k)
    check_areas(doc, db, k)
    assert (folder / "s.json").read_bytes() == snapshot.dumps(snapshot.load(folder / "s.json").doc)


def test_publish_if_missing_on_a_store_it_cannot_read_warns_and_lets_make_run_go_on(tmp_path, capsys):
    empty = tmp_path / "empty.duckdb"
    store.connect(empty).close()  # no records: nothing to date a snapshot by
    out = tmp_path / "s.json"
    assert cli.main(["--db", str(empty), "publish", "--out", str(out), "--if-missing"]) == 0
    assert not out.exists() and "no public snapshot written" in capsys.readouterr().err
    assert cli.main(["--db", str(empty), "publish", "--out", str(out)]) == 2  # asked for: an error


def test_area_status_and_quarter_follow_their_cells(published, demo_db):
    """Each area's status is the least advanced of its res-8 complaint cells' relief (the engine's, whose rules
    tests/test_linkage.py checks by hand), mapped here without lib.views.publish; its quarter is that of their
    latest relief date when every one is dated."""
    from lib.engine import linkage

    doc = json.loads(published.read_bytes())
    as_of = dt.date.fromisoformat(doc["data_as_of"])
    k8 = complaint_cells(demo_db, 8)
    fine = pd.DataFrame({"cell": [h3.str_to_int(c) for c in k8.index],
                         "area": [h3.cell_to_parent(c, 7) for c in k8.index]})
    con = duckdb.connect(str(demo_db), read_only=True)
    try:
        rel = linkage.relief(con, fine["cell"], 8, as_of).merge(fine, on="cell")
    finally:
        con.close()
    public = {"relieved": "relieved", "partly_relieved": "in_progress", "blocked_by_transport": "in_progress",
              "late": "planned", "on_track": "planned", "no_upgrade_planned": "no_plan"}
    order = ["relieved", "in_progress", "planned", "no_plan"]  # most advanced first
    for area in doc["tables"]["complaint_areas"]:
        mine = rel[rel["area"] == area["cell"]]
        want = max((public[s] for s in mine["status"]), key=order.index)
        assert area["status"] == want, area
        dates = mine["relief_date"]
        q = None
        if want in ("planned", "in_progress") and dates.notna().all():
            last = max(dates)
            q = f"{last.year}-Q{(last.month - 1) // 3 + 1}"
        assert area["expected_quarter"] == q, area


# -- which regions an area names: each region's own complaints there reach k ------------------

def _border_cells(con) -> tuple[str, list[tuple[float, float]], list[tuple[float, float]]]:
    """A resolution-7 area on the border of tests/worlds.py's West and East (lon 9.5), and the centres of its
    resolution-9 cells whose resolution-8 parents the store holds in West and in East."""
    members = dict(con.execute("SELECT cell, region_id FROM region_cells").fetchall())
    for area in h3.grid_disk(h3.latlng_to_cell(51.25, 9.5, 7), 1):
        side: dict[str, list] = {"W": [], "E": []}
        for child in h3.cell_to_children(area, 9):
            region = members.get(h3.str_to_int(h3.cell_to_parent(child, 8)))
            if region in side:
                side[region].append(h3.cell_to_latlng(child))
        if side["W"] and side["E"]:
            return area, side["W"], side["E"]
    raise AssertionError("no area on the border")


@pytest.mark.parametrize(("in_west", "in_east", "listed"), [
    (5, 4, ["W"]),  # k in West names West; k - 1 in East does not name East
    (5, 5, ["E", "W"]),  # exactly k on each side: both
    (4, 4, []),  # the area has k (8), no region has: on the whole network's map only
    (1, 3, None),  # fewer than k in the area: not published at all
])
def test_a_region_is_listed_on_an_area_from_k_of_its_own_complaints(tmp_path, in_west, in_east, listed):
    from tests import worlds

    k = 5
    con = store.connect(tmp_path / "w.duckdb")
    try:
        for table, path in worlds.write_world(tmp_path / "in").items():
            if table != "complaints":
                store.import_file(con, path, table=table)
        area, west, east = _border_cells(con)
        rows = ["complaint_id,received_at,lat,lon,category,channel"]
        for side, points, n in (("W", west, in_west), ("E", east, in_east)):
            rows += [f"{side}{i},2025-01-0{1 + i % 9} 10:00,{points[i % len(points)][0]:.6f},"
                     f"{points[i % len(points)][1]:.6f},slow_data,app" for i in range(n)]
        (tmp_path / "k.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        store.import_file(con, tmp_path / "k.csv", table="complaints")
        doc = publish.build(con, k=k)
    finally:
        con.close()
    areas = {a["cell"]: a for a in doc["tables"]["complaint_areas"]}
    assert set(areas) == (set() if listed is None else {area})
    if listed is not None:
        assert areas[area]["region_ids"] == listed
        assert snapshot.parse(snapshot.dumps(doc)).doc == doc  # an empty list is allowed on reading too
