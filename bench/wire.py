"""A relay between the browser and the dashboard's server that notes when the page's messages pass it: the
server's part of a view or an answer, seen on the wire, apart from what the browser does before and after.

The browser's own clocks cannot tell this apart: a page notes a message only when its main thread gets to it,
and while the map is drawn in software WebGL that thread waits for the GPU, so the end of a script run seems
to come as late as the drawing. The relay notes the time each piece of the page's websocket stream
(`/_stcore/stream`) passes it, in this process, whatever the browser is busy with; a message is noted when its
last byte has passed (websocket data frames only: the connection's pings and pongs are not the page's):

    wire = Wire(port, to=server_port)       # the browser opens http://127.0.0.1:<port>
    at = wire.mark()
    ...                                     # a view or an input, until the page is drawn
    wire.server_part(at)                    # seconds from the browser's first message on the stream after the
                                            # mark to the server's last message on it

Other requests (the app's files, the health check) are relayed but not noted.
"""

from __future__ import annotations

import asyncio
import threading
import time

STREAM = b"/_stcore/stream"


class Wire:
    """A TCP relay on 127.0.0.1:`port` to 127.0.0.1:`to`, in a thread of its own, noting the page streams'
    traffic as (time.monotonic(), "up" from the browser | "down" from the server)."""

    def __init__(self, port: int, to: int):
        self.port, self.to = port, to
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)
        if self._server is None:
            raise RuntimeError(f"the relay could not listen on port {port}")

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = None
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", self.port))
        finally:
            started.set()
        if self._server is not None:
            self._loop.run_forever()

    async def _relay(self, browser_r: asyncio.StreamReader, browser_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.to)
        except OSError:  # no server (between a stop and the next start): the browser tries again
            browser_w.close()
            return
        stream = [False]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
            frames = Frames()
            try:
                while data := await src.read(1 << 16):
                    if direction == "up" and not stream[0] and data.startswith(b"GET "):  # the page's stream?
                        stream[0] = STREAM in data.split(b"\r\n", 1)[0]
                    if stream[0] and frames.feed(data):
                        with self._lock:
                            self.events.append((time.monotonic(), direction))
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(browser_r, server_w, "up"), pump(server_r, browser_w, "down"))

    def mark(self) -> int:
        """A point in the noted traffic: what comes after it is the next view's or answer's."""
        with self._lock:
            return len(self.events)

    def server_part(self, at: int) -> float:
        """Seconds from the browser's first message on a page stream after `at` to the last message a server
        sent on one; raises when either is missing."""
        with self._lock:
            after = self.events[at:]
        asked = next((t for t, d in after if d == "up"), None)
        sent = [t for t, d in after if d == "down" and asked is not None and t >= asked]
        if asked is None or not sent:
            raise RuntimeError("no message of the page passed the relay")
        return sent[-1] - asked

    def close(self) -> None:
        """Stop listening, end every relayed connection and the relay's thread."""
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)
        self._loop.close()


class Frames:
    """The websocket frames of one direction of a stream, fed as the bytes come: `feed` says whether a data
    frame (text, binary or a continuation) ended in them. The HTTP upgrade's request or answer before the
    frames counts as one message; control frames (ping, pong, close) do not count. Payloads are skipped, not
    kept."""

    def __init__(self):
        self.upgrade = b""  # the HTTP request or answer, until its blank line
        self.upgraded = False
        self.head = b""  # a frame header not yet whole
        self.skip = 0  # payload bytes of the current frame still to come
        self.data = False  # the current frame is a data frame

    def feed(self, data: bytes) -> bool:
        ended = False
        if not self.upgraded:
            self.upgrade += data
            _, sep, data = self.upgrade.partition(b"\r\n\r\n")
            if not sep:
                return False
            self.upgraded, self.upgrade, ended = True, b"", True
        i = 0
        while i < len(data):
            if self.skip:
                take = min(self.skip, len(data) - i)
                self.skip -= take
                i += take
                ended = ended or (not self.skip and self.data)
                continue
            chunk = data[i:i + 14 - len(self.head)]  # a header is at most 14 bytes
            self.head += chunk
            parsed = _header(self.head)
            if parsed is None:  # the rest of the header comes with the next bytes
                i += len(chunk)
                continue
            size, n, opcode = parsed
            i += len(chunk) - (len(self.head) - size)  # bytes read past the header are payload
            self.head, self.skip, self.data = b"", n, opcode < 0x8
            ended = ended or (not n and self.data)
        return ended


def _header(b: bytes) -> tuple[int, int, int] | None:
    """(header size, payload length, opcode) of the websocket frame header `b` starts with; None when `b` holds
    less than the whole header."""
    if len(b) < 2:
        return None
    n, size = b[1] & 0x7F, 2
    if n == 126:
        size = 4
    elif n == 127:
        size = 10
    if len(b) < size + (4 if b[1] & 0x80 else 0):
        return None
    if size > 2:
        n = int.from_bytes(b[2:size], "big")
    return size + (4 if b[1] & 0x80 else 0), n, b[0] & 0x0F
