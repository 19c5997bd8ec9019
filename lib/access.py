"""Who may reach the internal dashboard: this machine only, unless an operator says otherwise.

Without sign-in, the internal dashboard (imports, notes, publishing) serves only the machine it runs on: a
server address other than a loopback one is refused unless `OPEN_ENV` says that something in front of it
authenticates every user (a reverse proxy with sign-in). The public server is meant for everyone and serves
any address.
"""

from __future__ import annotations

import os

OPEN_ENV = "NETZAUSBAU_OPEN_TO_NETWORK"
"""Set to 1 to serve the internal dashboard to other machines (behind a proxy that signs users in)."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def open_to_network() -> bool:
    """Whether the operator allowed the internal dashboard on other addresses ($NETZAUSBAU_OPEN_TO_NETWORK)."""
    return os.environ.get(OPEN_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def refusal(address: str | None, public: bool, allowed: bool) -> str | None:
    """Why the internal dashboard will not serve on `address` (Streamlit's server.address; empty: every
    interface), or None when it may: loopback addresses always, others only when `allowed` or `public`."""
    if public or allowed or (address or "").strip().lower() in LOOPBACK:
        return None
    where = address or "every network interface"
    return (f"This dashboard holds internal data and has no sign-in, so it serves only this machine, not "
            f"{where}. Start it with --server.address 127.0.0.1 (as make run does), or, behind a proxy that "
            f"signs users in, set {OPEN_ENV}=1.")
