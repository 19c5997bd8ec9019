"""How a command on this machine finds the dashboard that holds the store, and asks it.

DuckDB lets one process open a store file for writing and then excludes every other, read-only ones too.
The dashboard holds the store while it serves, so a command-line command cannot open it. Instead the
server announces itself in a small file beside the store (`<store>.serving`, mode 0600, removed when it
stops): its process, its loopback address and a random token. A command that finds a live server there
sends it the request (lib/localapi.py: routes guarded by that token) and prints the answer; with no live
server it opens the store itself, as before. Only someone who may read the file (the server's user) can
ask, and the server only runs the command line's reading commands (lib/cli.READS) and hands files to the
inbox (lib/inbox.py), never anything else.

No streamlit and no database here: the command line imports this on every run.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.errors import NetzausbauError
from lib.ingest import lifeline

SUFFIX = ".serving"
PREFIX = "/_netzausbau"
"""Where the server's routes for this machine live (lib/localapi.py)."""
TIMEOUT = 600.0
"""Seconds a command waits for an answer (the figures with the impact take a while on a large store)."""


class Unreachable(NetzausbauError):
    """The server announced for a store does not answer."""


@dataclass(frozen=True)
class Server:
    """A running dashboard as its serving file describes it."""

    pid: int
    started: int  # the process's start time (lifeline.start_time), so that a reused pid is not taken for it
    url: str
    token: str
    store: str
    inbox: str | None = None


def serving_file(store: str | Path) -> Path:
    """The file beside the store where its server announces itself."""
    p = Path(store).resolve()
    return p.with_name(p.name + SUFFIX)


def announce(store: str | Path, url: str, inbox: str | Path | None = None) -> Server:
    """Write this process's serving file (private to this user) with a new token; the Server written."""
    me = Server(os.getpid(), lifeline.start_time(os.getpid()), url, secrets.token_urlsafe(32),
                str(Path(store).resolve()), str(inbox) if inbox else None)
    target = serving_file(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".serving-", dir=target.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(me), f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return me


def withdraw(me: Server) -> None:
    """Remove the serving file, if it is still this server's."""
    target = serving_file(me.store)
    if read(target) == me:
        target.unlink(missing_ok=True)


def read(path: Path) -> Server | None:
    """The server a serving file names (None: no file, or not one of ours)."""
    try:
        return Server(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def find(store: str | Path) -> Server | None:
    """The live server that announced itself for `store`, or None."""
    found = read(serving_file(store))
    if found is None or not lifeline.alive(found.pid, found.started):
        return None
    if Path(found.store) != Path(store).resolve():  # a file copied along with its store
        return None
    return found


def ask(server: Server, route: str, body: dict | None = None, timeout: float = TIMEOUT) -> dict:
    """POST `body` (GET when None) as JSON to one of the server's routes; its JSON answer.

    Raises Unreachable when the server does not answer or refuses."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.url}{PREFIX}/{route}", data=data, method="GET" if body is None else "POST",
                                 headers={"Authorization": f"Bearer {server.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"the dashboard at {server.url} refused the request ({exc.code}: "
                          f"{exc.read()[:300].decode(errors='replace')})") from exc
    except (OSError, ValueError) as exc:
        raise Unreachable(f"the dashboard at {server.url} does not answer ({exc})") from exc
