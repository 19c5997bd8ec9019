"""Cell values read from text: blanks, numbers (decimal point or comma, thousands separators), dates and
times (ISO or German, as German local time), choices and geometry (GeoJSON or WKT).

Vectorised over a column (pandas and Arrow), never per row in Python where it can be helped;
`lib.ingest.validation` validates a table's fields with them.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from shapely.geometry import mapping

GERMAN_DATE = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$")


def is_blank(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT or (isinstance(v, str) and not v.strip())


def blank_mask(s: pd.Series) -> np.ndarray:
    if s.dtype == object:
        return s.map(is_blank).to_numpy(dtype=bool)
    if pd.api.types.is_string_dtype(s):
        return (s.isna() | (s.str.strip() == "")).to_numpy(dtype=bool)
    return s.isna().to_numpy(dtype=bool)


def as_text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(s) and s.dtype != object:
        return s.str.strip()
    return s.map(lambda v: "" if is_blank(v) else (v.isoformat() if hasattr(v, "isoformat") else str(v))).astype(
        "str").str.strip()


def map_values(s: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """`s.map(mapping)` computed once per distinct value (object dtype, None where unmapped)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    mapped = np.array([mapping.get(u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=s.index, dtype=object)


_EXP = r"(?:[eE][+-]?\d+)?"
_SHAPES = {  # the forms a number with separators may take; anything else is left to fail as it is
    "german": r"^[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d*)?" + _EXP + "$",  # 1.234 / 1.234.567 / 1.234,5
    "english": r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?" + _EXP + "$",  # 1,234 / 1,234,567 / 1,234.5
    "comma": r"^[+-]?(?:\d+,\d*|,\d+)" + _EXP + "$",  # 3,5 / ,5 / 3, / 1,5E3 (and 1,234: ambiguous)
    "point": r"^[+-]?(?:\d+\.\d*|\.\d+)" + _EXP + "$",  # 3.5 / .5 / 3. / 1.5e3 (and 1.234: ambiguous)
}


def parse_number(s: pd.Series, thousands: bool = True, decimal_comma: bool = False) -> pd.Series:
    """Floats from text with a decimal point or a decimal comma, with thousands separators when
    `thousands` (German '1.234,5', English '1,234.5').

    Only values of a well-formed shape lose separators (`_SHAPES`: thousands groups of three digits
    after a first group of one to three not starting with 0, then optionally the decimal separator
    and an exponent); others ('1..2', '12,34.5') fail as numbers. A grouped value's decimal separator
    is the other one ('1.234,5', '1,234.5'); a value with one separator is read as a decimal one,
    unless it is ambiguous ('1.234' or '1,234': three digits after one separator), which the column
    decides: a decimal comma when more of its unambiguous values have one than a decimal point, and
    on a tie `decimal_comma` (the file's convention, e.g. semicolons). Without `thousands`
    (coordinates) every separator is a decimal one."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    text = as_text(s)
    comma = text.str.contains(",", regex=False)
    if thousands:
        text = _without_thousands(text, comma, decimal_comma)
    elif comma.any():
        text = text.where(~comma, text.str.replace(",", ".", regex=False))
    fast = _arrow_float(text)
    if fast is not None:
        return fast
    return pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")


def _without_thousands(text: pd.Series, comma: pd.Series, decimal_comma: bool) -> pd.Series:
    """`text` with thousands separators removed and a decimal comma made a point (see parse_number).
    Only values of a well-formed shape (_SHAPES) are rewritten: '1..2' or '1,2,3' stay as they are and
    fail as numbers, rather than becoming 12 or 123."""
    if not comma.any() and not text.str.contains(r"\.\d{3}(?:\.|$)").any():  # no 1.234 nor 1.234.567
        return text
    german_grouped, english_grouped, comma_decimal, point_decimal = (
        text.str.match(_SHAPES[k]) for k in ("german", "english", "comma", "point"))
    ambiguous = (german_grouped & point_decimal) | (english_grouped & comma_decimal)
    as_comma, as_point = german_grouped | comma_decimal, english_grouped | point_decimal
    # unambiguous votes: 1.234,5 / 3,5 / 1.234.567 for a decimal comma; 1,234.5 / 3.5 / 1,234,567 for a point
    n_comma, n_point = int((as_comma & ~ambiguous).sum()), int((as_point & ~ambiguous).sum())
    column_comma = n_comma > n_point or (n_comma == n_point and decimal_comma)
    german = as_comma & (~ambiguous | column_comma)
    english = as_point & ~german
    german_text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    english_text = text.str.replace(",", "", regex=False)
    return text.where(~english, english_text).where(~german, german_text)


def _arrow_float(text: pd.Series) -> pd.Series | None:
    """Floats by Arrow's cast (about 6 times quicker than pd.to_numeric); None if any value is not a
    number, and the caller then takes pd.to_numeric, which marks only the bad values."""
    try:
        arr = pa.array(text, type=pa.string(), from_pandas=True)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return pd.Series(values, index=text.index, dtype="float64")


LOCAL_TZ = "Europe/Berlin"
"""Times are stored as German local time: a time given with a UTC offset (or Z) is converted to it."""
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY = r"^\d{4}-\d{2}-\d{2}$"
"""A date alone: its own day ('2025-05-01') is no UTC offset of -01."""


def _local(ts: pd.Series) -> pd.Series:
    """Aware timestamps as naive German local time."""
    return ts.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None)


def parse_datetime(s: pd.Series) -> pd.Series:
    """Timestamps from ISO text (with or without time, with or without a UTC offset or Z) or German
    DD.MM.YYYY [HH:MM[:SS]], as German local time."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return _local(pd.to_datetime(s)) if getattr(s.dt, "tz", None) else pd.to_datetime(s)
    if s.dtype == object and s.map(lambda v: isinstance(v, (dt.date, pd.Timestamp)) or is_blank(v)).all():
        values = s.map(lambda v: None if is_blank(v) else v)
        aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None)
        out = pd.to_datetime(values.where(~aware), errors="coerce")
        if aware.any():
            out[aware] = _local(pd.to_datetime(values[aware], utc=True, errors="coerce"))
        return out
    text = as_text(s)
    fast = _arrow_timestamps(text)
    return fast if fast is not None else _text_datetimes(text)


def _arrow_timestamps(text: pd.Series) -> pd.Series | None:
    """Timestamps by Arrow's ISO 8601 cast (about 12 times quicker than the text path); None if any value
    does not take it, and the caller then takes `_text_datetimes`. The cast is the stricter reader: what it
    accepts (YYYY-MM-DD[( |T)HH[:MM[:SS[.f]]]], days and times in range) pandas reads alike, and it refuses
    a UTC offset or Z rather than dropping it (tests/test_dialects.py holds both paths to agree)."""
    try:
        arr = pa.array(text, type=pa.string(), from_pandas=True)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        values = pc.cast(arr, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None
    return pd.Series(values, index=text.index, dtype="datetime64[us]")


def _text_datetimes(text: pd.Series) -> pd.Series:
    """`parse_datetime` of stripped text, value by value: ISO (naive, or with an offset), else German."""
    iso = text.str.match(r"^\d{4}-\d{2}-\d{2}")
    offset = (iso & text.str.contains(_OFFSET)).to_numpy(dtype=bool).copy()
    if offset.any():
        offset[offset] = ~text[offset].str.match(_DATE_ONLY).to_numpy(dtype=bool)
    offset = pd.Series(offset, index=text.index)
    out = pd.to_datetime(text.where(iso & ~offset), format="ISO8601", errors="coerce")
    if offset.any():  # parsed apart: pandas refuses a column that mixes aware and naive times
        out = out.astype("datetime64[us]")
        out[offset] = _local(pd.to_datetime(text[offset], format="ISO8601", utc=True, errors="coerce")).astype(
            "datetime64[us]")  # finer than microseconds: cut, as the naive ones are
    todo = out.isna() & (text != "")
    german = text[todo].str.extract(GERMAN_DATE) if todo.any() else pd.DataFrame({0: []}, dtype=object)
    has = german[0].notna().reindex(text.index, fill_value=False)
    if has.any():
        g = german[german[0].notna()].fillna("0").astype("int64")
        parts = pd.DataFrame({"year": g[2], "month": g[1], "day": g[0], "hour": g[3], "minute": g[4], "second": g[5]})
        out = out.copy()
        out[has] = pd.to_datetime(parts, errors="coerce")
    return out.astype("datetime64[us]")


def parse_geometry(value) -> dict | None:
    """A GeoJSON geometry dict from GeoJSON text or WKT; None when it cannot be read."""
    if is_blank(value):
        return None
    if isinstance(value, dict):
        return value
    text = str(value).strip()
    try:
        if text.startswith("{"):
            return json.loads(text)
        return mapping(shapely.from_wkt(text))
    except Exception:
        return None
