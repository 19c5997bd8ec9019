"""Small hand-built input files whose every answer is known, shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

# Two square regions side by side near Kassel (lon 9.0-9.5 and 9.5-10.0, lat 51.0-51.5).
WEST = [[9.0, 51.0], [9.5, 51.0], [9.5, 51.5], [9.0, 51.5], [9.0, 51.0]]
EAST = [[9.5, 51.0], [10.0, 51.0], [10.0, 51.5], [9.5, 51.5], [9.5, 51.0]]

SITES_CSV = """site_id,name,lat,lon,site_type,technology,transport_link_id
S1,West-1,51.25,9.25,macro,4G,L1
S2,West-2,51.10,9.10,macro,4G,L1
S3,East-1,51.25,9.75,micro,4G+5G,L2
"""

LINKS_CSV = """link_id,kind,a_lat,a_lon,b_lat,b_lon,completion_planned,completion_actual
L1,fibre,51.25,9.25,51.30,9.30,2025-06-01,
L2,microwave,51.25,9.75,51.20,9.70,2025-03-01,2025-03-20
"""

UPGRADES_CSV = """upgrade_id,site_id,kind,permit_planned,installed_planned,on_air_planned,on_air_actual,transport_link_id
U1,S1,hardware_swap,2025-01-01,2025-03-01,2025-04-01,2025-04-10,
U2,S2,5g,2025-01-01,2025-03-01,2025-05-01,,L1
U3,S3,new_carrier,2025-01-01,2025-03-01,2025-04-01,2025-04-02,L2
"""

COMPLAINTS_CSV = """complaint_id,received_at,lat,lon,category,channel,text
K1,2025-01-05 10:00,51.25,9.25,slow_data,hotline,Videos laden ewig
K2,2025-01-06 11:30,51.251,9.251,slow_data,app,
K3,05.02.2025 08:15,51.25,9.75,no_signal,crowd_list,Kein Netz
"""


def regions_geojson() -> str:
    """Two state-level regions as a GeoJSON FeatureCollection."""
    features = [
        {"type": "Feature",
         "properties": {"region_id": "W", "name": "West", "level": "state", "population": 1000},
         "geometry": {"type": "Polygon", "coordinates": [WEST]}},
        {"type": "Feature",
         "properties": {"region_id": "E", "name": "East", "level": "state", "population": 3000},
         "geometry": {"type": "Polygon", "coordinates": [EAST]}},
    ]
    return json.dumps({"type": "FeatureCollection", "features": features})


def write_world(folder: Path) -> dict[str, Path]:
    """Write the tiny world's input files; returns table name -> path, in import order."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "regions": ("regions.geojson", regions_geojson()),
        "sites": ("sites.csv", SITES_CSV),
        "transport_links": ("links.csv", LINKS_CSV),
        "upgrades": ("upgrades.csv", UPGRADES_CSV),
        "complaints": ("complaints.csv", COMPLAINTS_CSV),
    }
    out = {}
    for table, (name, text) in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        out[table] = folder / name
    return out


def import_world(con, folder: Path) -> None:
    """Import the tiny world into an open store."""
    from lib import store

    for table, path in write_world(folder).items():
        store.import_file(con, path, table=table)
