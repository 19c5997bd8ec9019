"""One vocabulary: every upgrade not cancelled is on air, late, due or planned ahead, and the pages, the exports, the
figures command and the public snapshot count each the same way; on the demo store, also on a day when some
upgrades are due exactly then."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pytest

from lib import cells, export, store
from lib.public import snapshot
from lib.views import figures, overview, publish, rollout


@pytest.fixture(scope="module")
def con(demo_store):
    c = store.connect(demo_store, read_only=True)
    yield c
    c.close()


def _sql(con, query: str, params=()) -> list[tuple]:
    with con.cursor() as cur:
        return cur.execute(query, list(params)).fetchall()


def _days(con) -> list[dt.date]:
    """The data date, and a day on which at least one upgrade not on air is due."""
    data_day = figures.data_date(con)
    due_day = _sql(con, "SELECT on_air_planned FROM upgrades WHERE coalesce(status, '') <> 'cancelled' "
                        "AND (on_air_actual IS NULL OR on_air_actual > on_air_planned) AND on_air_planned <= ? "
                        "ORDER BY on_air_planned DESC LIMIT 1", [data_day])[0][0]
    return [data_day, due_day]


def _by_hand(con, day: dt.date) -> pd.DataFrame:
    """Per upgrade not cancelled: its one state as of `day`, by SQL over the upgrades table alone."""
    return pd.DataFrame(_sql(con, """
        SELECT upgrade_id, CASE WHEN on_air_actual <= ? THEN 'on_air' WHEN on_air_planned < ? THEN 'late'
                                WHEN on_air_planned = ? THEN 'due' ELSE 'ahead' END
        FROM upgrades WHERE coalesce(status, '') <> 'cancelled'""", [day, day, day]), columns=["upgrade_id", "state"])


@pytest.mark.parametrize("which", [0, 1], ids=["data date", "a day with upgrades due"])
def test_every_upgrade_is_counted_once_and_alike_everywhere(con, which):
    day = _days(con)[which]
    states = _by_hand(con, day)["state"].value_counts().to_dict()
    total = sum(states.values())
    if which == 1:
        assert states.get("due", 0) > 0  # the boundary: planned for exactly the day of the figures
    table = rollout.region_table(con, "state", day).set_index("region_id")
    net = table.loc["ALL"]
    assert (net["total"], net["on_air"], net["late"], net["due"]) == (
        total, states.get("on_air", 0), states.get("late", 0), states.get("due", 0))
    # the Overview's tile: upgrades not cancelled
    counts = overview.summary(con).counts
    assert counts["upgrades"] - counts[overview.CANCELLED] == total
    # the figures command
    fig = figures.headline(con, day, with_impact=False)["upgrades"]
    assert (fig["total"], fig["on_air"], fig["late"], fig["due"], fig["ahead"]) == (
        total, states.get("on_air", 0), states.get("late", 0), states.get("due", 0), states.get("ahead", 0))
    # the public snapshot: on air + late + every planned quarter is every upgrade (those due included)
    doc = publish.build(con, k=10, as_of=day)
    pub = {r["region_id"]: r for r in doc["tables"]["regions"]}
    planned = pd.DataFrame(doc["tables"]["planned"]).groupby("region_id")["upgrades"].sum()
    both = pd.concat([table, *(rollout.region_table(con, level, day).set_index("region_id").drop(index="ALL")
                               for level in snapshot.LEVELS if level != "state")])
    assert set(pub) == set(both.index) - {rollout.OUTSIDE}  # every published level: states, districts, city areas
    for rid, row in pub.items():
        assert row["upgrades_on_air"] + row["upgrades_late"] + planned.get(rid, 0) == row["upgrades_total"], rid
        assert (row["upgrades_total"], row["upgrades_on_air"], row["upgrades_late"]) == (
            both.loc[rid, "total"], both.loc[rid, "on_air"], both.loc[rid, "late"]), rid
    # the Rollout's CSV download holds the same figures
    sheet = rollout.export_sheets(table.reset_index(), rollout.late_list(con, "state", day), day)["regions"]
    back = pd.read_csv(io.BytesIO(export.csv_bytes(sheet)), dtype={"region_id": str}).set_index("region_id")
    for col in ("total", "on_air", "late", "due", "blocked"):
        assert back[col].to_dict() == table[col].to_dict(), col
    # the late and blocked list: its late rows are the headline's late, its blocked rows the blocked
    late = rollout.late_list(con, "state", day)
    late = late.drop_duplicates("upgrade_id")
    assert (late["problem"] != rollout.PROBLEM_BLOCKED).sum() == net["late"]
    assert (late["problem"] != rollout.PROBLEM_LATE).sum() == net["blocked"]
    assert (late.loc[late["problem"] == rollout.PROBLEM_BLOCKED, "days_late"] == 0).all()


def test_upgrades_outside_every_state_have_their_own_row(demo_db, tmp_path):
    path = tmp_path / "outside.duckdb"
    path.write_bytes(demo_db.read_bytes())
    c = store.connect(path)
    try:
        # move one site with upgrades out of every state: its cell becomes one no region holds
        site, n = c.execute("SELECT site_id, count(*) FROM upgrades WHERE coalesce(status, '') <> 'cancelled' "
                            "GROUP BY site_id ORDER BY site_id LIMIT 1").fetchall()[0]
        far = int(cells.latlng_to_cells([54.9], [5.9])[0])  # North Sea corner of the country box
        c.execute("UPDATE sites SET cell = ? WHERE site_id = ?", [far, site])
        in_states = c.execute(f"""
            SELECT count(DISTINCT u.upgrade_id) FROM upgrades u JOIN sites s USING (site_id)
            JOIN region_cells rc ON rc.cell = {cells.parent_sql('s.cell', cells.REGION_RES)}
            JOIN regions r ON r.region_id = rc.region_id AND r.level = 'state'
            WHERE coalesce(u.status, '') <> 'cancelled'""").fetchall()[0][0]
        total = c.execute("SELECT count(*) FROM upgrades WHERE coalesce(status, '') <> 'cancelled'").fetchall()[0][0]
        table = rollout.region_table(c, "state", figures.data_date(c)).set_index("region_id")
        assert table.loc[rollout.OUTSIDE, "total"] == total - in_states >= n
        assert table.loc[rollout.OUTSIDE, "name"] == "Outside every state"
        assert table.loc["ALL", "total"] == total
    finally:
        c.close()


def test_no_row_for_outside_when_every_upgrade_lies_in_a_state(con):
    table = rollout.region_table(con, "state", figures.data_date(con))
    outside = _sql(con, f"""
        SELECT count(*) FROM upgrades u JOIN sites s USING (site_id)
        WHERE coalesce(u.status, '') <> 'cancelled' AND NOT EXISTS (
            SELECT 1 FROM region_cells rc JOIN regions r USING (region_id)
            WHERE r.level = 'state' AND rc.cell = {cells.parent_sql('s.cell', cells.REGION_RES)})""")[0][0]
    assert (rollout.OUTSIDE in set(table["region_id"])) == (outside > 0)
