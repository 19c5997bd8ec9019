"""Linkage and relief on hand-built worlds whose answers are known."""

from __future__ import annotations

import csv
import datetime as dt
import io

import h3
import numpy as np
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from lib import cells, engine, store
from lib.engine import linkage, network
from tests import worlds

BASE = (51.25, 9.25)  # the hotspot, and the site serving it
H = int(cells.parent(cells.latlng_to_cells([BASE[0]], [BASE[1]]), 8)[0])  # as the store places a site
FAR = (52.52, 13.40)  # Berlin: far from every site
AS_OF = dt.date(2025, 6, 1)
D = dt.date.fromisoformat

SITE_COLS = ["site_id", "lat", "lon", "site_type"]
LINK_COLS = ["link_id", "kind", "a_lat", "a_lon", "b_lat", "b_lon", "completion_planned", "completion_actual"]
UP_COLS = ["upgrade_id", "site_id", "kind", "permit_actual", "installed_planned", "installed_actual", "on_air_planned",
           "on_air_actual", "transport_link_id", "status"]


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c) or "" for c in columns})
    return out.getvalue().encode()


def build(tmp_path, sites: list[dict], links: list[dict] = (), upgrades: list[dict] = ()):
    """A store holding exactly these records (every row must be accepted)."""
    con = store.connect(tmp_path / "x.duckdb")
    for table, rows, cols in (("sites", sites, SITE_COLS), ("transport_links", links, LINK_COLS),
                              ("upgrades", upgrades, UP_COLS)):
        if rows:
            r = store.import_file(con, _csv(rows, cols), table=table, file_name=f"{table}.csv")
            assert r.rows_rejected == 0, store.rejected_rows(con, r.import_id)
    return con


def site(site_id: str, latlon=BASE, site_type: str = "macro") -> dict:
    return {"site_id": site_id, "lat": latlon[0], "lon": latlon[1], "site_type": site_type}


def link(link_id: str, planned: str | None, actual: str | None = None) -> dict:
    return {"link_id": link_id, "kind": "fibre", "a_lat": BASE[0], "a_lon": BASE[1], "b_lat": 51.3, "b_lon": 9.3,
            "completion_planned": planned, "completion_actual": actual}


def upgrade(upgrade_id: str, planned: str, actual: str | None = None, link_id: str | None = None,
            site_id: str = "S1", installed: str | None = None, status: str | None = None) -> dict:
    return {"upgrade_id": upgrade_id, "site_id": site_id, "kind": "hardware_swap", "on_air_planned": planned,
            "on_air_actual": actual, "transport_link_id": link_id, "installed_actual": installed,
            "status": status}


def site_centre(lat: float, lon: float) -> int:
    """A site's coverage centre: the resolution-8 parent of its resolution-9 cell.

    (Not always the resolution-8 cell of the point: H3 children overhang their parent.)
    """
    return h3.api.basic_int.cell_to_parent(h3.api.basic_int.latlng_to_cell(lat, lon, 9), 8)


def ring_latlon(k: int) -> tuple[float, float]:
    """Centre of a resolution-8 cell exactly k rings from the hotspot H (its centre child lies inside it)."""
    cell = sorted(h3.api.basic_int.grid_ring(H, k))[0] if k else H
    return h3.api.basic_int.cell_to_latlng(cell)


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
def test_relief_cases(tmp_path, links, upgrades, as_of, status, date, blocking):
    con = build(tmp_path, [site("S1")], links, upgrades)
    out = linkage.relief(con, [H], as_of=as_of)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["cell"] == H and row["n_sites"] == 1
    assert row["status"] == status
    assert row["relief_date"] == (D(date) if date else None)
    assert row["blocking_link_id"] == blocking
    assert row["n_upgrades"] == sum(u["status"] != "cancelled" for u in upgrades)


def test_hotspot_far_from_every_site(tmp_path):
    con = build(tmp_path, [site("S1")], [], [upgrade("U1", "2025-04-01", "2025-04-10")])
    far = int(cells.latlng_to_cells([FAR[0]], [FAR[1]], 8)[0])
    out = linkage.relief(con, pd.DataFrame({"cell": [far, H, far]}), as_of=AS_OF)
    assert list(out["cell"]) == sorted([far, H])
    got = out.set_index("cell")
    assert got.loc[far, "status"] == "no_upgrade_planned"
    assert got.loc[far, "n_sites"] == 0 and got.loc[far, "n_upgrades"] == 0
    assert got.loc[far, "blocking_link_id"] is None
    assert got.loc[H, "status"] == "relieved"
    assert linkage.hotspot_sites(con, [far]).empty


def test_site_without_upgrade_is_counted_but_plans_nothing(tmp_path):
    con = build(tmp_path, [site("S1")])
    row = linkage.relief(con, [H], as_of=AS_OF).iloc[0]
    assert (row["n_sites"], row["n_upgrades"], row["status"]) == (1, 0, "no_upgrade_planned")


# -- serving sites and coverage ---------------------------------------------------------

def test_rank_nearest_first_ties_by_site_id(tmp_path):
    sites = [site("S9"), site("S2"), site("S5", ring_latlon(2)), site("S7", ring_latlon(1)),
             site("S8", ring_latlon(5))]
    con = build(tmp_path, sites)
    out = linkage.hotspot_sites(con, pd.DataFrame({"cell": [H]}))
    assert list(out["site_id"]) == ["S2", "S9", "S7", "S5"]
    assert list(out["distance"]) == [0, 0, 1, 2]
    assert list(out["rank"]) == [1, 2, 3, 4]
    assert set(out["cell"]) == {H}


COVERAGE_CASES = [
    ("micro", 2, None, False),
    ("macro", 2, None, True),
    ("macro", 3, None, True),
    ("macro", 4, None, False),
    ("micro", 1, None, True),
    ("small_cell", 1, None, False),
    ("small_cell", 0, None, True),
    ("", 3, None, True),  # empty type counts as macro
    ("micro", 2, {"micro": 2}, True),
    ("macro", 1, {"micro": 2}, False),  # a type missing from rings covers nothing
]


@pytest.mark.parametrize(("site_type", "k", "rings", "covered"), COVERAGE_CASES)
def test_coverage_radius_by_site_type(tmp_path, site_type, k, rings, covered):
    con = build(tmp_path, [site("S1", ring_latlon(k), site_type)])
    out = linkage.hotspot_sites(con, [H], rings=rings)
    assert (len(out) == 1) == covered
    if covered:
        assert out.iloc[0]["distance"] == k


@pytest.mark.parametrize(("site_type", "size"), [("macro", 37), ("micro", 7), ("small_cell", 1)])
def test_site_coverage_is_a_disk(tmp_path, site_type, size):
    con = build(tmp_path, [site("S1", site_type=site_type)])
    cov = linkage.site_coverage(con)
    assert len(cov) == size and cov["cell"].is_unique
    for cell, distance in zip(cov["cell"], cov["distance"], strict=True):
        assert h3.api.basic_int.grid_distance(H, int(cell)) == distance


def test_bad_rings_are_refused(tmp_path):
    con = build(tmp_path, [site("S1")])
    with pytest.raises(ValueError):
        linkage.site_coverage(con, rings={"tower": 2})
    with pytest.raises(ValueError):
        linkage.site_coverage(con, rings={"macro": -1})


# -- an independent check on the shared tiny world --------------------------------------

def _rows(text: str) -> list[dict]:
    return [{k: (v or None) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


def reference_relief_dates(hotspots: list[int], as_of: dt.date) -> dict[int, dt.date | None]:
    """Relief date of each hotspot by a plain loop over the world's records (no SQL)."""
    sites, links, ups = _rows(worlds.SITES_CSV), _rows(worlds.LINKS_CSV), _rows(worlds.UPGRADES_CSV)
    links = {x["link_id"]: x for x in links}
    out = {}
    for h in hotspots:
        dates = []
        for s in sites:
            centre = site_centre(float(s["lat"]), float(s["lon"]))
            if h3.api.basic_int.grid_distance(centre, h) > linkage.COVERAGE_RINGS[s["site_type"] or "macro"]:
                continue
            for u in ups:
                if u["site_id"] != s["site_id"] or u.get("status") == "cancelled":
                    continue
                actual = u["on_air_actual"] and D(u["on_air_actual"])
                dates.append(actual if actual and actual <= as_of else D(u["on_air_planned"]))
                if u["transport_link_id"]:
                    lk = links[u["transport_link_id"]]
                    done = lk["completion_actual"] and D(lk["completion_actual"])
                    planned = lk["completion_planned"] and D(lk["completion_planned"])
                    dates.append(done if done and done <= as_of else planned)
        out[h] = None if not dates or None in dates else max(dates)
    return out


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linkage")
    con = store.connect(folder / "x.duckdb")
    worlds.import_world(con, folder / "in")
    assert store.import_log(con)["rows_rejected"].sum() == 0
    yield con
    con.close()


@pytest.mark.parametrize("as_of", [D("2025-03-01"), D("2025-04-05"), D("2025-05-15"), D("2025-07-01")])
def test_relief_dates_match_a_plain_loop(tiny_store, as_of):
    centres = [site_centre(float(s["lat"]), float(s["lon"])) for s in _rows(worlds.SITES_CSV)]
    hotspots = sorted({c for centre in centres for c in h3.api.basic_int.grid_disk(centre, 4)})
    got = linkage.relief(tiny_store, hotspots, as_of=as_of)
    expected = reference_relief_dates(hotspots, as_of)
    assert list(got["cell"]) == hotspots
    got_dates = dict(zip(got["cell"].tolist(), got["relief_date"], strict=True))
    assert got_dates == expected
    assert any(d is not None for d in expected.values()) and any(d is None for d in expected.values())


# -- the Ibis expressions against the SQL they replaced ---------------------------------

OLD_HOTSPOT_SITES_SQL = """
SELECT h.cell, c.site_id, c.distance,
       row_number() OVER (PARTITION BY h.cell ORDER BY c.distance, c.site_id) AS rank
FROM (SELECT DISTINCT cell FROM {hotspots}) h
JOIN {coverage} c ON c.cell = h.cell
ORDER BY h.cell, rank
"""

OLD_RELIEF_SQL = """
WITH served AS (
    SELECT cell, count(*) AS n_sites FROM {serving} GROUP BY cell
), ups AS (
    SELECT s.cell, u.upgrade_id, u.transport_link_id AS link_id, u.on_air_planned,
        CASE WHEN u.on_air_actual <= {as_of} THEN 1 ELSE 0 END AS up_done,
        CASE WHEN u.on_air_actual <= {as_of} THEN u.on_air_actual ELSE u.on_air_planned END AS up_date,
        CASE WHEN u.transport_link_id IS NULL OR l.completion_actual <= {as_of} THEN 1 ELSE 0 END AS link_done,
        CASE WHEN u.transport_link_id IS NULL THEN NULL
             WHEN l.completion_actual <= {as_of} THEN l.completion_actual
             ELSE l.completion_planned END AS link_date,
        CASE WHEN u.installed_actual <= {as_of} OR u.on_air_actual <= {as_of} OR u.on_air_planned <= {as_of}
             THEN 1 ELSE 0 END AS ready
    FROM {serving} s
    JOIN upgrades u ON u.site_id = s.site_id
    LEFT JOIN transport_links l ON l.link_id = u.transport_link_id
    WHERE u.status IS NULL OR u.status <> 'cancelled'
), flags AS (
    SELECT cell, upgrade_id, link_id, up_done, link_done, up_date, link_date,
        CASE WHEN link_done = 0 AND ready = 1 AND (link_date IS NULL OR link_date < {as_of}
                                                   OR link_date > on_air_planned)
             THEN 1 ELSE 0 END AS blocked,
        CASE WHEN (up_done = 0 AND on_air_planned < {as_of}) OR (link_done = 0 AND link_date < {as_of})
             THEN 1 ELSE 0 END AS late,
        CASE WHEN link_done = 0 AND link_date IS NULL THEN 1 ELSE 0 END AS undated,
        CASE WHEN link_date > up_date THEN link_date ELSE up_date END AS own_date
    FROM ups
), per_cell AS (
    SELECT cell, count(*) AS n_upgrades, min(up_done * link_done) AS all_done, max(blocked) AS any_blocked,
        max(late) AS any_late, max(undated) AS any_undated, max(own_date) AS relief_date
    FROM flags GROUP BY cell
), blocking AS (
    SELECT cell, link_id, row_number() OVER (
        PARTITION BY cell ORDER BY CASE WHEN link_date IS NULL THEN 0 ELSE 1 END, link_date DESC, link_id) AS pick
    FROM flags WHERE blocked = 1
)
SELECT h.cell, coalesce(sv.n_sites, 0) AS n_sites, coalesce(p.n_upgrades, 0) AS n_upgrades,
    CASE WHEN p.any_undated = 1 THEN NULL ELSE p.relief_date END AS relief_date,
    CASE WHEN p.n_upgrades IS NULL THEN 'no_upgrade_planned'
         WHEN p.all_done = 1 THEN 'relieved'
         WHEN p.any_blocked = 1 THEN 'blocked_by_transport'
         WHEN p.any_late = 1 THEN 'late'
         ELSE 'on_track' END AS status,
    b.link_id AS blocking_link_id
FROM {hotspots} h
LEFT JOIN served sv ON sv.cell = h.cell
LEFT JOIN per_cell p ON p.cell = h.cell
LEFT JOIN blocking b ON b.cell = h.cell AND b.pick = 1
ORDER BY h.cell
"""


def reference(con, hotspot_cells, as_of: dt.date, res: int = 8, rings=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(hotspot_sites, relief) the way the module computed them before Ibis: disks around every site
    (`site_coverage`), then the SQL above on DuckDB."""
    cur = con.cursor()
    try:
        cur.register("ref_hotspots", pd.DataFrame({"cell": np.unique(np.asarray(hotspot_cells, dtype="int64"))}))
        cur.register("ref_coverage", linkage.site_coverage(cur, res, rings))
        sites = cur.execute(OLD_HOTSPOT_SITES_SQL.format(hotspots="ref_hotspots", coverage="ref_coverage")).df()
        cur.register("ref_serving", sites)
        rel = cur.execute(OLD_RELIEF_SQL.format(hotspots="ref_hotspots", serving="ref_serving",
                                                as_of=f"DATE '{as_of.isoformat()}'")).df()
    finally:
        cur.close()
    sites = sites.astype({"cell": "int64", "site_id": "str", "distance": "int64", "rank": "int64"})
    rel = rel.astype({"cell": "int64", "n_sites": "int64", "n_upgrades": "int64", "status": "str"})
    rel["relief_date"] = pd.Series([None if pd.isna(d) else d.date() for d in pd.to_datetime(rel["relief_date"])],
                                   index=rel.index, dtype=object)
    rel["blocking_link_id"] = rel["blocking_link_id"].astype(object).where(rel["blocking_link_id"].notna(), None)
    return sites, rel


def _disk_hotspots() -> list[int]:
    centres = [site_centre(float(s["lat"]), float(s["lon"])) for s in _rows(worlds.SITES_CSV)]
    far = int(cells.latlng_to_cells([FAR[0]], [FAR[1]], 8)[0])
    return sorted({c for centre in centres for c in h3.api.basic_int.grid_disk(centre, 4)} | {far})


@pytest.mark.parametrize("rings", [None, {"macro": 1, "micro": 2, "small_cell": 1}, {"micro": 3}])
@pytest.mark.parametrize("as_of", [D("2025-03-01"), D("2025-04-05"), D("2025-05-15"), D("2025-07-01")])
def test_expressions_equal_the_old_sql(tiny_store, as_of, rings):
    hot = _disk_hotspots()
    want_sites, want_relief = reference(tiny_store, hot, as_of, rings=rings)
    pd.testing.assert_frame_equal(linkage.hotspot_sites(tiny_store, hot, rings=rings), want_sites)
    pd.testing.assert_frame_equal(linkage.relief(tiny_store, hot, as_of=as_of, rings=rings), want_relief)


@pytest.mark.parametrize(("links", "upgrades", "as_of"), [c[:3] for c in RELIEF_CASES.values()],
                         ids=RELIEF_CASES.keys())
def test_relief_cases_equal_the_old_sql(tmp_path, links, upgrades, as_of):
    con = build(tmp_path, [site("S1"), site("S2", ring_latlon(2), "micro")], links, upgrades)
    hot = [H, *h3.api.basic_int.grid_ring(H, 1)]
    pd.testing.assert_frame_equal(linkage.relief(con, hot, as_of=as_of), reference(con, hot, as_of)[1])


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
    "sites": lambda con: linkage.sites_expr(con),
    "hotspot_sites": lambda con: linkage.hotspot_sites_expr(con, [H]),
    "hotspot_sites_rings": lambda con: linkage.hotspot_sites_expr(con, [H], rings={"micro": 2}),
    "upgrade_inputs": lambda con: network.upgrade_inputs_expr(con),
    "upgrade_flags_of_sites": lambda con: linkage.upgrade_flags_expr(con, AS_OF, linkage.sites_expr(con).site_id),
}
PARENT = {"sites", "hotspot_sites", "hotspot_sites_rings"}
"""The builders that take the parent of a cell."""


@pytest.mark.parametrize("dialect", engine.DIALECTS)
@pytest.mark.parametrize("name", BUILDERS)
def test_expressions_compile_for_every_engine(tiny_store, name, dialect):
    sql = engine.to_sql(BUILDERS[name](tiny_store), dialect)
    names, unknown = function_names(sql, dialect)
    assert unknown <= NATIVE[dialect], (name, dialect, unknown - NATIVE[dialect])
    if dialect != "duckdb":
        assert not names & DUCKDB_ONLY, (name, dialect, names & DUCKDB_ONLY)
        assert "h3_" not in sql.lower()
    if dialect == "trino" and name in PARENT:  # the H3 parent is integer arithmetic, spelled as Trino's functions
        assert "BITWISE_AND(" in sql
