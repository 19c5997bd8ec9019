"""Validate a raw table against lib/ingest/schema: typed records, and every rejected row with its reason.

Row faults reject the row (kept with row number, field, value and reason); a file that
lacks required columns is refused whole. Everything here is vectorised: one pass per
field, not per row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lib import cells
from lib.errors import ImportRefused
from lib.ingest import schema
from lib.ingest.readers import RawTable
from lib.ingest.values import as_text, blank_mask, is_blank, map_values, parse_datetime, parse_geometry, parse_number

REJECT_COLUMNS = ["row", "field", "value", "reason", "record"]
GEOMETRY_TYPES = {"Polygon": ("Polygon", "MultiPolygon"), "LineString": ("LineString", "MultiLineString")}


@dataclass
class Validated:
    """The good records of one file, typed and placed, and the rejected rows."""

    table: schema.Table
    records: pd.DataFrame  # canonical columns + cell columns + row
    rejects: pd.DataFrame  # REJECT_COLUMNS, one line per fault (a row can have several)
    rows_total: int
    warnings: list[str] = field(default_factory=list)
    region_cells: pd.DataFrame | None = None  # regions only: region_id, cell

    @property
    def rows_rejected(self) -> int:
        return int(self.rejects["row"].nunique()) if len(self.rejects) else 0


def normalise_name(name: str) -> str:
    """Column name as matched: trimmed, lower case, spaces and hyphens as underscores."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lstrip("\ufeff").lower())


def match_columns(columns: list[str], table: schema.Table) -> tuple[dict[str, str], list[str]]:
    """Map file columns to canonical field names; also return the columns not used."""
    lookup = {}
    for f in table.fields:
        for spelling in (f.name, *f.aliases):
            lookup.setdefault(normalise_name(spelling), f.name)
    mapping_, unused = {}, []
    for col in columns:
        canonical = lookup.get(normalise_name(col))
        if canonical and canonical not in mapping_.values():
            mapping_[col] = canonical
        else:
            unused.append(col)
    return mapping_, unused


def detect_table(columns: list[str]) -> str | None:
    """The input table whose required columns a file has (best match), or None."""
    best, best_score = None, 0.0
    for t in schema.TABLES.values():
        found = set(match_columns(columns, t)[0].values())
        if not set(_required_columns(t)) <= found:
            continue
        score = len(found) / len(t.fields) + len(found & set(t.required))
        if score > best_score:
            best, best_score = t.name, score
    return best


def closest_table(columns: list[str]) -> str | None:
    """The table whose key column a file has, with the most columns matched (for a clear refusal)."""
    scored = [(len(found), t.name) for t in schema.TABLES.values()
              if t.key in (found := set(match_columns(columns, t)[0].values()))]
    return max(scored)[1] if scored else None


def _required_columns(table: schema.Table) -> list[str]:
    """Required columns; location columns that have an alternative are checked per row."""
    alternatives = {"complaints": {"lat", "lon"}, "transport_links": set()}
    return [n for n in table.required if n not in alternatives.get(table.name, set())]


def _missing_location_columns(table: schema.Table, present: set[str]) -> str:
    if table.name == "complaints" and not ({"lat", "lon"} <= present or "cell" in present):
        return "lat and lon, or cell"
    if table.name == "transport_links" and not ({"a_lat", "a_lon", "b_lat", "b_lon"} <= present
                                                or "geometry" in present):
        return "a_lat, a_lon, b_lat and b_lon, or geometry"
    return ""


class _Faults:
    """Collects (position, field, reason) faults; positions index the frame."""

    def __init__(self):
        self.parts: list[pd.DataFrame] = []

    def add(self, mask, field_name: str, values, reason) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        pos = np.flatnonzero(mask)
        vals = pd.Series(values).iloc[pos] if not np.isscalar(values) else values
        reasons = pd.Series(reason).iloc[pos].to_numpy() if not isinstance(reason, str) else reason
        self.parts.append(pd.DataFrame({"pos": pos, "field": field_name, "value": _text(vals), "reason": reasons}))

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({"pos": pd.Series(dtype="int64"), "field": [], "value": [], "reason": []})
        return pd.concat(self.parts, ignore_index=True)

    def bad_positions(self) -> np.ndarray:
        return np.unique(self.frame()["pos"].to_numpy(dtype="int64"))


def _text(values) -> np.ndarray | str:
    if np.isscalar(values):
        return str(values)
    return pd.Series(values).astype(object).map(lambda v: "" if is_blank(v) else str(v)).to_numpy()


def check_columns(columns: list[str], table: schema.Table, file_name: str,
                  encoding: str = "") -> tuple[dict[str, str], list[str]]:
    """Map a file's columns to `table`'s fields, or refuse the file; also return warnings for a person."""
    colmap, unused = match_columns(columns, table)
    present = set(colmap.values())
    missing = [n for n in _required_columns(table) if n not in present]
    alt = _missing_location_columns(table, present)
    if missing or alt:
        need = ", ".join(missing + ([alt] if alt else []))
        raise ImportRefused(file_name, f"missing required column(s) for {table.name}: {need} "
                                       f"(found: {', '.join(map(str, columns))})")
    warnings = [f"ignored column(s) not in the {table.name} format: {', '.join(map(str, unused))}"] if unused else []
    if encoding == "windows-1252":
        warnings.append("read as Windows-1252 (not valid UTF-8)")
    return colmap, warnings


UNDEFINED_1252 = "\ufffd"
"""What a byte Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) is decoded to."""
UNDEFINED_1252_REASON = ("holds a byte Windows-1252 does not define (0x81, 0x8D, 0x8F, 0x90 or 0x9D, shown as "
                         "\ufffd): save the file as UTF-8")


def validate(raw: RawTable, table: schema.Table, file_name: str, known: Mapping[str, set[str]] | None = None,
             today: dt.date | None = None, dedupe: bool = True) -> Validated:
    """Type, check and place every row of `raw` as a record of `table`; with `dedupe`, reject every repeat
    of a key after its first (lib/ingest/bulk does that in SQL over the whole file instead)."""
    known = known or {}
    today = today or dt.date.today()
    colmap, warnings = check_columns(list(raw.frame.columns), table, file_name, raw.encoding)
    frame = raw.frame.rename(columns=colmap)[list(colmap.values())]
    n = len(frame)
    faults = _Faults()
    out = {}
    for f in table.fields:
        s = frame[f.name] if f.name in frame else pd.Series([None] * n, dtype=object)
        blank = blank_mask(s)
        if f.required:
            faults.add(blank, f.name, s, "required value missing")
        if raw.encoding == "windows-1252" and not blank.all():
            faults.add(~blank & as_text(s).str.contains(UNDEFINED_1252, regex=False), f.name, s, UNDEFINED_1252_REASON)
        out[f.name] = _convert(f, s, blank, faults, today, table, decimal_comma=raw.delimiter == ";")
    result = pd.DataFrame(out)
    _check_rows(table, result, frame, faults, known)
    keep = np.ones(n, dtype=bool)
    keep[faults.bad_positions()] = False
    good = np.flatnonzero(keep)
    records = result.iloc[good].reset_index(drop=True)
    records["row"] = raw.rows[good]
    if dedupe:
        records = _dedupe(records, table, faults, good)
    rejects = _reject_frame(faults, raw, frame)
    region_cells = None
    if table.name == "regions":
        records, region_cells = _place_regions(records)
    else:
        _place(table, records)
    return Validated(table, records, rejects, n + len(raw.bad_rows), warnings, region_cells)


def _convert(f: schema.Field, s: pd.Series, blank, faults: _Faults, today: dt.date, table: schema.Table,
             decimal_comma: bool = False):
    """One column converted to its type; values that fail are recorded as faults."""
    t = f.type
    if t in (schema.TEXT, schema.GEOMETRY):
        if t == schema.GEOMETRY:
            geoms = s.map(parse_geometry)
            allowed = GEOMETRY_TYPES[table.geojson]
            wrong = ~blank & geoms.map(lambda g: not (isinstance(g, dict) and g.get("type") in allowed)).to_numpy()
            faults.add(wrong, f.name, s.map(lambda v: str(v)[:80]), f"not a {' or '.join(allowed)}")
            return geoms.map(lambda g: json.dumps(g) if g else None)
        return as_text(s).where(~blank)
    if t in (schema.INT, schema.FLOAT, schema.LAT, schema.LON):
        num = parse_number(s, thousands=t not in (schema.LAT, schema.LON), decimal_comma=decimal_comma)
        faults.add(~blank & num.isna().to_numpy(), f.name, s, "not a number")
        ok = num.notna().to_numpy()
        if t in (schema.LAT, schema.LON):
            out_of = ok & ((num < f.min) | (num > f.max)).to_numpy()
            faults.add(out_of, f.name, s, f"outside {schema.COUNTRY_NAME} ({f.name} must be {f.min} to {f.max})")
        elif f.min is not None:
            faults.add(ok & (num < f.min).to_numpy(), f.name, s, f"must be at least {f.min:g}")
        if t == schema.INT:
            frac = ok & (num != np.floor(num)).to_numpy()
            faults.add(frac, f.name, s, "not a whole number")
            return num.round().astype("Int64")
        return num
    if t in (schema.DATE, schema.TIMESTAMP):
        ts = parse_datetime(s)
        hint = "use YYYY-MM-DD or DD.MM.YYYY" + (" [HH:MM]" if t == schema.TIMESTAMP else "")
        faults.add(~blank & ts.isna().to_numpy(), f.name, s, f"not a valid date ({hint})")
        if f.name.endswith("_actual") or f.name == "received_at":
            future = (ts.dt.normalize() > pd.Timestamp(today)).to_numpy()
            faults.add(future, f.name, s, f"lies in the future (after {today.isoformat()})")
        return ts.dt.normalize() if t == schema.DATE else ts
    if t == schema.CHOICE:
        mapped = map_values(as_text(s).str.lower(), f.value_aliases)
        unknown = ~blank & mapped.isna().to_numpy()
        faults.add(unknown, f.name, s, f"unknown {f.name} (allowed: {', '.join(f.choices)})")
        return mapped
    if t == schema.CELL:
        given = np.flatnonzero(~blank)
        values = np.zeros(len(s), dtype="int64")
        values[given] = [cells.parse_cell(v) for v in s.iloc[given]]
        parsed = pd.Series(values, index=s.index)
        res = pd.Series(np.where(values != 0, (values >> 52) & 0xF, -1), index=s.index)
        faults.add(~blank & (parsed == 0).to_numpy(), f.name, s, "not a valid H3 cell")
        coarse = ~blank & (parsed != 0).to_numpy() & (res < cells.CELL_RES).to_numpy()
        faults.add(coarse, f.name, s, f"H3 cell too coarse (resolution {cells.CELL_RES} or finer needed)")
        fine = np.where(parsed.to_numpy() != 0, cells.parent(parsed.to_numpy(), cells.CELL_RES), 0)
        return pd.Series(np.where(res.to_numpy() >= cells.CELL_RES, fine, 0), dtype="int64")
    raise ValueError(f"unknown field type {t}")


def _check_rows(table: schema.Table, rec: pd.DataFrame, frame: pd.DataFrame, faults: _Faults,
                known: Mapping[str, set[str]]) -> None:
    """Rules across fields: references, milestone order, location alternatives, status."""
    for fld, ref_table, _ in table.references:
        vals = rec[fld]
        unknown = vals.notna().to_numpy() & ~_is_in(vals, known.get(ref_table, set()))
        faults.add(unknown, fld, vals, f"unknown {fld} (not in {ref_table}; import {ref_table} first)")
    for order in table.date_order:
        for i, later in enumerate(order[1:], start=1):
            for earlier in order[:i]:
                before = (rec[later] < rec[earlier]).fillna(False).to_numpy(dtype=bool)
                if before.any():  # the reasons are written only for the rows that have one
                    reason = pd.Series("", index=rec.index, dtype=object)
                    reason[before] = rec.loc[before, earlier].dt.strftime("%Y-%m-%d").map(
                        lambda d, e=earlier: f"before {e} ({d})")
                    faults.add(before, later, rec[later].dt.strftime("%Y-%m-%d"), reason)
    if table.name == "complaints":
        has_ll = rec["lat"].notna() & rec["lon"].notna()
        nothing = ~has_ll.to_numpy() & (rec["cell"].to_numpy() == 0)
        only_one = (rec["lat"].notna() ^ rec["lon"].notna()).to_numpy()
        faults.add(nothing & ~only_one, "lat", rec["lat"], "no location: give lat and lon, or cell")
        faults.add(only_one, "lat" if rec["lat"].isna().any() else "lon", "", "lat and lon must be given together")
    if table.name == "transport_links":
        ends = rec[["a_lat", "a_lon", "b_lat", "b_lon"]].notna()
        faults.add((~ends.all(axis=1) & rec["geometry"].isna()).to_numpy(), "a_lat", rec["a_lat"],
                   "no path: give a_lat, a_lon, b_lat and b_lon, or geometry")
    if table.name == "upgrades":
        need = {"on_air": "on_air_actual", "installed": "installed_actual", "permit": "permit_actual"}
        for status, date_field in need.items():
            wrong = (rec["status"] == status).to_numpy() & rec[date_field].isna().to_numpy()
            faults.add(wrong, "status", rec["status"], f"status {status} but {date_field} is empty")
        early = rec["status"].isin(["planned", "permit", "installed"]).to_numpy() & rec["on_air_actual"].notna()
        faults.add(early.to_numpy(), "status", rec["status"], "status says not on air, but on_air_actual is set")


def _is_in(values: pd.Series, ids: set[str]) -> np.ndarray:
    """Which text values are among `ids` (none of the missing ones), by Arrow: 15 ms for 60k values among
    30k ids, where pandas' isin, which loops in Python over text, takes 120 ms."""
    arr = pa.array(values, type=pa.string(), from_pandas=True)
    return pc.is_in(arr, value_set=pa.array(list(ids), type=pa.string())).to_numpy(zero_copy_only=False)


def duplicate_reason(key: str, first_row: int) -> str:
    """The reason given for a repeated key."""
    return f"duplicate {key} (first at row {first_row})"


_FIRST_AT = re.compile(r"\(first at row (\d+)\)$")


def shift_rows(v: Validated, offset: int) -> None:
    """Renumber a part of a file validated on its own (rows counted from 1 in the part) by `offset`, the
    records before it, in place: its records, its rejects and the first rows that duplicates name."""
    v.records["row"] += offset
    if len(v.rejects):
        v.rejects["row"] += offset
        dup = v.rejects["reason"].str.startswith("duplicate ").to_numpy()
        if dup.any():
            v.rejects.loc[dup, "reason"] = v.rejects.loc[dup, "reason"].str.replace(
                _FIRST_AT, lambda m: f"(first at row {int(m.group(1)) + offset})", regex=True)


def _dedupe(records: pd.DataFrame, table: schema.Table, faults: _Faults, good: np.ndarray) -> pd.DataFrame:
    """Reject every repeat of a key after its first occurrence in the file."""
    key = records[table.key]
    dup = key.duplicated(keep="first").to_numpy()
    if not dup.any():
        return records
    first_row = records.groupby(table.key, sort=False)["row"].transform("first")
    reason = first_row[dup].map(lambda r: duplicate_reason(table.key, r)).to_numpy()
    part = pd.DataFrame({"pos": good[dup], "field": table.key, "value": key[dup].to_numpy(), "reason": reason})
    faults.parts.append(part)
    return records[~dup].reset_index(drop=True)


def _reject_frame(faults: _Faults, raw: RawTable, frame: pd.DataFrame) -> pd.DataFrame:
    f = faults.frame().sort_values(["pos", "field"], kind="stable")
    records = raw.frame.iloc[f["pos"].to_numpy()] if len(f) else raw.frame.iloc[[]]
    as_json = [json.dumps({k: ("" if is_blank(v) else str(v)) for k, v in r.items()}, ensure_ascii=False)
               for r in records.to_dict("records")]
    out = pd.DataFrame({"row": raw.rows[f["pos"].to_numpy()] if len(f) else np.array([], dtype="int64"),
                        "field": f["field"].to_numpy(), "value": f["value"].to_numpy(),
                        "reason": f["reason"].to_numpy(), "record": as_json})
    unreadable = pd.DataFrame({"row": [r for r, _ in raw.bad_rows], "field": "", "value": "",
                               "reason": "cannot be read: wrong number of fields",
                               "record": [t for _, t in raw.bad_rows]})
    parts = [p for p in (out, unreadable) if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in REJECT_COLUMNS})
    return pd.concat(parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)


def _place(table: schema.Table, rec: pd.DataFrame) -> None:
    """Add H3 cells (resolution 9) in place, and fill derived values."""
    if table.name in ("sites", "complaints"):
        ll = cells.latlng_to_cells(rec["lat"].to_numpy(dtype="float64"), rec["lon"].to_numpy(dtype="float64"))
        rec["cell"] = np.where(ll != 0, ll, rec["cell"].to_numpy(dtype="int64") if "cell" in rec else 0)
        missing = rec["lat"].isna().to_numpy()
        if table.name == "complaints" and missing.any():  # given as a cell: place it at the cell's centre
            lat, lon = cells.cells_to_latlng(rec["cell"].to_numpy()[missing])
            rec.loc[missing, "lat"], rec.loc[missing, "lon"] = lat, lon
    if table.name == "transport_links":
        _link_ends_from_geometry(rec)
        rec["a_cell"] = cells.latlng_to_cells(rec["a_lat"].to_numpy("float64"), rec["a_lon"].to_numpy("float64"))
        rec["b_cell"] = cells.latlng_to_cells(rec["b_lat"].to_numpy("float64"), rec["b_lon"].to_numpy("float64"))
    if table.name == "upgrades":
        derived = np.select(
            [rec["on_air_actual"].notna(), rec["installed_actual"].notna(), rec["permit_actual"].notna()],
            ["on_air", "installed", "permit"], "planned")
        rec["status"] = rec["status"].where(rec["status"].notna(), pd.Series(derived, index=rec.index, dtype=object))


def _link_ends_from_geometry(rec: pd.DataFrame) -> None:
    """Fill a/b coordinates from the first and last point of a LineString path."""
    need = rec["a_lat"].isna() & rec["geometry"].notna()
    for i in np.flatnonzero(need.to_numpy()):
        g = json.loads(rec["geometry"].iat[i])
        line = g["coordinates"] if g["type"] == "LineString" else g["coordinates"][0]
        (alon, alat), (blon, blat) = line[0][:2], line[-1][:2]
        for col, v in (("a_lat", alat), ("a_lon", alon), ("b_lat", blat), ("b_lon", blon)):
            rec.iloc[i, rec.columns.get_loc(col)] = v


def _place_regions(rec: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Polyfill each region's polygon to its set of cells at REGION_RES."""
    parts = []
    for rid, geom in zip(rec["region_id"], rec["geometry"], strict=True):
        c = cells.polygon_to_cells(json.loads(geom), cells.REGION_RES)
        parts.append(pd.DataFrame({"region_id": rid, "cell": c}))
    region_cells = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"region_id": pd.Series(dtype=object), "cell": pd.Series(dtype="int64")})
    counts = region_cells.groupby("region_id").size()
    rec["n_cells"] = rec["region_id"].map(counts).fillna(0).astype("int64")
    return rec, region_cells
