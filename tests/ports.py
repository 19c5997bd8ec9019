"""A free TCP port on the loopback address, for the servers the tests start (without the browser helpers'
Playwright import: the PostgreSQL server and its benchmark need none)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
