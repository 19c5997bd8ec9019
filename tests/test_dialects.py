"""Property tests: any supported CSV dialect reads back the same records."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lib.ingest import schema
from lib.ingest.readers import is_utf8, read_file
from lib.ingest.validation import validate
from lib.ingest.values import _arrow_timestamps, _text_datetimes, as_text, parse_datetime, parse_number

NAME_CHARS = st.characters(codec="cp1252", exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters='"')
record = st.fixed_dictionaries({
    "name": st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip() == s and s.strip()),
    "lat": st.floats(schema.COUNTRY_BBOX[0], schema.COUNTRY_BBOX[2]).map(lambda v: round(v, 5)),
    "lon": st.floats(schema.COUNTRY_BBOX[1], schema.COUNTRY_BBOX[3]).map(lambda v: round(v, 5)),
    "when": st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2026, 1, 1)).map(lambda d: d.replace(second=0,
                                                                                                      microsecond=0)),
    "category": st.sampled_from(schema.CATEGORIES),
})
dialect = st.fixed_dictionaries({
    "delimiter": st.sampled_from([",", ";", "\t"]),
    "encoding": st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
    "decimal": st.sampled_from([".", ","]),
    "dates": st.sampled_from(["iso", "iso-t", "german"]),
    "newline": st.sampled_from(["\n", "\r\n"]),
    "quote_all": st.booleans(),
})


def write_csv(rows: list[dict], d: dict) -> bytes:
    """Rows as a CSV file in dialect `d`, the way a spreadsheet would write it."""
    fmt = {"iso": "%Y-%m-%d %H:%M", "iso-t": "%Y-%m-%dT%H:%M:%S", "german": "%d.%m.%Y %H:%M"}[d["dates"]]

    def cell(v) -> str:
        text = f"{v:.5f}".replace(".", d["decimal"]) if isinstance(v, float) else str(v)
        needs_quotes = d["quote_all"] or d["delimiter"] in text
        return f'"{text}"' if needs_quotes else text

    lines = [d["delimiter"].join(["complaint_id", "received_at", "lat", "lon", "category", "channel", "text"])]
    for i, r in enumerate(rows):
        values = [f"K{i}", r["when"].strftime(fmt), r["lat"], r["lon"], r["category"], "app", r["name"]]
        lines.append(d["delimiter"].join(cell(v) for v in values))
    return d["newline"].join(lines).encode(d["encoding"]) + d["newline"].encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(record, min_size=1, max_size=8), d=dialect)
def test_any_dialect_reads_back_the_same_records(rows, d):
    raw = read_file(write_csv(rows, d), "complaints.csv")
    v = validate(raw, schema.COMPLAINTS, "complaints.csv", today=dt.date(2026, 11, 1))
    assert v.rejects.empty, v.rejects.to_string()
    assert list(v.records["text"]) == [r["name"] for r in rows]
    assert list(v.records["lat"]) == [r["lat"] for r in rows]
    assert list(v.records["lon"]) == [r["lon"] for r in rows]
    assert [t.to_pydatetime() for t in v.records["received_at"]] == [r["when"] for r in rows]
    assert list(v.records["row"]) == list(range(2, len(rows) + 2))


@given(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 4)))
def test_decimal_comma_and_point_agree(x):
    s = pd.Series([f"{x:.4f}", f"{x:.4f}".replace(".", ",")], dtype="str")
    assert parse_number(s).tolist() == [x, x]


@given(st.floats(-1e9, 1e9, allow_nan=False).map(lambda v: round(v, 2)))
def test_grouped_german_and_english_numbers_agree(x):
    english = f"{x:,.2f}"
    german = english.replace(",", "_").replace(".", ",").replace("_", ".")
    s = pd.Series([english, german], dtype="str")
    assert parse_number(s.iloc[:1]).tolist() == [x] and parse_number(s.iloc[1:]).tolist() == [x]


@given(st.dates(dt.date(1990, 1, 1), dt.date(2040, 12, 31)))
def test_iso_and_german_dates_agree(d):
    s = pd.Series([d.isoformat(), d.strftime("%d.%m.%Y"), f"{d.day}.{d.month}.{d.year}"], dtype="str")
    assert [t.date() for t in parse_datetime(s)] == [d, d, d]


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.one_of(st.text().map(str.encode), st.binary(max_size=40)), st.integers(1, 9))
def test_blockwise_utf8_check_agrees_with_decoding_whole(data, block):
    assert is_utf8(data, block=block) == _decodes(data)


@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False) | st.just(None), max_size=30), st.integers(0, 29),
       st.sampled_from(["abc", "1_0", "0x1", "1..2", "--1"]))
@example(values=[None, 0.125], at=0, bad="1..2")  # once read as 12, by taking the dots for thousands
def test_number_parsing_fast_and_slow_paths_agree(values, at, bad):
    """Arrow's cast (the fast path) and pd.to_numeric (taken when any value is not a number) agree."""
    text = pd.Series(["" if v is None else repr(v) for v in values], dtype="str")
    clean = parse_number(text)
    slow = pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")
    pd.testing.assert_series_equal(clean, slow)
    if len(values):
        dirty = text.copy()
        dirty.iloc[at % len(values)] = bad
        out = parse_number(dirty)
        assert pd.isna(out.iloc[at % len(values)])
        others = [i for i in range(len(values)) if i != at % len(values)]
        assert out.iloc[others].equals(clean.iloc[others])


@pytest.mark.parametrize("values,thousands,decimal_comma,want", [
    (["1.000", "2.500,5"], True, False, [1000.0, 2500.5]),  # the column's other value says: decimal comma
    (["1.000"], True, False, [1.0]),  # ambiguous alone: the file's convention (comma-separated: a point)
    (["1.000"], True, True, [1000.0]),  # ... semicolon-separated: a decimal comma
    (["1,234.5", "3.5"], True, True, [1234.5, 3.5]),  # both separators: the last is the decimal one
    (["1,234", "7.25"], True, True, [1234.0, 7.25]),
    (["1,234", "7,25"], True, False, [1.234, 7.25]),
    (["1.234.567", "12"], True, False, [1234567.0, 12.0]),
    (["1,234,567"], True, True, [1234567.0]),
    (["51,123", "9.5"], False, True, [51.123, 9.5]),  # coordinates have no thousands
    (["-1.000,5", ""], True, False, [-1000.5, None]),
    (["1e-05", "abc"], True, False, [1e-05, None]),
    (["1..2", "0.125"], True, False, [None, 0.125]),  # not a grouping: fails, and casts no vote
    (["1,2,3", "1.5.6", "2.500,5"], True, False, [None, None, 2500.5]),
    (["0.125", "3,5"], True, True, [0.125, 3.5]),  # a leading 0 is never a thousands group
    (["1.234,5", "12.34.567"], True, False, [1234.5, None]),  # groups are three digits
    (["1,5E3", "2,", "-,5"], True, True, [1500.0, 2.0, -0.5]),  # German Excel's exponent; a bare comma
    (["1.5e3", "1,234.5e1", "12,34.5"], True, False, [1500.0, 12345.0, None]),
])
def test_thousands_separators_are_read_per_column(values, thousands, decimal_comma, want):
    got = parse_number(pd.Series(values, dtype="str"), thousands=thousands, decimal_comma=decimal_comma).tolist()
    assert [None if g != g else g for g in got] == want


def _stamp(year, month, day, hour, minute, second, sep, frac, zone, pad) -> str:
    date = f"{year:04d}-{month:02d}-{day:02d}" if pad else f"{year}-{month}-{day}"
    time = "" if hour is None else f"{sep}{hour:02d}" + ("" if minute is None else f":{minute:02d}") + (
        "" if minute is None or second is None else f":{second:02d}{frac}")
    return date + time + zone


STAMP = st.builds(_stamp, st.integers(0, 2999) | st.just(2025), st.integers(0, 13), st.integers(0, 32),
                  st.none() | st.integers(0, 25), st.none() | st.integers(0, 61), st.none() | st.integers(0, 61),
                  st.sampled_from([" ", "T", "t", "  "]),
                  st.sampled_from(["", "", ".5", ".123456", ".123456789", ",5"]),
                  st.sampled_from(["", "", "", "Z", "+02:00", "-0100", " "]), st.booleans() | st.just(True))


@given(st.lists(STAMP | st.just("") | st.just("01.03.2025 10:00"), min_size=1, max_size=6))
@example(["2025-05-01 10:00:59", "2025-05-01", ""])  # the fast path: every value takes Arrow's cast
@example(["2025-02-30 10:00:00"])  # a day that does not exist: both refuse it
@example(["2025-05-01 10:00:59", "2025-05-01T10:00:00Z"])  # an offset: the text path, to German time
def test_datetime_fast_and_text_paths_agree(values):
    """Arrow's cast (the fast path, taken only when every value takes it) and the text path agree."""
    s = pd.Series(values, dtype="str")
    pd.testing.assert_series_equal(parse_datetime(s), _text_datetimes(as_text(s)))
    if all(v == "" or (re.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?", v)
                       and _text_datetimes(as_text(pd.Series([v], dtype="str"))).notna().all()) for v in values):
        assert _arrow_timestamps(as_text(s)) is not None  # valid plain ISO values all take the fast path


def test_a_date_alone_in_a_time_column_is_midnight():
    """'2025-05-01' once matched the offset pattern ('-01' read as UTC-1) and came out at 02:00."""
    s = pd.Series(["2025-05-01", "2025-01-15", "01.03.2025 10:00", "2025-03-01T10:00:00+01:00"], dtype="str")
    assert parse_datetime(s).tolist() == [dt.datetime(2025, 5, 1), dt.datetime(2025, 1, 15),
                                          dt.datetime(2025, 3, 1, 10), dt.datetime(2025, 3, 1, 10)]
    assert _text_datetimes(as_text(s)).tolist() == parse_datetime(s).tolist()


@pytest.mark.parametrize("loose,want", [("2025-05-01T9:00Z", dt.datetime(2025, 5, 1, 11)),
                                        ("2025-05-01T12:5Z", dt.datetime(2025, 5, 1, 14, 5)),
                                        ("2025-05-01T12:00:00.Z", dt.datetime(2025, 5, 1, 14)),
                                        ("2025-05-01T12:00:5+01:00", dt.datetime(2025, 5, 1, 13, 0, 5))])
def test_loosely_written_offset_times_beside_plain_ones(loose, want):
    """pandas reads these offsets; they must take the offset path, not fail the column (review finding)."""
    assert parse_datetime(pd.Series([loose, "2025-01-01 10:00"], dtype="str")).tolist() == \
        [want, dt.datetime(2025, 1, 1, 10)]


def test_times_with_a_utc_offset_become_german_local_time():
    s = pd.Series(["2025-03-01T10:00:00Z", "2025-07-01T10:00:00+02:00", "2025-03-01T10:00:00+0100",
                   "2025-03-01 10:00", "01.03.2025 10:00", "2025-13-01T10:00Z", ""], dtype="str")
    got = parse_datetime(s).tolist()
    want = [dt.datetime(2025, 3, 1, 11), dt.datetime(2025, 7, 1, 10), dt.datetime(2025, 3, 1, 10),
            dt.datetime(2025, 3, 1, 10), dt.datetime(2025, 3, 1, 10)]
    assert got[:5] == want and pd.isna(got[5]) and pd.isna(got[6])  # a bad one is a fault, not a crash
    aware = pd.Series(pd.to_datetime(["2025-01-15T23:30:00Z"], utc=True))  # e.g. from Parquet
    assert parse_datetime(aware).tolist() == [dt.datetime(2025, 1, 16, 0, 30)]
