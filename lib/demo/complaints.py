"""Synthetic complaints for the demo data (lib/demo), and the Arrow helpers that write every demo table.

Each day's complaints come from a population background, capacity hotspots and coverage
gaps, with rates that follow a weekly rhythm and a crowd-list campaign. The set effect of the
programme: a capacity complaint whose place's best server (`lib.engine.serving`, the model the
engine measures with) is relieved by its day does not come with probability `CAPACITY_EFFECT`
(it is drawn again, so each day keeps its number of complaints); coverage complaints do not
move. Rows are drawn day block by day block (about CHUNK_ROWS at a time), so even 10 million
complaints need little memory and come out in time order.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lib import cells
from lib.demo.geo import Geography, offset, snap_inside, spread_km
from lib.engine import serving
from lib.ingest import schema

COMPLAINTS_FROM = datetime.date(2025, 5, 1)
CAMPAIGN_START = datetime.date(2025, 9, 8)  # the crowd list goes public
CHUNK_ROWS = 1_000_000
SHARES = np.array([0.45, 0.40, 0.15])  # complaints from background, capacity hotspots (kind 1), coverage gaps (2)
CATEGORY_P = np.array([[.25, .25, .18, .20, .12], [.05, .52, .30, .08, .05], [.62, .04, .10, .22, .02]])
CHANNEL_P = np.array([[.12, .58, .22, .08], [.18, .27, .37, .18]])  # crowd, hotline, app, social: first, last day
HOURLY = np.array([1, .6, .4, .3, .3, .5, 1.5, 3, 4.5, 5, 5, 5, 5.5, 5, 4.5, 4.5, 5, 5.5, 6, 6, 5.5, 4.5, 3, 2])
WEEKEND, GROWTH, SURGE_DAYS, SURGE_PEAK, SURGE_TAIL = 0.75, 0.25, 25.0, 1.5, 0.2
HOT_JITTER_KM = 0.2  # complaints scatter this much around their hotspot
CAPACITY_EFFECT = 0.5
"""The share of capacity complaints that no longer come once the best server of their place is relieved."""
CAPACITY_CODES = np.array([schema.CATEGORIES.index(c) for c in schema.CAPACITY_CATEGORIES])
TEXTS = {
    "no_signal": ("Kein Netz", "Gar kein Empfang hier", "Funkloch an der Landstraße", "Handy zeigt kein Netz an",
                  "Kein Empfang im ganzen Ort", "Notruf wäre hier nicht möglich", "Netz fällt immer wieder ganz weg"),
    "slow_data": ("Videos laden ewig", "Internet extrem langsam", "Mobile Daten kaum nutzbar", "Seiten laden nicht",
                  "Abends kein brauchbares Internet", "Volle Balken, aber nichts lädt", "Videocalls ruckeln ständig"),
    "dropped_calls": ("Gespräche brechen ständig ab", "Anrufe werden unterbrochen", "Telefonieren nur mit Abbrüchen",
                      "Gegenüber hört mich nur abgehackt", "Anruf bricht nach wenigen Sekunden ab"),
    "no_indoor": ("Kein Netz in der Wohnung", "Im Büro kein Empfang", "Drinnen nur am Fenster Empfang",
                  "Im Erdgeschoss kein Netz", "Im Haus kein Empfang"),
    "other": ("Netz allgemein schlecht", "WLAN-Call funktioniert nicht", "SMS kommen verspätet an",
              "Störung seit gestern", "Bitte Netz ausbauen"),
}
TEXT_ENDINGS = ("", " seit Tagen", " seit Wochen", ", bitte beheben", " – schon mehrfach gemeldet")
ARROW_TYPES = {schema.TEXT: pa.string(), schema.CHOICE: pa.string(), schema.GEOMETRY: pa.string(),
               schema.INT: pa.int64(), schema.CELL: pa.int64(), schema.FLOAT: pa.float64(), schema.LAT: pa.float64(),
               schema.LON: pa.float64(), schema.DATE: pa.date32(), schema.TIMESTAMP: pa.timestamp("s")}


def pick(rng: np.random.Generator, rows: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One category index per record, drawn from the probability row that `rows` selects."""
    cum = np.cumsum(probs, axis=1)
    cum = cum / cum[:, -1:]
    return np.minimum((rng.random(len(rows))[:, None] > cum[rows]).sum(axis=1), probs.shape[1] - 1)


def arrow_table(table: schema.Table, columns: dict, n: int) -> pa.Table:
    """An Arrow table with exactly the schema's columns (absent ones empty) in the schema's order."""
    arrays = []
    for f in table.fields:
        value, kind = columns.get(f.name), ARROW_TYPES[f.type]
        if value is None:
            arrays.append(pa.nulls(n, kind))
        elif isinstance(value, pa.Array):
            arrays.append(value.cast(kind))
        else:
            value = np.asarray(value).astype("datetime64[D]") if f.type == schema.DATE else np.asarray(value)
            arrays.append(pa.array(value, type=kind, from_pandas=True))
    return pa.Table.from_arrays(arrays, names=table.names)


def write_tables(tables: Iterable[pa.Table], path: Path, table: schema.Table) -> None:
    """Arrow tables as one file: Parquet for .parquet, else comma-separated UTF-8 with a plain header."""
    arrow_schema = pa.schema([(f.name, ARROW_TYPES[f.type]) for f in table.fields])
    if path.suffix == ".parquet":
        writer = pq.ParquetWriter(str(path), arrow_schema)
    else:
        writer = pacsv.CSVWriter(str(path), arrow_schema, write_options=pacsv.WriteOptions(quoting_header="none"))
    with writer:
        for t in tables:
            writer.write_table(t)


def complaint_rates(hot: pd.DataFrame, until: datetime.date) -> tuple[np.ndarray, np.ndarray]:
    """Expected complaints per source (background, then each hotspot) and day; and the channel mix per day.

    `hot` has kind (1 capacity, 2 coverage), weight, onset and growth (per year) from the first day on.
    """
    n_days = (until - COMPLAINTS_FROM).days
    day = np.arange(n_days)
    x = np.maximum(day - (CAMPAIGN_START - COMPLAINTS_FROM).days, 0) / SURGE_DAYS
    surge = SURGE_PEAK * x * np.exp(1 - x) + SURGE_TAIL * (x > 0)
    base = 1 + GROWTH * day / n_days
    volume = np.where((COMPLAINTS_FROM.weekday() + day) % 7 >= 5, WEEKEND, 1.0) * (base + surge)
    onset = hot.onset.to_numpy()[:, None]
    grown = np.exp(hot.growth.to_numpy()[:, None] * (day - onset) / 365)
    hot_rate = hot.weight.to_numpy()[:, None] * (day >= onset) * grown
    rates = np.vstack([volume[None, :], hot_rate * volume])
    kind = np.r_[0, hot.kind.to_numpy()]
    for k, share in enumerate(SHARES):
        rates[kind == k] *= share / max(rates[kind == k].sum(), 1e-12)
    crowd = surge / (base + surge)  # the campaign's extra complaints all come through the crowd list
    mix = CHANNEL_P[0] + (CHANNEL_P[1] - CHANNEL_P[0]) * (day / n_days)[:, None]
    return rates, mix * (1 - crowd)[:, None] + np.eye(len(schema.CHANNELS))[0] * crowd[:, None]


def _texts() -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """All complaint texts, and where each category's texts start and how many it has."""
    texts = [[t + e for t in TEXTS[c] for e in TEXT_ENDINGS] for c in schema.CATEGORIES]
    counts = np.array([len(t) for t in texts])
    return pa.array([t for group in texts for t in group]), np.r_[0, np.cumsum(counts)[:-1]], counts


def _locations(geo: Geography, hot: pd.DataFrame, src: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Where each complaint comes from: near people (source 0) or scattered around its hotspot."""
    places, bg = geo.places, src == 0
    lat, lon = np.empty(len(src)), np.empty(len(src))
    place = rng.choice(len(places), bg.sum(), p=places.population.to_numpy() / places.population.sum())
    spread = spread_km(places.population.to_numpy()[place])[:, None] * rng.normal(size=(len(place), 2))
    lat[bg], lon[bg] = offset(places.lat.to_numpy()[place], places.lon.to_numpy()[place], *spread.T)
    h = src[~bg] - 1
    lat[~bg], lon[~bg] = offset(hot.lat.to_numpy()[h], hot.lon.to_numpy()[h],
                                *rng.normal(0, HOT_JITTER_KM, size=(2, len(h))))
    lat, lon = snap_inside(geo, lat, lon, rng, jitter_km=0.3)
    s, w, n, e = schema.COUNTRY_BBOX
    return np.round(np.clip(lat, s, n), 6), np.round(np.clip(lon, w, e), 6)


@dataclass(frozen=True)
class Served:
    """The sites complaints are served by: position, type and the day (since COMPLAINTS_FROM) each is relieved
    (every upgrade on air with its transport in place; inf: not by the data date)."""

    lat: np.ndarray
    lon: np.ndarray
    site_type: np.ndarray
    relief_day: np.ndarray


def _thinned(served: Served, lat: np.ndarray, lon: np.ndarray, day: np.ndarray, category: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Which complaints do not come (the set effect): capacity complaints whose place's best server is relieved by
    their day, each with probability CAPACITY_EFFECT."""
    out = np.zeros(len(day), dtype=bool)
    cap = np.flatnonzero(np.isin(category, CAPACITY_CODES))
    if cap.size == 0:
        return out
    centre_lat, centre_lon = cells.cells_to_latlng(cells.latlng_to_cells(lat[cap], lon[cap]))  # the place
    best = serving.best_servers(served.lat, served.lon, served.site_type, centre_lat, centre_lon)
    relieved = (best >= 0) & (day[cap] >= np.where(best >= 0, served.relief_day[np.maximum(best, 0)], np.inf))
    out[cap[relieved & (rng.random(cap.size) < CAPACITY_EFFECT)]] = True
    return out


def _draw(geo: Geography, hot: pd.DataFrame, kind: np.ndarray, cum: np.ndarray, days: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place and category of complaints on `days` (of the block whose cumulated source rates per day are `cum`):
    each one's source drawn from its day's rates by one sorted search over all days of the block."""
    sources = cum.shape[1]
    src = np.clip(np.searchsorted(cum.ravel(), days + rng.random(len(days))) - days * sources, 0, sources - 1)
    return (*_locations(geo, hot, src, rng), pick(rng, kind[src], CATEGORY_P))


def complaint_tables(geo: Geography, hot: pd.DataFrame, rates: np.ndarray, mix: np.ndarray, n: int,
                     rng: np.random.Generator, served: Served | None = None) -> Iterator[pa.Table]:
    """`n` complaints in time order as Arrow tables of about CHUNK_ROWS rows (with the set effect of `served`)."""
    per_day = rng.multinomial(n, rates.sum(0) / rates.sum())
    bounds = np.searchsorted(np.cumsum(per_day), np.arange(CHUNK_ROWS, n, CHUNK_ROWS)) + 1
    bounds = np.unique(np.r_[0, np.minimum(bounds, len(per_day)), len(per_day)])
    kind, (texts, text_start, text_count) = np.r_[0, hot.kind.to_numpy()], _texts()
    width, done = max(7, len(str(n))), 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        day = np.repeat(np.arange(lo, hi), per_day[lo:hi])
        m = len(day)
        cum = np.cumsum(rates[:, lo:hi], axis=0).T
        cum = cum / cum[:, -1:] + np.arange(hi - lo)[:, None]
        lat, lon, category = _draw(geo, hot, kind, cum, day - lo, rng)
        again = _thinned(served, lat, lon, day, category, rng) if served is not None else np.zeros(0, dtype=int)
        while again.any():  # a complaint that does not come is drawn again on its day: each day keeps its number
            redo = np.flatnonzero(again)
            lat[redo], lon[redo], category[redo] = _draw(geo, hot, kind, cum, day[redo] - lo, rng)
            again = np.zeros(m, dtype=bool)
            again[redo] = _thinned(served, lat[redo], lon[redo], day[redo], category[redo], rng)
        text = text_start[category] + (rng.random(m) * text_count[category]).astype(int)
        seconds = day * 86400 + pick(rng, np.zeros(m, dtype=int), HOURLY[None, :]) * 3600 + rng.integers(0, 3600, m)
        order = np.argsort(seconds, kind="stable")
        ids = pc.utf8_lpad(pa.array(np.arange(done + 1, done + m + 1)).cast(pa.string()), width, "0")
        yield arrow_table(schema.COMPLAINTS, {
            "complaint_id": pc.binary_join_element_wise("K", ids, ""),
            "received_at": np.datetime64(COMPLAINTS_FROM, "s") + seconds[order].astype("timedelta64[s]"),
            "lat": lat[order], "lon": lon[order],
            "category": np.array(schema.CATEGORIES, dtype=object)[category][order],
            "channel": np.array(schema.CHANNELS, dtype=object)[pick(rng, day, mix)][order],
            "text": texts.take(pa.array(text[order])),
        }, m)
        done += m
