"""A small websocket client speaking Streamlit's protocol, as a browser does: what a session is sent.

`run_page(url, query, page_name)` opens a session, asks for one script run and returns every ForwardMsg up
to `script_finished`; `Session` keeps a session open for several runs or other messages.
"""

from __future__ import annotations

import asyncio

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

TIMEOUT = 60.0


class Session:
    """One open websocket session (`async with Session(url) as s`)."""

    def __init__(self, url: str):
        self.url = url.replace("http://", "ws://", 1).rstrip("/") + "/_stcore/stream"
        self.received: list[ForwardMsg] = []

    async def __aenter__(self) -> Session:
        self.ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None,
                                           open_timeout=TIMEOUT)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def send(self, msg: BackMsg) -> None:
        await self.ws.send(msg.SerializeToString())

    async def next(self, timeout: float = TIMEOUT) -> ForwardMsg:
        """The next message the server sends (TimeoutError when none comes in `timeout` seconds)."""
        fwd = ForwardMsg()
        fwd.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout))
        self.received.append(fwd)
        return fwd

    async def run(self, query: str = "", page_name: str = "", widget_states=None) -> list[ForwardMsg]:
        """Ask for a script run; every message up to and including `script_finished`."""
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_script_hash = ""
        msg.rerun_script.page_name = page_name
        if widget_states is not None:
            msg.rerun_script.widget_states.CopyFrom(widget_states)
        await self.send(msg)
        out = []
        while True:
            out.append(await self.next())
            if out[-1].WhichOneof("type") == "script_finished":
                return out


def run_page(url: str, query: str = "", page_name: str = "") -> list[ForwardMsg]:
    """Every message one new session is sent for one run of the page."""
    async def go() -> list[ForwardMsg]:
        async with Session(url) as s:
            return await s.run(query, page_name)
    return asyncio.run(go())


def elements(msgs: list[ForwardMsg], kind: str | None = None) -> list:
    """The new elements (of one kind, e.g. "exception") among `msgs`, as (kind, element proto)."""
    out = []
    for f in msgs:
        if f.WhichOneof("type") == "delta" and f.delta.WhichOneof("type") == "new_element":
            el = f.delta.new_element
            k = el.WhichOneof("type")
            if kind is None or k == kind:
                out.append((k, getattr(el, k)))
    return out
