"""The public open-data files, made from a published snapshot (no store, no streamlit) and served by the
open-data endpoint (lib/public/api.py) as downloads; the public page links to them.

    netzausbau-open-data.zip     every table as a CSV (`table_csv`: formula cells escaped), with a README
    netzausbau-areas.geojson     the hotspot areas as hexagons, properties as published
    netzausbau-snapshot.json     the snapshot as published (exactly the file's bytes)
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import h3
import pandas as pd

from lib import export
from lib.public.snapshot import ALLOWLIST, Snapshot

ROUTE_PREFIX = "/api/public/files/"


def table_csv(snap: Snapshot, name: str) -> bytes:
    """One table of the snapshot as a CSV, each value as the snapshot holds it: a whole number as one (also in a
    column with empty cells: a count below k), an outline as its GeoJSON text, a list of region ids separated by
    spaces, no value as an empty cell; text cells that a spreadsheet would run as a formula escaped."""
    rows = snap.doc["tables"][name]
    frame = snap.frame(name)
    for column in frame.columns:
        values = [r.get(column) for r in rows]
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            frame[column] = pd.array(values, dtype="Int64")
        elif given and all(isinstance(v, dict) for v in given):
            frame[column] = [None if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
                             for v in values]
        elif given and all(isinstance(v, list) for v in given):
            frame[column] = [None if v is None else " ".join(map(str, v)) for v in values]
    return export.csv_bytes(frame)


def csv_zip(snap: Snapshot) -> bytes:
    """Every table of the snapshot as a CSV (`table_csv`) in one ZIP, with a short README."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ALLOWLIST:
            z.writestr(zipfile.ZipInfo(f"{name}.csv", (2000, 1, 1, 0, 0, 0)), table_csv(snap, name))
        readme = (f"Netzausbau-Monitor open data, data as of {snap.doc['data_as_of']}; counts of complaints "
                  f"rounded to {snap.doc['round_base']}, empty below {snap.k}. One CSV per table; an outline is "
                  "GeoJSON text, the region ids of an area are separated by spaces.\n")
        z.writestr(zipfile.ZipInfo("README.txt", (2000, 1, 1, 0, 0, 0)), readme)
    return buf.getvalue()


def geojson(snap: Snapshot) -> bytes:
    """The hotspot areas as a GeoJSON FeatureCollection of hexagons (properties as published)."""
    features = []
    for row in snap.doc["tables"]["complaint_areas"]:
        ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(row["cell"])]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                         "properties": dict(row)})
    doc = {"type": "FeatureCollection", "data_as_of": snap.doc["data_as_of"], "k": snap.k, "features": features}
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")


FILES: dict[str, tuple[str, str, Callable[[Snapshot], bytes]]] = {
    "netzausbau-open-data.zip": ("download_csv", "application/zip", csv_zip),
    "netzausbau-areas.geojson": ("download_geojson", "application/geo+json", geojson),
    "netzausbau-snapshot.json": ("download_json", "application/json", lambda snap: snap.raw),
}
"""File name -> (its link's text in lib/public/i18n.py, media type, how it is made from the snapshot)."""


def url(name: str) -> str:
    """Where the open-data endpoint serves the file `name` (a key of FILES)."""
    return ROUTE_PREFIX + name
