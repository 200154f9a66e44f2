"""The comparison page in Debian's Chromium: reached from a study's "Compare with..." control,
the shared cells side by side with each study's stored numbers, accuracy over depth overlaid per
study, the empty state (no shared cell, unknown ids), and its layout at 1280 and 390 px. The
studies are trained for real (tests/web/training.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _stop, serve
from layout import screenshots
from training import create, train_study
from web_helpers import PageLog, Served

from service.config import Settings

pytestmark = pytest.mark.browser

SPEC = {"dataset": "digits", "methods": ["plain", "bn", "lcw"], "widths": [16],
        "learning_rates": [0.1], "seeds": 2, "epochs": 2}  # fmt: skip


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, int, int, int]]:
    db = tmp_path_factory.mktemp("compare") / "web.db"
    served = serve(Settings(database_url=f"sqlite:///{db}", api_tokens=[]))
    a = train_study(served.store, {**SPEC, "name": "shallow grid", "depths": [2, 4]})
    b = train_study(served.store, {**SPEC, "name": "deeper grid", "depths": [4, 6], "seeds": 3})
    c = create(served.store, {**SPEC, "name": "elsewhere", "depths": [9]})
    yield served, a, b, c
    _stop(served)


def test_compare_from_a_study_page(
    studies: tuple[Served, int, int, int], page: Any, page_log: PageLog
) -> None:
    served, a, b, _ = studies
    page.goto(f"{served.url}/studies/{a}")
    page.select_option("#compare-select", str(b))
    page.click("#compare-btn")
    page.wait_for_url(f"**/compare?studies={a}&studies={b}")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    rows = page.locator("#compare-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-depth") == "4"
    for sid in (a, b):
        summary = served.store.summary(sid)  # the page must show the stored numbers
        # The strongest baseline over the shared cell (depth 4): the better of plain and bn.
        at4 = {c.method: c.test_acc_mean or 0.0 for c in summary.cells if c.depth == 4}
        baseline = max(("plain", "bn"), key=lambda m: at4[m])
        heads = page.locator(f'#compare-studies li[data-study-id="{sid}"]').inner_text()
        assert f"lcw vs {baseline} (strongest baseline)" in heads
        pair = next(
            c
            for c in summary.comparisons
            if (c.method, c.baseline, c.depth) == ("lcw", baseline, 4)
        )
        cells = {c.method: c for c in summary.cells if c.depth == 4}
        cell = rows.first.locator(f'td[data-study-id="{sid}"]')
        acc = cells["lcw"].test_acc_mean
        assert acc is not None and pair.mean_diff is not None and pair.ci95 is not None
        assert cell.and_(page.locator('[data-col="method_acc"]')).inner_text() == f"{acc:.3f}"
        diff = cell.and_(page.locator('[data-col="diff"]')).inner_text()
        assert diff.startswith(f"{pair.mean_diff:+.3f}")
        assert f"[{pair.ci95[0]:+.3f}, {pair.ci95[1]:+.3f}]" in diff
        p_cell = cell.and_(page.locator('[data-col="p_adjusted"]')).inner_text()
        assert p_cell == f"not testable (n={pair.n})"
    # Accuracy over depth: each study's lcw (solid) and baseline (dotted) in one chart.
    traces = page.evaluate(
        """() => document.querySelector('[data-chart^="compare-sigmoid"]').data
          .filter((t) => t.name).map((t) => ({name: t.name, x: t.x, dash: t.line.dash}))"""
    )
    assert len(traces) == 4
    assert {t["dash"] for t in traces} == {"solid", "dot"}
    assert all(t["x"] == [4] for t in traces)
    assert {t["name"].split(" ")[0] for t in traces} == {f"#{a}", f"#{b}"}
    assert page_log.errors == []


def test_empty_states_and_layout(
    studies: tuple[Served, int, int, int], page: Any, page_log: PageLog, tmp_path: Path
) -> None:
    served, a, b, c = studies
    response = page.goto(f"{served.url}/compare?studies={a},{c}")
    assert response.status == 422
    empty = page.locator("#compare-empty")
    assert empty.is_visible() and "share no cell" in empty.inner_text()
    assert page.locator("#compare-table").count() == 0
    response = page.goto(f"{served.url}/compare?studies={a},424242")
    assert response.status == 404
    assert "study 424242 does not exist" in page.locator("#compare-error").inner_text()
    response = page.goto(f"{served.url}/compare?studies={a},abc")
    assert response.status == 422 and "'abc' is not a study id" in page.inner_text("main")
    page_log.errors = [e for e in page_log.errors if "status of 4" not in e]
    page.goto(f"{served.url}/compare?studies={a},{b}")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    assert screenshots(page, tmp_path, "compare") == {1280: [], 390: []}
    assert page_log.errors == []
