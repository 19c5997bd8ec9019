"""Exports: formula-like text is defused in CSV and Excel, everything else survives unchanged."""

import io

import openpyxl
import pandas as pd
import pytest

from lib import export


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+49 30 1234", "'+49 30 1234"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=cmd", "'\t=cmd"), ("\r=cmd", "'\r=cmd"), ("Berlin", "Berlin"), ("a=b", "a=b"), ("", ""),
    ("  =1+1", "'  =1+1"), (" @SUM(A1)", "' @SUM(A1)"), (" -2", "' -2"), ("  Berlin", "  Berlin"), ("   ", "   "),
    (-2, -2), (3.5, 3.5), (None, None),
])
def test_escape_cell(value, expected):
    assert export.escape_cell(value) == expected


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "Münster", None], "n": [-1, 2, 3],
                         "when": pd.to_datetime(["2026-01-02", "2026-02-03", None]),
                         "-col": ["@a", "b", "+c"]})


def test_csv_escapes_text_and_keeps_numbers():
    raw = export.csv_bytes(_frame())
    assert raw.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", keep_default_na=False)
    assert list(back.columns) == ["name", "n", "when", "'-col"]
    assert back["name"].tolist() == ["'=HYPERLINK(\"x\")", "Münster", ""]
    assert back["n"].tolist() == [-1, 2, 3]
    assert back["'-col"].tolist() == ["'@a", "b", "'+c"]


def test_xlsx_escapes_text_and_keeps_types():
    raw = export.xlsx_bytes({"Regions": _frame(), "x" * 40: _frame().head(1)})
    wb = openpyxl.load_workbook(io.BytesIO(raw))
    assert wb.sheetnames == ["Regions", "x" * 31]
    rows = list(wb["Regions"].iter_rows(values_only=True))
    assert rows[0] == ("name", "n", "when", "'-col")
    assert rows[1][0] == "'=HYPERLINK(\"x\")" and rows[1][1] == -1 and rows[1][3] == "'@a"
    assert rows[2][2].year == 2026 and rows[2][2].month == 2
    for row in wb["Regions"].iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate  # no cell is a formula


def test_categorical_and_string_columns_are_escaped_too():
    frame = pd.DataFrame({"cat": pd.Categorical(["=1+1", "ok", " +2"]), "text": pd.array(["@x", " =y", "z"],
                                                                                        dtype="string")})
    back = pd.read_csv(io.BytesIO(export.csv_bytes(frame)), encoding="utf-8-sig")
    assert back["cat"].tolist() == ["'=1+1", "ok", "' +2"]
    assert back["text"].tolist() == ["'@x", "' =y", "z"]
    book = openpyxl.load_workbook(io.BytesIO(export.xlsx_bytes({"s": frame})))
    assert [c.value for c in book["s"]["A"]][1:] == ["'=1+1", "ok", "' +2"]
