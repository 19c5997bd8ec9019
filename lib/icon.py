"""The app's favicon as a data: URL, read once: the browser asks no icon-font CDN for it, and no page run reads
the file or hands it to the media store again."""

from __future__ import annotations

import base64
from pathlib import Path

FAVICON_FILE = Path(__file__).resolve().parent.parent / "assets" / "favicon.png"
FAVICON = "data:image/png;base64," + base64.b64encode(FAVICON_FILE.read_bytes()).decode("ascii")
