"""The impact of relief with its interval (lib/engine/eventstudy): worked by hand on synthetic panels, its
boundaries (too few areas, too few complaints), the weekly outcome against a plain count, and the set effect
of the demo world recovered within the interval on several seeds."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from lib import cli, engine, store
from lib.demo import complaints as demo_complaints
from lib.engine import eventstudy, network, serving

K = eventstudy.WEEKS


def panel(counts: np.ndarray, relief: list[float], first_week: int = 0) -> tuple[eventstudy.Outcome, np.ndarray]:
    prefix = np.zeros((counts.shape[0], counts.shape[1] + 1))
    np.cumsum(counts, axis=1, out=prefix[:, 1:])
    return eventstudy.Outcome(first_week, prefix), np.array(relief, dtype="float64")


def world(n_treated: int, n_control: int, weeks: int = 40, g: int = 20, before: float = 10.0,
          control: float = 4.0, trend: float = 2.0, effect: float = 0.5):
    """Treated areas with `before` complaints a week until week g and `before` x trend x (1 - effect) after;
    controls (in the programme, relieved after the window) with `control`, x trend from week g on. Every area
    doubles from week g: a trend in proportion to each area's level, as a campaign would bring."""
    t = np.where(np.arange(weeks) < g, before, before * trend * (1 - effect))
    c = np.where(np.arange(weeks) < g, control, control * trend)
    counts = np.vstack([np.tile(t, (n_treated, 1)), np.tile(c, (n_control, 1))])
    relief = [float(g)] * n_treated + [np.inf] * n_control
    return panel(counts, relief)


def test_a_halving_against_a_common_doubling_is_minus_fifty_percent():
    out, relief = world(40, 60)
    r = eventstudy.estimate(out, relief, np.arange(100), now_week=40)
    assert r["pct"] == pytest.approx(-50.0)
    assert r["effect"] == pytest.approx(10.0 - 20.0)  # seen 10 a week, expected 20 (10 x the controls' 2)
    assert r["before"] == pytest.approx(10.0)
    assert (r["n_treated"], r["n_control"]) == (40, 60)
    assert r["pct_low"] == pytest.approx(-50.0) and r["pct_high"] == pytest.approx(-50.0)  # no noise: no spread


def test_no_effect_reads_zero_whatever_the_levels():
    out, relief = world(40, 60, before=25.0, control=1.0, effect=0.0)
    assert eventstudy.estimate(out, relief, np.arange(100), now_week=40)["pct"] == pytest.approx(0.0)


def test_noise_gives_an_interval_around_the_effect():
    rng = np.random.default_rng(1)
    out, relief = world(200, 400)
    noisy = rng.poisson(np.diff(out.prefix, axis=1)).astype(float)
    out, relief = panel(noisy, list(relief))
    r = eventstudy.estimate(out, relief, np.arange(600), now_week=40)
    assert r["pct_low"] < r["pct"] < r["pct_high"] and r["pct_low"] < -50 < r["pct_high"]
    assert r["pct_high"] - r["pct_low"] < 15


@pytest.mark.parametrize(("n", "given"), [(eventstudy.MIN_TREATED, True), (eventstudy.MIN_TREATED - 1, False)])
def test_exactly_min_treated_areas_give_a_number(n, given):
    out, relief = world(n, 50)
    r = eventstudy.estimate(out, relief, np.arange(n + 50), now_week=40)
    assert (r["pct"] is not None) == given
    assert r["note"] == ("" if given else eventstudy.too_few(n))


def test_too_few_complaints_before_relief_give_no_number():
    n = eventstudy.MIN_TREATED
    per_week = eventstudy.MIN_BEFORE / (n * K)  # exactly MIN_BEFORE complaints in the treated's before windows
    out, relief = world(n, 50, before=per_week)
    assert eventstudy.estimate(out, relief, np.arange(n + 50), now_week=40)["pct"] is not None
    out, relief = world(n, 50, before=per_week * 0.99)
    assert eventstudy.estimate(out, relief, np.arange(n + 50), now_week=40)["note"].startswith("too few complaints")


def test_windows_after_the_date_do_not_count_and_areas_outside_the_programme_are_no_controls():
    out, relief = world(40, 60)
    # the after window ends with week g + K = 28: as of week 28 it is not over yet, as of 29 it is
    assert eventstudy.estimate(out, relief, np.arange(100), now_week=20 + K)["pct"] is None
    assert eventstudy.estimate(out, relief, np.arange(100), now_week=20 + K + 1)["pct"] == pytest.approx(-50.0)
    relief[40:] = np.nan  # the controls have no upgrade: no comparison left
    assert eventstudy.estimate(out, relief, np.arange(100), now_week=40)["pct"] is None


def test_a_control_relieved_inside_the_window_is_no_control():
    out, relief = world(40, 60)
    relief[40:50] = 20 + K  # relieved in the treated's last after week: not a clean control
    r = eventstudy.estimate(out, relief, np.arange(100), now_week=40)
    assert r["n_control"] == 50


def test_the_weekly_outcome_counts_each_best_server_areas_complaints(tmp_path):
    path = tmp_path / "demo.duckdb"
    cli.build_demo_store(path, sites=400, complaints=20_000, progress=lambda m, f: None)
    con = store.connect(path, read_only=True)
    try:
        net = network.held(con)
        load, servers = serving.served_load(con, net)
        first = np.r_[True, servers.place[1:] != servers.place[:-1]]
        best = dict(zip(load.cells9[servers.place[first]], servers.site[first], strict=True))
        rows = con.execute("SELECT cell, received_at FROM complaints WHERE category IN ('slow_data', "
                           "'dropped_calls') AND cell IS NOT NULL").fetchall()
        want = {}
        for cell, when in rows:
            site = best.get(int(cell))
            if site is not None:
                week = eventstudy.week_of(when)
                want[(site, week)] = want.get((site, week), 0) + 1
        out = eventstudy.outcome(con, net, "capacity")
        counts = np.diff(out.prefix, axis=1)
        got = {(int(s), int(w) + out.first_week): counts[s, w] for s, w in zip(*np.nonzero(counts), strict=True)}
        assert got == want
        # another engine (no held complaints): the same weekly counts from SQL
        via_sql = eventstudy.outcome(engine.backend(con.cursor()), net, "capacity")
        np.testing.assert_array_equal(np.diff(via_sql.prefix, axis=1), counts)
    finally:
        con.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_demo_worlds_set_effect_lies_in_the_interval(tmp_path, seed):
    """The demo draws capacity complaints so that CAPACITY_EFFECT of them do not come once their place's best
    server is relieved; coverage complaints do not move. The estimate of the whole network holds both."""
    path = tmp_path / "demo.duckdb"
    cli.build_demo_store(path, seed=seed, sites=3000, complaints=100_000, progress=lambda m, f: None)
    con = store.connect(path, read_only=True)
    try:
        out = eventstudy.table(con, "state", dt.date(2026, 11, 1))
    finally:
        con.close()
    net = out[out["region_id"] == eventstudy.ALL].set_index("kind")
    cap, cov = net.loc["capacity"], net.loc["coverage"]
    assert cap["pct_low"] <= -100 * demo_complaints.CAPACITY_EFFECT <= cap["pct_high"], cap.to_dict()
    assert cov["pct_low"] <= 0 <= cov["pct_high"], cov.to_dict()
    assert cap["n_treated"] >= 100 and cap["pct_high"] < 0  # a real effect, told apart from none
    assert set(out.columns) == set(eventstudy.COLUMNS) and isinstance(out, pd.DataFrame)


def test_the_bootstrap_weights_are_the_seeded_poisson_draws_kept_by_size():
    n = 257
    w = eventstudy.bootstrap_weights(n)
    drawn = np.random.default_rng(eventstudy.SEED).poisson(1.0, (eventstudy.DRAWS, n))
    assert w.shape == (eventstudy.DRAWS + 1, n)
    assert (w[0] == 1).all() and (w[1:] == drawn).all()  # the estimate's own row, then the draws as drawn
    assert eventstudy.bootstrap_weights(n) is w  # drawn once per size
    assert not w.flags.writeable  # shared: nobody may change them
    other = eventstudy.bootstrap_weights(n, seed=eventstudy.SEED + 1)
    assert other is not w and not (other == w).all()
