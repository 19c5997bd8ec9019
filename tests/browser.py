"""Helpers for the browser tests: a real `streamlit run` server on a free port, and page checks.

The fixtures that use them (`server`, `browser`, `page`) live in conftest.py, so that every
tests/test_browser*.py module shares them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]
SHOTS = Path("/tmp/shots")
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


class ServerFailed(RuntimeError):
    """The server process did not answer its health check."""


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], log_path: Path, target: str = "dashboard.py",
                     extra: list[str] | None = None, timeout: float = 60,
                     started: list[subprocess.Popen] | None = None, port: int | None = None) -> Iterator[str]:
    """Start `streamlit run <target>` on `port` (default: a free one) with `env` added; yield its base URL; stop
    it. The process is appended to `started` when given (to read its memory, say)."""
    port = port or free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", target, "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         *(extra or [])],
        cwd=ROOT, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if started is not None:
        started.append(proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServerFailed(f"streamlit did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def settle(page: Page) -> None:
    """Wait until the script has run and no element is still marked stale."""
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=60_000)


def assert_no_errors(page: Page) -> None:
    """No exception box and no error alert on the page."""
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.all_inner_texts()
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.all_inner_texts()
