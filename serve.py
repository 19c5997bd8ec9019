"""The server entry: the dashboard (dashboard.py) plus the open-data JSON endpoint (lib/public/api.py) as one ASGI app.

    streamlit run serve.py                                        # internal dashboard + /api/public/... + the inbox
    NETZAUSBAU_PUBLIC=1 streamlit run serve.py                    # public mode: only the public page + /api/public/...
    NETZAUSBAU_PUBLIC=1 python serve.py --workers 2 --port 8502   # the same in several processes on one port

A public server can run in several processes (`python serve.py --workers N`, N defaults to the number of
cores): one Python process runs one page at a time (the interpreter lock), so a second process on a second
core serves about twice the visitors. It keeps nothing between requests that another process would need: a
visitor's view lives in the page's link, and the open-data files are served by /api/public/files/ from any
process, not from Streamlit's per-process media store. The internal server stays one process per port: a
DuckDB store has one writer, and a page's uploads must reach the process that holds its session. On a PostgreSQL
store run several, each on its own port, behind a proxy that keeps each browser with one (docs/deploy.md §8).

The internal server also imports from the inbox and answers the command line while it holds the store
(lib/localapi.py); a public server does neither. Neither lists Streamlit's pages/ folder, not even in the first
session after a start: a visitor who is not signed in, and every visitor of a public server, is sent no
internal page name.

A public server (NETZAUSBAU_PUBLIC=1) is also locked down here, whatever the command line says:

- uploads are refused: any request to /_stcore/upload_file... answers 403 before its body is read (Streamlit's
  upload endpoint otherwise takes files from any session, even with no upload widget on the page);
- of the messages a browser sends over the websocket only running the page, stopping it and the heartbeat are
  passed on: no anonymous "clear cache" (it empties every cache for every visitor), git details or file URLs;
- `client.showErrorDetails = "none"`: an error shows a generic message, never a traceback, type or path;
- `runner.postScriptGC = false`: no full garbage collection after every page run;
- Streamlit's legacy pages/ folder listing is off from the start (as on the internal server).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware
from streamlit import config
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.runtime.pages_manager import PagesManager

from lib import cache, localapi
from lib.public import api, snapshot

LOG = logging.getLogger("netzausbau.serve")
UPLOAD_PATH = re.compile(r"(^|/)_stcore/upload_file(/|$)")
PUBLIC_BACKMSGS = frozenset({"rerun_script", "stop_script", "app_heartbeat"})
"""What a visitor's browser may ask of a public server over the websocket."""
REFUSED = b"uploads are off on this server"


class PublicGuard:
    """ASGI middleware of a public server: refuses uploads unread, passes on only PUBLIC_BACKMSGS."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and UPLOAD_PATH.search(scope.get("path", "")):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(REFUSED)).encode()), (b"connection", b"close"),
                                    (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": REFUSED})
            return
        if scope["type"] == "websocket":
            receive = _allowed_only(receive)
        await self.app(scope, receive, send)


def _allowed_only(receive):
    async def filtered():
        while True:
            message = await receive()
            data = message.get("bytes") if message["type"] == "websocket.receive" else None
            if data:
                msg = BackMsg()
                try:
                    msg.ParseFromString(data)
                except Exception:  # noqa: BLE001 - Streamlit itself refuses a frame it cannot read
                    return message
                if msg.WhichOneof("type") not in PUBLIC_BACKMSGS:
                    LOG.info("public server: dropped a %r message", msg.WhichOneof("type"))
                    continue
            return message
    return filtered


@asynccontextmanager
async def warm_up(app) -> AsyncIterator[None]:
    """A public server's lifespan: every region's view is made ahead in the background when a server process
    starts (`lib.cache.warm_public`), so that the first visitors after a start do not wait for it."""
    threading.Thread(target=cache.warm_public, name="public-warm-up", daemon=True).start()
    yield


def lock_down() -> None:
    """The settings of a public server (see the module docstring)."""
    config.set_option("client.showErrorDetails", "none", "serve.py (public mode)")
    # a full garbage collection after every page run costs a public server a third of its page runs
    # (bench/load.py); its memory stays flat without it
    config.set_option("runner.postScriptGC", False, "serve.py (public mode)")


def log_to_console() -> None:
    """The app's own messages (lib's loggers, from INFO: the warm-up's end, an inbox retry) on the server's console,
    in Streamlit's format."""
    logger = logging.getLogger("lib")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class ParsedOptions:
    """Streamlit's options as last parsed, read without its config lock.

    Streamlit reads an option (`config.get_option`) for every message it sends, under one process-wide lock;
    with 20 page runs at once their threads queued on that lock (a profile of the Planner map under 20
    planners: 45 % of the samples waited there). This reads the option objects of the last finished parse
    without the lock, so a value set later (`config.set_option`, which sets it on the same object) is read at
    once (`get_options_for_section` likewise, which Streamlit asks for the theme on every page run). While a
    parse is under way (Streamlit then holds a new, half-filled set of options) every read goes
    through Streamlit's own locked `get_option`: the parsing thread reads what it has just set, the others wait
    until it is done. So does a key not known, and reading before the first parse."""

    def __init__(self, locked: Callable[[str], Any], locked_section: Callable[[str], dict[str, Any]]):
        self.locked, self.locked_section, self.options = locked, locked_section, None

    def take(self) -> None:
        """The options of the parse just finished (Streamlit calls this under its lock, or `install` does)."""
        self.options = config._config_options

    def _finished(self) -> dict | None:
        """The options of the last finished parse, or None while none is (before the first, or during one)."""
        options = self.options
        return options if options is not None and options is config._config_options else None

    def get_option(self, key: str) -> Any:
        options = self._finished()
        if options is None or key not in options:
            return self.locked(key)
        return options[key].value

    def get_options_for_section(self, section: str) -> dict[str, Any]:
        """Every option of `section` by name, as Streamlit's own (read for the theme on every page run)."""
        options = self._finished()
        if options is None:
            return self.locked_section(section)
        return {o.name: o.value for o in options.values() if o.section == section}

    @classmethod
    def install(cls) -> ParsedOptions | None:
        """Read options through a new `ParsedOptions` from now on (once per process); None when this Streamlit
        keeps its options otherwise (then its own `get_option` stays)."""
        current = config.get_option
        if isinstance(getattr(current, "__self__", None), cls):
            return current.__self__
        if not (hasattr(config, "_config_options") and hasattr(config, "_config_lock")):
            LOG.warning("Streamlit's options are read under its lock: this Streamlit keeps them otherwise")
            return None
        parsed = cls(current, config.get_options_for_section)
        with config._config_lock:
            parsed.take()
            config.on_config_parsed(parsed.take, force_connect=True, lock=True)
            config.get_option = parsed.get_option
            config.get_options_for_section = parsed.get_options_for_section
        return parsed


log_to_console()
ParsedOptions.install()
PagesManager.uses_pages_directory = False  # what st.navigation sets on its first call: never list pages/
PUBLIC = snapshot.public_mode()
if PUBLIC:
    lock_down()

ROOT = Path(__file__).resolve().parent
app = st.App(str(ROOT / "dashboard.py"), routes=api.ROUTES + ([] if PUBLIC else localapi.ROUTES),
             lifespan=warm_up if PUBLIC else localapi.lifespan,
             middleware=[Middleware(PublicGuard)] if PUBLIC else None)


def main(argv: list[str] | None = None) -> int:
    """`python serve.py`: serve the app with uvicorn, a public server in several processes if asked."""
    import argparse
    import os

    import uvicorn

    p = argparse.ArgumentParser(description="Serve Netzausbau-Monitor (NETZAUSBAU_PUBLIC=1: the public server).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8502 if PUBLIC else 8501)
    p.add_argument("--workers", type=int, help="processes (public server only; default: one per core)")
    args = p.parse_args(argv)
    if not PUBLIC:
        if args.workers not in (None, 1):
            p.error("only a public server (NETZAUSBAU_PUBLIC=1) runs in several processes on one port: the "
                    "internal dashboard's uploads must reach the process of their session (on a PostgreSQL store, "
                    "run one process per port behind a proxy: docs/deploy.md)")
        p.error("python serve.py serves a public server (NETZAUSBAU_PUBLIC=1); start the internal dashboard "
                "with `streamlit run serve.py` (make run): it checks its sign-in and address there")
    workers = args.workers or os.cpu_count() or 1
    if workers < 1:
        p.error("--workers must be at least 1")
    print(f"Netzausbau-Monitor public server on http://{args.host}:{args.port} ({workers} "
          f"process{'es' if workers > 1 else ''})", flush=True)
    # Streamlit's own choices for its server: no websocket compression, no access log
    uvicorn.run("serve:app", host=args.host, port=args.port, workers=workers, ws_per_message_deflate=False,
                access_log=False, app_dir=str(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
