"""Constants and helpers shared by the web tests (a plain module: conftest holds fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
