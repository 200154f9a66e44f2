"""Constants and helpers shared by the web tests (a plain module: conftest holds fixtures)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from seeding import Seeded

from service.store import Store

TOKEN = "web-test-token-7f3a"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def screenshot(page: Any, name: str, *, width: int) -> Path:
    """A full-page screenshot at `width` px (390: a phone) into screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": width, "height": 844 if width < 500 else 900})
    page.wait_for_timeout(500)  # plotly's responsive relayout
    path = SCREENSHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Served:
    """One app served over HTTP: its base URL, store and the seeded ids."""

    url: str
    store: Store
    server: uvicorn.Server
    thread: threading.Thread
    seeded: Seeded = field(default_factory=Seeded)


@dataclass
class PageLog:
    """Console errors and uncaught exceptions of a page, and any dialog it opened."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
