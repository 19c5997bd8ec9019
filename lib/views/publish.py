"""Publishing: the public snapshot built from the internal store (the Data page's Publish and `lib.cli publish`).

`build(con, k)` cuts the allowlisted tables of `lib.public.snapshot` from the store (the same figures as
the Overview and the Rollout page); `publish(con, path, k)` writes them atomically. The rules that keep the
public figures safe live here: `check_k`, `round_count`, `public_status`, `area_status`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import duckdb
import numpy as np
import pandas as pd

from lib import audit, cells, geonames
from lib.engine import hotspots, linkage, progress
from lib.public.snapshot import (
    AREA_RES,
    DEFAULT_K,
    LATER,
    LEVELS,
    MAX_TEXT,
    MIN_K,
    NETWORK_LEVEL,
    NETWORK_NAME,
    PUBLIC_STATUSES,
    QUARTERS_AHEAD,
    ROUND_BASE,
    SCHEMA_VERSION,
    SnapshotError,
    dumps,
    quarter,
    snapshot_path,
    validate,
)
from lib.views import overview, rollout

PLACE_POPULATION = 5000
"""Places of at least this many inhabitants go into the place search."""
FILE_MODE = 0o644

STATUS_MAP = MappingProxyType({
    "relieved": "relieved",  # the relieved share of its complaint weight reached linkage.RELIEVED_SHARE
    "partly_relieved": "in_progress",  # part of its weight relieved, the rest on track
    "blocked_by_transport": "in_progress",  # hardware installed or due, transport expansion still running
    "late": "planned",  # a planned date has passed, not done: planned, never shown as further along
    "on_track": "planned",  # every open date lies ahead
    "no_upgrade_planned": "no_plan",  # no serving site has an upgrade
})
"""`lib.engine.linkage` relief status -> public status."""



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
        return cur.execute("SELECT region_id, name, level, parent_id FROM regions WHERE level = ANY(?) "
                           "ORDER BY region_id", [list(LEVELS)]).df()


def _region_cells(con) -> pd.DataFrame:
    with con.cursor() as cur:
        return cur.execute("SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) "
                           "WHERE r.level = ANY(?)", [list(LEVELS)]).df().astype({"cell": "int64"})


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
        f = progress.headline_of(frame, as_of, rid)["forecast"]
        rows.append({"region_id": str(rid), "name": str(name), "level": str(level),
                     "parent_id": None if pd.isna(parent) else str(parent), "upgrades_total": int(now["total"]),
                     "upgrades_on_air": int(now["on_air_cum"]), "upgrades_late": int(now["late"]),
                     "pct_on_air": pct, "forecast": _iso(f.date), "forecast_earliest": _iso(f.low),
                     "forecast_latest": _iso(f.high)})
    return rows


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _outlines(region_ids: set[str], con) -> list[dict]:
    """The published regions' outlines, simplified (the Rollout map's shapes)."""
    return [{"region_id": f["properties"]["region_id"], "geometry": f["geometry"]}
            for level in LEVELS for f in rollout.shapes(con, level)["features"]
            if f["properties"]["region_id"] in region_ids and f["geometry"]["type"] in ("Polygon", "MultiPolygon")]


def planned_by_quarter(frame: pd.DataFrame, as_of: dt.date, ahead: int = QUARTERS_AHEAD) -> dict[str, int]:
    """Upgrades not on air by `as_of` whose planned on-air date is `as_of` (due) or later, by quarter (then
    LATER): with those on air and those late, every upgrade of the region."""
    day = pd.Timestamp(as_of)
    pending = frame[(frame["actual"].isna() | (frame["actual"] > day)) & (frame["planned"] >= day)]
    first = pd.Period(day, "Q")
    labels = [quarter((first + i).start_time) for i in range(ahead)]
    out = dict.fromkeys(labels, 0) | {LATER: 0}
    for period, n in pending["planned"].dt.to_period("Q").value_counts().items():
        label = quarter(period.start_time) if period < first + ahead else LATER
        out[label] += int(n)
    return out


def region_counts(fine: pd.DataFrame, rc: pd.DataFrame) -> pd.DataFrame:
    """area, region_id, n: each published region's own complaints in each area, from `fine` (cell at
    linkage.DEFAULT_RES, area, n) and the regions' cells `rc` (region_id, cell at cells.REGION_RES)."""
    own = fine[["area", "n"]].assign(cell=cells.parent(fine["cell"].to_numpy(), cells.REGION_RES))
    own = own.merge(rc, on="cell").astype({"region_id": str})
    return own.groupby(["area", "region_id"], as_index=False)["n"].sum()


def _areas(con, k: int, as_of: dt.date, rc: pd.DataFrame) -> list[dict]:
    """The published hotspot areas: resolution-AREA_RES cells with at least k complaints that touch a published
    region. An area lists a region only when that region's own complaints in it reach k (a region with fewer
    there is not named, so the listing cannot point at a few customers); an area no region reaches k in is shown
    on the whole network's map only (region_ids empty)."""
    counts = hotspots.cell_counts(con, res=AREA_RES)
    areas = counts[counts["n"] >= k]
    if areas.empty:
        return []
    fine = hotspots.cell_counts(con, res=linkage.DEFAULT_RES)
    fine = fine[fine["n"] > 0].assign(area=lambda f: cells.parent(f["cell"].to_numpy(), AREA_RES))
    fine = fine[fine["area"].isin(areas["cell"])]
    rel = linkage.relief(con, fine["cell"], as_of=as_of).merge(fine[["cell", "area"]], on="cell")
    rel["public"] = rel["status"].map(STATUS_MAP)
    own = region_counts(fine, rc)
    touched = own.groupby("area")["region_id"].agg(lambda s: sorted(set(s)))
    listed = own[own["n"] >= k].groupby("area")["region_id"].agg(lambda s: sorted(set(s)))
    rows = []
    for area, n in areas[["cell", "n"]].itertuples(index=False):
        mine = rel[rel["area"] == area]
        status = area_status(mine["public"]) if len(mine) else "no_plan"
        dates = mine["relief_date"]
        expected = None
        if status in ("planned", "in_progress") and len(dates) and dates.notna().all():
            expected = quarter(max(dates))
        if area not in touched.index:
            continue  # outside every published region: nothing on the page could show it
        rows.append({"cell": cells.to_str(area), "complaints": round_count(int(n), k), "status": status,
                     "expected_quarter": expected, "region_ids": listed.get(area, [])})
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
    """(name, resolution-REGION_RES cell) of German places with PLACE_POPULATION inhabitants or more (the
    German name too where geonames has an English one: both can be searched)."""
    p = geonames.german_places(PLACE_POPULATION)
    cell = cells.parent(cells.latlng_to_cells(p["lat"], p["lon"]), cells.REGION_RES) if len(p) else []
    out = [(str(n), int(x)) for n, x in zip(p["name"], cell, strict=True)]
    return tuple(out + [(g, x) for (n, x), g in zip(out, p["german"], strict=True) if g != n])


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
        "complaint_areas": _sorted(_areas(con, k, as_of, rc), "cell"),
        "complaints_monthly": _sorted(_monthly(con, k, as_of, rc, region_ids), "region_id", "month"),
        "notes": _sorted(_notes(con, {progress.ALL, *region_ids}), "region_id", "published_on", "note_id"),
        "places": _sorted(_places(rc), "name", "region_id"),
        "region_outlines": _sorted(_outlines(set(region_ids), con), "region_id"),
    }
    doc = {"schema_version": SCHEMA_VERSION, "data_as_of": as_of.isoformat(), "k": k, "round_base": ROUND_BASE,
           "area_res": AREA_RES, "tables": tables}
    validate(doc)
    return doc


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
            as_of=None, by: str | None = None) -> Published:
    """Build the snapshot and write it atomically (temporary file, then rename) to `path`; the audit trail
    records it as done `by` someone (`audit.record`; skipped on a store opened read-only, as in tests)."""
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
    out = Published(target, len(data), {t: len(r) for t, r in doc["tables"].items()}, doc["data_as_of"], doc["k"])
    if by is not None:
        rows = ", ".join(f"{n:,} {t.replace('_', ' ')}" for t, n in out.rows.items())
        audit.record(con, by, "publish", str(target), f"data as of {out.data_as_of}, k = {out.k}: {rows}")
    return out


def note_file(region_id: str, day: dt.date, text: str, language: str = "de") -> tuple[str, bytes]:
    """A status note typed on the Data page as an input file for the store's importer: (file name, CSV bytes).

    Its note_id is derived from the content, so sending the same note twice changes nothing."""
    text = " ".join(str(text).split())
    digest = hashlib.sha256(f"{region_id}|{day}|{language}|{text}".encode()).hexdigest()[:10]
    frame = pd.DataFrame([{"note_id": f"web-{day:%Y%m%d}-{digest}", "region_id": region_id,
                           "published_on": day.isoformat(), "text": text, "language": language}])
    return f"status-note-{digest}.csv", frame.to_csv(index=False).encode("utf-8")
