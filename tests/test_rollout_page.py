"""The Rollout page through AppTest on the demo store: every figure shown checked against plain pandas over the
store's tables (not the engine), on the data's date and on an earlier one."""

from __future__ import annotations

import json
import math
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2
from streamlit.testing.v1 import AppTest

from lib import cells, store
from lib.views import rollout

APP = "../dashboard.py"
PAGE = "pages/rollout.py"
LEVEL = "state"


@pytest.fixture(scope="module")
def demo_copy(demo_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("rollout") / "store.duckdb"
    shutil.copy(demo_db, path)
    return path


@pytest.fixture(scope="module")
def tables(demo_copy) -> dict[str, pd.DataFrame]:
    """The store's tables as pandas frames, upgrades with their region (numpy H3 parents, region cells)."""
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        t = {name: con.execute(f"SELECT * FROM {name}").df() for name in ("upgrades", "sites", "transport_links",
                                                                          "complaints")}
        t["region_cells"] = con.execute("SELECT c.region_id, c.cell FROM region_cells c JOIN regions r "
                                        "USING (region_id) WHERE r.level = ?", [LEVEL]).df()
        t["regions"] = con.execute("SELECT region_id, name FROM regions WHERE level = ?", [LEVEL]).df()
        t["versions"] = con.execute("SELECT upgrade_id, version_import_id, on_air_planned FROM upgrades_versions").df()
    for name, cols in (("upgrades", ("on_air_planned", "on_air_actual", "installed_actual")),
                       ("transport_links", ("completion_planned", "completion_actual"))):
        for c in cols:
            t[name][c] = pd.to_datetime(t[name][c])
    u = t["upgrades"][t["upgrades"]["status"].fillna("") != "cancelled"]
    site = t["sites"][["site_id", "cell"]].assign(cell=lambda s: cells.parent(s["cell"].to_numpy(), cells.REGION_RES))
    t["live"] = u.merge(site, on="site_id").merge(t["region_cells"], on="cell", how="left")
    return t


def data_date(t) -> pd.Timestamp:
    """The newest actual date in the store, computed here."""
    return max(t["complaints"]["received_at"].max().normalize(), t["upgrades"]["on_air_actual"].max(),
               t["transport_links"]["completion_actual"].max())


def expected(t, day: pd.Timestamp, region: str | None) -> dict:
    """Percent on air, its change over 30 days, late, blocked and forecast, from the rules in plain pandas."""
    live = t["live"]
    u = live.drop_duplicates("upgrade_id") if region is None else live[live["region_id"] == region]

    def pct(d):
        return 100.0 * (u["on_air_actual"] <= d).sum() / len(u)

    late = ((u["on_air_planned"] < day) & ~(u["on_air_actual"] <= day)).sum()
    links = t["transport_links"].set_index("link_id")
    has_link = u["transport_link_id"].notna()
    done = ~has_link | u["transport_link_id"].map(links["completion_actual"]).le(day)
    link_date = u["transport_link_id"].map(links["completion_actual"]).where(
        u["transport_link_id"].map(links["completion_actual"]).le(day), u["transport_link_id"].map(
            links["completion_planned"]))
    ready = (u["installed_actual"] <= day) | (u["on_air_actual"] <= day) | (u["on_air_planned"] <= day)
    blocked = ~done & ready & (link_date.isna() | (link_date < day) | (link_date > u["on_air_planned"]))
    on_air = u["on_air_actual"][u["on_air_actual"] <= day]
    n = (on_air > day - pd.Timedelta(days=90)).sum()
    remaining = len(u) - len(on_air)
    forecast = (day + pd.Timedelta(days=math.ceil(remaining * 90 / n))).date() if n and remaining else None
    band = None
    if forecast:  # Garwood's exact 90% interval of each window's Poisson count, turned into paces
        fast, slow = [], []
        for w in (30, 90, 180, 365):  # the windows the programme has run through (90: the forecast's own)
            start = day - pd.Timedelta(days=w)
            k = (on_air > start).sum()
            if k and (w == 90 or on_air.min() <= start):
                fast.append(chi2.ppf(0.95, 2 * k + 2) / 2 / w)
                slow.append(chi2.ppf(0.05, 2 * k) / 2 / w)
        band = tuple((day + pd.Timedelta(days=math.ceil(remaining / pace))).date() for pace in (max(fast), min(slow)))
    # the late list: not on air after its planned day (late), or blocked by transport
    up_open = ~(u["on_air_actual"] <= day)
    up_days = (day - u["on_air_planned"]).dt.days.where(up_open & (u["on_air_planned"] < day), 0)
    listed = (up_days > 0) | blocked
    days_late = dict(zip(u.loc[listed, "upgrade_id"], up_days[listed].astype(int), strict=True))
    return {"pct": pct(day), "change": pct(day) - pct(day - pd.Timedelta(days=30)), "late": int(late),
            "blocked": int(blocked.sum()), "forecast": forecast, "band": band, "total": len(u),
            "on_air": len(on_air), "late_list": days_late}


def app(demo_copy, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv(store.DB_ENV, str(demo_copy))
    """The page opened by a deep link (/rollout?...), as the first page of a session."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def check_headline(at, exp: dict) -> None:
    shown = metrics(at)
    assert shown["Upgrades on air"] == (f"{exp['pct']:.1f}%", f"{exp['change']:+.1f} pp in 30 days")
    assert shown["Late"][0] == f"{exp['late']:,}"
    assert shown["Blocked by transport"][0] == f"{exp['blocked']:,}"
    assert shown["Forecast completion"][0] == (f"{exp['forecast']:%Y-%m-%d}" if exp["forecast"] else "-")
    if exp["band"]:
        assert shown["Forecast completion"][1] == f"90%: {exp['band'][0]:%Y-%m-%d} to {exp['band'][1]:%Y-%m-%d}"


def test_network_headline_and_its_date(demo_copy, tables, monkeypatch):
    at = app(demo_copy, monkeypatch)
    day = data_date(tables)
    check_headline(at, expected(tables, day, None))
    assert f"Every figure on this page is as of **{day:%Y-%m-%d}**" in at.caption[0].value
    assert at.date_input(key="as_of").value == day.date()


def test_region_headline_table_and_late_list(demo_copy, tables, monkeypatch):
    at = app(demo_copy, monkeypatch)
    day = data_date(tables)
    region = tables["regions"].sort_values("region_id")["region_id"].iloc[1]
    at.selectbox(key="region").select(region).run()
    assert not at.exception
    exp = expected(tables, day, region)
    check_headline(at, exp)
    table = next(d.value for d in at.dataframe if "pct_on_air" in d.value.columns).set_index("region_id")
    for rid in tables["regions"]["region_id"]:
        e = expected(tables, day, rid)
        got = table.loc[rid]
        assert (got["total"], got["on_air"], got["late"], got["blocked"]) == (e["total"], e["on_air"], e["late"],
                                                                              e["blocked"]), rid
        assert got["pct_on_air"] == pytest.approx(e["pct"])
    assert table.loc["ALL", "total"] == tables["live"]["upgrade_id"].nunique()
    # the late list of the region: late or blocked by the rules, most days late first
    late = next(d.value for d in at.dataframe if "days_late" in d.value.columns)
    assert f"Late and blocked upgrades: {len(late):,}" in [s.value for s in at.subheader]
    assert set(late["region"]) == {tables["regions"].set_index("region_id").loc[region, "name"]}
    assert late["days_late"].is_monotonic_decreasing
    u = tables["live"][tables["live"]["region_id"] == region]
    overdue = set(u.loc[(u["on_air_planned"] < day) & ~(u["on_air_actual"] <= day), "upgrade_id"])
    assert overdue <= set(late["upgrade_id"])  # the headline's late are in the list, under the same rule
    assert len(overdue) == table.loc[region, "late"]
    assert dict(zip(late["upgrade_id"], late["days_late"].astype(int), strict=True)) == exp["late_list"]


def test_an_earlier_date_replays_the_figures(demo_copy, tables, monkeypatch):
    at = app(demo_copy, monkeypatch)
    day = (data_date(tables) - pd.DateOffset(months=4)).normalize()
    at.date_input(key="as_of").set_value(day.date()).run()
    assert not at.exception
    check_headline(at, expected(tables, day, None))
    assert f"as of **{day:%Y-%m-%d}**" in at.caption[0].value


def test_a_date_in_the_link(demo_copy, tables, monkeypatch):
    day = (data_date(tables) - pd.Timedelta(days=45)).normalize()
    at = app(demo_copy, monkeypatch, as_of=f"{day:%Y-%m-%d}")
    assert not at.warning
    check_headline(at, expected(tables, day, None))
    assert f"as of **{day:%Y-%m-%d}**" in at.caption[0].value


def test_the_impact_section_is_drawn_only_while_open_and_its_state_is_in_the_link(demo_copy, monkeypatch):
    at = app(demo_copy, monkeypatch)
    assert [e.label for e in at.expander] == ["Impact of relief on complaints, and complaints by channel"]
    assert len(at.get("plotly_chart")) == 1 and "impact" not in at.query_params  # shut: the burn-up only
    at.session_state["impact"] = True  # as a click on the expander does
    at.run()
    assert not at.exception  # (the link follows in a browser: tests/test_browser_links.py)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    measured = any("relief" in s and "by channel" not in s and "Burn-up" not in s for s in specs[1:])
    assert len(specs) == 2 + measured and any("by channel" in s for s in specs)  # the channels, the impact if any
    assert measured or any("Too few relieved areas" in i.value for i in at.info)
    assert any("pct_low" in d.value.columns for d in at.dataframe)  # the impact table
    opened = app(demo_copy, monkeypatch, impact="true")  # the link opens it
    assert len(opened.get("plotly_chart")) == len(specs)


def test_channel_mix_matches_the_complaints(demo_copy, tables, monkeypatch):
    region = tables["regions"].sort_values("region_id")["region_id"].iloc[0]
    at = app(demo_copy, monkeypatch, impact="true")
    at.selectbox(key="region").select(region).run()
    spec = next(c.proto.spec for c in at.get("plotly_chart") if "by channel" in c.proto.spec)

    fig = json.loads(spec)
    k = tables["complaints"].assign(cell=lambda d: cells.parent(d["cell"].to_numpy(), cells.REGION_RES))
    k = k.merge(tables["region_cells"][tables["region_cells"]["region_id"] == region], on="cell")
    k = k[k["received_at"] < data_date(tables) + pd.Timedelta(days=1)]
    want = k.groupby([k["received_at"].dt.to_period("M"), "channel"]).size()
    for trace in fig["data"]:
        channel = trace["name"].replace(" ", "_")
        got = {pd.Period(x[:7], "M"): n for x, n in zip(trace["x"], trace["y"], strict=True) if n}
        assert got == {m: n for (m, c), n in want.items() if c == channel}, channel


def test_bad_link_falls_back_to_the_network(demo_copy, tables, monkeypatch):
    at = app(demo_copy, monkeypatch, region="Atlantis", level="galaxy", as_of="2099-01-01")
    notes = [w.value for w in at.warning]
    assert any("Atlantis" in n for n in notes) and any("galaxy" in n for n in notes)
    assert any("2099-01-01" in n for n in notes) and at.date_input(key="as_of").value == data_date(tables).date()
    assert at.selectbox(key="region").value == "ALL"
    check_headline(at, expected(tables, data_date(tables), None))


def test_a_region_named_in_the_link(demo_copy, tables, monkeypatch):
    row = tables["regions"].sort_values("region_id").iloc[2]
    at = app(demo_copy, monkeypatch, region=row["name"])
    assert not at.warning and at.selectbox(key="region").value == row["region_id"]
    check_headline(at, expected(tables, data_date(tables), row["region_id"]))


def test_every_region_on_the_map(demo_copy, tables, monkeypatch):

    at = app(demo_copy, monkeypatch)
    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    props = {f["properties"]["region_id"]: f["properties"] for f in deck["layers"][0]["data"]["features"]}
    assert set(props) == set(tables["regions"]["region_id"])
    for rid, p in props.items():
        assert p["pct"] == f"{expected(tables, data_date(tables), rid)['pct']:.1f}%"
    assert np.isfinite([c for p in props.values() for c in p["fill"]]).all()


def test_a_region_without_upgrades_shows_no_percentage(tiny_db):
    """Ostsee (lon 9.0-9.5 in the tiny world) with every upgrade of its sites removed: '-' and no error."""
    with duckdb.connect(str(tiny_db)) as con:
        con.execute("DELETE FROM upgrades WHERE site_id IN (SELECT site_id FROM sites WHERE lon > 9.0)")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["region"] = "Ostsee"
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="region").value == "OS"
    shown = metrics(at)
    assert shown["Upgrades on air"] == ("-", "")
    assert shown["Late"][0] == "0" and shown["Forecast completion"][0] == "-"


def values(v) -> list:
    """A trace's values from Plotly's JSON: a list, or a typed array ({"dtype", "bdata": base64})."""
    if isinstance(v, dict):
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def test_burn_up_counts_plan_baseline_and_on_air_from_the_tables(demo_copy, tables, monkeypatch):
    """The region's burn-up traces at every weekly point: upgrades planned (current plan and the first
    imported version of it) and on air by then, counted here from the tables and upgrades_versions."""
    at = app(demo_copy, monkeypatch)
    region = tables["regions"].sort_values("region_id")["region_id"].iloc[2]
    at.selectbox(key="region").select(region).run()
    at.segmented_control(key="burnup").set_value("count").run()
    spec = json.loads(next(c for c in at.get("plotly_chart") if "plan and baseline" in c.proto.spec).proto.spec)
    traces = {t["name"]: {"x": values(t["x"]), "y": [int(v) for v in values(t["y"])]} for t in spec["data"]
              if t["name"].split(": ")[-1] in ("plan", "baseline", "on air")}
    name = tables["regions"].set_index("region_id").loc[region, "name"]
    u = tables["live"][tables["live"]["region_id"] == region]
    v = tables["versions"].sort_values("version_import_id")
    first = v.drop_duplicates("upgrade_id")  # each upgrade's first imported version: the baseline
    baseline = u["upgrade_id"].map(first.set_index("upgrade_id")["on_air_planned"]).fillna(u["on_air_planned"])
    baseline = pd.to_datetime(baseline)
    plan, base = traces[f"{name}: plan"], traces[f"{name}: baseline"]
    dates = pd.to_datetime(plan["x"])
    assert len(dates) > 50 and list(pd.to_datetime(base["x"])) == list(dates)
    assert plan["y"] == [int((u["on_air_planned"] <= d).sum()) for d in dates]
    assert base["y"] == [int((baseline <= d).sum()) for d in dates]
    on_air = traces[f"{name}: on air"]
    got = dict(zip(pd.to_datetime(on_air["x"]), on_air["y"], strict=True))
    assert all(v == int((u["on_air_actual"] <= d).sum()) for d, v in got.items())


def test_hotspots_without_plan_per_region(demo_copy, tables, monkeypatch):
    """The "Hotspots, no plan" column: hot cells of either kind (Gi* and relief from the engine, whose rules
    tests/test_hotspots.py and tests/test_linkage.py check against PySAL and by hand) with no upgrade planned,
    counted per region here from the region cells."""
    from lib.engine import asof, hotspots, linkage

    day = data_date(tables).date()
    con = duckdb.connect(str(demo_copy), read_only=True)
    try:
        hot = set()
        for kind in ("capacity", "coverage"):
            h = hotspots.hotspots(con, 8, *asof.window(day, 90), kind)
            hot |= set(h.loc[h["hot"], "cell"])
        rel = linkage.relief(con, pd.DataFrame({"cell": sorted(hot)}), 8, day)
    finally:
        con.close()
    no_plan = rel.loc[rel["status"] == "no_upgrade_planned", ["cell"]]
    per = no_plan.merge(tables["region_cells"], on="cell").groupby("region_id").size()
    at = app(demo_copy, monkeypatch)
    table = next(d.value for d in at.dataframe if "pct_on_air" in d.value.columns).set_index("region_id")
    assert table.loc["ALL", "open_no_plan"] == len(no_plan) > 0  # the demo has pain with no plan
    for rid in tables["regions"]["region_id"]:
        assert table.loc[rid, "open_no_plan"] == per.get(rid, 0), rid
    assert metrics(at)["Hotspots, no plan"][0] == f"{len(no_plan):,}"


def test_the_burn_up_opens_in_percent_of_each_plan(demo_copy, tables, monkeypatch):
    at = app(demo_copy, monkeypatch)
    regions = tables["regions"].sort_values("region_id")["region_id"].iloc[:2].tolist()
    at.multiselect(key="compare_ALL").set_value(["ALL", *regions]).run()
    spec = json.loads(next(c for c in at.get("plotly_chart") if "in percent of each plan" in c.proto.spec).proto.spec)
    last = {t["name"]: values(t["y"])[-1] for t in spec["data"] if t["name"].endswith(": on air")}
    names = tables["regions"].set_index("region_id")["name"]
    day = data_date(tables)
    for rid in regions:  # each region's line ends at its own percent on air, the figure its headline shows
        assert last[f"{names[rid]}: on air"] == pytest.approx(expected(tables, day, rid)["pct"])
    assert last[f"{rollout.NETWORK_NAME}: on air"] == pytest.approx(expected(tables, day, None)["pct"])


def test_another_level_drops_the_region_from_the_view_and_the_link(demo_copy, tables, monkeypatch):
    row = tables["regions"].sort_values("region_id").iloc[2]
    at = app(demo_copy, monkeypatch, region=row["name"])
    assert at.selectbox(key="region").value == row["region_id"] and at.query_params["region"] == row["name"]
    other = next(o for o in at.segmented_control(key="level").options if o != at.segmented_control(key="level").value)
    at.segmented_control(key="level").set_value(other).run()
    assert not at.exception and at.selectbox(key="region").value == rollout.ALL
    assert "region" not in at.query_params


def test_a_long_late_list_shows_its_most_late_rows_and_says_so(demo_copy, tables, monkeypatch):
    monkeypatch.setattr(rollout, "LATE_SHOWN", 7)
    at = app(demo_copy, monkeypatch)  # the whole network: far more than 7 late or blocked upgrades
    exp = expected(tables, data_date(tables), None)["late_list"]
    assert len(exp) > 7
    late = next(d.value for d in at.dataframe if "days_late" in d.value.columns)
    assert len(late) == 7
    assert sorted(late["days_late"].astype(int), reverse=True) == sorted(exp.values(), reverse=True)[:7]
    assert f"Late and blocked upgrades: {len(exp):,}" in [s.value for s in at.subheader]  # the count is of all
    assert any("the 7 most late are shown here, every one is in the exports below" in c.value for c in at.caption)


def test_a_late_list_of_exactly_the_rows_shown_is_shown_whole(demo_copy, tables, monkeypatch):
    exp = expected(tables, data_date(tables), None)["late_list"]
    monkeypatch.setattr(rollout, "LATE_SHOWN", len(exp))
    at = app(demo_copy, monkeypatch)
    late = next(d.value for d in at.dataframe if "days_late" in d.value.columns)
    assert len(late) == len(exp)
    assert not any("most late are shown here" in c.value for c in at.caption)


@pytest.mark.parametrize("offset", [0, 1, 2, 31])
def test_channel_mix_on_month_boundaries_matches_a_plain_count(demo_copy, tables, offset):
    """The months before the as-of month are counted once per store content and the as-of month anew: on the
    first and the last day of a month, and the day after, each equals a plain count of the complaints."""
    last = data_date(tables)
    first_of_month = (last - pd.DateOffset(months=2)).replace(day=1)
    days = [first_of_month - pd.Timedelta(days=1), first_of_month, first_of_month + pd.Timedelta(days=offset)]
    con = store.connect(demo_copy, read_only=True)
    try:
        region = tables["regions"].sort_values("region_id")["region_id"].iloc[0]
        k = tables["complaints"].assign(cell=lambda d: cells.parent(d["cell"].to_numpy(), cells.REGION_RES))
        inside = k.merge(tables["region_cells"][tables["region_cells"]["region_id"] == region], on="cell")
        for day in days:
            for rid, frame in (("ALL", tables["complaints"]), (region, inside)):
                mix = rollout.channel_mix(con, "state", rid, day.date())
                got = {(m.to_period("M"), c): n for m, c, n in mix.itertuples(index=False) if n}
                upto = frame[frame["received_at"] < day + pd.Timedelta(days=1)]
                want = upto.groupby([upto["received_at"].dt.to_period("M"), "channel"]).size()
                assert got == want.to_dict(), (rid, day)
    finally:
        con.close()
