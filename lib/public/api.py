"""The open-data JSON endpoint, served next to the app by st.App (serve.py): read only from the snapshot.

    GET /api/public/snapshot.json              the whole published snapshot (exactly the file's bytes)
    GET /api/public/regions/{region_id}.json   one region: its row, planned quarters, monthly complaints,
                                               notes and the hotspot areas touching it

No streamlit here: plain Starlette routes. A missing or refused snapshot answers 503 with the reason.
"""

from __future__ import annotations

import functools
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib.public import snapshot

SNAPSHOT_ROUTE = "/api/public/snapshot.json"
REGION_ROUTE = "/api/public/regions/{region_id}.json"
HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}


@functools.lru_cache(maxsize=2)
def _snapshot(path: str, stamp: tuple[int, int, int]) -> snapshot.Snapshot:
    """The validated snapshot of one file version (read again when the file changes)."""
    return snapshot.load(path)


def current() -> snapshot.Snapshot:
    """The snapshot the server publishes now; SnapshotError when there is none or it is refused."""
    path = snapshot.snapshot_path().resolve()
    try:
        info = path.stat()
    except OSError:
        return snapshot.load(path)  # raises SnapshotError with the reason
    return _snapshot(str(path), (info.st_ino, info.st_mtime_ns, info.st_size))


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


def _error(exc: Exception, status: int) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status, headers=HEADERS)


async def snapshot_json(request: Request) -> Response:
    """GET the whole snapshot."""
    try:
        snap = current()
    except snapshot.SnapshotError as exc:
        return _error(exc, 503)
    return Response(snap.raw, media_type="application/json", headers=HEADERS)


async def region_json(request: Request) -> Response:
    """GET one region of the snapshot."""
    try:
        snap = current()
    except snapshot.SnapshotError as exc:
        return _error(exc, 503)
    doc = region_document(snap, request.path_params["region_id"])
    if doc is None:
        return _error(LookupError(f"no published region {request.path_params['region_id']!r}"), 404)
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return Response(body, media_type="application/json", headers=HEADERS)


ROUTES = [Route(SNAPSHOT_ROUTE, snapshot_json, methods=["GET"]), Route(REGION_ROUTE, region_json, methods=["GET"])]
