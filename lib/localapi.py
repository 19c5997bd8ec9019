"""The server's side of lib/running.py: routes for commands on this machine, the serving file, the inbox.

    POST /_netzausbau/cli     {"argv": [...]}: a reading command of the command line (lib/cli.READS), answered
                              from the store this server holds: {"stdout", "stderr", "code", "file"}
    GET  /_netzausbau/inbox   what the inbox is doing (the file being imported, how far)

Both answer only a request from this machine that carries the token of the serving file, which `lifespan`
writes beside the store when the server starts (with the store opened, the inbox watched and the temporary
folders of killed imports swept) and removes when it stops. A public server (NETZAUSBAU_PUBLIC=1) has no
store: none of this runs there.
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib import inbox, running, store
from lib.errors import NetzausbauError
from lib.ingest import lifeline
from lib.public import snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Local:
    """This server as announced, and its inbox watcher."""

    server: running.Server | None  # None on a PostgreSQL store: every command opens it itself
    watcher: inbox.Watcher


_LOCAL: list[Local] = []  # this process's announcement while it serves (one server per process)


def url(address: str, port: int) -> str:
    """The address a command on this machine reaches the server at: loopback unless it listens elsewhere only."""
    if address in ("", "0.0.0.0", "localhost"):
        return f"http://127.0.0.1:{port}"
    if address == "::":
        return f"http://[::1]:{port}"
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def _allowed(request: Request) -> Local | None:
    """This server, when the request comes from this machine with the serving file's token; else None."""
    if not _LOCAL or _LOCAL[0].server is None:  # nothing announced (a PostgreSQL store): nothing to answer
        return None
    me = _LOCAL[0]
    peer = request.client.host if request.client else ""
    try:
        here = ipaddress.ip_address(peer).is_loopback or peer == request.scope.get("server", ("",))[0]
    except ValueError:
        here = False
    given = request.headers.get("authorization", "")
    return me if here and hmac.compare_digest(given.encode(), f"Bearer {me.server.token}".encode()) else None


def _refused() -> Response:
    return JSONResponse({"error": "not allowed"}, status_code=403)


def _answer(argv: list[str]) -> dict:
    from lib import cache, cli

    con = cache.get_store()
    if con is None:
        return cli.Answer(stderr=f"error: no store at {cache.store_path()}", code=2).to_json()
    with con.cursor() as cur:
        return cli.answer(cur, argv).to_json()


async def cli_route(request: Request) -> Response:
    """POST a reading command; its answer (run in a worker thread: queries must not hold up the server)."""
    if _allowed(request) is None:
        return _refused()
    try:
        argv = (await request.json())["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of words")
        return JSONResponse(await run_in_threadpool(_answer, argv))
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except NetzausbauError as exc:
        return JSONResponse({"stdout": "", "stderr": f"error: {exc}", "code": 2, "file": None})


async def inbox_route(request: Request) -> Response:
    """GET what the inbox is doing."""
    me = _allowed(request)
    if me is None:
        return _refused()
    return JSONResponse({"inbox": str(me.watcher.inbox)} | me.watcher.status())


ROUTES = [Route(f"{running.PREFIX}/cli", cli_route, methods=["POST"]),
          Route(f"{running.PREFIX}/inbox", inbox_route, methods=["GET"])]


def start() -> Local | None:
    """Sweep, open the store, watch the inbox and announce this server beside the store (None: another live
    server has announced itself for it, or this is a public server)."""
    if snapshot.public_mode():
        return None
    from lib import cache  # once the server runs: imported with serve.py, before Streamlit's runtime, it warns

    lifeline.sweep()
    if store.server_url():
        return _start_on_server(cache)
    path = cache.store_path()
    if (other := running.find(path)) is not None:
        log.warning("another server (pid %s) serves the store %s: no inbox or command-line routes here", other.pid,
                    path)
        return None
    try:
        cache.get_store()  # held from the start, warmed up in the background (lib/warmup)
    except NetzausbauError as exc:
        log.warning("%s", exc)
    watcher = inbox.Watcher(inbox.folder(), lambda: cache.get_store(create=True)).start()
    me = Local(running.announce(path, url(*cache.server_address()), watcher.inbox), watcher)
    _LOCAL.append(me)
    atexit.register(running.withdraw, me.server)
    return me


def _start_on_server(cache) -> Local | None:
    """On a PostgreSQL store: no announcement (the command line opens the store itself); the inbox is watched, and
    of several processes serving the store only one at a time takes files (each look claims the inbox's lock on
    the server, `Postgres.claimed`)."""
    try:
        cache.get_store()  # held from the start, warmed up in the background (lib/warmup)
    except NetzausbauError as exc:
        log.warning("%s", exc)
    watcher = inbox.Watcher(inbox.folder(), cache.get_store,
                            claim=lambda: cache.get_store().claimed(inbox.INBOX_LOCK))
    me = Local(None, watcher.start())
    _LOCAL.append(me)
    return me


def stop(me: Local | None) -> None:
    """Withdraw the announcement and stop watching the inbox."""
    if me is None:
        return
    if me in _LOCAL:
        _LOCAL.remove(me)
    if me.server is not None:
        running.withdraw(me.server)
    me.watcher.stop()


@asynccontextmanager
async def lifespan(app) -> AsyncIterator[None]:
    """st.App's lifespan (serve.py): `start` when the server starts, `stop` when it stops."""
    me = start()
    try:
        yield
    finally:
        stop(me)
