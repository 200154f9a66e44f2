"""The study page as a user sees it: a 20,000-trial x 20-epoch study loaded in Chromium.

The study is seeded into a temporary SQLite database with ``benchmarks.queries._seed`` (the
same study the query benchmark uses), the app is served by uvicorn in a subprocess (factory
mode, no dispatcher), and Debian's Chromium, driven by Playwright, loads ``/studies/{id}``.
A visit is timed from ``page.goto`` until the page is usable: ``body[data-ready]``, which the
page's script sets once every chart is drawn and none of its fetches is in flight.

Figures: the very first visit after the server starts (nothing cached anywhere), first visits
with an empty browser cache (a new browser context each) and repeat visits (the same context:
static files from the browser's cache), median and max of the repeats; plus the page's
navigation timing and its biggest resources (``performance.getEntriesByType``).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.queries import _seed
from service.db import make_engine, upgrade_database
from service.store import Store

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
READY = "document.body.dataset.ready === '1'"
TIMEOUT_MS = 60_000

_TIMING_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const ready = performance.getEntriesByName('lcw-ready')[0];
  const size = (e) => ({
    name: e.name.replace(location.origin, ''),
    type: e.initiatorType || 'navigation',
    transfer_bytes: e.transferSize,
    encoded_bytes: e.encodedBodySize,
    decoded_bytes: e.decodedBodySize,
    start_ms: e.startTime,
    duration_ms: e.duration,
  });
  return {
    navigation: nav ? {
      response_start_ms: nav.responseStart,
      response_end_ms: nav.responseEnd,
      dom_content_loaded_ms: nav.domContentLoadedEventEnd,
      load_ms: nav.loadEventEnd,
    } : null,
    ready_ms: ready ? ready.startTime : null,
    resources: [nav, ...performance.getEntriesByType('resource')].filter(Boolean).map(size),
    charts: [...document.querySelectorAll('#results [data-chart]')]
      .filter((c) => c.querySelector('svg.main-svg, table.heatmap')).length,
  };
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(database_url: str) -> Iterator[str]:
    """uvicorn serving the app (factory mode, API and pages only) on a free port: its URL."""
    port = _free_port()
    env = dict(os.environ, LCW_DATABASE_URL=database_url, LCW_API_TOKENS="")
    cmd = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--timeout-keep-alive", "30",
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _visit(page: Any, url: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(READY, timeout=TIMEOUT_MS)
    wall = time.perf_counter() - t0
    timing: dict[str, Any] = page.evaluate(_TIMING_JS)
    timing["seconds"] = wall
    return timing


def _summary(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "max_s": max(values)}


def _biggest(resources: list[dict[str, Any]], n: int = 6) -> list[dict[str, Any]]:
    return sorted(resources, key=lambda e: -(e["transfer_bytes"] or e["decoded_bytes"] or 0))[:n]


def measure(browser: Any, url: str, *, repeats: int) -> dict[str, Any]:
    """Time `repeats` first visits (each in a new context) and as many repeat visits of `url`
    (a study page) in `browser`; the first visit of all is reported apart (`first_ever`)."""
    viewport = {"width": 1280, "height": 900}
    errors: list[str] = []

    def new_page(context: Any) -> Any:
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        return page

    context = browser.new_context(viewport=viewport)
    first_ever = _visit(new_page(context), url)
    context.close()
    firsts: list[dict[str, Any]] = []
    repeat_visits: list[dict[str, Any]] = []
    for _ in range(repeats):
        context = browser.new_context(viewport=viewport)
        page = new_page(context)
        firsts.append(_visit(page, url))
        repeat_visits.append(_visit(page, url))
        context.close()
    typical = sorted(firsts, key=lambda v: v["seconds"])[len(firsts) // 2]
    return {
        "first_ever_s": first_ever["seconds"],
        "first_visit": _summary([v["seconds"] for v in firsts]),
        "repeat_visit": _summary([v["seconds"] for v in repeat_visits]),
        "first_visit_ready_ms": [v["ready_ms"] for v in firsts],
        "repeat_visit_ready_ms": [v["ready_ms"] for v in repeat_visits],
        "navigation": typical["navigation"],
        "charts": typical["charts"],
        "transfer_bytes": sum(e["transfer_bytes"] or 0 for e in typical["resources"]),
        "repeat_transfer_bytes": sum(
            e["transfer_bytes"] or 0 for e in repeat_visits[len(repeat_visits) // 2]["resources"]
        ),
        "biggest_resources": _biggest(typical["resources"]),
        "console_errors": errors,
    }


def chromium_missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    return None


def run(*, repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    """Seed the 20k-trial study, serve it and time its page in Chromium (`quick`: 1 repeat)."""
    if (reason := chromium_missing()) is not None:
        return {"skipped": reason}
    from playwright.sync_api import sync_playwright

    repeats = 1 if quick else max(1, repeats)
    with TemporaryDirectory(prefix="lcw-page-load-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'page.db'}"
        engine = make_engine(url)
        upgrade_database(engine)
        t0 = time.perf_counter()
        study_id = _seed(Store(engine), url)
        seeded = time.perf_counter() - t0
        engine.dispose()
        with serve(url) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                out = measure(browser, f"{base}/studies/{study_id}", repeats=repeats)
            finally:
                browser.close()
    out.update(seed_seconds=seeded, repeats=repeats, trials=20_000)
    return out


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(repeats=args.repeats, quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
