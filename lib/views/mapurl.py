"""The planner map's view in the URL: parse query parameters (bad ones fall back, with a note) and write them.

A shared link reproduces the view: the date, the region, every filter, the colour mode and
the selected hotspot or site. Only values that differ from the defaults are written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import h3
import pandas as pd

from lib.engine import asof, hotspots, linkage
from lib.ingest import schema
from lib.views import mapdraw, maps

CHOICES = {
    "ch": ("channels", schema.CHANNELS),
    "uk": ("upgrade_kinds", schema.UPGRADE_KINDS),
    "ss": ("site_statuses", asof.SITE_STATUSES),
    "ls": ("link_states", asof.LINK_STATES),
    "rs": ("relief_statuses", linkage.STATUSES),
    "layers": ("layers", maps.LAYERS),
}
"""List parameters: URL key -> (Params field, allowed values); comma-separated, absent: the default."""

PICKABLE = ("hotspots", "sites")
"""Layers whose objects can be selected through the URL (`sel=hotspots:<h3 hex>` or `sel=sites:<site_id>`)."""


@dataclass
class State:
    """Everything the URL holds: the view's Params, the colour mode, the picked object, and notes on bad values."""

    params: maps.Params
    colour: str = "relief"
    pick: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)


def _one(params: Mapping, key: str):
    value = params.get(key)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return None if value is None else str(value).strip()


def _single(params: Mapping, notes: list[str], key: str, allowed, fallback: str) -> str | None:
    """A one-value parameter among `allowed`; None when absent, or when bad (with a note naming the `fallback`)."""
    value = _one(params, key)
    if value and value not in allowed:
        notes.append(f"{key}={value!r} is not one of {', '.join(allowed)}; {fallback}.")
        return None
    return value or None


def parse(params: Mapping, first: dt.date, last: dt.date, region_ids) -> State:
    """The State of query `params` (a mapping of str, or lists of str); each bad value falls back to its
    default with a note naming the parameter, the value and what was used instead."""
    notes: list[str] = []
    kw: dict = {}

    date = _one(params, "date")
    as_of = last
    if date:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            notes.append(f"date={date!r} is not a date (YYYY-MM-DD); showing {last}.")
        else:
            if first <= day <= last:
                as_of = day
            else:
                notes.append(f"date={date} lies outside the data ({first} to {last}); showing {last}.")
    region = _one(params, "region")
    if region:
        if region in set(region_ids):
            kw["region"] = region
        else:
            notes.append(f"region={region!r} is not a known region; showing all of Germany.")
    if kind := _single(params, notes, "kind", hotspots.KINDS, "showing capacity"):
        kw["kind"] = kind
    for key, (name, allowed) in CHOICES.items():
        raw = _one(params, key)
        if raw is None:
            continue
        values = tuple(v for v in raw.split(",") if v) if raw else ()
        bad = [v for v in values if v not in allowed]
        if bad:
            notes.append(f"{key}={raw!r}: unknown {', '.join(bad)} (choose from {', '.join(allowed)}); "
                         "using the default.")
        elif name in ("channels", "upgrade_kinds") and set(values) == set(allowed):
            kw[name] = None  # every channel or kind: no filter
        else:
            kw[name] = tuple(v for v in allowed if v in values)
    sig = _one(params, "sig")
    if sig:
        if sig in ("0", "1"):
            kw["significant_only"] = sig == "1"
        else:
            notes.append(f"sig={sig!r} must be 0 or 1; showing significant hotspots only.")
    if study := _single(params, notes, "study", hotspots.STUDY_AREAS, "studying near complaints"):
        kw["study"] = study
    res = _one(params, "res")
    if res:
        if res in {str(r) for r in hotspots.RESOLUTIONS}:
            kw["res"] = int(res)
        else:
            notes.append(f"res={res!r} is not one of {', '.join(map(str, hotspots.RESOLUTIONS))}; "
                         "choosing by the area.")
    colour = _one(params, "colour") or "relief"
    if colour not in maps.COLOUR_MODES:
        notes.append(f"colour={colour!r} is not one of {', '.join(maps.COLOUR_MODES)}; colouring by relief.")
        colour = "relief"
    pick = None
    sel = _one(params, "sel")
    if sel:
        layer, _, ident = sel.partition(":")
        ok = layer in PICKABLE and ident and (layer != "hotspots" or h3.is_valid_cell(ident))
        if ok:
            pick = (layer, ident)
        else:
            notes.append(f"sel={sel!r} is not hotspots:<H3 cell> or sites:<site id>; nothing selected.")
    return State(maps.Params(as_of=as_of, **kw), colour, pick, notes)


def query(state: State, last: dt.date) -> dict[str, str]:
    """The query parameters of `state` that differ from the defaults (the date defaults to `last`)."""
    p, d = state.params, maps.Params(as_of=last)
    out = {}
    if p.as_of != last:
        out["date"] = p.as_of.isoformat()
    if p.region:
        out["region"] = p.region
    if p.kind != d.kind:
        out["kind"] = p.kind
    for key, (name, allowed) in CHOICES.items():
        value, default = getattr(p, name), getattr(d, name)
        value = tuple(allowed) if value is None else tuple(value)
        if value != (tuple(allowed) if default is None else tuple(default)):
            out[key] = ",".join(value)
    if p.significant_only != d.significant_only:
        out["sig"] = "1" if p.significant_only else "0"
    if p.study != d.study:
        out["study"] = p.study
    if p.res is not None:
        out["res"] = str(p.res)
    if state.colour != "relief":
        out["colour"] = state.colour
    if state.pick:
        out["sel"] = f"{state.pick[0]}:{state.pick[1]}"
    return out


def next_month(day: dt.date, first: dt.date, last: dt.date) -> dt.date:
    """The play control's next date: one month on, at most `last`; from `last` back to `first`."""
    if day >= last:
        return first
    return min(last, (pd.Timestamp(day) + pd.DateOffset(months=1)).date())


def play_due(now: float, stepped: float, ran: float, seconds: float) -> bool:
    """Whether the play control steps a month now (monotonic seconds): once `seconds` (less a tenth, the
    timer's slack) have passed since its last step and since the last page run ended. A slow page run thus
    gets a pause after it: steps never queue behind one another or behind a person's own edits."""
    return now - max(stepped, ran) >= seconds * 0.9


def date_range(summary) -> tuple[dt.date, dt.date]:
    """The slider's range: the first day with a complaint (else the earliest date held) to the data's as-of day."""
    last = summary.data_as_of.date() if summary.data_as_of else dt.date.today()
    lows = [lo for lo, _ in summary.date_ranges.values() if lo is not None]
    first = summary.date_ranges.get("Complaints received", (None, None))[0] or (min(lows) if lows else last)
    return min(first, last), last


WIDGETS = {"map_date": "as_of", "map_region": "region", "map_kind": "kind", "map_res": "res", "map_layers": "layers",
           "map_ch": "channels", "map_uk": "upgrade_kinds", "map_ss": "site_statuses", "map_ls": "link_states",
           "map_rs": "relief_statuses", "map_sig": "significant_only", "map_study": "study"}
"""The page's widget keys and the Params field each sets (map_colour and map_pick hold the rest of the State)."""


def widget_values(state: State) -> dict:
    """The widget values that show `state` (lists for multiselects, "" for all of Germany, "auto" resolution;
    no channel or upgrade kind chosen: all of them)."""
    p = state.params
    out = {key: getattr(p, name) for key, name in WIDGETS.items()}
    out.update(map_region=p.region or "", map_res=p.res or "auto", map_colour=state.colour, map_pick=state.pick,
               map_ch=list(p.channels or []), map_uk=list(p.upgrade_kinds or []))
    for key in ("map_layers", "map_ss", "map_ls", "map_rs"):
        out[key] = list(out[key])
    return out


def params_from(values: Mapping) -> maps.Params:
    """The Params the widget `values` (keys of `WIDGETS`) select; no channel or kind chosen, or every one, means
    no filter."""
    kw = {name: values[key] for key, name in WIDGETS.items()}
    kw["region"] = kw["region"] or None
    kw["res"] = None if kw["res"] == "auto" else int(kw["res"])
    for name, every in (("channels", schema.CHANNELS), ("upgrade_kinds", schema.UPGRADE_KINDS)):
        chosen = set(kw[name] or ())
        kw[name] = None if not chosen or chosen == set(every) else tuple(v for v in every if v in chosen)
    for name, every in (("layers", maps.LAYERS), ("site_statuses", asof.SITE_STATUSES),
                        ("link_states", asof.LINK_STATES), ("relief_statuses", linkage.STATUSES)):
        kw[name] = tuple(v for v in every if v in (kw[name] or ()))
    return maps.Params(**kw)


def choose(memory: dict, selection, rows, ranked_cells) -> tuple[str, str] | None:
    """The selected object: the newest of a map click (`selection`, the event of the chart `chart_key` names)
    and a ranked-table row (`rows`, indices into `ranked_cells`); `memory` (the session) keeps what was seen
    before. A row starts the chart afresh (`renew_chart`), so that a click on the object the map last selected
    selects it again rather than undoing that selection."""
    clicked = mapdraw.picked(selection)
    if clicked != memory.get("map_clicked"):
        memory["map_clicked"] = clicked
        memory["map_pick"] = clicked or memory.get("map_pick")
    rows = tuple(rows or ())
    if rows != memory.get("map_rows"):
        memory["map_rows"] = rows
        if rows and rows[0] < len(ranked_cells):
            memory["map_pick"] = ("hotspots", str(ranked_cells[rows[0]]))
            renew_chart(memory)
    return memory.get("map_pick")


def chart_key(memory: dict) -> str:
    """The map chart's widget key. A new key is a new chart: nothing selected in it."""
    return f"map_chart_{memory.get('map_chart', 0)}"


def renew_chart(memory: dict) -> None:
    """Start the map chart afresh. The chart toggles: a click on the object it holds selected undoes that
    selection. Once the page shows another selection (a table row) or none ("Clear selection"), a click on
    that object must select it."""
    memory["map_chart"] = memory.get("map_chart", 0) + 1
    memory["map_clicked"] = None


def clear(memory: dict) -> None:
    """"Clear selection": no object selected, on the map or the page."""
    memory["map_pick"] = None
    renew_chart(memory)
