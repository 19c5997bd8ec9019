"""The public server as a stranger on the internet meets it: a real `NETZAUSBAU_PUBLIC=1 streamlit run serve.py`
(no store, only a snapshot), and the same in two processes (`python serve.py --workers 2`), spoken to over HTTP
and Streamlit's websocket protocol (tests/streamclient.py).

No uploads, no tracebacks, no internal page names, nothing but running the page over the websocket.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.WidgetStates_pb2 import WidgetStates

from lib import store
from lib.public import snapshot
from lib.views import publish
from tests.streamclient import Session, elements, run_page

INTERNAL = (b"Overview", b"Planner map", b"Rollout", b"overview", b"rollout", b"pages/data.py", b"pages/map.py",
            b"Import history", b"Store:")
"""Bytes that only the internal dashboard sends (page titles, their url paths and files, sidebar texts)."""


@pytest.fixture(scope="module")
def snap(demo_db, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pubserver")
    con = store.connect(demo_db, read_only=True)
    try:
        return publish.publish(con, folder / "snapshot.json").path
    finally:
        con.close()


def _env(snap: Path, folder: Path) -> dict[str, str]:
    return {snapshot.PUBLIC_ENV: "1", snapshot.SNAPSHOT_ENV: str(snap),
            store.DB_ENV: str(folder / "no-store" / "netzausbau.duckdb")}


@pytest.fixture(scope="module")
def public(snap, tmp_path_factory):
    """(base URL, server process) of a public-mode server."""
    from tests.browser import ServerFailed, streamlit_server

    folder = tmp_path_factory.mktemp("pubserver-run")
    started: list = []
    try:
        with streamlit_server(_env(snap, folder), folder / "server.log", target="serve.py", started=started) as url:
            yield url, started[0]
    except ServerFailed as exc:
        pytest.fail(str(exc))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _xsrf(url: str) -> str:
    """The XSRF cookie a visitor's browser gets (with the health check it polls)."""
    with urllib.request.urlopen(url + "/_stcore/health", timeout=30) as r:
        cookies = r.headers.get_all("Set-Cookie") or []
    for c in cookies:
        name, _, rest = c.partition("=")
        if name.strip() == "_streamlit_xsrf":
            return rest.split(";")[0]
    raise AssertionError(f"no XSRF cookie in {cookies}")


CLOSED = 0
"""_put's status when the server closed the connection before the whole body was sent."""


def _put(url: str, session_id: str, token: str, size: int, send_all: bool) -> tuple[int, float]:
    """PUT a multipart file of `size` bytes as the browser's uploader does: (status, seconds to the answer).
    Without `send_all` only the headers and 64 kB of the body are sent before the answer is read."""
    host = urllib.parse.urlparse(url)
    boundary = "----netzausbau"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    started = time.monotonic()
    conn.putrequest("PUT", f"/_stcore/upload_file/{session_id}/file-1")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.putheader("X-Xsrftoken", token)
    conn.putheader("Cookie", f"_streamlit_xsrf={token}")
    conn.endheaders()
    chunk = b"x" * (1 << 16)
    try:
        conn.send(head)
        for _ in range(size // len(chunk) if send_all else 1):
            conn.send(chunk)
        if send_all:
            conn.send(tail)
        status = conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        status = CLOSED  # the server answered and closed the connection while the body was still coming
    finally:
        conn.close()
    return status, time.monotonic() - started


def test_uploads_are_refused_before_their_body_is_read(public):
    url, proc = public
    token = _xsrf(url)

    async def go():
        async with Session(url) as s:
            msgs = await s.run()
            session_id = next(f.new_session.initialize.session_id for f in msgs
                              if f.WhichOneof("type") == "new_session")
            loop = asyncio.get_running_loop()
            before = _rss_mb(proc.pid)
            # 150 MB announced, 64 kB sent: the answer comes without the rest
            status, _ = await loop.run_in_executor(None, _put, url, session_id, token, 150 << 20, False)
            assert 400 <= status < 500, status
            # whole files, again and again: each refused, none kept in memory
            for _ in range(12):
                status, _ = await loop.run_in_executor(None, _put, url, session_id, token, 8 << 20, True)
                assert status == CLOSED or 400 <= status < 500, status
            return before, _rss_mb(proc.pid)

    before, after = asyncio.run(go())
    assert after - before < 40, (before, after)  # 96 MB of files sent; without the refusal all of it stays


def test_an_error_shows_no_traceback_type_or_path(public):
    """A visitor can make the page fail (here: a widget state no browser sends); what comes back is generic."""
    url, _ = public

    async def go():
        async with Session(url) as s:
            first = await s.run()
            lang = next(el.id for kind, el in elements(first) if kind == "button_group" and "lang_pick" in el.id)
            states = WidgetStates()
            w = states.widgets.add()
            w.id = lang
            w.int_array_value.data.extend([99])
            return await s.run(widget_states=states)

    msgs = asyncio.run(go())
    errors = elements(msgs, "exception")
    assert errors, "the bad widget state should make the run fail"
    for _, exc in errors:
        assert not exc.stack_trace and not exc.type, exc
        assert "/" not in exc.message and "Error" not in exc.message, exc.message
    raw = b"".join(f.SerializeToString() for f in msgs)
    assert b"Traceback" not in raw and b".py\"" not in raw and b"TypeError" not in raw


def test_only_running_the_page_is_passed_on_over_the_websocket(public):
    """No upload addresses (file_urls_request), git details of the checkout (load_git_info) or clearing of every
    visitor's caches (clear_cache): a visitor's session only runs the page."""
    url, _ = public

    async def go():
        async with Session(url) as s:
            msgs = await s.run()
            session_id = next(f.new_session.initialize.session_id for f in msgs
                              if f.WhichOneof("type") == "new_session")
            ask = BackMsg()
            ask.file_urls_request.request_id = "r1"
            ask.file_urls_request.session_id = session_id
            ask.file_urls_request.file_names.append("a.csv")
            await s.send(ask)
            for kind in ("load_git_info", "clear_cache"):
                msg = BackMsg()
                setattr(msg, kind, True)
                await s.send(msg)
            extra = []
            try:
                while True:
                    extra.append(await s.next(timeout=3))
            except TimeoutError:
                pass
            again = await s.run()  # the session still serves the page
            return extra, again

    extra, again = asyncio.run(go())
    assert {f.WhichOneof("type") for f in extra} <= {"heartbeat_ack", "session_status_changed"}, extra
    assert any(f.WhichOneof("type") == "script_finished" for f in again)


def test_public_clients_are_sent_no_internal_page_names(snap, tmp_path):
    """A fresh server (before any st.navigation has run, Streamlit would list pages/ itself): the first session,
    a deep link to /data, and the HTML carry only the public page."""
    from tests.browser import streamlit_server

    with streamlit_server(_env(snap, tmp_path), tmp_path / "server.log", target="serve.py") as url:
        sessions = {"": run_page(url, "region=ALL"), "data": run_page(url, "", page_name="data"),
                    "overview": run_page(url, "", page_name="overview")}
        html = b""
        for path in ("/", "/data", "/map"):
            with urllib.request.urlopen(url + path, timeout=30) as r:
                html += r.read()
    for asked, msgs in sessions.items():
        pages = [(p.page_name, p.url_pathname) for f in msgs if f.WhichOneof("type") == "navigation"
                 for p in f.navigation.app_pages]
        assert pages and set(pages) == {("Öffentlich", "")}, pages
        raw = b"".join(f.SerializeToString() for f in msgs)
        for word in INTERNAL:
            assert word == asked.encode() or word not in raw, word  # new_session repeats the name asked for
    for word in INTERNAL:
        assert word not in html, word


def _workers(pid: int) -> list[int]:
    """The worker processes of a server started as `python serve.py --workers N` (its spawned children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


_workers_seen: list[int] = []
"""The worker processes the test below found (the fixture checks at its end that none outlived the server)."""


@pytest.fixture(scope="module")
def two_processes(snap, tmp_path_factory):
    """(base URL, server process) of `python serve.py --workers 2`, as `make public` starts it."""
    import subprocess
    import sys

    from tests.browser import ROOT, free_port

    folder = tmp_path_factory.mktemp("pubserver-two")
    port = free_port()
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "serve.py", "--workers", "2", "--port", str(port)], cwd=ROOT,
                                env=os.environ | _env(snap, folder), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail((folder / "server.log").read_text()[-2000:])
                    time.sleep(0.3)
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert not any(Path(f"/proc/{p}").exists() for p in _workers_seen), "a worker outlived the server"


def test_a_public_server_in_two_processes_serves_every_visitor(two_processes, snap):
    """Two processes on one port: every visitor's page runs to the end, the downloads come whole from whichever
    process answers (they are not per-process media files), and every process refuses uploads."""
    from lib.public import files

    url, proc = two_processes
    workers = _workers(proc.pid)
    _workers_seen.extend(workers)
    assert len(workers) == 2, workers

    async def visitors():
        return await asyncio.gather(*(_visit(url, f"region={r}") for r in ("ALL", "C-BER", "09", "05") * 5))

    for msgs in asyncio.run(visitors()):
        assert msgs[-1].script_finished == msgs[-1].FINISHED_SUCCESSFULLY
        assert not elements(msgs, "exception")
        assert not elements(msgs, "download_button")
    loaded = snapshot.load(snap)
    for name, (_, kind, make) in files.FILES.items():
        for _ in range(6):  # new connections: the kernel hands them to either process
            with urllib.request.urlopen(url + files.url(name), timeout=30) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(kind)
                assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
                assert r.read() == make(loaded), name
    token = _xsrf(url)
    for _ in range(8):
        status, _ = _put(url, "any-session", token, 1 << 20, True)
        assert status == CLOSED or status == 403, status


async def _visit(url: str, query: str):
    async with Session(url) as s:
        await s.run(query)
        return await s.run(query)  # a second run of the same session, as a reload of the view does


def test_only_a_public_server_runs_in_several_processes(tmp_path):
    """The internal dashboard runs one process per port: `python serve.py` refuses to serve it at all (it is
    started with `streamlit run serve.py`, where its sign-in and address are checked)."""
    import subprocess
    import sys

    from tests.browser import ROOT

    env = {k: v for k, v in os.environ.items() if k != snapshot.PUBLIC_ENV}
    env[store.DB_ENV] = str(tmp_path / "store.duckdb")
    for args in (["--workers", "2"], []):
        done = subprocess.run([sys.executable, "serve.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, done
        assert ("only a public server" if args else "streamlit run serve.py") in done.stderr, done.stderr
    assert not (tmp_path / "store.duckdb").exists()
