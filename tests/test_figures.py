"""`python -m lib.cli figures`: the headline figures in one place, reconciled with the Rollout page's table, the
Overview, the public snapshot and the relief of the hot cells, on the demo store."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from lib import cells, cli, store
from lib.engine import asof, hotspots, linkage
from lib.views import figures, overview, publish, rollout


@pytest.fixture(scope="module")
def con(demo_store):
    c = store.connect(demo_store, read_only=True)
    yield c
    c.close()


def test_the_cli_prints_text_and_json(demo_db, capsys):
    assert cli.main(["--db", str(demo_db), "figures", "--no-impact"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Whole network (ALL), as of ") and "upgrades on air" in out and "forecast completion" in out
    assert cli.main(["--db", str(demo_db), "figures", "--json", "--region", "11", "--as-of", "2026-06-30"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["region_id"], doc["as_of"], doc["name"]) == ("11", "2026-06-30", "Berlin")
    assert set(doc) == {"as_of", "region_id", "name", "level", "upgrades", "open_hotspots_no_plan", "hotspots",
                        "forecast", "impact"}


def test_an_unknown_region_is_refused_by_name(demo_db, capsys):
    assert cli.main(["--db", str(demo_db), "figures", "--region", "XX", "--no-impact"]) == 2
    err = capsys.readouterr().err
    assert "unknown region 'XX'" in err and "ALL" in err


def test_figures_equal_the_rollout_table_and_the_overview(con):
    day = figures.data_date(con)
    table = rollout.region_table(con, "state", day).set_index("region_id")
    per_region = overview.region_table(con, "state").set_index("region_id")
    for rid in ["ALL", *per_region.index[:5]]:
        fig = figures.headline(con, region_id=rid, with_impact=False)
        row = table.loc[rid]
        assert fig["as_of"] == day.isoformat()
        shown = {k: v for k, v in fig["upgrades"].items() if k != "ahead"}
        assert shown == {k: pytest.approx(row[k]) for k in shown}
        assert fig["upgrades"]["ahead"] == row["total"] - row["on_air"] - row["late"] - row["due"] >= 0
        assert fig["open_hotspots_no_plan"] == row["open_no_plan"]
        if rid != "ALL":  # the Overview counts every actual date, all of which lie on or before the data date
            assert fig["upgrades"]["pct_on_air"] == pytest.approx(per_region.loc[rid, "pct_on_air"])


def test_figures_equal_the_public_snapshot(con):
    doc = publish.build(con, k=10)
    rows = {r["region_id"]: r for r in doc["tables"]["regions"]}
    for rid in ("ALL", "11", "09"):
        u = figures.headline(con, region_id=rid, with_impact=False)["upgrades"]
        pub = rows[rid]
        assert (u["total"], u["on_air"], u["late"]) == (pub["upgrades_total"], pub["upgrades_on_air"],
                                                         pub["upgrades_late"])
        assert round(u["pct_on_air"], 1) == pub["pct_on_air"]
        f = figures.headline(con, region_id=rid, with_impact=False)["forecast"]
        assert (f["date"], f["earliest_90"], f["latest_90"]) == (pub["forecast"], pub["forecast_earliest"],
                                                                 pub["forecast_latest"])
        assert pub["forecast"] is not None


def test_hotspots_by_status_are_the_relief_of_the_hot_cells(con):
    day = figures.data_date(con)
    got = figures.hotspot_relief(con, day)
    hot = hotspots.hotspots(con, cells.REGION_RES, *asof.window(day, 90), "capacity")
    hot = hot.loc[hot["hot"]]
    rel = linkage.relief(con, hot[["cell"]], cells.REGION_RES, day).merge(hot[["cell", "n"]], on="cell")
    assert got["hot_cells"] == len(hot) == sum(got["by_status"].values()) > 0
    assert got["by_status"] == {s: int((rel["status"] == s).sum()) for s in linkage.STATUSES}
    assert got["relieved_share_mean"] == pytest.approx(rel["relief_share"].mean())
    assert got["relieved_share_of_complaints"] == pytest.approx((rel["relief_share"] * rel["n"]).sum()
                                                                / rel["n"].sum())


def test_a_region_counts_only_its_own_hot_cells(con):
    day = figures.data_date(con)
    whole = figures.hotspot_relief(con, day)
    states = pd.DataFrame(con.execute("SELECT region_id FROM regions WHERE level = 'state'").fetchall())[0]
    parts = [figures.hotspot_relief(con, day, rid)["hot_cells"] for rid in states]
    assert 0 < max(parts) <= whole["hot_cells"] <= sum(parts)  # a cell on a border lies in two states


def test_the_impact_is_the_rollout_pages(con):
    day = figures.data_date(con) - dt.timedelta(days=30)
    fig = figures.headline(con, day)
    imp = rollout.impact_table(con, "state", day)
    imp = imp[imp["region_id"] == "ALL"].set_index("kind")
    assert set(fig["impact"]) == {"capacity", "coverage"}
    for kind, got in fig["impact"].items():
        assert got["n_treated"] == imp.loc[kind, "n_treated"]
        assert got["pct"] == (None if pd.isna(imp.loc[kind, "pct"]) else pytest.approx(imp.loc[kind, "pct"]))
