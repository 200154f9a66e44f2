"""The offline report opens from disk in a real Chromium with the network blocked.

A real `lcw-sweep serve` (embedded dispatcher, local Ray, temporary SQLite) trains a tiny
digits study with diagnostics on; `lcw-sweep report ID --out DIR` writes its report; Debian's
Chromium opens DIR/report.html as a file:// page while every request that is not file:// is
aborted and recorded. Every figure must be drawn from its inline data, and nothing may be
fetched. The Markdown's images must be PNG files beside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import lcw, serve, study_spec
from PIL import Image

from service.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# 2 methods x 2 depths x 2 seeds = 8 trials, 2 epochs, per-layer diagnostics on (the default).
SPEC = study_spec("offline-report", depths=[1, 2], widths=[16], seeds=2, epochs=2)
FIGURES = 7  # accuracy vs depth, and per cell (2): LR sensitivity, curves, layer diagnostics


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The report of the trained study, as `lcw-sweep report` wrote it."""
    out = tmp_path_factory.mktemp("offline") / "report"
    with serve(tmp_path_factory.mktemp("offline-serve")) as (url, _started):
        with Client(url) as api:
            study = api.submit(SPEC)
            assert api.wait(study.id, poll_s=0.5, timeout_s=300).status == "completed"
        proc = lcw("report", str(study.id), "--out", str(out), "--url", url)
        assert proc.returncode == 0, proc.stderr
    yield out  # the server is gone: the report must stand alone


def test_the_html_report_draws_every_figure_with_the_network_blocked(
    report_dir: Path, browser: Any
) -> None:
    attempted: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", route)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((report_dir / "report.html").as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img",
            """els => els.map(e => ({
                section: e.closest('section').id,
                src: e.getAttribute('src').slice(0, 22),
                complete: e.complete,
                width: e.naturalWidth,
                height: e.naturalHeight,
                shown: e.getBoundingClientRect().width,
            }))""",
        )
        assert attempted == [], attempted
        assert errors == []
        assert page.evaluate("document.scripts.length") == 0
        assert len(images) == FIGURES
        for image in images:
            assert image["src"] == "data:image/png;base64,", image
            assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
            assert image["shown"] > 100, image  # laid out on the page, not collapsed
        sections = [image["section"] for image in images]
        assert sections.count("layers") == 2  # the activation shift / gradient norm panel
        assert page.locator("#layers").inner_text().count("Diagnostics were off") == 0
        assert page.locator("#results table").count() == 2  # cells and comparisons
        # The blocking is real: a request the page makes is caught and never answered.
        failed = page.evaluate(
            "fetch('http://127.0.0.1:9/probe').then(() => 'answered', () => 'blocked')"
        )
        assert failed == "blocked" and attempted == ["http://127.0.0.1:9/probe"]
    finally:
        context.close()


def test_the_markdown_images_are_png_files_beside_it(report_dir: Path) -> None:
    markdown = (report_dir / "report.md").read_text()
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(targets) == FIGURES
    for target in targets:
        assert not target.startswith(("http:", "https:", "/")), target
        with Image.open(report_dir / target) as image:
            image.verify()  # a whole, valid PNG
        with Image.open(report_dir / target) as image:
            assert image.format == "PNG" and image.width > 0 and image.height > 0
