"""Hotspots: Gi* on worlds whose answer is known, against PySAL, Mann-Kendall against scipy, trends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lib import cells, store
from lib.engine import gistar, hotspots, trends

H3 = h3.api.basic_int
MUENSTER = (51.9607, 7.6261)
CENTRE = H3.latlng_to_cell(*MUENSTER, 8)
PYSAL_TOLERANCE = 1e-6  # absolute, on z-scores; the two agree to about 1e-14 in practice
EXACT_P_TOLERANCE = 0.03  # continuity-corrected normal p against the exact Kendall p, n = 4..40


def disk(cell: int, k: int) -> np.ndarray:
    """The k-disk of a cell as sorted int64 ids."""
    return np.array(sorted(H3.grid_disk(int(cell), k)), dtype="int64")


def field(study: np.ndarray, n) -> pd.DataFrame:
    return pd.DataFrame({"cell": study, "n": np.broadcast_to(n, study.shape)})


# -- neighbours ------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 2])
def test_neighbour_table_is_grid_disk_with_self(k):
    some = disk(CENTRE, 2)
    nb = gistar.neighbour_table(list(some) + [some[0]], k)  # duplicates are ignored
    assert nb.dtypes.tolist() == ["int64", "int64"]
    assert sorted(nb["cell"].unique()) == list(some)
    for c, group in nb.groupby("cell"):
        assert set(group["neighbour"]) == set(H3.grid_disk(int(c), k))


# -- Gi* on hand-built worlds ----------------------------------------------------------

def test_single_cluster_centre_is_hot_far_cells_are_not():
    study = disk(CENTRE, 10)
    counts = field(disk(CENTRE, 1), 10)  # one k-ring of complaints, zeros all around
    gi = gistar.getis_ord(counts, k=1, study_cells=study).set_index("cell")
    assert len(gi) == len(study) == 331
    assert gi.loc[CENTRE, "significant"] and gi.loc[CENTRE, "hot"]
    assert gi["z"].idxmax() == CENTRE
    # Hand-computed: L = 70, W = 7, N = 331, xbar = 70/331, S^2 = 700/331 - xbar^2.
    xbar = 70 / 331
    s = np.sqrt(700 / 331 - xbar**2)
    assert gi.loc[CENTRE, "z"] == pytest.approx((70 - 7 * xbar) / (s * np.sqrt((331 * 7 - 49) / 330)), rel=1e-12)
    far = [c for c in study if H3.grid_distance(CENTRE, int(c)) > 2]
    assert not gi.loc[far, "significant"].any()
    outside = pd.concat([counts, field(disk(H3.latlng_to_cell(52.5, 13.4, 8), 0), 99)])  # Berlin: not studied
    pd.testing.assert_frame_equal(gistar.getis_ord(outside, study_cells=study), gi.reset_index())
    # The default study area (the counted cells and their rings, zero-filled) finds it too.
    default = gistar.getis_ord(counts, k=1).set_index("cell")
    assert set(default.index) == set(disk(CENTRE, 2))
    assert default.loc[CENTRE, "hot"]


def test_constant_field_has_nothing_significant():
    study = disk(CENTRE, 8)
    gi = gistar.getis_ord(field(study, 4), study_cells=study)
    assert (gi["z"] == 0).all() and (gi["p"] == 1).all() and not gi["significant"].any()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_uniform_random_field_has_nothing_significant_after_fdr(seed):
    study = disk(CENTRE, 12)
    counts = field(study, np.random.default_rng(seed).poisson(5.0, size=study.size))
    gi = gistar.getis_ord(counts, study_cells=study)
    assert (gi["p"] < 0.05).sum() > 0  # raw p-values alone would call some cells hotspots
    assert not gi["significant"].any()


def test_fdr_bh_matches_scipy():
    p = np.random.default_rng(5).beta(0.3, 2.0, size=500)
    for q in (0.01, 0.05, 0.2):
        assert (gistar.fdr_bh(p, q) == (stats.false_discovery_control(p) <= q)).all()
        tied = np.round(p, 2)  # many equal p-values, some exactly at a threshold
        assert (gistar.fdr_bh(tied, q) == (stats.false_discovery_control(tied) <= q)).all()
    # by hand: m = 4, thresholds i q / m = 0.0125 0.025 0.0375 0.05; the largest p_(i) at or below its
    # threshold is the third (0.036), so the three smallest are rejected, 0.03 too (step-up)
    assert gistar.fdr_bh([0.036, 0.001, 0.03, 0.2], 0.05).tolist() == [True, True, True, False]
    assert gistar.fdr_bh([0.04, 0.001, 0.03, 0.2], 0.05).tolist() == [False, True, False, False]
    assert gistar.fdr_bh([], 0.05).size == 0


@pytest.mark.parametrize(("radius", "k", "seed"), [(10, 1, 0), (14, 1, 1), (17, 2, 2)])  # 331, 631, 919 cells
def test_z_agrees_with_pysal(radius, k, seed):
    import esda  # the independent reference implementation (requirements-dev.txt)
    import libpysal
    study = disk(CENTRE, radius)
    y = np.random.default_rng(seed).negative_binomial(1, 0.3, size=study.size)
    index = {c: i for i, c in enumerate(study)}
    neighbours = {i: [] for i in range(study.size)}
    for c, nb in gistar.neighbour_table(study, k).itertuples(index=False):
        if nb != c and nb in index:
            neighbours[index[c]].append(index[nb])
    w = libpysal.weights.W(neighbours, silence_warnings=True)
    reference = esda.G_Local(y, w, transform="B", star=True, permutations=0)
    gi = gistar.getis_ord(field(study, y), k=k, study_cells=study)
    assert gi["cell"].tolist() == list(study)
    np.testing.assert_allclose(gi["z"].to_numpy(), reference.Zs, rtol=0, atol=PYSAL_TOLERANCE)


SMALL = disk(CENTRE, 3)  # 37 cells
small_counts = st.lists(st.integers(0, 60), min_size=SMALL.size, max_size=SMALL.size)


@settings(max_examples=30, deadline=None)
@given(n=small_counts, shift=st.integers(1, 500), scale=st.integers(2, 50), order=st.permutations(range(SMALL.size)))
def test_z_is_invariant_to_shift_scale_and_cell_order(n, shift, scale, order):
    n = np.array(n)
    gi = lambda counts, study: gistar.getis_ord(counts, study_cells=study)
    base = gi(field(SMALL, n), SMALL)["z"].to_numpy()
    shifted = gi(field(SMALL, n + shift), SMALL)["z"].to_numpy()
    scaled = gi(field(SMALL, n * scale), SMALL)["z"].to_numpy()
    shuffled = gi(field(SMALL, n).iloc[list(order)], SMALL[list(order)])
    np.testing.assert_allclose(shifted, base, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scaled, base, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(shuffled["z"].to_numpy(), base)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="duplicate"):
        gistar.getis_ord(pd.DataFrame({"cell": [CENTRE, CENTRE], "n": [1, 2]}))
    with pytest.raises(ValueError, match="missing"):
        gistar.getis_ord(pd.DataFrame({"cell": [CENTRE]}))
    assert gistar.getis_ord(field(SMALL[:0], 0)).empty


# -- Mann-Kendall --------------------------------------------------------------------

def test_mann_kendall_agrees_with_kendalltau_on_time():
    rng = np.random.default_rng(0)
    for n in range(4, 41):
        t = np.arange(n)
        x = rng.normal(size=n) + rng.uniform(-0.2, 0.2) * t  # no ties
        s, p = trends.mann_kendall(x, continuity=False)
        tau = stats.kendalltau(t, x, method="asymptotic")
        assert s == round(tau.statistic * n * (n - 1) / 2)
        assert p == pytest.approx(tau.pvalue, rel=1e-9, abs=1e-12)  # the same normal test
        s_cc, p_cc = trends.mann_kendall(x)
        assert s_cc == s
        assert abs(p_cc - stats.kendalltau(t, x, method="exact").pvalue) <= EXACT_P_TOLERANCE
        ties = rng.integers(0, 4, size=n).astype(float)  # ties in the series: tie-corrected variance
        if len(set(ties)) > 1:
            assert trends.mann_kendall(ties, continuity=False)[1] == pytest.approx(
                stats.kendalltau(t, ties, method="asymptotic").pvalue, rel=1e-9)


def test_mann_kendall_by_hand():
    s, p = trends.mann_kendall(np.arange(10.0))
    assert s == 45 and p < 1e-4
    s, p = trends.mann_kendall(-np.arange(10.0))
    assert s == -45 and p < 1e-4
    assert trends.mann_kendall(np.ones(10)) == (0, 1.0)
    assert trends.mann_kendall([1.0, 2.0]) == (1, 1.0)  # too short to judge
    rows_s, rows_p = trends.mann_kendall(np.vstack([np.arange(6.0), np.arange(6.0)[::-1]]))
    assert rows_s.tolist() == [15, -15] and rows_p[0] == rows_p[1]


# -- trend classes -------------------------------------------------------------------

TREND_STUDY = disk(CENTRE, 6)  # 127 cells
CLUSTER = np.isin(TREND_STUDY, disk(CENTRE, 1))
BACKGROUND = np.random.default_rng(3).poisson(1.0, size=TREND_STUDY.size)  # the same every month

PATTERNS = [  # complaints added to each cell of the centre's ring, month by month over 12 months
    ("intensifying", list(range(3, 15))),
    ("diminishing", list(range(14, 2, -1))),
    ("persistent", [8, 10] * 6),
    ("persistent", [9] * 12),
    ("new", [0] * 10 + [10, 10]),
    ("new", [0] * 11 + [10]),
    ("sporadic", [10, 0, 0, 0] * 3),
    ("sporadic", [10] * 6 + [0] * 6),  # was a hotspot, no longer is
    ("none", [0] * 12),
]


def monthly_world(pattern: list[int]) -> pd.DataFrame:
    rows = [pd.DataFrame({"month": pd.Timestamp(2024, m + 1, 1), "cell": TREND_STUDY,
                          "n": np.where(CLUSTER, v, 0) + BACKGROUND}) for m, v in enumerate(pattern)]
    out = pd.concat(rows, ignore_index=True)
    return out[out["n"] > 0]


@pytest.mark.parametrize(("expected", "pattern"), PATTERNS)
def test_trend_class_by_hand(expected, pattern):
    tc = trends.trend_class(monthly_world(pattern), study_cells=TREND_STUDY).set_index("cell")
    assert tc.loc[CENTRE, "trend"] == expected
    assert tc.loc[CENTRE, "months"] == 12
    assert set(tc["trend"]) <= set(trends.TRENDS)


def test_trend_class_counts_missing_months_as_zero():
    monthly = monthly_world([10] * 12)
    quiet = monthly[monthly["month"] < pd.Timestamp(2024, 12, 1)]
    months = pd.period_range("2024-01", "2024-12", freq="M")
    tc = trends.trend_class(quiet, study_cells=TREND_STUDY, months=months).set_index("cell")
    assert tc.loc[CENTRE, "months_hot"] == 11 and not tc.loc[CENTRE, "hot_latest"]
    assert trends.trend_class(monthly.iloc[:0]).empty


# -- on a store ----------------------------------------------------------------------

A = H3.latlng_to_cell(51.975, 7.60, 8)  # capacity cluster, growing through 2024
B = H3.latlng_to_cell(51.90, 7.74, 8)  # coverage cluster, steady through 2024
C = H3.latlng_to_cell(52.02, 7.72, 8)  # capacity cluster in December 2023 only
BOX = (51.85, 7.50, 52.05, 7.80)  # south, west, north, east: the background's area
CAPACITY, COVERAGE = ["slow_data", "dropped_calls"], ["no_signal", "no_indoor"]


def _when(rng: random.Random, year: int, month: int) -> str:
    return dt.datetime(year, month, rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)).strftime(
        "%Y-%m-%d %H:%M")


def _in_cell(rng: random.Random, cell: int) -> tuple[float, float]:
    """A point inside a resolution-8 cell: the centre of one of its resolution-9 children."""
    lat, lon = H3.cell_to_latlng(rng.choice(sorted(H3.cell_to_children(cell, 9))))
    return round(lat, 6), round(lon, 6)


def make_complaints(seed: int = 11) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []

    def add(lat, lon, when, category):
        rows.append({"complaint_id": f"K{len(rows):05d}", "received_at": when, "lat": lat, "lon": lon,
                     "category": category, "channel": rng.choice(["hotline", "app", "crowd_list"])})

    for month in range(1, 13):
        for cell in disk(A, 1):
            for _ in range(2 + month):
                add(*_in_cell(rng, int(cell)), _when(rng, 2024, month), rng.choice(CAPACITY))
        for cell in disk(B, 1):
            for _ in range(8):
                add(*_in_cell(rng, int(cell)), _when(rng, 2024, month), rng.choice(COVERAGE))
        for _ in range(60):
            lat, lon = round(rng.uniform(BOX[0], BOX[2]), 6), round(rng.uniform(BOX[1], BOX[3]), 6)
            add(lat, lon, _when(rng, 2024, month), rng.choice(CAPACITY + COVERAGE + ["other"]))
    for cell in disk(C, 1):
        for _ in range(12):
            add(*_in_cell(rng, int(cell)), _when(rng, 2023, 12), rng.choice(CAPACITY))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def world(new_module_store):
    """A store near Münster with the complaints of `make_complaints`, and those complaints (of each kind of
    store in turn)."""
    records = make_complaints()
    text = io.StringIO()
    records.to_csv(text, index=False, quoting=csv.QUOTE_MINIMAL)
    con = new_module_store()
    result = store.import_file(con, text.getvalue().encode(), table="complaints", file_name="c.csv")
    assert result.rows_accepted == len(records) and result.rows_rejected == 0
    records["cell9"] = [H3.latlng_to_cell(la, lo, 9) for la, lo in zip(records["lat"], records["lon"], strict=True)]
    records["received_at"] = pd.to_datetime(records["received_at"])
    yield con, records
    con.close()


@pytest.mark.parametrize("res", [7, 8, 9])
def test_cell_counts_match_the_points(world, res):
    con, records = world
    expected = records["cell9"].map(lambda c: H3.cell_to_parent(c, res)).value_counts().sort_index()
    got = hotspots.cell_counts(con, res=res)
    assert got.dtypes.tolist() == ["int64", "int64"]
    assert dict(zip(got["cell"], got["n"], strict=True)) == expected.to_dict()
    # a window [start, end) and categories filter the same way
    start, end = dt.datetime(2024, 3, 1), dt.datetime(2024, 7, 1)
    sel = records[(records["received_at"] >= start) & (records["received_at"] < end)
                  & records["category"].isin(COVERAGE)]
    expected = sel["cell9"].map(lambda c: H3.cell_to_parent(c, res)).value_counts().to_dict()
    got = hotspots.cell_counts(con, res=res, start=start, end=end, categories=COVERAGE)
    assert dict(zip(got["cell"], got["n"], strict=True)) == expected


def test_resolution_change_via_parent(world):
    con, _ = world
    fine = hotspots.cell_counts(con, res=9)
    coarse = fine.assign(cell=cells.parent(fine["cell"], 8)).groupby("cell", as_index=False)["n"].sum()
    pd.testing.assert_frame_equal(coarse, hotspots.cell_counts(con, res=8))
    hot7 = hotspots.hotspots(con, res=7, start="2024-01-01", kind="capacity")
    assert hot7.set_index("cell").loc[int(cells.parent([A], 7)[0]), "hot"]


def test_hotspots_keep_capacity_and_coverage_apart(world):
    con, _ = world
    capacity = hotspots.hotspots(con, start="2024-01-01", end="2025-01-01", kind="capacity").set_index("cell")
    coverage = hotspots.hotspots(con, start="2024-01-01", end="2025-01-01", kind="coverage").set_index("cell")
    both = hotspots.hotspots(con, start="2024-01-01", end="2025-01-01", kind="all").set_index("cell")
    assert list(capacity.columns) == ["n", "z", "p", "significant", "hot"]
    assert capacity.loc[A, "hot"] and coverage.loc[B, "hot"] and both.loc[A, "hot"] and both.loc[B, "hot"]
    assert not capacity.loc[capacity.index.isin(disk(B, 2)), "hot"].any()
    assert not coverage.loc[coverage.index.isin(disk(A, 2)), "hot"].any()
    assert capacity["z"].is_monotonic_decreasing and ((capacity["n"] > 0) | capacity["hot"]).all()
    # C's complaints all came before the window [start, end)
    assert C not in capacity.index
    assert hotspots.hotspots(con, end="2024-01-01", kind="capacity").set_index("cell").loc[C, "hot"]
    with pytest.raises(ValueError, match="kind"):
        hotspots.hotspots(con, kind="weather")
    with pytest.raises(ValueError, match="categories"):
        hotspots.cell_counts(con, categories=["weather"])
    with pytest.raises(ValueError, match="resolution"):
        hotspots.cell_counts(con, res=6)


def test_trends_on_the_store(world):
    con, _ = world
    window = dict(start="2024-01-01", end="2025-01-01")
    capacity = trends.trends(con, kind="capacity", **window).set_index("cell")
    coverage = trends.trends(con, kind="coverage", **window).set_index("cell")
    assert capacity.loc[A, "trend"] == "intensifying" and capacity.loc[A, "months"] == 12
    assert coverage.loc[B, "trend"] == "persistent"
    monthly = hotspots.monthly_counts(con, 8, categories=CAPACITY, **window)
    assert monthly["month"].dt.month.nunique() == 12
    assert monthly.loc[monthly["cell"] == A, "n"].is_monotonic_increasing  # 3, 4, ... 14 a cell and month


@pytest.mark.parametrize("channels", [("app",), ("hotline", "crowd_list"), ()])
def test_cell_counts_and_hotspots_filter_by_channel(world, channels):
    con, records = world
    sel = records[records["channel"].isin(channels)]
    expected = sel["cell9"].map(lambda c: H3.cell_to_parent(c, 8)).value_counts().to_dict()
    got = hotspots.cell_counts(con, res=8, channels=channels)  # no window: the cube has no channel, raw rows are read
    assert dict(zip(got["cell"], got["n"], strict=True)) == expected
    window = dict(start="2024-01-01", end="2025-01-01")
    sel = sel[(sel["received_at"] >= "2024-01-01") & (sel["received_at"] < "2025-01-01")
              & sel["category"].isin(CAPACITY)]
    hot = hotspots.hotspots(con, kind="capacity", channels=channels, **window)
    want = sel["cell9"].map(lambda c: H3.cell_to_parent(c, 8)).value_counts().to_dict()
    assert {c: n for c, n in zip(hot["cell"], hot["n"], strict=True) if n > 0} == want
    with pytest.raises(ValueError, match="channels"):
        hotspots.cell_counts(con, channels=["pigeon"])


def test_the_whole_country_study_area(world, tmp_path):
    """Gi* over the country: every cell of the states' regions plus every complaint cell's neighbourhood, the
    same for every window; against gistar.getis_ord (checked against PySAL above) on that explicit area."""
    con, records = world
    import json

    box = [[BOX[1] - 0.2, BOX[0] - 0.2], [BOX[3] + 0.2, BOX[0] - 0.2], [BOX[3] + 0.2, BOX[2] + 0.2],
           [BOX[1] - 0.2, BOX[2] + 0.2], [BOX[1] - 0.2, BOX[0] - 0.2]]
    regions = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "region_id": "S", "name": "State", "level": "state"}, "geometry": {"type": "Polygon", "coordinates": [box]}}]}
    c = store.connect(tmp_path / "country.duckdb")
    store.import_file(c, json.dumps(regions).encode(), table="regions", file_name="r.geojson")
    text = io.StringIO()
    records.drop(columns=["cell9"]).to_csv(text, index=False)
    store.import_file(c, text.getvalue().encode(), table="complaints", file_name="c.csv")
    window = ("2024-06-01", "2024-09-01")
    for res in (7, 8):
        country = hotspots.country_cells(c, res)
        ever = hotspots.cell_counts(c, res)["cell"].to_numpy()
        area = np.union1d(country, np.concatenate([disk(int(x), 1) for x in ever]))
        counts = hotspots.cell_counts(c, res, *window, CAPACITY)
        want = gistar.getis_ord(counts, study_cells=area)
        got = hotspots.hotspots(c, res, *window, "capacity", study="country")
        got = got.set_index("cell").reindex(want["cell"])
        listed = want[(want["n"] > 0) | want["hot"]].set_index("cell")
        np.testing.assert_allclose(got.loc[listed.index, "z"], listed["z"], atol=1e-9)
        assert (got.loc[listed.index, "hot"] == listed["hot"]).all()
        near = hotspots.hotspots(c, res, *window, "capacity")
        assert got["hot"].sum() >= near["hot"].sum()  # against empty countryside more places stand out
    with pytest.raises(ValueError, match="resolutions"):
        hotspots.hotspots(c, 9, *window, "capacity", study="country")
    with pytest.raises(ValueError, match="study area"):
        hotspots.hotspots(c, 8, *window, "capacity", study="moon")
