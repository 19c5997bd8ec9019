"""What the public page shows, cut from a published snapshot (no store, no streamlit): one region's figures,
its hotspot areas for the map, the complaint trend, the notes, and the links to the open-data files."""

from __future__ import annotations

import json
from dataclasses import dataclass

import h3
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pydeck as pdk
from shapely.geometry import shape

from lib import baselayer, basemap
from lib.public import files, i18n
from lib.public.snapshot import LATER, PUBLIC_STATUSES, Snapshot, quarter

NETWORK = "ALL"
STATUS_COLOURS = {"relieved": (46, 139, 87), "in_progress": (230, 159, 0), "planned": (86, 140, 200),
                  "no_plan": (180, 60, 60)}
"""Status -> RGB on the map (colour-blind safe: green, amber, blue, red)."""
LEVEL_ORDER = {"network": 0, "state": 1, "district": 2, "cluster": 3}
"""Regions from the widest to the most specific (a place's region is its most specific one)."""


@dataclass(frozen=True)
class Prepared:
    """A snapshot's tables as frames, made once per snapshot file and shared read-only by every session."""

    snapshot: Snapshot
    regions: pd.DataFrame
    planned: pd.DataFrame
    areas: pd.DataFrame
    monthly: pd.DataFrame
    notes: pd.DataFrame
    places: dict[str, list[str]]
    labels: dict[str, dict[str, str]]
    """language -> region id -> `region_label` (the region list is drawn on every page run)"""
    place_names: tuple[str, ...]
    """the place search's choices, sorted"""
    outlines: dict[str, dict]
    """region id -> its outline as a GeoJSON Feature (states, districts and city areas)"""
    state_outlines: list[dict]
    """the states' outlines (every public map draws them)"""
    state_districts: dict[str, list[str]]
    """state id -> its published districts (`districts_by_state`; only states that have some)"""
    choices: dict[str, tuple[str, ...]]
    """region id -> the region list while that region is chosen (`region_choices`)"""


def prepare(snap: Snapshot) -> Prepared:
    """The frames of `snap`: regions ordered (network, states, districts, city areas; by name), areas with hex
    ids and centres."""
    regions = snap.frame("regions")
    regions = regions.assign(_order=regions["level"].map(LEVEL_ORDER)).sort_values(["_order", "name", "region_id"])
    areas = snap.frame("complaint_areas")
    centres = [h3.cell_to_latlng(c) for c in areas["cell"]]
    areas = areas.assign(lat=[c[0] for c in centres], lon=[c[1] for c in centres])
    regions = regions.drop(columns="_order").set_index("region_id", drop=False)
    outlines = {str(r["region_id"]): {"type": "Feature", "geometry": r["geometry"], "properties": {}}
                for r in snap.doc["tables"]["region_outlines"]}
    places = _places(snap.frame("places"), regions, outlines)
    labels = {lang: {rid: _label(name, level, lang) for rid, name, level in
                     regions[["region_id", "name", "level"]].itertuples(index=False)} for lang in i18n.LANGUAGES}
    states = [f for rid, f in outlines.items() if regions.loc[rid, "level"] == "state"]
    kids = districts_by_state(regions)
    return Prepared(snap, regions, snap.frame("planned"), areas, snap.frame("complaints_monthly"), snap.frame("notes"),
                    places, labels, tuple(sorted(places)), outlines, states, kids, region_choices(regions, kids))


def districts_by_state(regions: pd.DataFrame) -> dict[str, list[str]]:
    """State id -> its districts (`regions` order; found up the parents, `states_of`), for the states with any."""
    state_of = states_of(regions)
    out: dict[str, list[str]] = {}
    for r in regions.index[regions["level"] == "district"]:
        if state_of[r] is not None:
            out.setdefault(state_of[r], []).append(r)
    return out


def region_choices(regions: pd.DataFrame, kids: dict[str, list[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """For each region (`regions` in `prepare`'s order), the region list the page offers while it is chosen: the
    network, the states, and the city areas, with the districts of the chosen region's state after that state
    (the chosen region's own when it is a state; none for the network). A list of every district (about 400)
    would be long to read, and sent with every page run of every visitor. `kids`: `districts_by_state`."""
    kids = districts_by_state(regions) if kids is None else kids
    state_of = states_of(regions)
    wide = list(regions.index[regions["level"] != "district"])
    plain = tuple(wide)
    per_state = {s: tuple(x for r in wide for x in ([r, *kids[s]] if r == s else [r])) for s in kids}
    out = {}
    for r in regions.index:
        out[r] = per_state.get(state_of[r], plain)
        if r not in out[r]:  # a district of no published state
            out[r] = (*out[r], r)
    return out


def states_of(regions: pd.DataFrame) -> dict[str, str | None]:
    """Region id -> the published state it lies in (a state: itself), found by following the parents up; None
    when no published state is among them (the network, a region whose parent is not published)."""
    level = dict(zip(regions["region_id"], regions["level"], strict=True))
    parent = dict(zip(regions["region_id"], regions["parent_id"], strict=True))
    out: dict[str, str | None] = {}
    for rid in level:
        at, seen = rid, set()
        while isinstance(at, str) and level.get(at) not in (None, "state") and at not in seen:
            seen.add(at)
            at = parent.get(at)
        out[rid] = at if isinstance(at, str) and level.get(at) == "state" else None
    return out


def _nearest_district(cluster: str, districts: list[str], outlines: dict[str, dict]) -> str | None:
    """Of `districts`, the one whose outline shares the most area with the city area `cluster`'s; None when no
    outline is known or none overlaps."""
    if cluster not in outlines:
        return None
    area = shape(outlines[cluster]["geometry"])
    shared = {d: area.intersection(shape(outlines[d]["geometry"])).area for d in districts if d in outlines}
    best = max(shared, key=shared.get, default=None)
    return best if best is not None and shared[best] > 0 else None


def _places(rows: pd.DataFrame, regions: pd.DataFrame, outlines: dict[str, dict]) -> dict[str, list[str]]:
    """Place name -> the published regions it lies in. Places of one name in several states are told apart
    by their state ("Münster (Nordrhein-Westfalen)", "Münster (Hessen)"), each with its own regions; places of
    one name in several districts of one state by their district ("Mülheim (Raum Köln)"), each with its
    district, its state and the city areas of that name there that overlap its district most (`outlines`)."""
    level = dict(zip(regions["region_id"], regions["level"], strict=True))
    state_of = states_of(regions)
    by_name: dict[str, dict[str | None, list[str]]] = {}
    for name, rid in rows.itertuples(index=False):
        state = state_of.get(rid)
        by_name.setdefault(name, {}).setdefault(state if isinstance(state, str) else None, []).append(rid)
    places: dict[str, list[str]] = {}
    for name, per_state in by_name.items():
        states = [s for s in per_state if s is not None]
        for state, rids in per_state.items():
            districts = sorted({r for r in rids if level.get(r) == "district"})
            if state is not None and len(districts) > 1:
                areas = {d: [] for d in districts}
                for c in sorted({r for r in rids if level.get(r) == "cluster"}):
                    if (d := _nearest_district(c, districts, outlines)) is not None:
                        areas[d].append(c)
                for d in districts:
                    places[f"{name} ({regions.at[d, 'name']})"] = [d, state, *areas[d]]
                continue
            key = name if len(states) <= 1 or state is None else f"{name} ({regions.at[state, 'name']})"
            places.setdefault(key, []).extend(rids)
    return places


def _label(name: str, level: str, lang: str) -> str:
    if level == "network":
        return i18n.t("network", lang)
    return f"{name} ({i18n.t('level_' + level, lang)})"


def region_label(p: Prepared, region_id: str, lang: str) -> str:
    """A region's name with its kind ("Berlin (Stadtgebiet)"), the network as "Deutschland (ganzes Netz)"."""
    return p.labels[lang][region_id]


def place_region(p: Prepared, place: str) -> str | None:
    """The most specific published region a place lies in (a city area before its district, that before its
    state)."""
    ids = [r for r in p.places.get(place, []) if r in p.regions.index]
    if not ids:
        return None
    return max(ids, key=lambda r: (LEVEL_ORDER[p.regions.loc[r, "level"]], r))


def subregions(p: Prepared, region_id: str) -> set[str]:
    """The region and the published regions inside it (every region for the network)."""
    if region_id == NETWORK:
        return set(p.regions.index)
    return {region_id, *p.regions.index[p.regions["parent_id"] == region_id]}


def planned(p: Prepared, region_id: str, lang: str) -> pd.DataFrame:
    """quarter (label), upgrades: the region's pending upgrades by planned quarter."""
    rows = p.planned[p.planned["region_id"] == region_id]
    rows = pd.concat([rows[rows["quarter"] != LATER], rows[rows["quarter"] == LATER]])
    return pd.DataFrame({"quarter": rows["quarter"].replace({LATER: i18n.t("later", lang)}),
                         "upgrades": rows["upgrades"].astype(int)}).reset_index(drop=True)


def areas(p: Prepared, region_id: str, lang: str) -> pd.DataFrame:
    """The hotspot areas touching the region, with map colour and a tooltip text in `lang`."""
    a = p.areas if region_id == NETWORK else p.areas[p.areas["region_ids"].map(lambda ids: region_id in ids)]
    label = [i18n.t("status_" + s, lang) for s in a["status"]]
    info = [i18n.t("about", lang, n=int(n)) + (f"; {i18n.t('expected', lang, q=q)}" if isinstance(q, str) else "")
            for n, q in zip(a["complaints"], a["expected_quarter"], strict=True)]  # lists: also for no area
    return a.assign(colour=[[*STATUS_COLOURS[s], 190] for s in a["status"]], label=label,
                    info=info).reset_index(drop=True)


MAP_HEIGHT = 500
MAP_PIXELS = (360, MAP_HEIGHT - 40)
"""The map's size the view is fitted to: a phone's width (a wider screen shows more around it)."""
HEX_ZOOM = 8.5
"""From this zoom on the areas are drawn as hexagons; below it as dots of AREA_DOT_METRES, at least
AREA_DOT_PIXELS wide (a hexagon of 5 km² would be a speck)."""
AREA_DOT_METRES = 2500
AREA_DOT_PIXELS = 2.5


def deck(a: pd.DataFrame, states: list[dict], chosen: dict | None, network: bool,
         inner: list[dict] | None = None) -> pdk.Deck:
    """The hotspot-area map on its base layer (lib/baselayer.py): the `states`' outlines, those of the regions
    `inner` to the chosen one (a state's districts) lighter, the `chosen` region's in dark, the areas `a`
    coloured by status (hexagons for a city; dots from a state's scale up) and the biggest towns' names;
    fitted to the chosen region (its outline, else its areas; the states for the network)."""
    if chosen is not None:
        box = baselayer.bounds([chosen])
    elif not network and len(a):
        box = (float(a["lon"].min()), float(a["lat"].min()), float(a["lon"].max()), float(a["lat"].max()))
    else:
        box = baselayer.bounds(states)
    layers = [baselayer.outline_layer(states)] if states else []
    if inner:
        layers.append(baselayer.outline_layer(inner, "inner", baselayer.INNER_COLOUR))
    if chosen is not None:
        layers.append(baselayer.outline_layer([chosen], "region", baselayer.CHOSEN_COLOUR, 2))
    columns = a[["cell", "colour", "label", "info"]]
    view = baselayer.fit_view(box, MAP_PIXELS)
    if view.zoom < HEX_ZOOM:
        dots = columns.assign(p=[[round(lo, 4), round(la, 4)] for lo, la in zip(a["lon"], a["lat"], strict=True)])
        layers.append(pdk.Layer("ScatterplotLayer", dots.drop(columns="cell"), id="areas", get_position="p",
                                get_fill_color="colour", get_radius=AREA_DOT_METRES,
                                radius_min_pixels=AREA_DOT_PIXELS, pickable=True))
    else:
        layers.append(pdk.Layer("H3HexagonLayer", columns, id="areas", get_hexagon="cell", get_fill_color="colour",
                                get_line_color=[255, 255, 255], line_width_min_pixels=1, pickable=True,
                                extruded=False))
    layers.append(baselayer.town_layer(baselayer.towns(box, MAP_PIXELS)))
    return baselayer.CompactDeck(layers=layers, initial_view_state=view,
                      tooltip={"text": "{label}\n{info}"}, **basemap.deck_args())


def trend(p: Prepared, region_id: str) -> pd.DataFrame:
    """month (first day), complaints (None: fewer than k) of the region."""
    m = p.monthly[p.monthly["region_id"] == region_id]
    return pd.DataFrame({"month": pd.to_datetime(m["month"] + "-01"), "complaints": m["complaints"]}).reset_index(
        drop=True)


def notes(p: Prepared, region_id: str, lang: str) -> pd.DataFrame:
    """Notes of the region and the regions inside it, newest first: those in `lang` when there are any, else all
    (an operator who writes both languages writes each note twice)."""
    n = p.notes[p.notes["region_id"].isin(subregions(p, region_id))]
    if (n["language"] == lang).any():
        n = n[n["language"] == lang]
    return n.sort_values(["published_on", "note_id"], ascending=[False, True]).reset_index(drop=True)


def status_legend(lang: str) -> str:
    """A one-line legend of the map's colours (markdown with coloured squares)."""
    def sq(rgb) -> str:
        return "<span style='color:rgb({},{},{})'>&#9632;</span>".format(*rgb)

    return " &nbsp; ".join(f"{sq(STATUS_COLOURS[s])} {i18n.t('status_' + s, lang)}" for s in PUBLIC_STATUSES)


CHART_MARGIN = dict(l=10, r=10, t=10, b=10)


class FrozenFigure(go.Figure):
    """A Figure whose dict is made once: st.plotly_chart turns the figure into a dict and that into JSON on every
    run; the charts of a region never change, so every run of every session shares one dict (read only)."""

    def to_dict(self) -> dict:
        if "_frozen_dict" not in self.__dict__:  # plain lists, no numpy left to encode
            self.__dict__["_frozen_dict"] = json.loads(pio.to_json(super().to_dict(), validate=False))
        return self.__dict__["_frozen_dict"]


FORECAST_KEYS = ("forecast", "forecast_earliest", "forecast_latest")
LATE_COLOUR = "#c0392b"
PLANNED_COLOUR = "#3f5670"
FORECAST_COLOUR = "#1b1b1b"


def planned_figure(plan: pd.DataFrame, row: dict, lang: str) -> go.Figure:
    """Bars of the upgrades still to come: first those late (planned date passed, not on air), then those
    planned per quarter; a dashed line at the quarter the forecast says the last one goes on air in."""
    late = int(row["upgrades_late"])
    x = [i18n.t("late_bar", lang), *plan["quarter"]]
    y = [late, *plan["upgrades"].astype(int)]
    colours = [LATE_COLOUR, *[PLANNED_COLOUR] * len(plan)]
    fig = FrozenFigure(go.Bar(x=x, y=y, marker_color=colours, text=[i18n.number(v, lang) for v in y],
                              hovertemplate="%{x}: %{text}<extra></extra>"))
    fig.update_layout(height=280, margin=dict(CHART_MARGIN, t=34), yaxis_title=i18n.t("upgrades", lang),
                      xaxis_type="category", separators=i18n.SEPARATORS[lang], yaxis_tickformat=",")
    at = forecast_bar(plan, row.get("forecast"), lang)
    if at is not None:
        fig.add_vline(x=at + 1, line_dash="dash", line_color=FORECAST_COLOUR, line_width=2,
                      annotation_text=i18n.t("forecast_line", lang, month=i18n.month(row["forecast"], lang)),
                      annotation_position="top", annotation_font_color=FORECAST_COLOUR)
    return fig


def forecast_bar(plan: pd.DataFrame, forecast: str | None, lang: str) -> int | None:
    """Index in `plan` of the bar of the forecast's quarter (the "later" bar when it lies beyond), or None
    when there is no forecast."""
    if not forecast:
        return None
    label = quarter(forecast)
    quarters = list(plan["quarter"])
    if label in quarters:
        return quarters.index(label)
    later = i18n.t("later", lang)
    return quarters.index(later) if later in quarters and label > max(q for q in quarters if q != later) else None


MONTH_TICKS = 8
"""The most months the complaints chart names on its axis."""


def month_ticks(months, lang: str) -> dict:
    """The x axis of a chart by month, its months named as `lang` writes them (German: Okt. 2027; the chart's own
    dates would read English): every n-th month, at most `MONTH_TICKS`."""
    ms = sorted(set(pd.to_datetime(pd.Series(months))))
    picked = ms[::max(1, -(-len(ms) // MONTH_TICKS))]
    return {"tickmode": "array", "tickvals": picked, "ticktext": [i18n.month(m, lang) for m in picked]}


def trend_figure(t: pd.DataFrame, lang: str) -> go.Figure:
    """Bars of complaints per month (gaps where fewer than k)."""
    fig = FrozenFigure(go.Bar(x=t["month"], y=t["complaints"], marker_color="#5b6b7f",
                           hovertemplate="%{x|%m/%Y}: %{y}<extra></extra>"))
    fig.update_layout(height=260, margin=CHART_MARGIN, yaxis_title=i18n.t("complaints", lang),
                      xaxis=month_ticks(t["month"], lang), separators=i18n.SEPARATORS[lang], yaxis_tickformat=",")
    return fig


@dataclass(frozen=True)
class RegionView:
    """Everything the page draws for one region in one language: made once, shared read-only by every session
    (building the charts costs more than the rest of a page run)."""

    row: dict
    """the region's published row (regions table)"""
    deck: pdk.Deck | None
    planned_fig: go.Figure
    trend_fig: go.Figure
    notes: tuple[tuple[str, str], ...]
    """(heading "date · region" as plain text, note text) of `notes`, in their order"""
    after_map: str
    """markdown (HTML only in the legend) under the map: its caption, legend and a table of what it shows, then
    the trend's heading"""
    after_trend: str
    """markdown under the trend chart: its caption, the notes' heading and notes, the open data's heading and
    caption (every page run sends it as one element; every value from the data goes in through `i18n.plain`)"""


def region_view(p: Prepared, region_id: str, lang: str) -> RegionView:
    """The region's row, map (None without areas), charts and notes."""
    a = areas(p, region_id, lang)
    shown = notes(p, region_id, lang)
    heads = [f"{i18n.date(d, lang)} · {i18n.plain(region_label(p, r, lang))}"
             for d, r in zip(shown["published_on"], shown["region_id"], strict=True)]
    notes_ = tuple(zip(heads, shown["text"], strict=True))
    row = p.regions.loc[region_id].to_dict()
    for key in FORECAST_KEYS:  # an empty date is NaN in the frame: None, as published
        row[key] = row[key] if isinstance(row[key], str) else None
    inner = [p.outlines[r] for r in p.state_districts.get(region_id, []) if r in p.outlines]
    the_map = deck(a, p.state_outlines, p.outlines.get(region_id), region_id == NETWORK, inner) if len(a) else None
    return RegionView(row, the_map,
                      planned_figure(planned(p, region_id, lang), row, lang), trend_figure(trend(p, region_id), lang),
                      notes_, after_map(a, p.snapshot.k, lang, bool(inner)), after_trend(notes_, p.snapshot.k, lang))



def small(text: str) -> str:
    """Markdown for a caption-sized line (`text` already markdown)."""
    return f":small[{text}]"


def note_text(text: str) -> str:
    """A note's text as markdown that reads as written, its line breaks kept (no paragraph breaks inside)."""
    return "  \n".join(i18n.plain(line) for line in str(text).splitlines() if line.strip()) or ZWSP_LINE


ZWSP_LINE = i18n.ZWSP
"""What stands for an empty note text (a paragraph must hold something)."""


def after_map(a: pd.DataFrame, k: int, lang: str, districts: bool = False) -> str:
    """The text between the map and the trend chart, as one markdown block (see `RegionView.after_map`): the
    map's caption (and what its thin lines are, when it draws a state's `districts`) and legend, and a table of
    what the map shows (the areas `a` by status: how many, about how many complaints), which a screen reader
    reads where it cannot read the map."""
    if len(a):
        caption = i18n.t("map_caption", lang, k=k) + (" " + i18n.t("map_districts", lang) if districts else "")
        parts = [small(caption), status_legend(lang), map_table(a, lang)]
    else:
        parts = [small(i18n.t("no_areas", lang, k=k))]
    return "\n\n".join([*parts, "### " + i18n.t("trend_title", lang)])


def map_table(a: pd.DataFrame, lang: str) -> str:
    """The areas `a` by public status, most advanced first, as a markdown table: areas, complaints (the sum of
    their published, rounded counts)."""
    rows = [f"| {i18n.t('map_table_status', lang)} | {i18n.t('map_table_areas', lang)} | "
            f"{i18n.t('map_table_complaints', lang)} |", "|---|---:|---:|"]
    for status in PUBLIC_STATUSES:
        mine = a[a["status"] == status]
        if len(mine):
            rows.append(f"| {i18n.t('status_' + status, lang)} | {i18n.number(len(mine), lang)} | "
                        f"{i18n.number(int(mine['complaints'].sum()), lang)} |")
    return "\n".join(rows)


def after_trend(notes_: tuple[tuple[str, str], ...], k: int, lang: str) -> str:
    """The text under the trend chart, as one markdown block (see `RegionView.after_trend`)."""
    parts = [small(i18n.t("trend_caption", lang, k=k)), "### " + i18n.t("notes_title", lang)]
    if not notes_:
        parts.append(small(i18n.t("no_notes", lang)))
    for head, text in notes_:
        parts += [small(head), note_text(text)]
    return "\n\n".join([*parts, "### " + i18n.t("open_data", lang), small(i18n.t("open_data_caption", lang)),
                        download_links(lang)])


def download_links(lang: str) -> str:
    """The open-data files as one line of links to the open-data endpoint (the server sends them as downloads):
    plain links, so that no page run hands a file to Streamlit's media store, and a server of several
    processes serves them from any of its processes."""
    return " · ".join(f"[{i18n.t(text, lang)}]({files.url(name)})"
                           for name, (text, _, _) in files.FILES.items())
