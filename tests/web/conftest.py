"""Fixtures for the web tests: the app served by uvicorn on a free 127.0.0.1 port against a temp
SQLite database (no dispatcher, no Ray), seeded through the store; Debian's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from seeding import seed
from web_helpers import TOKEN, PageLog, Served

from benchmarks.page_load import CHROMIUM, CHROMIUM_ARGS  # the benchmark's browser setup
from service.config import Settings
from service.main import create_app


def serve(settings: Settings) -> Served:
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", app.state.store, server, thread)


def _stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=10)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app with writes open, seeded with the studies of tests/web/seeding.py."""
    db = tmp_path_factory.mktemp("web") / "web.db"
    served = serve(Settings(database_url=f"sqlite:///{db}", api_tokens=[]))
    served.seeded = seed(served.store)
    yield served
    _stop(served)


@pytest.fixture(scope="session")
def auth_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app with LCW_API_TOKENS set (writes need the token)."""
    db = tmp_path_factory.mktemp("web-auth") / "web.db"
    served = serve(Settings(database_url=f"sqlite:///{db}", api_tokens=[TOKEN]))  # type: ignore[list-item]
    yield served
    _stop(served)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Any, page_log: PageLog) -> Iterator[Any]:
    """A fresh 1280-px-wide page that records console errors and dismisses dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: page_log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: page_log.errors.append(f"pageerror: {exc}"))

    def on_dialog(dialog: Any) -> None:
        page_log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    context.close()
