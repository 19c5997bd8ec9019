"""Worker processes and temporary folders that end with the process that owns them.

An import killed hard (`kill -9`, the OOM killer, a closed terminal) runs no clean-up code. So that its
worker processes (lib/ingest/bulk, about 330 MB each) do not live on, each worker watches its parent
(`watch_parent`, the pool's initializer): on Linux the kernel kills it when the parent dies
(prctl PR_SET_PDEATHSIG), elsewhere a thread polls the parent's pid. So that its temporary folder (the
workers' Parquet parts, a converted copy of the file) does not stay behind, the folder's name holds the
owner's pid and start time (`owned_folder`), and `sweep` (run by every import and at the app's start)
removes the folders whose owner is gone. A pid used again by a later process does not keep a folder: the
start time differs.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

PREFIX = "netzausbau-"
"""Every owned folder's name starts so: netzausbau-<kind>-<pid>-<start>-<random>."""
_OWNED = re.compile(r"^netzausbau-[a-z]+-(\d+)-(\d+)-")
PR_SET_PDEATHSIG = 1  # from linux/prctl.h
POLL_SECONDS = 1.0
"""How often the fallback watchdog looks at its parent's pid."""


def start_time(pid: int) -> int:
    """When process `pid` started (clock ticks since boot, from /proc; 0 where that is not known)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces


def alive(pid: int, started: int = 0) -> bool:
    """Whether process `pid` (started at `started`, when known) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return not started or start_time(pid) in (0, started)


def owned_folder(kind: str) -> Path:
    """A new temporary folder owned by this process (`sweep` removes it once the process is gone)."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{pid}-{start_time(pid)}-"))


def sweep(root: str | Path | None = None) -> list[Path]:
    """Remove the owned folders in `root` (default: the temporary folder) whose owner is gone; the removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = _OWNED.match(entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False) or alive(int(m[1]), int(m[2])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)  # another user's folder stays: not ours to remove
        if not os.path.exists(entry.path):
            removed.append(Path(entry.path))
    return removed


def watch_parent(parent: int) -> None:
    """A worker's initializer: end this process when `parent` ends (the kernel's death signal, or a thread).

    Linux sends the signal when the thread that started the worker ends: the pools of lib/ingest/bulk live
    within one call in one thread, which outlives them."""
    if not _death_signal():
        threading.Thread(target=_watchdog, args=(parent,), name="netzausbau-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def _death_signal() -> bool:
    """Ask the kernel to kill this process when its parent dies; whether it could."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)
