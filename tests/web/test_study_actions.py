"""The study page's actions in Debian's Chromium: extend a finished study, retry its failed
trials, and the errors both show; the page follows without a reload.

Each test gets its own app and SQLite database (the worker here is the test, which runs the
queue through the store as the dispatcher does, so it must not pick up other tests' trials).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _stop, serve
from web_helpers import TOKEN, PageLog, Served

from service.config import Settings
from service.spec import plan_study

OWNER = "web-actions-worker"
SPEC = {"name": "actions", "dataset": "digits", "methods": ["plain", "lcw"], "depths": [2],
        "widths": [16], "learning_rates": [0.1], "seeds": 2, "max_retries": 0}  # fmt: skip
RESULT = {"train_loss": 0.2, "train_acc": 0.95, "val_loss": 0.3, "val_acc": 0.9,
          "test_loss": 0.3, "test_acc": 0.9}  # fmt: skip
STATUS_IS = "(s) => document.getElementById('study-status').textContent === s"


def _site(tmp: Path, tokens: list[str]) -> Served:
    return serve(Settings(database_url=f"sqlite:///{tmp / 'web.db'}", api_tokens=tokens))  # type: ignore[arg-type]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Served]:
    served = _site(tmp_path, [])
    yield served
    _stop(served)


def _study(site: Served) -> int:
    spec, trials = plan_study(SPEC, max_trials=100)
    return int(site.store.create_study(spec, trials)[0].id)


def _run(site: Served, *, fail: int = 0) -> list[int]:
    """Complete every pending trial, failing the first `fail` of them; returns the ids run."""
    ran = []
    while claimed := site.store.claim_trials(OWNER, limit=50, lease_seconds=60):
        for c in claimed:
            if len(ran) < fail:
                site.store.fail_trial_attempt(OWNER, c.id, error="RuntimeError: out of luck")
            else:
                acc = {**RESULT, "test_acc": 0.9 + 0.01 * c.seed}
                site.store.write_metrics(OWNER, [(c.id, {"epoch": 1, **acc})])
                site.store.complete_trial(OWNER, c.id, status="completed", result=acc,
                                          run_info={})  # fmt: skip
            ran.append(c.id)
    return ran


def test_extend_a_finished_study_from_its_page(fresh: Served, page: Any, page_log: PageLog) -> None:
    sid = _study(fresh)
    _run(fresh)
    page.goto(f"{fresh.url}/studies/{sid}")
    page.evaluate("() => { window.__sameDocument = true; }")
    assert page.locator("#study-status").inner_text() == "completed"
    assert page.locator("#retry-form").is_hidden()  # nothing failed
    page.click("#study-actions summary")
    page.fill("#extend-form input[name=learning_rates]", "-1")
    page.click("#extend-btn")
    page.wait_for_function("() => document.getElementById('extend-msg').textContent !== ''")
    assert "greater than 0" in page.locator("#extend-msg").inner_text()
    assert fresh.store.get_study(sid).trial_count == 4  # nothing stored

    page.fill("#extend-form input[name=learning_rates]", "0.3")
    page.fill("#extend-form input[name=seeds]", "3")
    page.check("#extend-form input[name=methods][value=bn]")
    page.click("#extend-btn")
    page.wait_for_function(STATUS_IS, arg="running", timeout=10_000)
    message = page.locator("#extend-msg").inner_text()
    # (plain, lcw, bn) x (0.1, 0.3) x 3 seeds = 18 trials, 4 stored.
    assert message == "Added 14 trials (18 in all); only they run.", message
    assert page.locator("#count-total").inner_text() == "18"
    assert len(_run(fresh)) == 14
    page.wait_for_function(STATUS_IS, arg="completed", timeout=10_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#cell-table td, #cells-table td')]"
        ".some((td) => td.textContent.trim() === 'bn')",
        timeout=10_000,
    )
    assert page.evaluate("() => window.__sameDocument === true")  # never reloaded
    # The only console error is the browser's line about the refused (422) request.
    assert [e for e in page_log.errors if "status of 422" not in e] == []


def test_retry_failed_trials_from_the_page(fresh: Served, page: Any, page_log: PageLog) -> None:
    sid = _study(fresh)
    _run(fresh, fail=1)
    page.goto(f"{fresh.url}/studies/{sid}")
    assert page.locator("#failed-callout").is_visible()
    fix = page.locator("#failed-fix").inner_text()
    assert "retry" in fix and "traceback" in fix, fix
    assert page.locator("#retry-count").inner_text() == "1"
    page.click("#retry-btn")
    page.wait_for_function(STATUS_IS, arg="running", timeout=10_000)
    assert "Requeued 1 trials" in page.locator("#retry-msg").inner_text()
    assert page.locator("#retry-form").is_hidden()
    assert len(_run(fresh)) == 1
    page.wait_for_function(STATUS_IS, arg="completed", timeout=10_000)
    assert fresh.store.get_study(sid).progress.completed == 4
    assert page_log.errors == []


def test_extend_and_retry_need_the_token(tmp_path: Path, page: Any) -> None:
    served = _site(tmp_path, [TOKEN])
    try:
        sid = _study(served)
        _run(served, fail=1)
        page.goto(f"{served.url}/studies/{sid}")
        page.fill("#extend-form input[name=seeds]", "3")
        page.click("#extend-btn")
        page.wait_for_function("() => document.getElementById('extend-msg').textContent !== ''")
        assert "needs a valid API token" in page.locator("#extend-msg").inner_text()
        page.click("#retry-btn")
        page.wait_for_function("() => document.getElementById('retry-msg').textContent !== ''")
        assert "needs a valid API token" in page.locator("#retry-msg").inner_text()
        assert served.store.get_study(sid).trial_count == 4
        page.fill("#actions-token", TOKEN)
        page.click("#extend-btn")
        page.wait_for_function(STATUS_IS, arg="running", timeout=10_000)
        assert served.store.get_study(sid).trial_count == 6
        assert TOKEN not in page.content()
    finally:
        _stop(served)


def test_pages_show_whose_study_it_is(tmp_path: Path, page: Any) -> None:
    served = _site(tmp_path, ["alice:tok-alice", TOKEN])
    try:
        spec, trials = plan_study({**SPEC, "priority": 7}, max_trials=100)
        sid = int(served.store.create_study(spec, trials, owner="alice")[0].id)
        anon = _study(served)
        page.goto(served.url + "/")
        row = page.locator(f'tr[data-study-id="{sid}"]')
        assert "alice" in row.inner_text()
        assert "—" in page.locator(f'tr[data-study-id="{anon}"]').inner_text()
        page.goto(f"{served.url}/studies/{sid}")
        facts = page.locator(".facts").inner_text()
        assert "owner alice" in facts and "priority 7" in facts
    finally:
        _stop(served)
