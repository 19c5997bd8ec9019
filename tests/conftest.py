"""Shared fixtures: a small hand-built store whose every answer is known, the demo store, clean caches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from lib import cache, store, warmup
from lib.engine import heldcounts, network

# Hypothesis's default 200 ms deadline per example is a timed assertion: on a busy 2-core
# machine it fails correct code. Examples are still bounded by max_examples.
# The suite gates every landing, so its examples are the same each run (derandomize): a property
# that fails does so on every machine, not one run in ten. `make fuzz` searches with fresh random
# examples, 2,000 a test (or the count a test sets for itself), for what the fixed ones miss.
settings.register_profile("netzausbau", deadline=None, derandomize=True, max_examples=200)
settings.register_profile("fuzz", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "netzausbau"))

TODAY = dt.date(2025, 1, 31)

# Rectangles (west, south, east, north): three states side by side, one city cluster inside the first.
REGIONS = [
    {"region_id": "NW", "name": "Nordwest", "level": "state", "population": 200_000, "box": (8.0, 52.0, 8.5, 52.4)},
    {"region_id": "NO", "name": "Nordost", "level": "state", "population": 50_000, "box": (8.5, 52.0, 9.0, 52.4)},
    {"region_id": "OS", "name": "Ostsee", "level": "state", "population": None, "box": (9.0, 52.0, 9.5, 52.4)},
    {"region_id": "C1", "name": "Stadt A", "level": "cluster", "parent_id": "NW", "population": 80_000,
     "box": (8.1, 52.1, 8.3, 52.3)},
]
AREA = (7.9, 51.95, 9.6, 52.45)  # points are drawn here: some fall outside every region
MARGIN = 0.02  # degrees kept clear of every region edge, so H3 membership equals point-in-polygon


@dataclass
class World:
    """The tiny world's records as written to its input files, and those files."""

    regions: list[dict]
    sites: list[dict]
    links: list[dict]
    upgrades: list[dict]  # the current version (after the update file)
    complaints: list[dict]
    files: dict[str, Path]  # name -> path, in import order
    template: Path  # a store with every file imported


def _polygon(box) -> list:
    w, s, e, n = box
    return [[[w, s], [e, s], [e, n], [w, n], [w, s]]]


def _point(rng: random.Random) -> tuple[float, float]:
    """A random (lat, lon) in AREA, at least MARGIN away from every region edge."""
    xs = {x for r in REGIONS for x in (r["box"][0], r["box"][2])}
    ys = {y for r in REGIONS for y in (r["box"][1], r["box"][3])}
    while True:
        lon, lat = rng.uniform(AREA[0], AREA[2]), rng.uniform(AREA[1], AREA[3])
        if all(abs(lon - x) > MARGIN for x in xs) and all(abs(lat - y) > MARGIN for y in ys):
            return round(lat, 6), round(lon, 6)


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return out.getvalue()


def make_world(folder: Path, seed: int = 7) -> World:
    """Write the tiny world's input files (deterministic from `seed`) and build its store."""
    rng = random.Random(seed)
    sites = []
    for i in range(40):
        lat, lon = _point(rng)
        sites.append({"site_id": f"S{i:02d}", "name": f"Site {i}", "lat": lat, "lon": lon, "site_type": "macro"})
    links = []
    for i in range(15):
        (alat, alon), (blat, blon) = _point(rng), _point(rng)
        done = rng.random() < 0.4
        links.append({"link_id": f"L{i:02d}", "kind": rng.choice(["fibre", "microwave"]), "a_lat": alat, "a_lon": alon,
                      "b_lat": blat, "b_lon": blon, "completion_planned": f"2024-{rng.randint(1, 12):02d}-15",
                      "completion_actual": "2024-12-20" if done else None})
    upgrades = []
    for s in sites:
        for _ in range(rng.choice([0, 1, 1, 2])):
            status = rng.choice(["on_air", "planned", "planned", "cancelled"])
            month = rng.randint(3, 12)
            upgrades.append({"upgrade_id": f"U{len(upgrades):03d}", "site_id": s["site_id"], "kind": "hardware_swap",
                             "permit_planned": "2024-01-10", "installed_planned": "2024-02-10",
                             "on_air_planned": f"2024-{month:02d}-01",
                             "on_air_actual": f"2024-{month:02d}-20" if status == "on_air" else None,
                             "status": status})
    complaints = []
    for i in range(300):
        lat, lon = _point(rng)
        when = dt.datetime(2024, 1, 1) + dt.timedelta(minutes=rng.randint(0, 365 * 24 * 60))
        complaints.append({"complaint_id": f"K{i:04d}", "received_at": when.strftime("%Y-%m-%d %H:%M"), "lat": lat,
                           "lon": lon, "category": rng.choice(["no_signal", "slow_data"]),
                           "channel": rng.choice(["hotline", "app"])})
    baseline = [dict(u) for u in upgrades]
    # The update file: the first three planned upgrades went on air in January 2025.
    for u in [u for u in upgrades if u["status"] == "planned"][:3]:
        u.update(status="on_air", on_air_actual="2025-01-15")
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": _polygon(r["box"])},
                 "properties": {k: v for k, v in r.items() if k != "box"}} for r in REGIONS]
    folder.mkdir(parents=True, exist_ok=True)
    up_cols = ["upgrade_id", "site_id", "kind", "permit_planned", "installed_planned", "on_air_planned",
               "on_air_actual", "status"]
    texts = {
        "regions.geojson": json.dumps({"type": "FeatureCollection", "features": features}),
        "sites.csv": _csv(sites, ["site_id", "name", "lat", "lon", "site_type"]),
        "links.csv": _csv(links, ["link_id", "kind", "a_lat", "a_lon", "b_lat", "b_lon", "completion_planned",
                                  "completion_actual"]),
        "upgrades.csv": _csv(baseline, up_cols),
        "upgrades_update.csv": _csv(upgrades, up_cols),
        "complaints.csv": _csv(complaints, ["complaint_id", "received_at", "lat", "lon", "category", "channel"]),
    }
    files = {}
    for name, text in texts.items():
        files[name] = folder / name
        files[name].write_text(text, encoding="utf-8")
    template = folder / "tiny.duckdb"
    con = store.connect(template)
    for path in files.values():
        store.import_file(con, path, today=TODAY)
    con.close()
    return World(REGIONS, sites, links, upgrades, complaints, files, template)


_BAD_COMPLAINTS = """complaint_id,received_at,lat,lon,category,channel
B1,2024-05-01 10:00,52.2,8.2,no_signal,hotline
B2,2024-05-01 11:00,48.85,2.35,no_signal,hotline
B3,2024-05-02 09:30,52.2,8.7,weather,app
B4,2024-05-03 12:00,52.21,8.71,slow_data,app
"""


@pytest.fixture(scope="session")
def bad_complaints() -> bytes:
    """A complaints file with two bad rows: row 3 lies in Paris (lon outside Germany), row 4 has an unknown category."""
    return _BAD_COMPLAINTS.encode()


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> World:
    """The tiny world, built once per test session."""
    return make_world(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny_db(tiny_world, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny store, set as the app's store ($NETZAUSBAU_DB)."""
    path = tmp_path / "store.duckdb"
    shutil.copy(tiny_world.template, path)
    monkeypatch.setenv(store.DB_ENV, str(path))
    return path


@pytest.fixture
def empty_db(tmp_path, monkeypatch) -> Path:
    """The app's store set to a file that does not exist yet."""
    path = tmp_path / "none" / "store.duckdb"
    monkeypatch.setenv(store.DB_ENV, str(path))
    return path


@pytest.fixture(scope="session")
def pg_cluster():
    """A real PostgreSQL server for the whole session (tests/pgserver.py); `pg_database` makes each world's
    database on it."""
    from tests.pgserver import postgres_server

    with postgres_server() as url:
        yield url


def pg_database(cluster: str, name: str) -> str:
    """A new, empty database `name` on the server of `cluster` (a URL); its URL."""
    import psycopg

    with psycopg.connect(cluster, autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}"')
        pg.execute(f'CREATE DATABASE "{name}"')
    return cluster.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def tiny_pg(tiny_world, pg_cluster) -> str:
    """The tiny world imported into a PostgreSQL store (the same files, the same importer): its URL."""
    url = pg_database(pg_cluster, "tiny")
    con = store.connect(url)
    for path in tiny_world.files.values():
        store.import_file(con, path, today=TODAY)
    con.close()
    return url


@pytest.fixture(scope="session")
def demo_pg(pg_cluster) -> str:
    """The small demo store of `demo_db` (the same seed and size) built on a PostgreSQL server: its URL."""
    from lib import cli

    url = pg_database(pg_cluster, "demo")
    cli.build_demo_store(url, sites=800, complaints=8000, progress=lambda m, f: None)
    return url


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def demo_store(request) -> str:
    """The small demo store on each kind of store, in turn: a DuckDB file's path or a PostgreSQL URL (for tests
    that define the figures: the same answers on both)."""
    return str(request.getfixturevalue("demo_db" if request.param == "duckdb" else "demo_pg"))


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """A small demo store (800 sites, 8,000 complaints), built once per test session."""
    from lib import cli

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    cli.build_demo_store(path, sites=800, complaints=8000, progress=lambda m, f: None)
    return path


@pytest.fixture(autouse=True)
def clean_caches():
    """Streamlit's caches, the held networks (lib/engine/network) and the held complaints (lib/engine/heldcounts) are
    process-wide: start and end every test with empty ones, and with no warm-up (lib/warmup) running."""
    warmup.wait()  # a warm-up a test started (lib/cache opens a store) ends before the caches are cleared
    cache.clear()
    network.clear()
    heldcounts.clear()
    yield
    warmup.wait()
    cache.clear()
    network.clear()
    heldcounts.clear()


@pytest.fixture
def world_con(tmp_path):
    """A fresh store holding tests/worlds.py's tiny world (two square regions, three sites)."""
    from tests import worlds

    con = store.connect(tmp_path / "world.duckdb")
    worlds.import_world(con, tmp_path / "in")
    yield con
    con.close()


STORE_KINDS = ["duckdb", "postgres"]
"""The two kinds of store: the tests that define the figures run on each, with the same answers."""


class StoreMaker:
    """Makes empty stores of one kind (`STORE_KINDS`): DuckDB files in a folder, or new databases on the session's
    PostgreSQL server; closes them all at the end."""

    def __init__(self, kind: str, folder: Path, request):
        self.kind, self._folder, self._request, self._made = kind, folder, request, []

    def __call__(self):
        if self.kind == "duckdb":
            con = store.connect(self._folder / f"store-{len(self._made)}.duckdb")
        else:
            cluster = self._request.getfixturevalue("pg_cluster")
            con = store.connect(pg_database(cluster, f"store_{os.urandom(6).hex()}"))
        self._made.append(con)
        return con

    def close(self) -> None:
        for con in self._made:
            con.close()


@pytest.fixture(params=STORE_KINDS)
def new_store(request, tmp_path):
    """`new_store()`: an empty store of this test's own, of each kind in turn."""
    maker = StoreMaker(request.param, tmp_path, request)
    yield maker
    maker.close()


@pytest.fixture(scope="module", params=STORE_KINDS)
def new_module_store(request, tmp_path_factory):
    """`new_module_store()`: an empty store for a module's world, of each kind in turn."""
    maker = StoreMaker(request.param, tmp_path_factory.mktemp("stores"), request)
    yield maker
    maker.close()


@pytest.fixture
def world_store(new_store, tmp_path):
    """tests/worlds.py's tiny world on each kind of store in turn, a fresh one each test."""
    from tests import worlds

    con = new_store()
    worlds.import_world(con, tmp_path / "in")
    return con


@pytest.fixture(scope="module")
def server(demo_db, tmp_path_factory):
    """The app served by `streamlit run dashboard.py` on a free port, on a private copy of the demo store."""
    from tests.browser import ServerFailed, streamlit_server

    db = tmp_path_factory.mktemp("browser") / "store.duckdb"
    shutil.copy(demo_db, db)
    try:
        with streamlit_server({store.DB_ENV: str(db)}, db.parent / "server.log") as url:
            yield url
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium driven by Playwright (scripts/ensure-debian chromium installs it)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: run scripts/ensure-debian chromium "
                    "(apt-get install chromium) or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (1440 x 2000) with a 60 s default timeout, offline: every request to another
    host than the test server (the map's basemap tiles and style, say) is aborted, so the tests show that
    each page works without them. `page.blocked` lists what was aborted."""
    context = browser.new_context(viewport={"width": 1440, "height": 2000})
    blocked: list[str] = []

    def abort(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:")), abort)
    pg = context.new_page()
    pg.blocked = blocked
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
