"""The open-data JSON endpoint, served next to the app by st.App (serve.py): read only from the snapshot.

    GET /api/public/snapshot.json              the whole published snapshot (exactly the file's bytes)
    GET /api/public/regions/{region_id}.json   one region: its row, planned quarters, monthly complaints,
                                               notes and the hotspot areas touching it
    GET /api/public/files/{name}               an open-data file as a download (lib/public/files.py: the
                                               tables as CSVs in a ZIP, the areas as GeoJSON, the snapshot)

No streamlit here: plain Starlette routes. Answers are made once per snapshot file version (every region's
document, the whole network's too, is serialised on its first request and then served as the same bytes),
so a burst of requests costs no page run its time. A missing or refused snapshot answers 503, an unknown
region or file 404: each with a fixed message (no server path, nothing the client sent) and `Cache-Control:
no-store`; the reason is logged on the server.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib.public import files, snapshot

SNAPSHOT_ROUTE = "/api/public/snapshot.json"
REGION_ROUTE = "/api/public/regions/{region_id}.json"
FILES_ROUTE = files.ROUTE_PREFIX + "{name}"
HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}
ERROR_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
NO_SNAPSHOT = "no snapshot is published"
UNKNOWN_REGION = "no published region has this id"
UNKNOWN_FILE = "no open-data file has this name"
LOG = logging.getLogger(__name__)


@dataclass
class Served:
    """One snapshot file version and the region documents made from it so far (region id -> JSON bytes)."""

    snapshot: snapshot.Snapshot
    regions: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def region(self, region_id: str) -> bytes | None:
        """The region's document as JSON bytes, made on first use (None: not a published region; not kept)."""
        def make() -> bytes | None:
            doc = region_document(self.snapshot, region_id)
            return None if doc is None else json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()

        return self._once(self.regions, region_id, make)

    def file(self, name: str) -> bytes | None:
        """The open-data file `name` (lib/public/files.py), made on first use (None: no such file)."""
        if name not in files.FILES:
            return None
        return self._once(self.files, name, lambda: files.FILES[name][2](self.snapshot))

    def _once(self, made: dict[str, bytes], key: str, make: Callable[[], bytes | None]) -> bytes | None:
        """made[key], made by `make` on its first request only, also when requests come at once (None is not
        kept)."""
        body = made.get(key)
        if body is None:
            with self.lock:
                body = made.get(key)
                if body is None:
                    body = make()
                    if body is not None:
                        made[key] = body
        return body


@functools.lru_cache(maxsize=2)
def _served(path: str, stamp: tuple[int, int, int]) -> Served:
    """The validated snapshot of one file version (read again when the file changes)."""
    return Served(snapshot.load(path))


def served() -> Served:
    """The snapshot the server publishes now, with its cached answers; SnapshotError when there is none or it
    is refused."""
    try:
        path, stamp = snapshot.file_version()
    except OSError:
        return Served(snapshot.load())  # raises SnapshotError with the reason
    return _served(path, stamp)


def current() -> snapshot.Snapshot:
    """The snapshot the server publishes now; SnapshotError when there is none or it is refused."""
    return served().snapshot


def region_document(snap: snapshot.Snapshot, region_id: str) -> dict | None:
    """The snapshot cut to one region (None when it is not published)."""
    tables = snap.doc["tables"]
    rows = [r for r in tables["regions"] if r["region_id"] == region_id]
    if not rows:
        return None
    mine = {name: [r for r in tables[name] if r["region_id"] == region_id]
            for name in ("planned", "complaints_monthly", "notes")}
    areas = tables["complaint_areas"] if region_id == "ALL" else \
        [a for a in tables["complaint_areas"] if region_id in a["region_ids"]]
    meta = {k: v for k, v in snap.doc.items() if k != "tables"}
    return meta | {"region": rows[0], **mine, "complaint_areas": areas}


def _error(message: str, status: int) -> JSONResponse:
    """An error answer: a fixed message, never cached."""
    return JSONResponse({"error": message}, status_code=status, headers=ERROR_HEADERS)


def _unpublished(exc: snapshot.SnapshotError) -> JSONResponse:
    LOG.warning("open-data request without a snapshot: %s", exc)  # the reason, with its path, stays here
    return _error(NO_SNAPSHOT, 503)


async def snapshot_json(request: Request) -> Response:
    """GET the whole snapshot."""
    try:
        snap = current()
    except snapshot.SnapshotError as exc:
        return _unpublished(exc)
    return Response(snap.raw, media_type="application/json", headers=HEADERS)


async def region_json(request: Request) -> Response:
    """GET one region of the snapshot."""
    try:
        body = served().region(request.path_params["region_id"])
    except snapshot.SnapshotError as exc:
        return _unpublished(exc)
    if body is None:
        return _error(UNKNOWN_REGION, 404)
    return Response(body, media_type="application/json", headers=HEADERS)


async def file_download(request: Request) -> Response:
    """GET an open-data file, as a download under its own name."""
    name = request.path_params["name"]
    try:
        body = served().file(name)
    except snapshot.SnapshotError as exc:
        return _unpublished(exc)
    if body is None:
        return _error(UNKNOWN_FILE, 404)
    return Response(body, media_type=files.FILES[name][1],
                    headers=HEADERS | {"Content-Disposition": f'attachment; filename="{name}"'})


ROUTES = [Route(SNAPSHOT_ROUTE, snapshot_json, methods=["GET"]), Route(REGION_ROUTE, region_json, methods=["GET"]),
          Route(FILES_ROUTE, file_download, methods=["GET"])]
