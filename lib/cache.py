"""The app's handle on the store and its cached queries: the only module in lib/ that imports streamlit.

One DuckDB connection per store file is held in `st.cache_resource`; every query runs on
its own `con.cursor()` (a connection is not safe across Streamlit's session threads).
Cached queries are keyed by small inputs plus a store version token (the store's path and
newest import, read again after each write this process commits: lib/changes), so an import through the app,
or a store rebuilt on disk, invalidates them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import runpy
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import duckdb
import pandas as pd
import pyarrow as pa
import streamlit as st

from lib import audit, baselayer, changes, export, store, warmup
from lib.engine import stores
from lib.errors import NetzausbauError, StoreError
from lib.public import i18n, regionview, snapshot
from lib.views import bottlenecks, mapdraw, maps, mapurl, overview, places, publish, rollout, story

LOG = logging.getLogger(__name__)
TTL = "1h"
MAX_ENTRIES = 64
ROUTER = Path(__file__).resolve().parent.parent / "dashboard.py"
_ROUTED = "_routed_by_dashboard"


def mark_routed() -> None:
    """Called by dashboard.py on every run, before it runs the page: the page consumes the mark."""
    st.session_state[_ROUTED] = True


def ensure_routed() -> None:
    """Run dashboard.py (which routes back to this page) when Streamlit runs a page file on its own.

    Until some session has run dashboard.py's st.navigation, Streamlit treats pages/ as a legacy
    multipage folder: a deep link such as /data opened first after a server start runs the page
    file alone, without page config, shared sidebar or navigation (AppTest does so on every rerun).
    Every page calls this first.
    """
    if not st.session_state.pop(_ROUTED, False):
        runpy.run_path(str(ROUTER), run_name="__main__")
        st.stop()


def _close(con: duckdb.DuckDBPyConnection) -> None:
    """Close a released store connection once its warm-up (lib/warmup) is done."""
    warmup.wait()
    con.close()


@st.cache_resource(max_entries=8, show_spinner=False, on_release=_close)
def _open(path: str, identity: int) -> duckdb.DuckDBPyConnection:
    """One connection per store file; `identity` (the inode) reopens a file replaced on disk. What the pages
    hold in memory is read ahead in the background (lib/warmup)."""
    con = store.connect(path)
    # the towns that name hotspots (geonames is read once, about 1 s), then each page's first view
    warmup.start(con, also=(("towns", places.warm), ("pages' first views", lambda: warm_pages(con))))
    return con


def store_path() -> Path:
    """The store file the app uses ($NETZAUSBAU_DB or data/netzausbau.duckdb), absolute."""
    return _resolved(str(store.db_path()), os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str, cwd: str) -> Path:
    """`path` made absolute from `cwd` (resolving asks the file system: once, not on every page run)."""
    return (Path(cwd) / path).resolve()


def store_name() -> str:
    """The store as a person may read it: the file, or the PostgreSQL server's URL without its password."""
    url = store.server_url()
    return stores.shown(url) if url else str(store_path())


def get_store(create: bool = False) -> duckdb.DuckDBPyConnection | stores.Postgres | None:
    """The shared connection to the store; None if there is no store file and `create` is False.

    Raises StoreError when the file cannot be opened (another process holds its lock), or the server cannot
    be reached."""
    if url := store.server_url():
        return _open(url, 0)
    path = store_path()
    if not path.exists():
        if not create:
            return None
        store.connect(path).close()
    try:
        return _open(str(path), path.stat().st_ino)
    except duckdb.IOException as exc:  # another process holds the file (an import or a demo build)
        raise StoreError(f"the store {path} cannot be opened: {exc}. Is another program using it? "
                         "Reload this page when it has finished.") from exc


_VERSIONS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[int, str]] = weakref.WeakKeyDictionary()
"""con -> (changes.now() when its token was read, the token)."""


def version(con: duckdb.DuckDBPyConnection) -> str:
    """A token that changes with every import: the store's path, newest import id and time. Read from a DuckDB
    store once per connection and committed write of this process (lib/changes), not on every cached call (5-6
    a page run, each a query that 20 planners' runs wait on in turn). A PostgreSQL store is written by other
    app processes and the command line too: there it is read on every call."""
    if stores.dialect(con) == "postgres":
        with con.cursor() as cur:
            row = cur.execute("SELECT max(import_id), max(imported_at) FROM import_log").fetchall()[0]
        return "|".join(map(str, (stores.shown(con.url), *row)))
    seen = changes.now()  # before the read: a write committed during it makes the next call read again
    held = _VERSIONS.get(con)
    if held is not None and held[0] == seen:
        return held[1]
    with con.cursor() as cur:
        row = cur.execute("SELECT (SELECT path FROM duckdb_databases() WHERE database_name = current_database()), "
                          "max(import_id), max(imported_at) FROM import_log").fetchall()[0]
    token = "|".join(map(str, row))
    _VERSIONS[con] = (seen, token)
    return token


QUERIES = MappingProxyType({
    "summary": overview.summary,
    "levels": overview.levels,
    "level_counts": overview.level_counts,
    "region_table": overview.region_table,
    "import_log": store.import_log,
    "rejected_rows": store.rejected_rows,
    "map_regions": maps.regions,
    "map_region_names": maps.region_names,
    "map_view": mapdraw.fitted,
    "map_bottlenecks": bottlenecks.ranking,
    "map_what_if": bottlenecks.what_if,
    "hotspot_story": story.hotspot,
    "site_story": story.site,
    "link_story": story.link,
    "rollout_regions": rollout.regions,
    "rollout_shapes": rollout.shapes,
    "rollout_table": rollout.region_table,
    "rollout_series": rollout.series,
    "rollout_late": rollout.late_list,
    "rollout_channels": rollout.channel_mix,
    "rollout_impact": rollout.impact_table,
})
"""The cached queries by name (read-only): each takes a cursor first, then small arguments."""


@st.cache_data(ttl=TTL, max_entries=MAX_ENTRIES, show_spinner=False)
def _query(_con: duckdb.DuckDBPyConnection, token: str, name: str, *args):
    with _con.cursor() as cur:
        return QUERIES[name](cur, *args)


def query(con: duckdb.DuckDBPyConnection, name: str, *args):
    """Run QUERIES[name] on its own cursor, cached by the store version and the arguments."""
    return _query(con, version(con), name, *args)


class _Recent:
    """The newest results of the shared caches below (`shared`, `map_table`, `map_deck`), found by Python's own
    hash of their arguments. Streamlit's cache hashes a cached function's arguments anew on every call before
    it finds the result, a noticeable part of a Planner map run under load (docs/benchmarks.md, "Planner map
    for a team"). A miss falls through to Streamlit's cache, which computes a result once however many
    sessions ask at once. Entries are keyed by the connection and the store's version token (so an import
    makes new ones), kept for the caches' TTL, and the least recently used beyond `size` are dropped: `size`
    stays below what Streamlit's three caches keep together, so this holds the newest of what they hold rather
    than keeping alive what they dropped."""

    def __init__(self, size: int, seconds: float) -> None:
        self.size, self.seconds = size, seconds
        self._items: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], object], spinner: str | None = None):
        """The result kept for `key`, else `make()` (under a spinner with that text, when given) kept."""
        now = time.monotonic()
        with self._lock:
            held = self._items.get(key)
            if held is not None and held[0] > now:
                self._items.move_to_end(key)
                return held[1]
        with st.spinner(spinner) if spinner else contextlib.nullcontext():
            value = make()
        with self._lock:
            self._items[key] = (now + self.seconds, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_RECENT = _Recent(size=24, seconds=pd.Timedelta(TTL).total_seconds())
"""8 map views with their tables and decks; Streamlit keeps 16 of each."""


def clear() -> None:
    """Forget every cached result (Streamlit's caches and the shared results' index)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    _RECENT.clear()


@st.cache_resource(ttl=TTL, max_entries=16, show_spinner=False)
def _shared(_con: duckdb.DuckDBPyConnection, token: str, name: str, *args):
    with _con.cursor() as cur:
        return QUERIES[name](cur, *args)


def shared(con: duckdb.DuckDBPyConnection, name: str, *args, spinner: str | None = None):
    """QUERIES[name] as `query` runs it, but one result shared by every session and page run instead of a copy
    for each (a Germany map view is 1.9 MB to copy on every run): for the large results a page reads on every
    run. Read only: nothing may change what it returns. `spinner`: a text shown while the result is made
    (not on the page runs that find it made)."""
    token = version(con)
    return _RECENT.get((id(con), token, name, args), lambda: _shared(con, token, name, *args), spinner)


@st.cache_resource(ttl=TTL, max_entries=16, show_spinner=False)
def _map_table(_con: duckdb.DuckDBPyConnection, token: str, p: maps.Params, rows: int) -> tuple[pd.DataFrame,
                                                                                                 pa.Table]:
    ranked = mapdraw.table(_shared(_con, token, "map_view", p).hotspots.head(rows))
    return ranked, pa.Table.from_pandas(mapdraw.readable_table(ranked), preserve_index=False)


def map_table(con: duckdb.DuckDBPyConnection, p: maps.Params, rows: int) -> tuple[pd.DataFrame, pa.Table]:
    """(ranked, readable) of the Planner map's table of a view's first `rows` hotspots (`mapdraw.table`;
    `readable_table` as an Arrow table, what st.dataframe sends: converting a frame cost every page run 15 % of
    its time), made once per store version and view and shared read-only."""
    token = version(con)
    return _RECENT.get((id(con), token, "map_table", p, rows), lambda: _map_table(con, token, p, rows))


@st.cache_resource(max_entries=16, show_spinner=False)
def _map_deck(_con: duckdb.DuckDBPyConnection, token: str, p: maps.Params, colour: str,
              pick: tuple[str, str] | None, focus: tuple[float, float] | None) -> baselayer.CompactDeck:
    d = mapdraw.deck(_shared(_con, token, "map_view", p), colour, pick, focus=focus)
    d.to_json()  # written once, here: every page run that shows this view sends these bytes
    return d


def map_deck(con: duckdb.DuckDBPyConnection, p: maps.Params, colour: str, pick: tuple[str, str] | None,
             focus: tuple[float, float] | None) -> baselayer.CompactDeck:
    """The Planner map's deck of a view, built and written as JSON once per store version and view, and shared
    read-only by every session: a page run that changes nothing on the map builds nothing (a Germany view is
    about 3 MB of JSON and 0.1 s to build)."""
    token = version(con)
    return _RECENT.get((id(con), token, "map_deck", p, colour, pick, focus),
                       lambda: _map_deck(con, token, p, colour, pick, focus))


def summary(con: duckdb.DuckDBPyConnection) -> overview.Summary:
    """Cached `overview.summary`."""
    return query(con, "summary")


def levels(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The store's region levels, in schema order: those of the cached `overview.level_counts` (one query for
    the level list and the Overview's count of each)."""
    return list(query(con, "level_counts"))


def region_table(con: duckdb.DuckDBPyConnection, level: str) -> pd.DataFrame:
    """Cached `overview.region_table`."""
    return query(con, "region_table", level)


def import_log(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Cached `store.import_log` (newest first)."""
    return query(con, "import_log")


def rejected_rows(con: duckdb.DuckDBPyConnection, import_id: int) -> pd.DataFrame:
    """Cached `store.rejected_rows` of one import."""
    return query(con, "rejected_rows", int(import_id))


@dataclass
class Outcome:
    """What importing one uploaded file did: a result, or the reason it was refused."""

    file_name: str
    result: store.ImportResult | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def import_id(self) -> int | None:
        return self.result.import_id if self.result else None

    @property
    def rows_rejected(self) -> int:
        return self.result.rows_rejected if self.result else 0

    def brief(self) -> dict:
        """What the page keeps in session state to show after reruns: small, without the rejected rows."""
        return {"file": self.file_name, "error": self.error, "summary": self.result.summary() if self.result else "",
                "import_id": self.import_id, "rejected": self.rows_rejected, "warnings": self.warnings}


def import_files(con: duckdb.DuckDBPyConnection, files: Iterable[tuple[str, bytes]], table: str | None = None,
                 progress: Callable[[str, float], None] | None = None, by: str | None = None) -> list[Outcome]:
    """Import each (file name, bytes) in its own transaction, as done `by` someone (the audit trail); a refused
    file does not stop the others."""
    files = list(files) if table else store.import_order(list(files))
    progress = progress or (lambda msg, frac: None)
    outcomes = []
    for i, (name, data) in enumerate(files):
        def report(msg: str, frac: float, i: int = i, name: str = name) -> None:
            progress(f"{name}: {msg}", min(1.0, (i + frac) / len(files)))

        with con.cursor() as cur:
            try:
                res = store.import_file(cur, data, table=table, file_name=name, progress=report, by=by)
            except NetzausbauError as exc:
                outcomes.append(Outcome(name, error=str(exc)))
            except duckdb.Error as exc:  # e.g. a concurrent import touched the same rows: nothing was written
                outcomes.append(Outcome(name, error=f"{name}: the store refused the import ({exc}); try again"))
            except Exception as exc:  # a fault of ours: rolled back; say so and go on with the other files
                outcomes.append(Outcome(name, error=f"{name}: could not be imported ({type(exc).__name__}: {exc}); "
                                                    "nothing of it was stored. Please report this file."))
            else:
                outcomes.append(Outcome(name, result=res, warnings=list(res.warnings)))
        report("refused" if outcomes[-1].error else "done", 1.0)
    return outcomes


def rejects_csv(rejects: pd.DataFrame) -> bytes:
    """Rejected rows as CSV bytes (UTF-8 with BOM; a value that a spreadsheet would run is escaped)."""
    return export.csv_bytes(rejects)


@st.cache_resource(max_entries=4, show_spinner=False)
def _prepared(path: str, stamp: tuple[int, int, int]) -> regionview.Prepared:
    """The snapshot at `path` validated and prepared once per file version (`stamp`: inode, mtime, size);
    shared read-only by every session (nothing mutates it)."""
    return regionview.prepare(snapshot.load(path))


@st.cache_resource(max_entries=256, show_spinner=False)
def _public_region(path: str, stamp: tuple[int, int, int], region_id: str, lang: str) -> regionview.RegionView:
    """`regionview.region_view` made once per snapshot version, region and language; shared read-only."""
    return regionview.region_view(_prepared(path, stamp), region_id, lang)


def public_region(region_id: str, lang: str) -> regionview.RegionView:
    """The public page's map, charts and notes of a region in a language, cached per snapshot version."""
    try:
        return _public_region(*snapshot.file_version(), region_id, lang)
    except OSError as exc:  # replaced or removed since public_snapshot() read it
        raise snapshot.SnapshotError("the snapshot went away while the page was drawn") from exc


def warm_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Make the view each internal page opens with ahead (lib/warmup calls this when the app opens the store,
    after the held data): what a planner or manager who opens a page first after a start would otherwise wait
    for (at 10M complaints the Rollout page's first view took 14 s). The same cached calls the pages make, with
    the defaults a link without parameters gives."""
    info = summary(con)
    if info is None or info.data_as_of is None:
        return
    level = (levels(con) or ["state"])[0]
    region_table(con, level)  # Overview (its level counts made by `levels` above)
    import_log(con)  # Data
    if info.counts.get("complaints"):  # Planner map
        first, last = mapurl.date_range(info)
        default = mapurl.parse({}, first, last, shared(con, "map_region_names"))
        map_deck(con, default.params, default.colour, None, None)
        map_table(con, default.params, mapdraw.TABLE_ROWS)
    if info.counts.get("upgrades"):  # Rollout
        day = info.data_as_of.date()
        query(con, "rollout_regions", level)
        query(con, "rollout_series", (rollout.ALL,), level)
        query(con, "rollout_shapes", level)
        for name in ("rollout_table", "rollout_late", "rollout_impact"):  # the impact: for its section, when opened
            query(con, name, level, day)
        query(con, "rollout_channels", level, rollout.ALL, day)


WARM_PUBLIC_LEVELS = (snapshot.NETWORK_LEVEL, "state", "cluster")
"""The levels whose public views a server makes at its start: the network, the states and the city areas (most
visitors, about 70 views). A district's view is made when first asked for: the 400 districts would keep a new
server busy long after its start and not fit the cache (`_public_region`) beside the others."""


def warm_public() -> None:
    """Make the public page's view of every published region of `WARM_PUBLIC_LEVELS` in both languages ahead
    (a public server's start, in the background), so that the first visitors of a region do not wait for its
    charts and map. Without a snapshot there is nothing to make; the page says so."""
    try:
        p = public_snapshot()
        for region_id in p.regions.index[p.regions["level"].isin(WARM_PUBLIC_LEVELS)]:
            for lang in i18n.LANGUAGES:
                public_region(region_id, lang)
    except snapshot.SnapshotError as exc:
        LOG.info("public warm-up: %s", exc)


def public_snapshot() -> regionview.Prepared:
    """The published snapshot ($NETZAUSBAU_SNAPSHOT or data/public/snapshot.json), prepared for the public page.

    Never touches the store. Raises snapshot.SnapshotError when there is no valid snapshot."""
    try:
        return _prepared(*snapshot.file_version())
    except OSError:
        return regionview.prepare(snapshot.load())  # raises SnapshotError with the reason


def publish_snapshot(con: duckdb.DuckDBPyConnection, k: int, by: str) -> publish.Published:
    """Write the public snapshot from the store ($NETZAUSBAU_SNAPSHOT or data/public/snapshot.json), as done
    `by` someone (the audit trail)."""
    with con.cursor() as cur:
        return publish.publish(cur, k=k, by=by)


def audit_trail(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The audit trail, newest first (`audit.entries`; read fresh: it is short and changes with every action)."""
    with con.cursor() as cur:
        return audit.entries(cur)


def audit_csv(trail: pd.DataFrame) -> bytes:
    """The audit trail as CSV (UTF-8 with BOM, formulas escaped), with the headings the page shows."""
    return export.csv_bytes(audit.readable(trail))


def public_k(con: duckdb.DuckDBPyConnection) -> int:
    """The k the Data page publishes with: the admin's setting, or the snapshot's default."""
    with con.cursor() as cur:
        return int(store.setting(cur, "public_k", str(snapshot.DEFAULT_K)))


def set_public_k(con: duckdb.DuckDBPyConnection, k: int, by: str) -> None:
    """Change the k the Data page publishes with (an admin's setting; recorded in the audit trail)."""
    if k < snapshot.MIN_K:
        raise NetzausbauError(f"k must be at least {snapshot.MIN_K}, so that no published figure names a few people")
    with con.cursor() as cur:
        store.set_setting(cur, "public_k", str(int(k)), by)


def regions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Cached `overview.region_table` of every level, for pickers: region_id, name, level."""
    parts = [region_table(con, level).assign(level=level)[["region_id", "name", "level"]] for level in levels(con)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["region_id", "name", "level"])


def server_address() -> tuple[str, int]:
    """Where this server listens: its server.address ("" when unset) and server.port options."""
    return str(st.get_option("server.address") or ""), int(st.get_option("server.port"))
