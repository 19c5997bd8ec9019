"""The planner map drawn: a view's pydeck Deck (layers, colours, view state, legend), its payload check
against `maps.MAX_BYTES` (`upper_bytes`, `shrink`, `fitted`), and its exports (table, GeoJSON).

`lib.views.maps` makes the view (what is shown as of a date, within the feature budget); this module turns it
into what the browser receives. No streamlit here.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import h3
import numpy as np
import pandas as pd
import pydeck as pdk

from lib import baselayer, basemap, cells
from lib.views import maps, places
from lib.views.maps import (
    COLOUR_MODES,
    COORD_DIGITS,
    GERMANY,
    INNER_REGION_COLOUR,
    LINK_COLOURS,
    LINK_WIDTHS,
    MAP_PIXELS,
    MAX_BYTES,
    REGION_COLOUR,
    RELIEF_COLOURS,
    SIGNIFICANCE_COLOURS,
    SITE_COLOURS,
    Outlines,
    Params,
    View,
    allot,
    view,
)

RECORD_BYTES = MappingProxyType({"hotspots": 160, "sites": 130, "links": 190})
"""Most bytes one record of each layer takes in the Deck JSON besides its text ids and a hotspot's tooltip
(keys, a 15-hex H3 id, numbers, rounded coordinates, status codes and words, colours), over-counted."""
DECK_BYTES = 4096
"""Bytes of the Deck JSON besides the layers' records and the outlines (view state, layer settings, tooltip)."""
TABLE_ROWS = 500
"""Hotspots the map's ranked table lists (the most complained-about of a view); the exports hold every one."""
HOTSPOT_DOT_PIXELS = 3.5
"""Radius in pixels a hotspot keeps at least on the map of all of Germany."""
SITE_FILL = (250, 250, 250, 220)
"""A site's dot: light, so that its ring says its status and the hotspots above it stand out."""


def upper_bytes(v: View) -> int:
    """An upper bound of the Deck JSON's size: the outlines as written, and each record at its most."""
    shapes = v.outlines.json_bytes if isinstance(v.outlines, Outlines) else len(
        json.dumps(v.outlines, separators=(",", ":")))
    total = DECK_BYTES + shapes + baselayer.MAX_TOWN_BYTES
    for layer, frame in v.layers.items():
        ids = {"sites": ["site_id"], "links": ["link_id"]}.get(layer, [])
        text = 2 * sum(int(frame[c].astype("str").str.len().sum()) + 2 * len(frame) for c in ids)  # id, tooltip
        if layer == "hotspots":  # each tooltip at its longest, without writing it
            text += len(frame) * _longest_hotspot_tip()
        total += len(frame) * RECORD_BYTES[layer] + text
    return total


@functools.lru_cache(maxsize=1)
def _longest_hotspot_tip() -> int:
    """Most JSON bytes a hotspot's tooltip (`_hotspot_tip`) takes: the longest town name and status."""
    status = max(LABELS.values(), key=lambda w: len(json.dumps(w)))
    return len(json.dumps(_hotspot_tip(places.longest_town(), 10**9, status, pd.Timestamp("2000-01-01"))))


def shrink(v: View, max_bytes: int | None = None) -> tuple[View, int]:
    """`v` cut down (the same per-layer priorities) until its Deck JSON, in either colour mode and with a
    hotspot picked, is at most `max_bytes` (default `MAX_BYTES`): (view, bytes), the bytes exact, or
    `upper_bytes` when that already fits (then nothing is cut)."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    def size(v: View) -> int:  # only the hotspot colours differ between the colour modes
        h = v.layers.get("hotspots")
        extra = 0 if h is None else max(0, len(json.dumps(hotspot_records(h, "significance"))) -
                                        len(json.dumps(hotspot_records(h, "relief"))))
        return payload_bytes(deck(v, "relief", ("hotspots", "0" * 15))) + extra

    bound = upper_bytes(v)
    if bound <= max_bytes:  # the usual view: clearly within, no need to write its JSON to know
        return v, bound
    n = size(v)
    while n > max_bytes and v.features > 0:
        total = int(v.features * max_bytes / n * 0.95)
        budget = allot({k: len(f) for k, f in v.layers.items()}, total)
        v = replace(v, layers={k: f.head(budget[k]) for k, f in v.layers.items()})
        n = size(v)
    return v, n


def fitted(con, p: Params) -> View:
    """`view` within both budgets: at most `MAX_FEATURES` features and `MAX_BYTES` of Deck JSON."""
    return shrink(view(con, p))[0]


# -- drawing ------------------------------------------------------------------------------

def payload_bytes(d: pdk.Deck) -> int:
    """Bytes of the Deck JSON the browser receives."""
    return len(d.to_json().encode())


def _c(frame: pd.DataFrame, column: str) -> list:
    return np.round(frame[column].to_numpy(dtype="float64"), COORD_DIGITS).tolist()


def _s(frame: pd.DataFrame, column: str) -> list:
    """A column as a list of Python values (iterating an Arrow-backed column is ten times slower)."""
    return frame[column].tolist()


def _colours(values: list, palette) -> list:
    rgb = {k: list(v) for k, v in palette.items()}
    return [rgb[v] for v in values]


def hotspot_records(hot: pd.DataFrame, colour: str = "relief", positions: bool = False) -> list[dict]:
    """Hexagon records: id (H3 hex), n, s (relief status), g (significance), c (colour), t (tooltip: the
    nearest town, complaints, status in words and the relief date), and with `positions` p ([lon, lat] of the
    cell's centre, for drawing it as a dot)."""
    if colour not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {colour!r} (choose one of {list(COLOUR_MODES)})")
    palette, col = (RELIEF_COLOURS, "status") if colour == "relief" else (SIGNIFICANCE_COLOURS, "significance")
    cell = _s(hot, "cell")
    lat, lon = cells.cells_to_latlng(np.asarray(cell, dtype="uint64")) if len(cell) else ([], [])
    records = [{"id": h3.int_to_str(i), "n": int(n), "s": s, "g": g, "c": c, "t": t} for i, n, s, g, c, t in zip(
        cell, _s(hot, "n"), _s(hot, "status"), _s(hot, "significance"), _colours(_s(hot, col), palette),
        _hotspot_tips(hot, lat, lon), strict=True)]
    if positions:
        for r, la, lo in zip(records, lat, lon, strict=True):
            r["p"] = [round(float(lo), COORD_DIGITS), round(float(la), COORD_DIGITS)]
    return records


def _hotspot_tips(hot: pd.DataFrame, lat, lon) -> list[str]:
    """Each hotspot's tooltip: the nearest town to its centre (`lat`, `lon`), its complaints, its status in words
    and, when it is not yet relieved, the day it will be (plain text, one line each)."""
    when = _s(hot, "relief_date") if "relief_date" in hot else [None] * len(hot)
    return [_hotspot_tip(town, n, status, relief) for town, n, status, relief in
            zip(places.nearest_town(lat, lon), _s(hot, "n"), _s(hot, "status"), when, strict=True)]


def _hotspot_tip(town: str, n: int, status: str, relief) -> str:
    due = "" if status == "relieved" or not _given(relief) else f"\nrelieved from {_day(relief)}"
    return f"near {town}\n{int(n):,} complaint{'' if int(n) == 1 else 's'}\n{words(status)}{due}"


def site_records(sites: pd.DataFrame) -> list[dict]:
    """Point records: id (site_id), p ([lon, lat]), s (status), c (colour), t (tooltip: the site by its name and
    id, or its id where it has no name (`name`), and its status)."""
    status = _s(sites, "status")
    names = _s(sites, "name") if "name" in sites else [""] * len(sites)
    return [{"id": i, "p": [lo, la], "s": s, "c": c,
             "t": f"Site {f'{n} ({i})' if n else i}: {words(s)}"}
            for i, n, lo, la, s, c in zip(_s(sites, "site_id"), names, _c(sites, "lon"), _c(sites, "lat"), status,
                                          _colours(status, SITE_COLOURS), strict=True)]


def link_records(links: pd.DataFrame) -> list[dict]:
    """Line records: id (link_id), a and b ([lon, lat]), s (state), c (colour), w (width in pixels), t (tooltip:
    link and state)."""
    state = _s(links, "state")
    return [{"id": i, "a": [alo, ala], "b": [blo, bla], "s": s, "c": c, "w": LINK_WIDTHS[s],
             "t": f"Transport link {i}: {words(s)}"}
            for i, alo, ala, blo, bla, s, c in zip(
                _s(links, "link_id"), _c(links, "a_lon"), _c(links, "a_lat"), _c(links, "b_lon"), _c(links, "b_lat"),
                state, _colours(state, LINK_COLOURS), strict=True)]


FOCUS_ZOOM = 10.5
"""Zoom of the map centred on a selected object."""


def focus_of(pick: tuple[str, str] | None, v: View) -> tuple[float, float] | None:
    """(lat, lon) of a picked hotspot (its cell centre), site or link (its midpoint) when the view knows it."""
    if not pick:
        return None
    layer, ident = pick
    if layer == "hotspots":
        cell = cells.parse_cell(ident)
        return h3.cell_to_latlng(h3.int_to_str(cell)) if cell else None
    f = v.layers.get(layer)
    if f is None:
        return None
    row = f[f[f.columns[0]] == ident]
    if row.empty:
        return None
    if layer == "sites":
        return float(row["lat"].iloc[0]), float(row["lon"].iloc[0])
    r = row.iloc[0]
    return (r["a_lat"] + r["b_lat"]) / 2, (r["a_lon"] + r["b_lon"]) / 2


def view_state(v: View, focus: tuple[float, float] | None = None) -> pdk.ViewState:
    """Centred on `focus` (a picked object), else Germany or the bounds of the region's outline."""
    if focus is not None:
        return pdk.ViewState(latitude=round(focus[0], COORD_DIGITS), longitude=round(focus[1], COORD_DIGITS),
                             zoom=FOCUS_ZOOM)
    if v.params.region and v.outlines:
        return baselayer.fit_view(baselayer.bounds(v.outlines), MAP_PIXELS)
    return view_state_of_germany()


def view_bounds(v: View) -> tuple[float, float, float, float]:
    """West, south, east, north of what the view shows first: the region's outline, else Germany."""
    return baselayer.bounds(v.outlines) if v.params.region and v.outlines else baselayer.GERMANY_BOUNDS


def view_state_of_germany() -> pdk.ViewState:
    lat, lon, zoom = GERMANY
    return pdk.ViewState(latitude=lat, longitude=lon, zoom=zoom)


def deck(v: View, colour: str = "relief", pick: tuple[str, str] | None = None,
         focus: tuple[float, float] | None = None) -> baselayer.CompactDeck:
    """The pydeck Deck of a view (layer ids are the `LAYERS` names; `pick` = (layer, id) is outlined;
    the map is centred on `focus` when given) on the configured basemap (`lib.basemap`: none by default)."""
    with maps.gc_paused():
        return _deck(v, colour, pick, focus)


def _deck(v: View, colour: str, pick: tuple[str, str] | None,
          focus: tuple[float, float] | None) -> baselayer.CompactDeck:
    layers = []
    if v.outlines:
        layers.append(pdk.Layer("GeoJsonLayer", id="regions", data={"type": "FeatureCollection",
                                                                      "features": v.outlines},
                                stroked=True, filled=False, line_width_units="'pixels'",
                                get_line_color=f"properties.inner ? {list(INNER_REGION_COLOUR)} : "
                                               f"{list(REGION_COLOUR)}",
                                get_line_width="properties.inner ? 1 : 1.5", pickable=False))
    if "links" in v.layers:
        layers.append(pdk.Layer("LineLayer", id="links", data=link_records(v.layers["links"]),
                                get_source_position="a", get_target_position="b", get_color="c",
                                get_width="w", pickable=True, auto_highlight=True))
    if "sites" in v.layers:  # a light dot with a ring in the status colour, under the hotspots
        layers.append(pdk.Layer("ScatterplotLayer", id="sites", data=site_records(v.layers["sites"]),
                                get_position="p", get_fill_color=list(SITE_FILL), get_line_color="c",
                                stroked=True, filled=True, line_width_min_pixels=1, get_radius=150,
                                radius_min_pixels=1.6, radius_max_pixels=7, opacity=0.7, pickable=True,
                                auto_highlight=True))
    if "hotspots" in v.layers and not v.params.region and focus is None:
        # all of Germany: a hexagon of a few km² would be a speck, so each hotspot is a dot of its hexagon's
        # size, at least HOTSPOT_DOT_PIXELS wide, above the sites
        layers.append(pdk.Layer("ScatterplotLayer", id="hotspots",
                                data=hotspot_records(v.layers["hotspots"], colour, positions=True), get_position="p",
                                get_fill_color="c", get_radius=h3.average_hexagon_edge_length(v.params.resolution,
                                                                                               "m"),
                                radius_min_pixels=HOTSPOT_DOT_PIXELS, opacity=0.85, pickable=True,
                                auto_highlight=True))
    elif "hotspots" in v.layers:
        layers.append(pdk.Layer("H3HexagonLayer", id="hotspots", data=hotspot_records(v.layers["hotspots"], colour),
                                get_hexagon="id", get_fill_color="c", get_line_color="c", opacity=0.8,
                                extruded=False, stroked=True, line_width_min_pixels=1, pickable=True,
                                auto_highlight=True))
    if pick and pick[0] == "hotspots":
        layers.append(pdk.Layer("H3HexagonLayer", id="picked", data=[{"id": pick[1]}], get_hexagon="id",
                                filled=False, stroked=True, get_line_color=[0, 0, 0], line_width_min_pixels=3,
                                extruded=False, pickable=False))
    # the biggest towns of the view on top, read over any layer (no tile server needed)
    layers.append(baselayer.town_layer(baselayer.towns(view_bounds(v), MAP_PIXELS)))
    # plain text: the chart shows a record's values as text (an "html" template would show tags literally)
    tooltip = {"text": "{t}", "style": {"fontSize": "13px", "maxWidth": "260px", "whiteSpace": "pre-line"}}
    return baselayer.CompactDeck(layers=layers, initial_view_state=view_state(v, focus), tooltip=tooltip,
                       **basemap.deck_args())


TOOLTIP_STYLE = """<style>
[data-testid="stDeckGlJsonChart"] > div:has(.deck-tooltip),
[data-testid="stDeckGlJsonChart"] .deck-widgets-root > div { overflow: visible !important; }
[data-testid="stElementContainer"]:has([data-testid="stDeckGlJsonChart"]) { z-index: 3; }
</style>"""
"""A map's tooltip drawn whole, over what lies beside the map: Streamlit's chart and deck.gl's widget layer
clip it at the map's edge, and the page's next column would be drawn over it. The pages with a map beside a
column add it with st.html (a style alone takes no room)."""


CLICK_TIMING = f"<script>{(Path(__file__).resolve().parents[2] / 'assets' / 'click-timing.js').read_text()}</script>"
"""Judges a click on a map by how long the button was held, not by when the page got round to the release
(assets/click-timing.js says why); the page adds it with st.html(..., unsafe_allow_javascript=True)."""


def picked(selection) -> tuple[str, str] | None:
    """(layer, id) of the object a map selection holds (`event["selection"]`), or None."""
    objects = (selection or {}).get("objects") or {}
    for layer in ("hotspots", "sites", "links"):
        for obj in objects.get(layer) or []:
            if isinstance(obj, dict) and obj.get("id"):
                return layer, str(obj["id"])
    return None


# -- exports ------------------------------------------------------------------------------

TABLE_COLUMNS = ["rank", "cell", "place", "n", "status", "relief_share", "relief_date", "days_open", "pain", "z",
                 "significance", "n_sites", "n_upgrades", "blocking_link_id"]


def table(hot: pd.DataFrame) -> pd.DataFrame:
    """The ranked hotspot table (and CSV export): cells as H3 hex text, each named by its nearest town."""
    lat, lon = cells.cells_to_latlng(hot["cell"].to_numpy(dtype="uint64")) if len(hot) else ([], [])
    out = hot.assign(place=places.nearest_town(lat, lon))[TABLE_COLUMNS].copy()
    out["cell"] = [h3.int_to_str(int(c)) for c in out["cell"]]
    out["z"] = out["z"].round(2)
    out["relief_share"] = out["relief_share"].round(3)
    return out


def readable_table(ranked: pd.DataFrame) -> pd.DataFrame:
    """The ranked table (`table`) as people read it: statuses in words, the relief date as a day or empty, no
    link as empty text (never "None")."""
    return ranked.assign(status=[words(s) for s in ranked["status"]],
                         relief_date=[_day(d) for d in ranked["relief_date"]],
                         blocking_link_id=[b if _given(b) else "" for b in ranked["blocking_link_id"]])


STORY_CODES = ("kind", "state", "status")
"""Columns of a story's tables (lib/views/story) that hold codes of the data, read as `words` (and those whose
names begin with "status_": a status before and after)."""


def _given(value) -> bool:
    """Whether a cell holds a value (not None, NaN, NaT or NA)."""
    return value is not None and not (pd.api.types.is_scalar(value) and pd.isna(value))


def _day(value) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%d}" if _given(value) else ""


def readable_story(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of a hotspot's, site's or link's story (or of a what-if's changes) as people read it: codes in
    words, dates as days, and no value as empty text (never "None") in those and in its other text; a table of
    cells also names each cell's nearest town (`place`, after the cell)."""
    out = frame.copy()
    for c in out.columns:
        values = out[c].astype(object)
        given = [v for v in values if _given(v)]
        if c in STORY_CODES or c.startswith("status_"):
            out[c] = [words(v) for v in values]
        elif given and all(isinstance(v, (dt.date, np.datetime64)) for v in given):
            out[c] = [_day(v) for v in values]
        elif not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = [v if _given(v) else "" for v in values]
    if "cell" in out:
        cell = np.array([cells.parse_cell(c) for c in out["cell"]], dtype="uint64")
        out.insert(out.columns.get_loc("cell") + 1, "place",
                   places.nearest_town(*cells.cells_to_latlng(cell)) if len(cell) else [])
    return out


def column_label(column: str) -> str:
    """A story table's column as its header reads: an id column by what it names, words for underscores."""
    return column.removesuffix("_id").replace("_", " ")


def geojson(hot: pd.DataFrame) -> dict:
    """The hotspots as a GeoJSON FeatureCollection of hexagon polygons (lon, lat; ring closed)."""
    features = []
    for row in table(hot).itertuples(index=False):
        ring = [[round(lo, 6), round(la, 6)] for la, lo in h3.cell_to_boundary(row.cell)]
        props = {c: getattr(row, c) for c in TABLE_COLUMNS}
        props["relief_date"] = None if pd.isna(props["relief_date"]) else str(pd.Timestamp(props["relief_date"]).date())
        props = {k: (v.item() if isinstance(v, np.generic) else (None if v is None or v is pd.NA else v))
                 for k, v in props.items()}
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def geojson_bytes(hot: pd.DataFrame) -> bytes:
    """`geojson` as UTF-8 bytes."""
    return json.dumps(geojson(hot), separators=(",", ":"), allow_nan=False).encode()


LABELS = MappingProxyType({
    "relieved": "relieved", "partly_relieved": "partly relieved", "on_track": "on track", "late": "late",
    "blocked_by_transport": "blocked by transport",
    "no_upgrade_planned": "no upgrade planned", "hot": "hot spot (significant)", "cold": "cold spot (significant)",
    "not_significant": "not significant", "installed": "installed", "permit": "permit", "planned": "planned",
    "on_air": "on air", "no_upgrade": "no upgrade", "done": "done", "no_expansion": "no expansion"})
"""How a status reads on the page."""


def words(code: str | None) -> str:
    """How a code of the data (a status, a channel, an upgrade or link kind) reads on the page: `LABELS`, else
    its words (underscores as spaces); no code as empty text (never "None")."""
    if not _given(code):
        return ""
    return LABELS.get(code, str(code).replace("_", " "))


def legend(colour: str, layers, region: bool = False) -> list[tuple[str, list[tuple[str, tuple[int, int, int]]]]]:
    """The legend of the drawn layers (`region`: one region is shown, with the regions within it): (layer
    title, [(label, rgb), ...])."""
    out = []
    if "hotspots" in layers:
        palette = RELIEF_COLOURS if colour == "relief" else SIGNIFICANCE_COLOURS
        out.append((f"Hotspots by {colour}", [(LABELS[k], v) for k, v in palette.items()]))
    if "sites" in layers:
        out.append(("Sites by upgrade status (ring)", [(LABELS[k], v) for k, v in SITE_COLOURS.items()]))
    if "links" in layers:
        out.append(("Transport links (heavier: still to do)", [(LABELS[k], v) for k, v in LINK_COLOURS.items()]))
    if "regions" in layers:
        out.append(("Regions", [("outline", REGION_COLOUR)]
                    + ([("regions within it, where the data has them", INNER_REGION_COLOUR)] if region else [])))
    return out


def legend_html(colour: str, layers, region: bool = False) -> str:
    """`legend` as small HTML: a coloured square before each label."""
    rows = []
    for title, items in legend(colour, layers, region):
        swatches = " ".join(
            f'<span style="white-space:nowrap;margin-right:10px"><span style="display:inline-block;width:11px;'
            f'height:11px;background:rgb{rgb};margin-right:4px;vertical-align:middle"></span>{label}</span>'
            for label, rgb in items)
        rows.append(f'<div style="font-size:13px;margin:2px 0"><b>{title}:</b> {swatches}</div>')
    return "".join(rows)
