"""Ingest: every bad-input case rejects the right row with the right field and reason."""

from __future__ import annotations

import io
import json

import h3
import pandas as pd
import pytest

from lib import cells, store
from lib.errors import ImportRefused
from lib.ingest import schema
from tests import worlds

SITE_HEADER = "site_id,name,lat,lon,site_type\n"
UPGRADE_HEADER = ("upgrade_id,site_id,kind,permit_planned,permit_actual,installed_planned,installed_actual,"
                  "on_air_planned,on_air_actual,status,capacity_before_mbps\n")
COMPLAINT_HEADER = "complaint_id,received_at,lat,lon,cell,category,channel\n"
GOOD_UPGRADE = "U0,S1,hardware_swap,2025-01-01,2025-01-05,2025-02-01,2025-02-03,2025-03-01,2025-03-02,,100\n"
GOOD_COMPLAINT = "K0,2025-01-01 10:00,51.2,9.2,,slow_data,hotline\n"


@pytest.fixture
def con(world_con):
    """A store holding the tiny world (tests/worlds.py)."""
    return world_con


# (table, header, bad row, field, words in the reason)
BAD_ROWS = [
    ("sites", SITE_HEADER, "X1,Paris,48.85,2.35,macro", "lon", "outside Germany"),
    ("sites", SITE_HEADER, "X1,North Sea,56.5,8.0,macro", "lat", "outside Germany"),
    ("sites", SITE_HEADER, "X1,bad,abc,9.2,macro", "lat", "not a number"),
    ("sites", SITE_HEADER, "X1,bad,,9.2,macro", "lat", "required value missing"),
    ("sites", SITE_HEADER, ",noid,51.2,9.2,macro", "site_id", "required value missing"),
    ("sites", SITE_HEADER, "X1,bad,51.2,9.2,tower", "site_type", "unknown site_type"),
    ("sites", SITE_HEADER, "S9,dup,51.2,9.2,macro\nS9,dup again,51.2,9.2,macro", "site_id",
     "duplicate site_id (first at row 3)"),
    ("upgrades", UPGRADE_HEADER, "U9,S77,5g,,,,,2025-03-01,,,", "site_id", "unknown site_id"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,2025-13-45,,,", "on_air_planned", "not a valid date"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,31.02.2025,,,", "on_air_planned", "not a valid date"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,teleport,,,,,2025-03-01,,,", "kind", "unknown kind"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,2025-05-01,,2025-04-01,,2025-06-01,,,", "installed_planned",
     "before permit_planned (2025-05-01)"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,2025-01-10,,2025-01-05,2025-06-01,2025-01-20,,", "installed_actual",
     "before permit_actual (2025-01-10)"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,2025-01-10,,,2025-06-01,2025-01-01,,", "on_air_actual",
     "before permit_actual"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,2025-06-01,2099-01-01,,", "on_air_actual", "lies in the future"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,2025-06-01,,on_air,", "status", "status on_air but on_air_actual"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,2025-06-01,,,-5", "capacity_before_mbps", "must be at least 0"),
    ("upgrades", UPGRADE_HEADER, "U9,S1,5g,,,,,,,,", "on_air_planned", "required value missing"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,,,,slow_data,hotline", "lat", "no location"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,51.2,,,slow_data,hotline", "lon", "together"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,,,zzzz,slow_data,hotline", "cell", "not a valid H3 cell"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,,,871f1d489ffffff,slow_data,hotline", "cell", "too coarse"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,51.2,9.2,,aliens,hotline", "category", "unknown category"),
    ("complaints", COMPLAINT_HEADER, "K9,2025-01-01,51.2,9.2,,slow_data,pigeon", "channel", "unknown channel"),
    ("complaints", COMPLAINT_HEADER, "K9,yesterday,51.2,9.2,,slow_data,hotline", "received_at", "not a valid date"),
    ("complaints", COMPLAINT_HEADER, "K9,2031-01-01,51.2,9.2,,slow_data,hotline", "received_at", "in the future"),
]


@pytest.mark.parametrize(("table", "header", "bad", "field", "reason"), BAD_ROWS,
                         ids=[f"{b[0]}-{b[3]}-{b[4][:20]}" for b in BAD_ROWS])
def test_bad_row_is_rejected_and_kept(con, table, header, bad, field, reason):
    """The bad row is rejected with row, field and reason; the good row goes in."""
    good = {"sites": "G1,good,51.2,9.2,macro\n", "upgrades": GOOD_UPGRADE, "complaints": GOOD_COMPLAINT}[table]
    data = (header + good + bad + "\n").encode()
    before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    res = store.import_file(con, data, table=table, file_name=f"{table}.csv")
    assert res.rows_accepted == 1 + (1 if "duplicate" in reason else 0)
    assert res.rows_rejected == 1
    last_row = 2 + len(bad.splitlines())
    hit = res.rejects[(res.rejects["field"] == field) & res.rejects["reason"].str.contains(reason, regex=False)]
    assert len(hit) == 1, res.rejects.to_string()
    assert hit["row"].iloc[0] == last_row
    stored = store.rejected_rows(con, res.import_id)
    assert reason in " ".join(stored["reason"])
    assert json.loads(stored["record"].iloc[0])  # the whole original row is kept
    after = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    assert after == before + res.rows_new


def test_a_row_with_several_faults_is_counted_once_and_lists_each(con):
    data = (COMPLAINT_HEADER + "K9,nope,99,9.2,,aliens,pigeon\n").encode()
    res = store.import_file(con, data, table="complaints", file_name="c.csv")
    assert res.rows_rejected == 1
    assert set(res.rejects["field"]) == {"received_at", "lat", "category", "channel"}


def test_unreadable_row_is_rejected_with_its_text(con):
    data = (SITE_HEADER + "G1,good,51.2,9.2,macro\nG2,too,many,fields,here,x,y\nG3,good,51.3,9.3,macro\n").encode()
    res = store.import_file(con, data, table="sites", file_name="s.csv")
    assert res.rows_accepted == 2 and res.rows_rejected == 1
    assert res.rejects["row"].tolist() == [3]
    assert "wrong number of fields" in res.rejects["reason"].iloc[0]
    assert "too,many" in res.rejects["record"].iloc[0]
    rows = con.execute("SELECT site_id FROM sites WHERE site_id LIKE 'G%' ORDER BY 1").fetchall()
    assert rows == [("G1",), ("G3",)]


# (file name, bytes, words in the message)
REFUSED = [
    ("sites.csv", b"site_id,name\nS1,x\n", "missing required column(s) for sites: lat, lon"),
    ("complaints.csv", b"complaint_id,received_at,category,channel\nK1,2025-01-01,slow_data,app\n",
     "lat and lon, or cell"),
    ("empty.csv", b"", "empty"),
    ("broken.xlsx", b"PK\x03\x04 this is not a workbook", "cannot be read as XLSX"),
    ("broken.parquet", b"PAR1garbage", "cannot be read as PARQUET"),
    ("regions.geojson", b'{"type": "Feature"}', "FeatureCollection"),
    ("what.csv", b"foo,bar\n1,2\n", "cannot tell which table"),
    ("dupe.csv", b"site_id,lat,lat,lon\nS1,1,2,3\n", "duplicate column name"),
]


@pytest.mark.parametrize(("name", "data", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_unreadable_file_is_refused_whole_and_changes_nothing(con, name, data, message):
    before = _snapshot(con)
    with pytest.raises(ImportRefused) as err:
        store.import_file(con, data, file_name=name)
    assert name in str(err.value) and message in str(err.value)
    assert _snapshot(con) == before


def _snapshot(con) -> dict:
    tables = [*schema.TABLES, "import_log", "rejected_rows", "region_cells", "upgrades_versions"]
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}


def test_columns_match_aliases_case_and_german_values(con):
    data = ("Standort_ID;Breitengrad;Länge;Typ;Technologie;Bemerkung\n"
            "A1;51,2;9,3;Makro;LTE;egal\n").encode("cp1252")
    res = store.import_file(con, data, file_name="standorte.csv")
    assert res.table == "sites" and res.rows_accepted == 1
    assert any("Bemerkung" in w for w in res.warnings)
    assert any("Windows-1252" in w for w in res.warnings)
    row = con.execute("SELECT lat, lon, site_type, technology FROM sites WHERE site_id = 'A1'").fetchall()[0]
    assert row == (51.2, 9.3, "macro", "4G")


def test_every_place_gets_its_h3_cell(con):
    lat, lon, cell = con.execute("SELECT lat, lon, cell FROM sites WHERE site_id = 'S1'").fetchall()[0]
    assert cell == h3.api.basic_int.latlng_to_cell(lat, lon, cells.CELL_RES)
    a_cell, = con.execute("SELECT a_cell FROM transport_links WHERE link_id = 'L1'").fetchall()[0]
    assert a_cell == h3.api.basic_int.latlng_to_cell(51.25, 9.25, 9)


def test_complaint_given_as_cell_gets_its_centre(con):
    fine = h3.latlng_to_cell(51.3, 9.4, 11)  # finer than 9: stored as its resolution-9 parent
    data = (COMPLAINT_HEADER + f"KC,2025-02-01,,,{fine},no_signal,app\n").encode()
    res = store.import_file(con, data, table="complaints", file_name="c.csv")
    assert res.rows_accepted == 1
    cell, lat, lon = con.execute("SELECT cell, lat, lon FROM complaints WHERE complaint_id = 'KC'").fetchall()[0]
    assert cell == h3.api.basic_int.cell_to_parent(h3.str_to_int(fine), 9)
    assert (lat, lon) == pytest.approx(h3.api.basic_int.cell_to_latlng(cell))


def test_regions_become_cell_sets(con):
    counts = dict(con.execute("SELECT region_id, count(*) FROM region_cells GROUP BY 1").fetchall())
    expected = {rid: len(h3.geo_to_cells({"type": "Polygon", "coordinates": [ring]}, cells.REGION_RES))
                for rid, ring in (("W", worlds.WEST), ("E", worlds.EAST))}
    assert counts == expected
    # no cell in both regions, and each site falls in the region whose square holds it
    both = con.execute("SELECT count(*) FROM (SELECT cell FROM region_cells GROUP BY cell HAVING count(*) > 1)")
    assert both.fetchall()[0][0] == 0
    sql = (f"SELECT s.site_id, r.region_id FROM sites s JOIN region_cells r "
           f"ON r.cell = {cells.parent_sql('s.cell', cells.REGION_RES)} ORDER BY 1")
    assert con.execute(sql).fetchall() == [("S1", "W"), ("S2", "W"), ("S3", "E")]


def test_region_from_wkt_in_a_table(con):
    data = "region_id;name;level;wkt\nR9;Box;cluster;POLYGON((9.1 51.1, 9.2 51.1, 9.2 51.2, 9.1 51.2, 9.1 51.1))\n"
    res = store.import_file(con, data.encode(), table="regions", file_name="r.csv")
    assert res.rows_accepted == 1
    n = con.execute("SELECT count(*) FROM region_cells WHERE region_id = 'R9'").fetchall()[0][0]
    assert n > 0


def test_region_with_a_line_instead_of_a_polygon_is_rejected(con):
    data = "region_id;name;level;wkt\nR8;Line;cluster;LINESTRING(9.1 51.1, 9.2 51.2)\n"
    res = store.import_file(con, data.encode(), table="regions", file_name="r.csv")
    assert res.rows_rejected == 1 and "not a Polygon" in res.rejects["reason"].iloc[0]


def test_link_from_geojson_linestring(con):
    line = {"type": "LineString", "coordinates": [[9.1, 51.1], [9.15, 51.2], [9.3, 51.3]]}
    fc = {"type": "FeatureCollection",
          "features": [{"type": "Feature", "properties": {"link_id": "LG", "kind": "Glasfaser"}, "geometry": line}]}
    res = store.import_file(con, json.dumps(fc).encode(), file_name="links.geojson")
    assert res.table == "transport_links" and res.rows_accepted == 1
    row = con.execute("SELECT kind, a_lat, a_lon, b_lat, b_lon FROM transport_links WHERE link_id='LG'").fetchall()
    assert row == [("fibre", 51.1, 9.1, 51.3, 9.3)]


def test_status_is_derived_from_milestones(con):
    got = dict(con.execute("SELECT upgrade_id, status FROM upgrades").fetchall())
    assert got == {"U1": "on_air", "U2": "planned", "U3": "on_air"}


def test_excel_and_parquet_give_the_same_records_as_csv(tmp_path):
    frame = pd.read_csv(io.StringIO(worlds.COMPLAINTS_CSV))
    frame["received_at"] = ["2025-01-05 10:00", "2025-01-06 11:30", "2025-02-05 08:15"]
    xlsx, pq = io.BytesIO(), io.BytesIO()
    typed = frame.assign(received_at=pd.to_datetime(frame["received_at"]))
    typed.to_excel(xlsx, index=False)
    typed.to_parquet(pq, index=False)
    out = {}
    for name, data in (("c.csv", worlds.COMPLAINTS_CSV.encode()), ("c.xlsx", xlsx.getvalue()),
                       ("c.parquet", pq.getvalue())):
        c = store.connect(tmp_path / f"{name}.duckdb")
        res = store.import_file(c, data, table="complaints", file_name=name)
        assert res.rows_accepted == 3, res.rejects
        out[name] = c.execute("SELECT complaint_id, received_at, lat, lon, cell, category, channel, text "
                              "FROM complaints ORDER BY 1").fetchall()
    assert out["c.csv"] == out["c.xlsx"] == out["c.parquet"]


def test_schema_drives_the_data_formats_document():
    text = (store.ROOT / "docs" / "data-formats.md").read_text(encoding="utf-8")
    assert text == schema.document(), "docs/data-formats.md is stale: run make docs"
    for name, table in schema.TABLES.items():
        assert f"\n## {name} (key `{table.key}`)\n" in text
