"""The public page through AppTest (German and English, URL parameters, place search, public mode), its helpers,
the Data page's publish button and note form; figures checked against plain SQL over the store."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import shutil
import zipfile

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib import store
from lib.public import api, files, i18n, regionview, snapshot
from lib.views import publish

APP = "../dashboard.py"


@pytest.fixture(scope="module")
def demo_snapshot(demo_db, tmp_path_factory) -> tuple:
    """(snapshot path, store path) of the demo store published once."""
    folder = tmp_path_factory.mktemp("snap")
    con = store.connect(demo_db, read_only=True)
    try:
        path = publish.publish(con, folder / "snapshot.json").path
    finally:
        con.close()
    return path, demo_db


@pytest.fixture
def public_env(demo_snapshot, monkeypatch, tmp_path):
    """Public mode: the snapshot set, the store pointing at a file that does not exist."""
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(demo_snapshot[0]))
    monkeypatch.setenv(snapshot.PUBLIC_ENV, "1")
    missing = tmp_path / "none" / "store.duckdb"
    monkeypatch.setenv(store.DB_ENV, str(missing))
    return missing


def as_read(markdown: str) -> str:
    """Markdown as a reader sees it (backslash escapes resolved)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def public_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pct_on_air(db, as_of: str, region_id: str | None = None) -> float:
    """Percent of not-cancelled upgrades on air by `as_of` (the network, or one region via its cells), in pandas."""
    import h3

    with duckdb.connect(str(db), read_only=True) as con:
        ups = con.execute("SELECT u.on_air_actual, s.lat, s.lon FROM upgrades u JOIN sites s USING (site_id) "
                          "WHERE coalesce(u.status, '') <> 'cancelled'").df()
        rc = con.execute("SELECT cell FROM region_cells WHERE region_id = ?", [region_id]).df()
    if region_id:
        mine = {h3.int_to_str(int(c)) for c in rc["cell"]}
        cells_ = [h3.cell_to_parent(h3.latlng_to_cell(a, b, 9), 8) for a, b in zip(ups["lat"], ups["lon"], strict=True)]
        ups = ups[[c in mine for c in cells_]]
    done = (pd.to_datetime(ups["on_air_actual"]) <= pd.Timestamp(as_of)).sum()
    return round(100 * done / len(ups), 1)


def test_public_mode_shows_only_the_public_page_in_german(public_env, demo_snapshot):
    at = public_app()
    assert [t.value for t in at.title] == ["Netzausbau in Ihrer Region"]
    want = pct_on_air(demo_snapshot[1], "2026-11-01")
    assert at.metric[0].value == f"{want:.1f} %".replace(".", ",")
    assert any(c.value.startswith("Datenstand 01.11.2026") for c in at.caption)
    assert not any("Store:" in c.value for c in at.sidebar.caption)
    assert len(at.get("deck_gl_json_chart")) == 1
    assert not at.get("download_button")  # the open-data files are links to the endpoint, not media files
    links = at.markdown[-1].value
    assert [link for link in files.FILES if f"]({files.url(link)})" in links] == list(files.FILES)
    assert not public_env.exists() and not public_env.parent.exists()


def test_english_and_a_region_from_the_url(public_env, demo_snapshot):
    at = public_app(lang="en", region="C-BER")
    assert [t.value for t in at.title] == ["Network expansion in your region"]
    assert at.selectbox(key="region_pick").value == "C-BER"
    assert at.metric[0].value == f"{pct_on_air(demo_snapshot[1], '2026-11-01', 'C-BER'):.1f} %"
    spec = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    assert [layer["id"] for layer in spec["layers"]] == ["outlines", "region", "areas", "towns"]
    assert spec["layers"][2]["@@type"] == "H3HexagonLayer" and spec["initialViewState"]["zoom"] >= regionview.HEX_ZOOM
    shown = {h["cell"] for h in spec["layers"][2]["data"]}
    doc = json.loads(demo_snapshot[0].read_bytes())
    assert shown == {a["cell"] for a in doc["tables"]["complaint_areas"] if "C-BER" in a["region_ids"]} != set()
    texts = [as_read(m.value) for m in at.markdown if "Notes from the operator" in m.value]
    assert len(texts) == 1  # the trend's caption, the notes and the open data's heading: one element
    shown = texts[0].split("\n\n")
    assert shown[:2] == [":small[Rounded to tens; months with fewer than 10 complaints are left empty.]",
                         "### Notes from the operator"]
    # the English note only (the German one is on the German page): its heading, then its text
    assert shown[2:4] == [":small[2026-10-15 · Berlin (city area)]",
                          "Berlin: new-generation hardware is being installed at sites in the city; "
                          "the transport network is expanded section by section."]
    assert shown[4:] == ["### Open data", ":small[The whole published snapshot, free to reuse. Also as JSON at "
                                          "`/api/public/snapshot.json`.]",
                         "[CSV (ZIP)](/api/public/files/netzausbau-open-data.zip) · "
                         "[GeoJSON](/api/public/files/netzausbau-areas.geojson) · "
                         "[JSON](/api/public/files/netzausbau-snapshot.json)"]


def test_notes_newest_first_in_the_page_language_else_all():
    doc = {"tables": {n: [] for n in snapshot.ALLOWLIST}, "data_as_of": "2026-01-01", "k": 10, "round_base": 10}
    doc["tables"]["regions"] = [
        {"region_id": "S", "name": "Land", "level": "state", "parent_id": None, "upgrades_total": 0,
         "upgrades_on_air": 0, "upgrades_late": 0, "pct_on_air": None},
        {"region_id": "C", "name": "Stadt", "level": "cluster", "parent_id": "S", "upgrades_total": 0,
         "upgrades_on_air": 0, "upgrades_late": 0, "pct_on_air": None}]
    doc["tables"]["notes"] = [
        {"note_id": "a", "region_id": "S", "published_on": "2026-01-01", "text": "alt", "language": "de"},
        {"note_id": "b", "region_id": "C", "published_on": "2026-03-01", "text": "neu", "language": "de"},
        {"note_id": "c", "region_id": "C", "published_on": "2026-02-01", "text": "mid", "language": "en"}]
    p = regionview.prepare(snapshot.Snapshot(doc, b""))
    assert regionview.notes(p, "S", "de")["note_id"].tolist() == ["b", "a"]  # the state shows its city's notes
    assert regionview.notes(p, "S", "en")["note_id"].tolist() == ["c"]
    assert regionview.notes(p, "C", "de")["note_id"].tolist() == ["b"]


def test_bad_url_values_fall_back_with_a_note(public_env):
    at = public_app(lang="xx", region="nowhere")
    assert [t.value for t in at.title] == ["Netzausbau in Ihrer Region"]
    notes = [c.value for c in at.caption if "unbekannten Wert" in c.value]
    assert len(notes) == 2 and "(xx)" in notes[0] and "(nowhere)" in notes[1]
    assert at.selectbox(key="region_pick").value == regionview.NETWORK


def test_values_from_the_link_are_shown_as_written_never_as_markdown(public_env):
    at = public_app(lang="[de](https://evil.example)", region="[Phish](https://evil.example) *x* <b>y</b>")
    notes = [c.value for c in at.caption if "unbekannten Wert" in c.value]
    assert len(notes) == 2
    for note in notes:
        assert "](" not in note and "<b>" not in note and "*x*" not in note  # no link, HTML or emphasis left
    assert "[Phish](https://evil.example) *x* <b>y</b>" in as_read(notes[1]).replace("\u200b", "")


def test_place_search_picks_the_city_area_and_puts_it_into_the_url(public_env):
    at = public_app(lang="en")
    at.selectbox(key="place").set_value("Hamburg").run()
    assert not at.exception
    assert at.selectbox(key="region_pick").value == "C-HAM"
    assert at.query_params["region"] == "C-HAM"
    assert any(as_read(c.value).startswith("Hamburg lies in:") and "Hamburg (city area)" in as_read(c.value)
               for c in at.caption)


def test_places_of_one_name_in_two_states_are_told_apart(public_env):
    at = public_app(lang="en")
    options = at.selectbox(key="place").options
    assert "Münster (Nordrhein-Westfalen)" in options and "Münster (Hessen)" in options and "Münster" not in options
    at.selectbox(key="place").set_value("Münster (Hessen)").run()
    assert not at.exception and at.selectbox(key="region_pick").value.startswith("06-")  # its district in Hessen
    shown = [as_read(c.value) for c in at.caption if "lies in" in as_read(c.value)]
    assert shown and "Nordrhein-Westfalen" not in shown[0] and "Hessen" in shown[0]
    at.selectbox(key="place").set_value("Münster (Nordrhein-Westfalen)").run()
    assert at.selectbox(key="region_pick").value == "C-MST"  # its city area, before its state


def test_the_region_list_holds_the_districts_of_the_chosen_state_only():
    from lib.public import regionview

    regions = pd.DataFrame({
        "region_id": ["ALL", "05", "06", "05-001", "05-002", "06-001", "C-MST", "X-1"],
        "name": ["Deutschland", "NRW", "Hessen", "Raum Köln", "Raum Münster", "Raum Kassel", "Münster", "Lost"],
        "level": ["network", "state", "state", "district", "district", "district", "cluster", "district"],
        "parent_id": [None, None, None, "05", "05", "06", "05", None]}).set_index("region_id", drop=False)
    choices = regionview.region_choices(regions)
    wide = ["ALL", "05", "06", "C-MST"]
    assert choices["ALL"] == tuple(wide)
    assert choices["05"] == choices["05-002"] == choices["C-MST"] == ("ALL", "05", "05-001", "05-002", "06", "C-MST")
    assert choices["06"] == choices["06-001"] == ("ALL", "05", "06", "06-001", "C-MST")
    assert choices["X-1"] == (*wide, "X-1")  # a district of no published state: listed while chosen


def test_a_state_lists_its_districts_and_a_district_link_shows_its_state_s(public_env):
    at = public_app(region="09-001", lang="en")
    box = at.selectbox(key="region_pick")
    assert box.value == "09-001"
    bavarian = [o for o in box.options if o.endswith("(district)")]
    assert len(bavarian) > 20 and "Raum München (district)" in bavarian
    first = box.options.index("Bayern (state)") + 1  # right under their state
    assert box.options[first:first + len(bavarian)] == bavarian
    box.set_value("03").run()  # another state: its districts instead
    box = at.selectbox(key="region_pick")
    assert not at.exception and at.query_params["region"] == "03"
    lower_saxon = [o for o in box.options if o.endswith("(district)")]
    assert lower_saxon and not set(lower_saxon) & set(bavarian)
    assert len(box.options) == 1 + 16 + 17 + len(lower_saxon)  # never every district


def test_a_name_in_one_state_keeps_its_plain_name():
    from lib.public import regionview

    regions = pd.DataFrame({"region_id": ["05", "06", "C-MST", "C-X"], "name": ["NRW", "Hessen", "Münster", "X"],
                            "level": ["state", "state", "cluster", "cluster"],
                            "parent_id": [None, None, "05", None]}).set_index("region_id", drop=False)
    rows = pd.DataFrame({"name": ["Münster", "Münster", "Münster", "Essen", "Essen", "Orphan"],
                         "region_id": ["05", "C-MST", "06", "05", "05", "C-X"]})
    assert regionview._places(rows, regions, {}) == {"Münster (NRW)": ["05", "C-MST"], "Münster (Hessen)": ["06"],
                                                 "Essen": ["05", "05"], "Orphan": ["C-X"]}


def _square(west: float, south: float, side: float = 1.0) -> dict:
    ring = [[west, south], [west + side, south], [west + side, south + side], [west, south + side], [west, south]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}}


def test_places_of_one_name_in_two_districts_of_a_state_are_told_apart_by_district():
    from lib.public import regionview

    regions = pd.DataFrame({"region_id": ["05", "06", "05-001", "05-002", "06-001", "C-CGN"],
                            "name": ["NRW", "Hessen", "Raum Köln", "Raum Essen", "Raum Kassel", "Köln"],
                            "level": ["state", "state", "district", "district", "district", "cluster"],
                            "parent_id": [None, None, "05", "05", "06", "05"]}).set_index("region_id", drop=False)
    rows = pd.DataFrame({"name": ["Mülheim"] * 5 + ["Kassel", "Kassel"],
                         "region_id": ["05", "05-001", "C-CGN", "05", "05-002", "06", "06-001"]})
    # the city area Köln overlaps Raum Köln most: the Mülheim of that district lies in it
    outlines = {"05-001": _square(6.0, 50.0), "05-002": _square(7.0, 51.0), "C-CGN": _square(6.5, 50.5, 0.6)}
    assert regionview._places(rows, regions, outlines) == {
        "Mülheim (Raum Köln)": ["05-001", "05", "C-CGN"], "Mülheim (Raum Essen)": ["05-002", "05"],
        "Kassel": ["06", "06-001"]}
    # no outlines: whose city area it is cannot be told, so neither gets it
    assert regionview._places(rows, regions, {})["Mülheim (Raum Köln)"] == ["05-001", "05"]


def test_the_state_of_a_region_is_found_up_its_parents():
    from lib.public import regionview

    regions = pd.DataFrame({"region_id": ["ALL", "09", "RB-1", "09-001", "X-1", "C-MUC"],
                            "name": ["Deutschland", "Bayern", "Oberbayern", "Raum München", "Lost", "München"],
                            "level": ["network", "state", "district", "district", "district", "cluster"],
                            "parent_id": [None, None, "09", "RB-1", "nowhere", "09-001"]}
                           ).set_index("region_id", drop=False)
    assert regionview.states_of(regions) == {"ALL": None, "09": "09", "RB-1": "09", "09-001": "09", "X-1": None,
                                             "C-MUC": "09"}
    rows = pd.DataFrame({"name": ["Au", "Au", "Au"], "region_id": ["09-001", "C-MUC", "X-1"]})
    places = regionview._places(rows, regions, {})  # a place in a region of no published state: no error
    assert sorted(r for rids in places.values() for r in rids) == ["09-001", "C-MUC", "X-1"]
    choices = regionview.region_choices(regions)
    assert choices["09"] == ("ALL", "09", "RB-1", "09-001", "C-MUC") and choices["X-1"][-1] == "X-1"


def test_switching_the_language(public_env):
    at = public_app()
    at.segmented_control(key="lang_pick").set_value("en").run()
    assert at.query_params["lang"] == "en"
    assert [t.value for t in at.title] == ["Network expansion in your region"]


def test_no_snapshot_explains_and_raises_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(snapshot.PUBLIC_ENV, "1")
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "none.json"))
    monkeypatch.setenv(store.DB_ENV, str(tmp_path / "none.duckdb"))
    at = public_app()
    assert [i.value for i in at.info] == ["Es ist noch kein Datenstand veröffentlicht."]
    assert not (tmp_path / "none.duckdb").exists()


def test_a_tampered_snapshot_is_refused_on_the_page(monkeypatch, tmp_path, demo_snapshot):
    doc = json.loads(demo_snapshot[0].read_bytes())
    doc["tables"]["complaint_areas"][0]["site_id"] = "S1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.setenv(snapshot.PUBLIC_ENV, "1")
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(bad))
    at = public_app()
    assert at.info and not at.metric
    shown = " ".join(e.value for e in [*at.caption, *at.info, *at.markdown])
    assert str(bad) not in shown and "site_id" not in shown  # no server path or raw value reaches the public


def test_public_page_in_the_internal_app(demo_snapshot, tiny_db, monkeypatch):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(demo_snapshot[0]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/public.py").run()
    assert not at.exception and [t.value for t in at.title] == ["Netzausbau in Ihrer Region"]


def _cell(value) -> str:
    """How a CSV of the open data writes one snapshot value (independent of lib/public/files.py)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def test_open_data_csvs_hold_each_value_as_published(demo_snapshot):
    """Every cell of every open-data CSV against the snapshot: whole numbers stay whole (also beside the empty
    counts below k), an outline is its GeoJSON, an empty value an empty cell."""
    snap = snapshot.load(demo_snapshot[0])
    with zipfile.ZipFile(io.BytesIO(files.csv_zip(snap))) as z:
        for name, rows in snap.doc["tables"].items():
            lines = list(csv.reader(io.StringIO(z.read(f"{name}.csv").decode("utf-8-sig"))))
            columns = list(snapshot.ALLOWLIST[name])
            assert lines[0] == columns and len(lines) == len(rows) + 1, name
            for row, line in zip(rows, lines[1:], strict=True):
                for column, text in zip(columns, line, strict=True):
                    value = row.get(column)
                    if isinstance(value, dict):
                        assert json.loads(text) == value, (name, column)
                    else:
                        assert text == _cell(value), (name, column, value, text)
    tables = snap.doc["tables"]
    assert any(r["complaints"] is None for r in tables["complaints_monthly"])  # the case of a column with gaps
    assert tables["region_outlines"] and tables["complaint_areas"]


def test_downloads_hold_the_whole_snapshot(demo_snapshot):
    snap = snapshot.load(demo_snapshot[0])
    with zipfile.ZipFile(io.BytesIO(files.csv_zip(snap))) as z:
        assert set(z.namelist()) == {f"{t}.csv" for t in snapshot.ALLOWLIST} | {"README.txt"}
        for name, rows in snap.doc["tables"].items():
            frame = pd.read_csv(io.BytesIO(z.read(f"{name}.csv")), encoding="utf-8-sig")
            assert len(frame) == len(rows) and list(frame.columns) == list(snapshot.ALLOWLIST[name])
    assert files.csv_zip(snap) == files.csv_zip(snap)  # same snapshot, same bytes
    geo = json.loads(files.geojson(snap))
    assert len(geo["features"]) == len(snap.doc["tables"]["complaint_areas"])
    ring = geo["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 7 and ring[0] == ring[-1]


def test_csv_download_escapes_formula_text():
    doc = json.loads(json.dumps({"tables": {n: [] for n in snapshot.ALLOWLIST}, "data_as_of": "2026-01-01", "k": 10,
                                 "round_base": 10}))
    doc["tables"]["notes"] = [{"note_id": "n1", "region_id": "R", "published_on": "2026-01-01",
                               "text": "=HYPERLINK(\"x\")", "language": "de"}]
    snap = snapshot.Snapshot(doc, b"")
    with zipfile.ZipFile(io.BytesIO(files.csv_zip(snap))) as z:
        assert "'=HYPERLINK" in z.read("notes.csv").decode("utf-8-sig")


@pytest.mark.parametrize("value, want", [(None, ("de", False)), ("", ("de", False)), ("EN", ("en", False)),
                                         ("fr", ("de", True))])
def test_language_from_the_url(value, want):
    assert i18n.language(value) == want


def test_every_text_has_both_languages():
    assert all(len(pair) == 2 and all(pair) for pair in i18n.TEXTS.values())
    assert i18n.t("about", "de", n=1234) == "etwa 1.234 Beschwerden"
    assert i18n.t("about", "en", n=1234) == "about 1,234 complaints"
    assert i18n.number(52.25, "de", 1) == "52,2" or i18n.number(52.25, "de", 1) == "52,3"


def _response(endpoint, path_params: dict | None = None):
    from starlette.requests import Request

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "path_params": path_params or {},
             "query_string": b""}
    return asyncio.run(endpoint(Request(scope)))


def _call(endpoint, path_params: dict | None = None) -> tuple[int, dict]:
    resp = _response(endpoint, path_params)
    return resp.status_code, json.loads(resp.body)


def test_api_answers_from_the_snapshot_only(demo_snapshot, monkeypatch, tmp_path):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(demo_snapshot[0]))
    monkeypatch.setenv(store.DB_ENV, str(tmp_path / "none.duckdb"))
    status, doc = _call(api.snapshot_json)
    assert status == 200 and doc == json.loads(demo_snapshot[0].read_bytes())
    status, doc = _call(api.region_json, {"region_id": "ALL"})
    assert status == 200 and len(doc["complaint_areas"]) == len(json.loads(demo_snapshot[0].read_bytes())
                                                               ["tables"]["complaint_areas"])
    assert _call(api.region_json, {"region_id": "XX"})[0] == 404
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "gone.json"))
    status, doc = _call(api.snapshot_json)
    assert status == 503 and "no snapshot" in doc["error"]
    assert not (tmp_path / "none.duckdb").exists()


def test_api_serves_each_open_data_file_as_a_download_made_once(demo_snapshot, monkeypatch, tmp_path):
    target = tmp_path / "snapshot.json"
    target.write_bytes(demo_snapshot[0].read_bytes())
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    snap = snapshot.load(target)
    want = {name: make(snap) for name, (_, _, make) in files.FILES.items()}
    assert want["netzausbau-snapshot.json"] == target.read_bytes()
    made = []
    for name, (text, kind, make) in list(files.FILES.items()):
        monkeypatch.setitem(files.FILES, name, (text, kind, lambda s, make=make: made.append(1) or make(s)))
    for name, (_, kind, _) in files.FILES.items():
        for _ in range(3):
            resp = _response(api.file_download, {"name": name})
            assert resp.status_code == 200 and resp.body == want[name], name
            assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}"'
            assert resp.headers["content-type"].startswith(kind)
    assert len(made) == len(files.FILES)  # each file made once for nine requests
    assert _response(api.file_download, {"name": "snapshot.json"}).status_code == 404
    assert _response(api.file_download, {"name": "../store.duckdb"}).status_code == 404


@pytest.mark.parametrize("case", ["missing", "refused", "unknown region"])
def test_api_errors_name_no_path_or_value_and_are_not_cached(demo_snapshot, monkeypatch, tmp_path, case):
    bait = "<script>x</script>"
    if case == "missing":
        target = tmp_path / "secret-folder" / "gone.json"
    else:
        target = tmp_path / "secret-folder" / "snapshot.json"
        target.parent.mkdir()
        target.write_bytes(demo_snapshot[0].read_bytes() if case == "unknown region" else
                           json.dumps({"tables": {}, "token": bait}).encode())
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    for endpoint, params in ((api.snapshot_json, None), (api.region_json, {"region_id": bait}),
                             (api.file_download, {"name": bait})):
        resp = _response(endpoint, params)
        if case == "unknown region" and endpoint is api.snapshot_json:
            assert resp.status_code == 200 and resp.headers["Cache-Control"].startswith("public")
            continue
        body = resp.body.decode()
        assert resp.status_code == (404 if case == "unknown region" else 503), body
        assert resp.headers["Cache-Control"] == "no-store"
        assert "secret-folder" not in body and str(tmp_path) not in body and "script" not in body, body
        assert set(json.loads(body)) == {"error"}


def test_the_network_answer_is_made_once_per_snapshot_version(demo_snapshot, monkeypatch, tmp_path):
    """A burst of requests for the whole network (all areas, about half a megabyte of JSON) reuses one answer;
    a newly published file is answered from its own content."""
    target = tmp_path / "snapshot.json"
    target.write_bytes(demo_snapshot[0].read_bytes())
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    built = []
    real = api.region_document
    monkeypatch.setattr(api, "region_document", lambda snap, rid: built.append(rid) or real(snap, rid))
    bodies = {_response(api.region_json, {"region_id": "ALL"}).body for _ in range(20)}
    assert len(bodies) == 1 and built == ["ALL"]
    doc = json.loads(target.read_bytes())
    doc["tables"]["complaint_areas"] = doc["tables"]["complaint_areas"][:3]
    target.write_bytes(snapshot.dumps(doc))  # published again: another file version
    status, got = _call(api.region_json, {"region_id": "ALL"})
    assert status == 200 and len(got["complaint_areas"]) == 3 and built == ["ALL", "ALL"]


# -- the Data page: publish button and note form ----------------------------------------------

def data_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_publish_button_writes_the_snapshot(tiny_db, monkeypatch, tmp_path):
    out = tmp_path / "pub" / "snapshot.json"
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(out))
    at = data_page()
    at.button(key="publish").click().run()
    assert not at.exception and out.exists()
    assert any("Snapshot of the data as of 2025-01-15" in s.value for s in at.success), [s.value for s in at.success]
    con = store.connect(tiny_db)  # the app's connection is read-write: the same configuration
    try:
        assert out.read_bytes() == snapshot.dumps(publish.build(con))
    finally:
        con.close()


def test_note_form_saves_through_the_importer(tiny_db, monkeypatch, tmp_path):
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "s.json"))
    at = data_page()
    at.selectbox(key="note_region").set_value("C1")
    at.date_input(key="note_day").set_value(dt.date(2025, 1, 20))
    at.segmented_control(key="note_lang").set_value("en")
    at.text_area(key="note_text").input("Stadt A: new hardware at 3 sites")
    at.button[[b.label for b in at.button].index("Save note")].click().run()
    assert not at.exception
    with duckdb.connect(str(tiny_db)) as con:
        notes = con.execute("SELECT region_id, published_on, text, language FROM status_notes").fetchall()
        log = con.execute("SELECT table_name, rows_accepted FROM import_log ORDER BY import_id DESC LIMIT 1").fetchall()
    assert notes == [("C1", dt.date(2025, 1, 20), "Stadt A: new hardware at 3 sites", "en")]
    assert log == [("status_notes", 1)]
    assert any("status_notes" in s.value for s in at.success)


def test_an_empty_note_is_not_saved(tiny_db):
    at = data_page()
    at.button[[b.label for b in at.button].index("Save note")].click().run()
    assert [e.value for e in at.error] == ["The note is empty: nothing was saved."]
    with duckdb.connect(str(tiny_db)) as con:
        assert con.execute("SELECT count(*) FROM status_notes").fetchall()[0][0] == 0


def test_note_file_is_the_same_for_the_same_note():
    a = publish.note_file("C1", dt.date(2025, 1, 2), "  two   spaces ", "de")
    assert a == publish.note_file("C1", dt.date(2025, 1, 2), "two spaces", "de")
    assert b"two spaces" in a[1] and a[0].endswith(".csv")


def test_a_public_copy_of_the_store_is_never_needed(public_env, demo_snapshot, tmp_path, monkeypatch):
    """The page runs from a copy of the snapshot alone, in a folder with nothing else."""
    lone = tmp_path / "lone" / "snapshot.json"
    lone.parent.mkdir()
    shutil.copy(demo_snapshot[0], lone)
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(lone))
    at = public_app(region="C-HAM")
    assert at.metric and not at.exception
    assert sorted(p.name for p in lone.parent.iterdir()) == ["snapshot.json"]


@pytest.mark.parametrize("text", ["[x](https://evil.example)", "see www.evil.example now", "mail me@evil.example",
                                  "<script>alert(1)</script>", "**bold** _it_ `code` $x$", "plain Münster"])
def test_plain_text_keeps_its_letters_and_loses_its_markup(text):
    out = i18n.plain(text)
    assert as_read(out).replace(i18n.ZWSP, "") == text  # reads as written
    assert re.search(r"(?<!\\)[<>\[\]()*_`$]", out) is None  # every markup character escaped
    for trigger in ("://", "www.", "@e"):  # and no bare address left to be linked
        assert trigger not in out.lower()


@pytest.mark.parametrize("configured", [None, "", "https://tiles.example.org/style.json"])
def test_the_map_has_a_basemap_only_when_one_is_configured(monkeypatch, configured):
    """No third-party tile server by default (a visitor's IP address is personal data); NETZAUSBAU_BASEMAP_URL
    names a map style to draw under the areas."""
    from lib import basemap

    if configured is None:
        monkeypatch.delenv(basemap.BASEMAP_ENV, raising=False)
    else:
        monkeypatch.setenv(basemap.BASEMAP_ENV, configured)
    a = pd.DataFrame({"cell": ["871f1d489ffffff"], "colour": [[1, 2, 3, 190]], "label": ["x"], "info": ["y"],
                      "lat": [52.5], "lon": [13.4]})
    doc = json.loads(regionview.deck(a, [], None, network=False).to_json())
    assert doc["mapStyle"] == (configured or basemap.NO_BASEMAP)
    assert "mapProvider" not in doc


@pytest.mark.parametrize("text", ["[x](https://evil.example)", "<script>alert(1)</script>", "**bold** :red[x] $y$",
                                  "two\nlines"])
def test_notes_in_the_text_block_are_shown_as_written(text):
    """The notes share one markdown element with the headings around them: a note's text and heading read as
    written, with no link, HTML, emphasis or directive, and cannot end the heading's small-text span early."""
    block = regionview.after_trend((("01.01.2026 · " + i18n.plain("Stadt ] [x]"), text),), 10, "de")
    parts = block.split("\n\n")
    assert parts[1] == "### Meldungen des Netzbetreibers" and parts[-3] == "### Offene Daten"
    assert parts[-1] == regionview.download_links("de")
    head, shown = parts[2], parts[3]
    assert head.startswith(":small[") and as_read(head[len(":small["):-1]) == "01.01.2026 · Stadt ] [x]"
    assert as_read(shown.replace("  \n", "\n")).replace(i18n.ZWSP, "") == text
    assert re.search(r"(?<!\\)[<>\[\]()*_`$:]", shown.replace("  \n", "")) is None


def test_the_map_text_block_without_areas_says_so():
    none = pd.DataFrame({"status": [], "complaints": []})
    block = regionview.after_map(none, 10, "en")
    assert block == (":small[There is no area with at least 10 complaints here.]\n\n### Complaints per month")
    some = pd.DataFrame({"status": ["planned"], "complaints": [20]})
    assert "rgb(" in regionview.after_map(some, 10, "en")  # the legend


def test_a_table_beside_the_map_says_what_it_shows(public_env, demo_snapshot):
    """For a screen reader: the region's areas by status, how many and their complaints, in the map's block."""
    doc = json.loads(demo_snapshot[0].read_bytes())
    mine = [a for a in doc["tables"]["complaint_areas"] if "09" in a["region_ids"]]
    at = public_app(lang="en", region="09")
    block = next(m.value for m in at.markdown if "State of relief" in m.value)
    rows = [line for line in block.splitlines() if line.startswith("| ") and "State of relief" not in line]
    got = {cells[0]: (int(cells[1].replace(",", "")), int(cells[2].replace(",", ""))) for cells in
           ([c.strip() for c in r.strip("|").split("|")] for r in rows)}
    want = {}
    for a in mine:
        label = i18n.t("status_" + a["status"], "en")
        n, c = want.get(label, (0, 0))
        want[label] = (n + 1, c + a["complaints"])
    assert got == want and sum(n for n, _ in got.values()) == len(mine) > 0
    assert [r.split("|")[1].strip() for r in rows] == [i18n.t("status_" + s, "en") for s in snapshot.PUBLIC_STATUSES
                                                       if i18n.t("status_" + s, "en") in want]


# -- the map's base layer and the quarter chart ------------------------------------------------

def _layers(at: AppTest) -> dict[str, dict]:
    return {layer["id"]: layer for layer in json.loads(at.get("deck_gl_json_chart")[0].proto.json)["layers"]}


def test_the_network_map_shows_every_state_outline_town_names_and_areas_as_dots(public_env, demo_snapshot):
    doc = json.loads(demo_snapshot[0].read_bytes())
    at = public_app()
    layers = _layers(at)
    assert list(layers) == ["outlines", "areas", "towns"]  # no region chosen: no dark outline
    states = {r["region_id"] for r in doc["tables"]["regions"] if r["level"] == "state"}
    assert len(layers["outlines"]["data"]["features"]) == len(states) == 16
    assert layers["areas"]["@@type"] == "ScatterplotLayer"  # readable at country scale
    assert len(layers["areas"]["data"]) == len(doc["tables"]["complaint_areas"])
    names = [t["name"] for t in layers["towns"]["data"]]
    assert names[:3] == ["Berlin", "Hamburg", "München"]


def test_a_state_map_is_fitted_to_its_outline(public_env, demo_snapshot):
    from lib import baselayer

    doc = json.loads(demo_snapshot[0].read_bytes())
    outline = next(r["geometry"] for r in doc["tables"]["region_outlines"] if r["region_id"] == "09")
    at = public_app(region="09")
    spec = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert layers["region"]["data"]["features"][0]["geometry"] == outline
    assert layers["areas"]["@@type"] == "ScatterplotLayer"  # a state's scale: dots, hexagons would be specks
    west, south, east, north = baselayer.bounds([{"geometry": outline}])
    view = spec["initialViewState"]
    assert view["longitude"] == pytest.approx((west + east) / 2) and view["latitude"] == pytest.approx(
        (south + north) / 2)
    assert view["zoom"] == pytest.approx(baselayer.fit_view((west, south, east, north), regionview.MAP_PIXELS).zoom)
    assert "München" in [t["name"] for t in layers["towns"]["data"]]
    # its districts' outlines, lighter, under its own; and the caption says what the thin lines are
    ids = [r["region_id"] for r in doc["tables"]["regions"] if r["level"] == "district" and r["parent_id"] == "09"]
    mine = {r["region_id"]: r["geometry"] for r in doc["tables"]["region_outlines"] if r["region_id"] in ids}
    assert list(layers) == ["outlines", "inner", "region", "areas", "towns"] and len(ids) > 20
    drawn = sorted(json.dumps(f["geometry"], sort_keys=True) for f in layers["inner"]["data"]["features"])
    assert drawn == sorted(json.dumps(g, sort_keys=True) for g in mine.values()) and len(mine) == len(ids)
    assert layers["inner"]["getLineColor"] == list(baselayer.INNER_COLOUR)
    assert any("districts" in m.value for m in public_app(region="09", lang="en").markdown)
    berlin = _layers(public_app(region="C-BER"))
    assert "inner" not in berlin  # a city area has no districts drawn


def test_the_quarter_chart_shows_the_late_upgrades_first_and_the_forecast(public_env, demo_snapshot):
    doc = json.loads(demo_snapshot[0].read_bytes())
    row = next(r for r in doc["tables"]["regions"] if r["region_id"] == "C-BER")
    plan = [r for r in doc["tables"]["planned"] if r["region_id"] == "C-BER"]
    at = public_app(lang="en", region="C-BER")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = fig["data"][0]
    assert bar["x"][0] == "late" and bar["y"][0] == row["upgrades_late"] > 0
    assert bar["y"][1:] == [r["upgrades"] for r in sorted(plan, key=lambda r: (r["quarter"] == "later",
                                                                                 r["quarter"]))]
    assert sum(bar["y"]) == row["upgrades_total"] - row["upgrades_on_air"]  # every upgrade still to come
    line = fig["layout"]["shapes"][0]
    quarter = f"{pd.Timestamp(row['forecast']).year}-Q{pd.Timestamp(row['forecast']).quarter}"
    assert bar["x"][line["x0"]] == (quarter if quarter in bar["x"] else "later")
    assert fig["layout"]["annotations"][0]["text"] == "forecast: " + pd.Timestamp(row["forecast"]).strftime("%b %Y")
    tile = [m for m in at.metric if m.label == "Forecast: all on air"]
    assert tile and tile[0].value == pd.Timestamp(row["forecast"]).strftime("%b %Y")


@pytest.mark.parametrize("forecast, want", [
    ("2026-10-01", 0), ("2026-12-31", 0), ("2027-01-01", 1), ("2027-09-30", 3), ("2027-10-01", 4),
    ("2031-05-05", 4), (None, None)])
def test_the_forecast_line_stands_at_its_quarter_or_at_later(forecast, want):
    plan = pd.DataFrame({"quarter": ["2026-Q4", "2027-Q1", "2027-Q2", "2027-Q3", "später"], "upgrades": [1] * 5})
    assert regionview.forecast_bar(plan, forecast, "de") == want


def test_the_quarter_chart_without_a_forecast_has_no_line():
    plan = pd.DataFrame({"quarter": ["2026-Q4", "later"], "upgrades": [3, 1]})
    fig = regionview.planned_figure(plan, {"upgrades_late": 2, "forecast": None}, "en")
    assert fig.to_dict()["data"][0]["y"] == [2, 3, 1] and not fig.to_dict()["layout"].get("shapes")


def test_the_charts_write_months_and_counts_in_the_pages_language():
    t = pd.DataFrame({"month": pd.date_range("2025-05-01", periods=18, freq="MS"), "complaints": range(18)})
    de, en = (regionview.trend_figure(t, lang).layout.xaxis for lang in ("de", "en"))
    assert list(de.ticktext) == ["Mai 2025", "Aug. 2025", "Nov. 2025", "Feb. 2026", "Mai 2026", "Aug. 2026"]
    assert list(en.ticktext) == ["May 2025", "Aug 2025", "Nov 2025", "Feb 2026", "May 2026", "Aug 2026"]
    assert [pd.Timestamp(v) for v in de.tickvals] == list(pd.date_range("2025-05-01", periods=6, freq="3MS"))
    one = regionview.trend_figure(t.head(1), "de").layout.xaxis
    assert list(one.ticktext) == ["Mai 2025"]
    plan = pd.DataFrame({"quarter": ["2026-Q4", "später"], "upgrades": [7135, 12]})
    bars = regionview.planned_figure(plan, {"upgrades_late": 1234, "forecast": None}, "de").data[0]
    assert list(bars.text) == ["1.234", "7.135", "12"] and list(bars.y) == [1234, 7135, 12]
    assert list(regionview.planned_figure(plan, {"upgrades_late": 1234, "forecast": None}, "en").data[0].text) == [
        "1,234", "7,135", "12"]
    for lang, marks in (("de", ",."), ("en", ".,")):  # the axes' numbers too: 3.000 on the German page
        for fig in (regionview.trend_figure(t, lang),
                    regionview.planned_figure(plan, {"upgrades_late": 1, "forecast": None}, lang)):
            assert fig.layout.separators == marks and fig.layout.yaxis.tickformat == ","


def test_months_in_both_languages():
    assert i18n.month("2027-10-14", "de") == "Okt. 2027" and i18n.month("2027-10-14", "en") == "Oct 2027"
    assert i18n.month("2027-03-01", "de") == "März 2027"


def test_the_warm_up_makes_the_views_of_the_network_states_and_city_areas_ahead(demo_snapshot, monkeypatch,
                                                                                  tmp_path):
    """A public server process makes the network's, every state's and every city area's view in both languages
    when it starts: a visitor afterwards gets a made one. A district's view is made when first asked for.
    Without a snapshot the warm-up does nothing and raises nothing."""

    from lib import cache

    cache.clear()
    target = tmp_path / "snapshot.json"
    target.write_bytes(demo_snapshot[0].read_bytes())
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    made = []
    real = regionview.region_view
    monkeypatch.setattr(regionview, "region_view", lambda p, rid, lang: made.append((rid, lang)) or real(p, rid, lang))
    cache.warm_public()
    rows = json.loads(target.read_bytes())["tables"]["regions"]
    regions = [r["region_id"] for r in rows if r["level"] in ("network", "state", "cluster")]
    assert "ALL" in regions and len(regions) == 1 + 16 + 17
    assert sorted(made) == sorted((r, lang) for r in regions for lang in i18n.LANGUAGES)
    cache.public_region("C-BER", "en")
    assert len(made) == len(regions) * 2  # made ahead, not again
    district = next(r["region_id"] for r in rows if r["level"] == "district")
    cache.public_region(district, "en")
    assert made[-1] == (district, "en")  # made when asked for
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(tmp_path / "none.json"))
    cache.warm_public()


def test_every_published_region_renders_and_one_without_a_forecast_says_so(public_env, demo_snapshot):
    """Regions without a hotspot area or without a forecast too (an empty date in the snapshot)."""
    doc = json.loads(demo_snapshot[0].read_bytes())
    rows = doc["tables"]["regions"]
    areas = {rid for a in doc["tables"]["complaint_areas"] for rid in a["region_ids"]}
    assert any(r["forecast"] is None for r in rows) and any(r["region_id"] not in areas for r in rows[1:])
    for r in rows:
        at = public_app(region=r["region_id"])  # fails on any exception on the page
        tile = next(m for m in at.metric if m.label == "Prognose: alle in Betrieb") if r["upgrades_total"] else None
        if tile is not None and r["forecast"] is None:
            assert tile.value == "keine"
        elif tile is not None:
            assert tile.value == i18n.month(r["forecast"], "de")
