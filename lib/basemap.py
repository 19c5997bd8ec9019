"""The maps' background: none by default, so that a page makes no request to a third party (a visitor's IP
address sent to a tile server is personal data); a tile basemap only when the operator configures one.

    NETZAUSBAU_BASEMAP_URL   a MapLibre / Mapbox GL style URL (a self-hosted style, or one the operator has
                             agreed to use, e.g. https://basemaps.cartocdn.com/gl/positron-gl-style/style.json);
                             unset or empty: no basemap, the layers are drawn on a plain background

Every pydeck map of the dashboard (Planner map, Rollout, Public) takes its `deck_args()`.
"""

from __future__ import annotations

import os

BASEMAP_ENV = "NETZAUSBAU_BASEMAP_URL"
NO_BASEMAP = "__MAP_STYLE__"
"""pydeck's "no style given" value: with no map provider it reaches the browser as is, and Streamlit then draws
no basemap (any other empty style makes Streamlit fall back to CARTO's)."""


def style_url() -> str | None:
    """The configured basemap style URL, or None."""
    return os.environ.get(BASEMAP_ENV, "").strip() or None


def deck_args() -> dict:
    """`map_style` and `map_provider` for a pydeck Deck: the configured basemap, else none at all."""
    return {"map_style": style_url() or NO_BASEMAP, "map_provider": None}
