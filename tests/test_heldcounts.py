"""Complaints counted from memory (lib/engine/heldcounts) and Gi* on their grid (hotspots on a window) against the SQL
counts and the plain Gi* over them, on complaints imported out of time order; the held arrays follow imports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import time

import h3
import numpy as np
import pandas as pd
import pytest

from lib import store, warmup
from lib.engine import gistar, heldcounts, hotspots, kept, network, serving
from tests.test_hotspots import CAPACITY, COVERAGE, make_complaints


def _import(con, records: pd.DataFrame, name: str) -> None:
    text = io.StringIO()
    records.to_csv(text, index=False, quoting=csv.QUOTE_MINIMAL)
    result = store.import_file(con, text.getvalue().encode(), table="complaints", file_name=name)
    assert result.rows_rejected == 0


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """A store with `make_complaints` in a random order (not by time), and those complaints."""
    records = make_complaints(seed=5).sample(frac=1.0, random_state=3).reset_index(drop=True)
    con = store.connect(tmp_path_factory.mktemp("held") / "store.duckdb")
    _import(con, records, "c.csv")
    yield con, records
    con.close()


def _windows(rng: np.random.Generator, n: int) -> list[tuple]:
    """Random windows over 2023-12 .. 2025-01, their bounds as dates, minutes, text, aware times or open."""
    out = []
    for _ in range(n):
        a, b = sorted(dt.datetime(2023, 11, 20) + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 600_000, 2))
        start = [a, a.date(), a.isoformat(sep=" "), a.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))), None][
            int(rng.integers(5))]
        end = [b, b.date(), b.isoformat(), None][int(rng.integers(4))]
        if start is None and end is None:
            end = b
        out.append((start, end))
    return out


KIND_FILTERS = [None, CAPACITY, COVERAGE, [], ["other"], ["slow_data", "no_signal"]]
CHANNEL_FILTERS = [None, ("app",), ("hotline", "crowd_list"), ()]


def test_held_counts_equal_the_sql_counts(shuffled):
    con, _ = shuffled
    held = heldcounts.held(con)
    for a, b in zip(held.starts[:-1], held.starts[1:], strict=True):  # imported out of order, held by time
        assert (np.diff(held.at[a:b]) >= 0).all()
    rng = np.random.default_rng(17)
    for i, (start, end) in enumerate(_windows(rng, 40)):
        res = (7, 8, 9)[i % 3]
        cats = KIND_FILTERS[int(rng.integers(len(KIND_FILTERS)))]
        chans = CHANNEL_FILTERS[int(rng.integers(len(CHANNEL_FILTERS)))]
        want = hotspots.cell_counts_sql(con, res, start, end, cats, chans)
        got = hotspots.cell_counts(con, res, start, end, cats, chans)
        pd.testing.assert_frame_equal(got, want, obj=f"{res} {start} {end} {cats} {chans}")


def test_held_counts_equal_the_points(shuffled):
    """An independent count: the complaints themselves, filtered in pandas."""
    con, records = shuffled
    start, end = dt.datetime(2024, 3, 5, 12, 30), dt.datetime(2024, 9, 1)
    when = pd.to_datetime(records["received_at"])
    sel = records[(when >= start) & (when < end) & records["category"].isin(CAPACITY)
                  & records["channel"].isin(["app", "hotline"])]
    cell = [h3.str_to_int(h3.cell_to_parent(h3.latlng_to_cell(la, lo, 9), 8))
            for la, lo in zip(sel["lat"], sel["lon"], strict=True)]
    want = pd.Series(cell).value_counts().sort_index()
    got = heldcounts.held(con).counts(8, start, end, CAPACITY, ("app", "hotline"))
    assert dict(zip(got["cell"], got["n"], strict=True)) == want.to_dict()
    assert got["cell"].is_monotonic_increasing and (got["n"] > 0).all()


def test_gi_on_the_held_grid_equals_gi_over_the_sql_counts(shuffled):
    con, _ = shuffled
    rng = np.random.default_rng(4)
    for i, (start, end) in enumerate(_windows(rng, 12)):
        res, kind = (7, 8, 9)[i % 3], ("capacity", "coverage", "all")[i % 3]
        want = gistar.getis_ord(hotspots.cell_counts_sql(con, res, start, end, hotspots.KINDS[kind]))
        want = want[(want["n"] > 0) | want["hot"]]
        got = hotspots.hotspots(con, res, start, end, kind)
        pd.testing.assert_frame_equal(got.sort_values("cell").reset_index(drop=True), want.reset_index(drop=True),
                                      check_exact=False, rtol=1e-12, atol=1e-12, obj=f"{res} {kind} {start} {end}")
        hot = hotspots.hot_cells(con, res, start, end, kind)
        assert hot.tolist() == sorted(want.loc[want["hot"], "cell"].tolist())
    whole_year = hotspots.hotspots(con, 8, "2024-01-01", "2025-01-01", "capacity")
    assert whole_year["hot"].sum() > 0  # the checks above compared something hot


def test_the_held_complaints_are_read_once_per_content(shuffled, tmp_path, monkeypatch):
    _, records = shuffled
    con = store.connect(tmp_path / "store.duckdb")
    first, later = records.iloc[: len(records) // 2], records.iloc[len(records) // 2:]
    _import(con, first, "a.csv")
    reads = []
    real = heldcounts.read
    monkeypatch.setattr(heldcounts, "read", lambda c: reads.append(1) or real(c))
    window = ("2023-01-01", "2026-01-01")
    n_first = hotspots.cell_counts(con, 9, *window)["n"].sum()
    hotspots.cell_counts(con, 8, *window)
    assert n_first == len(first) and len(reads) == 1  # one read serves every resolution and window
    _import(con, later, "b.csv")
    assert hotspots.cell_counts(con, 9, *window)["n"].sum() == len(records)  # a new import: read again
    assert len(reads) == 2
    con.execute("DELETE FROM complaints WHERE complaint_id IN (SELECT complaint_id FROM complaints LIMIT 3)")
    assert hotspots.cell_counts(con, 9, *window)["n"].sum() == len(records) - 3  # a deletion by hand is seen
    con.close()


def test_values_outside_the_choices_are_refused(shuffled):
    con, _ = shuffled
    with pytest.raises(ValueError, match="category"):
        heldcounts._codes(np.ma.masked_array([1, 2], mask=[False, True]), "category")
    with pytest.raises(ValueError, match="unknown categories"):
        hotspots.cell_counts(con, 8, "2024-01-01", "2024-02-01", ["gossip"])
    with pytest.raises(ValueError, match="unknown channels"):
        hotspots.cell_counts(con, 8, "2024-01-01", "2024-02-01", channels=["pigeon"])
    with pytest.raises(ValueError, match="resolution"):
        hotspots.cell_counts(con, 6, "2024-01-01", "2024-02-01")


def test_a_value_is_built_once_by_concurrent_callers_and_again_after_a_failure():
    kept_ = kept.Kept(2)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.1)
        return len(calls)

    threads = [threading.Thread(target=kept_.get, args=("a", slow)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and kept_.get("a", slow) == 1

    def broken():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        kept_.get("b", broken)
    assert kept_.get("b", lambda: "built") == "built"  # the failed build left nothing behind
    kept_.get("c", lambda: 3)
    assert kept_.values() == ["built", 3]  # the newest two


def test_the_warm_up_holds_what_the_first_view_reads(shuffled, monkeypatch, caplog):
    con, _ = shuffled
    caplog.set_level("INFO", logger="lib.warmup")
    warmup.start(con, also=(("towns", lambda: None),)).join(timeout=60)
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warm-up done in")]
    assert len(done) == 1 and all(f"{step} " in done[0] for step in (  # each step's seconds in the server's log
        "network", "complaints, grid 7", "grid 8", "servers", "towns")), done
    monkeypatch.setattr(heldcounts, "read", lambda c: pytest.fail("read again after the warm-up"))
    monkeypatch.setattr(hotspots, "_grid", lambda *a: pytest.fail("grid built again after the warm-up"))
    monkeypatch.setattr(network, "read", lambda c: pytest.fail("network read again after the warm-up"))
    monkeypatch.setattr(serving, "serve", lambda *a: pytest.fail("servers found again after the warm-up"))
    for res in warmup.RESOLUTIONS:
        assert len(hotspots.hotspots(con, res, "2024-01-01", "2025-01-01", "capacity"))
    serving.served_load(con, network.held(con))


def test_a_failed_warm_up_is_logged_not_raised(tmp_path, caplog):
    con = store.connect(tmp_path / "store.duckdb")
    con.close()
    warmup.start(con).join(timeout=60)
    assert "warm-up" in caplog.text


def test_a_waiter_builds_once_when_the_first_build_fails():
    kept_ = kept.Kept(2)
    running, most, built = [0], [0], []
    lock = threading.Lock()

    def build(fail: bool):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        if fail:
            raise RuntimeError("first build fails")
        built.append(1)
        return "ok"

    first = threading.Thread(target=lambda: pytest.raises(RuntimeError, kept_.get, "k", lambda: build(True)))
    first.start()
    time.sleep(0.03)  # the others come while the first build runs
    got = []
    others = [threading.Thread(target=lambda: got.append(kept_.get("k", lambda: build(False)))) for _ in range(3)]
    for t in others:
        t.start()
    time.sleep(0.12)  # the first build has failed and a waiter builds again: one more comes now
    late = threading.Thread(target=lambda: got.append(kept_.get("k", lambda: build(False))))
    late.start()
    for t in [first, *others, late]:
        t.join()
    assert got == ["ok"] * 4 and built == [1] and most[0] == 1  # one build at a time, one that succeeded


def test_an_import_of_another_table_keeps_the_held_complaints(shuffled, tmp_path, monkeypatch):
    _, records = shuffled
    con = store.connect(tmp_path / "store.duckdb")
    _import(con, records, "c.csv")
    window = ("2023-01-01", "2026-01-01")
    hotspots.cell_counts(con, 8, *window)
    monkeypatch.setattr(heldcounts, "read", lambda c: pytest.fail("complaints read again"))
    sites = "site_id,lat,lon,site_type\nS1,51.95,7.62,macro\n"
    assert store.import_file(con, sites.encode(), table="sites", file_name="s.csv").rows_accepted == 1
    assert hotspots.cell_counts(con, 8, *window)["n"].sum() == len(records)
    con.close()


def test_complaints_without_a_time_and_nat_bounds_count_as_in_sql(tmp_path):
    con = store.connect(tmp_path / "store.duckdb")
    _import(con, make_complaints(seed=8), "c.csv")
    con.execute("UPDATE complaints SET received_at = NULL WHERE complaint_id IN "
                "(SELECT complaint_id FROM complaints WHERE category = 'slow_data' LIMIT 5)")
    for start, end in [("2024-01-01", None), ("2023-01-01", "2030-01-01"), (None, "2024-06-01")]:
        pd.testing.assert_frame_equal(hotspots.cell_counts(con, 8, start, end),
                                      hotspots.cell_counts_sql(con, 8, start, end))
    for nat in (pd.NaT, np.datetime64("NaT")):
        assert hotspots.cell_counts(con, 8, nat, "2030-01-01").empty
        assert hotspots.cell_counts(con, 8, "2023-01-01", nat).empty
    con.close()
