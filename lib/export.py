"""Exports that a spreadsheet opens safely: CSV (UTF-8 with BOM) and Excel, with formulas defused.

A text cell that begins with =, +, - or @ (also after spaces, or a tab or carriage return, which
some programs strip before reading the rest) would run as a formula when the file is opened in a
spreadsheet (CSV injection). Every export goes through `safe_frame`, which prefixes such text with
an apostrophe, in every column holding text: plain, string or categorical. Numbers, dates and
booleans are left as they are, so a negative number stays a number.
"""

from __future__ import annotations

import io

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet treat a text cell as a formula."""

ESCAPE = "'"
"""Prefix that makes a spreadsheet show the text as it is."""

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIME = "text/csv"


def escape_cell(value):
    """`value` with an apostrophe in front if it is text that a spreadsheet would run as a formula (leading
    spaces, which a spreadsheet may skip, are looked through)."""
    if isinstance(value, str) and (value.startswith(FORMULA_STARTS) or value.lstrip(" ").startswith(FORMULA_STARTS)):
        return ESCAPE + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell (and column name) escaped by `escape_cell`."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            out[col] = s.map(escape_cell, na_action="ignore").astype(object)
    out.columns = [escape_cell(str(c)) for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as CSV (UTF-8 with BOM, so spreadsheet programs read umlauts), formulas escaped."""
    return safe_frame(frame).to_csv(index=False).encode("utf-8-sig")


def xlsx_bytes(sheets: dict[str, pd.DataFrame]) -> bytes:
    """An Excel workbook with one sheet per (name, frame), formulas escaped, as bytes."""
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            out = safe_frame(frame)
            for col in out.columns:  # Excel has no time zones
                if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                    out[col] = out[col].dt.tz_localize(None)
            out.to_excel(writer, sheet_name=name[:31], index=False)
    return buf.getvalue()
