"""The public open-data files, made from a published snapshot (no store, no streamlit) and served by the
open-data endpoint (lib/public/api.py) as downloads; the public page links to them.

    netzausbau-open-data.zip     every table as a CSV (formula cells escaped), with a README
    netzausbau-areas.geojson     the hotspot areas as hexagons, properties as published
    netzausbau-snapshot.json     the snapshot as published (exactly the file's bytes)
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import h3

from lib import export
from lib.public.snapshot import ALLOWLIST, Snapshot

ROUTE_PREFIX = "/api/public/files/"


def csv_zip(snap: Snapshot) -> bytes:
    """Every table of the snapshot as a CSV (formula cells escaped) in one ZIP, with a short README."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ALLOWLIST:
            frame = snap.frame(name)
            if "region_ids" in frame:
                frame = frame.assign(region_ids=frame["region_ids"].map(" ".join))
            z.writestr(zipfile.ZipInfo(f"{name}.csv", (2000, 1, 1, 0, 0, 0)), export.csv_bytes(frame))
        readme = (f"Netzausbau-Monitor open data, data as of {snap.doc['data_as_of']}; counts of complaints "
                  f"rounded to {snap.doc['round_base']}, empty below {snap.k}. One CSV per table.\n")
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
