"""Whole pages in a browser: the first view of each page after a start, and how quickly a page answers an input.

    .venv/bin/python bench/pages.py --db bench/out/store-10m.duckdb                   # this checkout
    .venv/bin/python bench/pages.py --db bench/out/store-10m.duckdb --baseline 97a0f5a --inputs 3

For each code (this checkout, and `--baseline REF` served from a git worktree the same way, one after the other,
never at once) and each page (Overview, Planner map, Rollout), on its own copy of the store:

1. start the internal dashboard (`streamlit run serve.py`, as `make run` does) and open the page in a new tab
   as soon as the server answers its health check: **first view, right after a start** (the visitor waits for
   whatever the server still reads at its start);
2. wait until the server has been idle for 2 s (its warm-up done; the same rule for both codes) and open the
   page in another new tab: **first view, after the warm-up**;
3. in that session, change the page's date and its region `--inputs` times each, as a person does (Rollout:
   type a date and press Enter, pick a region in its box; Planner map: the date slider one step with the arrow
   key, a region in its box; Overview: another region level): **answer to a new input**, from the key press or
   click to the page drawn again (the script has run and the browser has painted twice since); then one more
   first view with Chrome's trace on (written to bench/out/pages-trace-*.json): how long the browser's GPU thread
   (software WebGL here) was busy during it, in all and in its longest task (a view apart: tracing slows a page);
4. stop the server, start it again on the same store and open the page at once: **first view, right after a
   restart** (what the first start kept beside the store, lib/engine/keptfiles, is read instead of built; the
   first start had none).

A view is done when the page's last element is there and the script has finished (`data-test-script-state`),
timed in the page itself (performance.now()). Every view and answer also gives the server's part, seen on the
wire (bench/wire.py: the browser reaches each server through a relay in this process): from the browser's first
message on the page's stream to the server's last message on it. The rest is the browser: handling the
input before it asks, and drawing what it received. (The page cannot time this itself: it notes the end of a
script run only when its main thread gets to that message, and while a map is drawn in software WebGL that
thread waits for the GPU.)

The browser is a returning user's: every start of a code serves behind the same relay address, and Streamlit's
files (the same for every start) were fetched before the first figure, by the floor: `bench/asgi/floor.py`, a
tiny page with one table, chart and map, whose first view (three times, in new tabs) is what Streamlit and the
browser cost whatever the data. Headless Chromium with software rendering (the project's browser tests'
settings) at 1440 x 1000. Prints a table and writes pages.json, the servers' logs and the traces to bench/out
(or `--out`); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402  (bench/load.py: the server and the baseline worktree)
from wire import Wire  # noqa: E402  (bench/wire.py: the server's part of a view, on the wire)

from lib.engine import keptfiles  # noqa: E402
from tests.browser import ARGS, CHROMIUM, IDLE  # noqa: E402

OUT = ROOT / "bench" / "out"
VIEWPORT = {"width": 1440, "height": 1000}
PAGES = {  # path, the selector of the page's last element
    "overview": ("/", "[data-testid='stDataFrame']"),
    "map": ("/map", "[data-testid='stDeckGlJsonChart']"),
    "rollout": ("/rollout", "text=One-page report"),
}
FLOOR = {"floor": ("/", "text=end")}
ARM = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  window.__inputAt = null;
  for (const kind of ["keydown", "pointerdown"]) {
    document.addEventListener(kind, () => { window.__inputAt = performance.now(); }, {capture: true});
  }
  window.__answer = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("no page run within 120 s of the input")), 120000);
    let ran = false;
    const seen = new MutationObserver(() => {
      const state = app.getAttribute("data-test-script-state");
      if (state === "running") ran = true;
      else if (ran && state === "notRunning") {
        seen.disconnect();
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now())));
      }
    });
    seen.observe(app, {attributes: true});
  });
}"""
"""Armed before an input: the time of the last key press or click, and a promise of the time the page is drawn
after the script's next run."""


class Floor:
    """`streamlit run bench/asgi/floor.py` on `port` (the floor of a first view: Streamlit and the browser alone)."""

    def __init__(self, port: int):
        import subprocess

        self.url = f"http://127.0.0.1:{port}"
        self.log = (OUT / "pages-floor.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "bench" / "asgi" / "floor.py"), "--server.headless",
             "true", "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none"], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        load.healthy(self.url, self.proc, self.log.name)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def idle_server(pid: int, quiet: float = 2.0, limit: float = 600.0) -> float:
    """Wait until the process `pid` and its children used less than 5 % of a core for `quiet` seconds; the
    seconds waited."""
    began = time.monotonic()
    last, still = _cpu(pid), time.monotonic()
    while time.monotonic() - began < limit:
        time.sleep(0.5)
        now = _cpu(pid)
        if now - last > 0.05 * 0.5:
            still = time.monotonic()
        elif time.monotonic() - still >= quiet:
            break
        last = now
    return time.monotonic() - began


def _cpu(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *load.children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def first_view(context, url: str, page_name: str) -> tuple[float, Page]:
    """Seconds from navigation to the page drawn, in a new tab of `context` (a new session); the tab stays open."""
    path, last = (PAGES | FLOOR)[page_name]
    page = context.new_page()
    page.goto(url + path, timeout=600_000)
    page.wait_for_selector(last, timeout=600_000)
    page.wait_for_selector(IDLE, timeout=600_000)
    page.wait_for_timeout(200)
    page.wait_for_selector(IDLE, timeout=600_000)
    took = page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => "
                         "r(performance.now()))))") / 1000 - 0.2  # the quiet 0.2 s above is not the page's
    exceptions = page.locator("[data-testid='stException']").count()
    if exceptions:
        raise RuntimeError(f"{page_name}: the page shows {exceptions} exception(s)")
    return took, page


GPU_THREAD = "CrGpuMain"


def traced_gpu(browser, context, url: str, page_name: str, path: Path) -> dict[str, float]:
    """One more first view of `page_name`, traced (Chrome's trace, written to `path`): the seconds the browser's
    GPU thread (software WebGL here) was busy during it, in all and in its longest task. A view apart from the
    others: tracing slows a page."""
    browser.start_tracing(path=str(path), categories=["toplevel", "gpu"])
    try:
        first_view(context, url, page_name)[1].close()
    finally:
        browser.stop_tracing()
    return gpu_busy(json.loads(path.read_text()))


def gpu_busy(trace: dict | list) -> dict[str, float]:
    """{"busy": seconds, "longest": seconds} of the top-level tasks on the GPU thread of a Chrome trace."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    gpu = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
           and e["args"].get("name") == GPU_THREAD}
    tasks = [(e["ts"], e["ts"] + e["dur"]) for e in events if (e.get("pid"), e.get("tid")) in gpu
             and e.get("ph") == "X" and "dur" in e and e.get("name") == "ThreadControllerImpl::RunTask"]
    busy = longest = 0.0
    end = float("-inf")
    for start, stop in sorted(tasks, key=lambda t: (t[0], -t[1])):  # an outer task before those within it
        if stop <= end:
            continue  # within one counted already
        longest = max(longest, stop - start)
        busy += stop - max(start, end)  # overlapping time counted once
        end = stop
    return {"busy": busy / 1e6, "longest": longest / 1e6}


def answer(page: Page, act) -> float:
    """Seconds from the input `act(page)` makes (its last key press or click) to the page drawn again."""
    page.evaluate(ARM)
    act(page)
    done = page.evaluate("() => window.__answer")
    began = page.evaluate("() => window.__inputAt")
    if began is None:
        raise RuntimeError("the input made no key press or click")
    page.wait_for_selector(IDLE, timeout=600_000)
    if page.locator("[data-testid='stException']").count():
        raise RuntimeError("the page shows an exception after an input")
    return (done - began) / 1000


def _type_date(day: str):
    def act(page: Page) -> None:
        page.get_by_role("spinbutton", name="month, As of").click()
        page.keyboard.type(day[5:7] + day[8:10])  # month and day; the year stays
        page.keyboard.press("Enter")
    return act


def _pick(label: str, option: str):
    def act(page: Page) -> None:
        page.get_by_role("combobox", name=label, exact=True).click()
        page.get_by_role("option", name=option, exact=True).click()
    return act


def _slider_left(page: Page) -> None:
    page.get_by_role("slider", name="Network as of").focus()
    page.keyboard.press("ArrowLeft")


def _level(name: str):
    def act(page: Page) -> None:
        page.locator("[data-testid='stButtonGroup']").first.get_by_role("radio", name=name).click()
    return act


def inputs(page_name: str, n: int, data_day: str) -> list[tuple[str, object]]:
    """The inputs a person makes on `page_name`: (kind, act), n of each kind, each a new value."""
    import datetime as dt

    day = dt.date.fromisoformat(data_day)
    states = ["Bayern", "Berlin", "Hessen", "Sachsen", "Bremen", "Saarland"]
    if page_name == "rollout":  # within the data's year: a person types the month and the day
        dates = [(day - dt.timedelta(days=17 * (i + 1))).isoformat() for i in range(n)]
        if any(d[:4] != data_day[:4] for d in dates):
            raise ValueError("--inputs too large: the dates typed must lie in the data's year")
        return ([("date", _type_date(d)) for d in dates]
                + [("region", _pick("Region", states[i % len(states)])) for i in range(n)])
    if page_name == "map":
        return ([("date", _slider_left) for _ in range(n)]
                + [("region", _pick("Region", f"{states[i % len(states)]} (state)")) for i in range(n)])
    return [("level", _level(["cluster", "state"][i % 2])) for i in range(n)]


def measure(root: Path, label: str, db: Path, n_inputs: int, data_day: str, pages: list[str]) -> dict:
    """Every figure of one code: per page, the first views and the answers to inputs, each with the server's part
    (seconds on the wire; `*_server_s`)."""
    out: dict = {}
    port, to = load.free_port(), load.free_port()  # the browser's address, the same for every start (it keeps the
    wire = Wire(port, to)                          # app's files as a returning user's does), and the servers'
    url = f"http://127.0.0.1:{port}"

    def view(context, name: str) -> tuple[float, float, Page]:
        at = wire.mark()
        took, page = first_view(context, url, name)
        return took, wire.server_part(at), page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        try:
            floor = Floor(to)  # the browser fetches Streamlit's files here first (the same for every start)
            try:
                for _ in range(3):
                    out.setdefault("floor", []).append(first_view(context, url, "floor")[0])
                    context.pages[-1].close()
            finally:
                floor.stop()
            print(f"{label:>18} floor     first view of a tiny page with a table, a chart and a map: "
                  + ", ".join(f"{v:.2f}" for v in out["floor"]) + " s", flush=True)
            copy = OUT / f"pages-store-{label}.duckdb"
            for name in pages:
                shutil.copy(db, copy)
                shutil.rmtree(keptfiles.folder(copy), ignore_errors=True)  # a store this code never served
                server = load.Server(None, gc=False, root=root, label=f"pages-{label}", db=copy, port=to)
                try:
                    cold, cold_server, page = view(context, name)
                    page.close()
                    warm_wait = idle_server(server.proc.pid)
                    warm, warm_server, page = view(context, name)
                    answers: dict[str, list[float]] = {}
                    servers: dict[str, list[float]] = {}
                    for kind, act in inputs(name, n_inputs, data_day):
                        at = wire.mark()
                        answers.setdefault(kind, []).append(answer(page, act))
                        servers.setdefault(kind, []).append(wire.server_part(at))
                    page.close()
                    gpu = traced_gpu(browser, context, url, name, OUT / f"pages-trace-{label}-{name}.json")
                finally:
                    server.stop()
                server = load.Server(None, gc=False, root=root, label=f"pages-{label}", db=copy, port=to)
                try:  # the same store again: what the last start left beside it (lib/engine/keptfiles) is there
                    again, again_server, page = view(context, name)
                    page.close()
                finally:
                    server.stop()
                out[name] = {"first_view_at_start_s": cold, "first_view_at_start_server_s": cold_server,
                             "warm_up_s": warm_wait, "first_view_after_warm_up_s": warm,
                             "first_view_after_warm_up_server_s": warm_server, "first_view_at_restart_s": again,
                             "first_view_at_restart_server_s": again_server, "answers_s": answers,
                             "answers_server_s": servers, "gpu_s": gpu}
                print(f"{label:>18} {name:9} first view at start {cold:6.2f} s (server {cold_server:.2f} s), after "
                      f"warm-up ({warm_wait:4.0f} s) {warm:5.2f} s (server {warm_server:.2f} s), at a restart "
                      f"{again:6.2f} s (server {again_server:.2f} s); "
                      + "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)} s (server "
                                  f"{', '.join(f'{v:.2f}' for v in servers[k])} s)" for k, vs in answers.items()),
                      flush=True)
        finally:
            try:
                browser.close()
            finally:
                wire.close()
    return out


def main(argv: list[str] | None = None) -> int:
    global OUT
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", type=Path, required=True, help="the store to serve (a copy per code and page)")
    p.add_argument("--baseline", metavar="REF", help="also measure this git commit (a worktree), in the same run")
    p.add_argument("--inputs", type=int, default=3, help="inputs of each kind per page (default 3)")
    p.add_argument("--page", action="append", choices=list(PAGES), help="only these pages (repeatable; default all)")
    p.add_argument("--out", type=Path, default=OUT, help="folder for the store copies, logs, traces and "
                                                           "pages.json (default bench/out)")
    args = p.parse_args(argv)
    OUT = load.OUT = args.out  # the servers' logs and a baseline's worktree go there too
    from lib import store
    from lib.views import overview

    con = store.connect(args.db, read_only=True)
    try:  # the data's date and size as the app reads them
        info = overview.summary(con)
    finally:
        con.close()
    data_day, complaints = info.data_as_of.date().isoformat(), info.counts["complaints"]
    OUT.mkdir(parents=True, exist_ok=True)
    codes = [(ROOT, "this")]
    if args.baseline:
        folder, commit = load.baseline_checkout(args.baseline)
        codes.append((folder, f"baseline {commit}"))
    print(f"{complaints:,} complaints, data as of {data_day}; {args.inputs} inputs of each kind", flush=True)
    pages = args.page or list(PAGES)
    results = {label: measure(root, label.replace(" ", "-"), args.db, args.inputs, data_day, pages)
               for root, label in codes}
    (OUT / "pages.json").write_text(json.dumps({"db": str(args.db), "complaints": complaints, "results": results},
                                               indent=1))
    print(f"\n{'page':9} {'figure':34} " + " ".join(f"{label:>20}" for _, label in codes))
    print(f"{'floor':9} {'first view of a tiny page: median':34} "
          + " ".join(f"{sorted(results[label]['floor'])[1]:>18.2f} s" for _, label in codes))
    for name in pages:
        rows = [("first view right after a start", lambda r: r["first_view_at_start_s"]),
                ("  of which the server (on the wire)", lambda r: r["first_view_at_start_server_s"]),
                ("server busy after start (warm-up)", lambda r: r["warm_up_s"]),
                ("first view after the warm-up", lambda r: r["first_view_after_warm_up_s"]),
                ("  of which the server (on the wire)", lambda r: r["first_view_after_warm_up_server_s"]),
                ("  GPU busy (traced view): all / longest", lambda r: (r["gpu_s"]["busy"], r["gpu_s"]["longest"])),
                ("first view right after a restart", lambda r: r["first_view_at_restart_s"]),
                ("  of which the server (on the wire)", lambda r: r["first_view_at_restart_server_s"])]
        for kind in results[codes[0][1]][name]["answers_s"]:
            rows.append((f"new {kind}: median / max", lambda r, k=kind: r["answers_s"][k]))
            rows.append(("  of which the server (on the wire)", lambda r, k=kind: r["answers_server_s"][k]))
        for title, get in rows:
            cells = []
            for _, label in codes:
                v = get(results[label][name])
                if isinstance(v, tuple):
                    cells.append(f"{v[0]:.2f} / {v[1]:.2f} s")
                else:
                    cells.append(f"{sorted(v)[len(v) // 2]:.2f} / {max(v):.2f} s" if isinstance(v, list)
                                 else f"{v:.2f} s")
            print(f"{name:9} {title:34} " + " ".join(f"{c:>20}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
