"""The web view in a real browser (Debian Chromium via Playwright) against a seeded database:
lists, charts, the trial table, the form, escaping, live progress, auth, and screenshots."""

from __future__ import annotations

import re
from typing import Any

import pytest
from seeding import finish_live_trial
from web_helpers import TOKEN, PageLog, Served, screenshot

pytestmark = pytest.mark.browser

CHARTS_READY = """() => {
  const charts = [...document.querySelectorAll('#results [data-chart]')];
  return charts.length > 0 && charts.every((c) => c.querySelector('svg.main-svg, table.heatmap'));
}"""


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def test_list_page_shows_the_studies(site: Served, page: Any, page_log: PageLog) -> None:
    page.goto(site.url + "/")
    row = page.locator(f'tr[data-study-id="{site.seeded.main}"]')
    assert row.locator("a.study-link").inner_text() == "deep-sigmoid-vs-relu"
    assert row.locator(".badge").inner_text() == "completed"
    cells = row.locator("td").all_inner_texts()
    assert cells[5:8] == ["144", "143", "1"]  # trials, done, failed (after the owner)
    bar = row.locator(".progress")
    assert bar.get_attribute("aria-valuenow") == "144"
    failed = page.locator(f'tr[data-study-id="{site.seeded.failed_study}"] .badge')
    assert failed.inner_text() == "failed"
    screenshot(page, "list", width=1280)
    screenshot(page, "list", width=390)
    assert page_log.errors == []


def test_study_page_renders_every_chart(site: Served, page: Any, page_log: PageLog) -> None:
    page.goto(f"{site.url}/studies/{site.seeded.main}")
    page.wait_for_function(CHARTS_READY)
    charts = page.locator("#results [data-chart]")
    keys = [charts.nth(i).get_attribute("data-chart") for i in range(charts.count())]
    assert set(keys) >= {
        "comparison-sigmoid-100",
        "comparison-relu-100",
        "heatmap-lcw",
        "heatmap-bn_lcw",
        "lr-sigmoid-5-100",
        "lr-sigmoid-20-100",
        "train-loss",
        "test-acc",
        "shift",
        "grad-norm",
    }
    assert page.locator(".chart-empty").count() == 0
    # The heatmap shows the summary's paired difference of lcw - plain at depth 20, sigmoid
    # (the page opens on the strongest baseline, bn; plain is chosen here).
    summary = site.store.summary(site.seeded.main)
    diff = next(
        c.mean_diff
        for c in summary.comparisons
        if (c.method, c.baseline, c.depth, c.activation) == ("lcw", "plain", 20, "sigmoid")
    )
    assert page.locator("#baseline-select").input_value() == "bn"
    page.select_option("#baseline-select", "plain")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
        ".closest('figure').textContent.includes('lcw − plain')"
    )
    assert f"+{diff:.3f}" in page.locator('[data-chart="heatmap-lcw"]').inner_text()
    # Another baseline redraws the heatmaps.
    page.select_option("#baseline-select", "bn")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
        ".closest('figure').textContent.includes('lcw − bn')"
    )
    page.select_option("#baseline-select", "plain")
    # Another cell loads its curves and diagnostics.
    page.select_option("#cell-select", "5|100|relu")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"shift\"]')"
        ".closest('figure').textContent.includes('depth 5 · width 100 · relu')"
    )
    page.select_option("#cell-select", "20|100|sigmoid")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"shift\"]')"
        ".closest('figure').textContent.includes('depth 20')"
    )
    page.wait_for_timeout(300)
    screenshot(page, "study", width=1280)
    screenshot(page, "study", width=390)
    assert page_log.errors == []


_SHOWN = """([grid, method]) => [...document.querySelectorAll('#' + grid + ' [data-chart]')]
  .filter((div) => div.data)
  .map((div) => div.data.filter((t) => t.legendgroup === method).map((t) => t.visible !== false))"""


def _shown(page: Any, grid: str, method: str) -> list[list[bool]]:
    """Per chart of the grid: whether each of `method`'s traces is shown."""
    shown: list[list[bool]] = page.evaluate(_SHOWN, [grid, method])
    return [s for s in shown if s]


def test_a_groups_legend_shows_and_hides_a_method_in_each_chart(
    site: Served, page: Any, page_log: PageLog
) -> None:
    """One legend per chart group (buttons, no plotly legends): a method's button hides its
    traces in every chart of the group, a second press shows them again; keys work too."""
    page.goto(f"{site.url}/studies/{site.seeded.main}")
    page.wait_for_function(READY)
    assert page.locator("#results .legend").count() == 0  # no plotly legend in any chart
    legend = page.locator('[data-legend="comparison-charts"]')
    assert legend.locator("button").all_inner_texts() == ["plain", "bn", "lcw", "bn_lcw"]
    button = legend.locator('button[data-method="bn"]')
    assert button.get_attribute("aria-pressed") == "true"
    before = _shown(page, "comparison-charts", "bn")
    assert len(before) >= 2 and all(all(s) for s in before)  # bn is in several charts
    button.click()
    page.wait_for_function(READY)
    assert button.get_attribute("aria-pressed") == "false"
    hidden = _shown(page, "comparison-charts", "bn")
    assert len(hidden) == len(before) and not any(any(s) for s in hidden)
    assert all(all(s) for s in _shown(page, "comparison-charts", "lcw"))  # others stay
    assert all(all(s) for s in _shown(page, "lr-charts", "bn"))  # other groups keep theirs
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(READY)
    assert button.get_attribute("aria-pressed") == "true"
    assert all(all(s) for s in _shown(page, "comparison-charts", "bn"))
    # Redrawing the group keeps the choice: another activation in the LR charts.
    lr_bn = page.locator('[data-legend="lr-charts"] button[data-method="bn"]')
    lr_bn.click()
    page.wait_for_function(READY)
    page.select_option("#lr-activation-select", "relu")
    page.wait_for_function(READY)
    assert lr_bn.get_attribute("aria-pressed") == "false"
    assert not any(any(s) for s in _shown(page, "lr-charts", "bn"))
    assert all(all(s) for s in _shown(page, "lr-charts", "plain"))
    # Diagnostics start focused on plain vs lcw: the others' buttons unpressed, traces hidden.
    diag = page.locator('[data-legend="diag-charts"]')
    pressed = {
        b.inner_text(): b.get_attribute("aria-pressed") for b in diag.locator("button").all()
    }
    assert pressed == {"plain": "true", "bn": "false", "lcw": "true", "bn_lcw": "false"}
    assert not any(any(s) for s in _shown(page, "diag-charts", "bn"))
    assert all(all(s) for s in _shown(page, "diag-charts", "lcw"))
    diag.locator('button[data-method="bn"]').press(" ")
    page.wait_for_function(READY)
    shown = _shown(page, "diag-charts", "bn")
    assert len(shown) == 2 and all(all(s) for s in shown)
    assert page_log.errors == []


def _rows(page: Any) -> list[list[str]]:
    return [r.locator("td").all_inner_texts() for r in page.locator("#trial-table tbody tr").all()]


READY = "() => document.body.dataset.ready === '1'"


def test_study_page_says_when_it_is_usable(site: Served, page: Any, page_log: PageLog) -> None:
    """body[data-ready]: set once every chart is drawn, cleared while the page loads more."""
    page.goto(f"{site.url}/studies/{site.seeded.main}")
    page.wait_for_function(READY)
    assert page.evaluate(CHARTS_READY)  # every chart is on the page once it says so
    assert page.evaluate("() => performance.getEntriesByName('lcw-ready').length") == 1
    page.select_option("#cell-select", "5|100|relu")  # the change handler clears it at once
    assert page.evaluate("() => document.body.dataset.ready") is None
    page.wait_for_function(READY)
    caption = page.locator('[data-chart="shift"]').locator("xpath=..").locator("figcaption")
    assert "depth 5 · width 100 · relu" in caption.inner_text()
    page.select_option('#trial-filters select[name="status"]', "failed")
    page.wait_for_function(READY)
    assert page.locator("#trial-table .table-meta").get_attribute("data-count") == "1"
    assert page_log.errors == []


def test_page_load_benchmark_runs_on_a_small_study(site: Served, browser: Any) -> None:
    """benchmarks/page_load.py's measurement on the seeded study (figures are not checked)."""
    from benchmarks import page_load

    out = page_load.measure(browser, f"{site.url}/studies/{site.seeded.main}", repeats=1)
    assert out["console_errors"] == []
    assert out["charts"] >= 10
    assert out["first_visit"]["median_s"] > 0 and out["repeat_visit"]["median_s"] > 0
    assert all(ms is not None for ms in out["first_visit_ready_ms"])
    names = [r["name"] for r in out["biggest_resources"]]
    assert any(n.startswith("/static/plotly") for n in names)
    assert out["repeat_transfer_bytes"] < out["transfer_bytes"]  # static files came from cache


def test_trial_table_numbers_sort_filter_and_pages(
    site: Served, page: Any, page_log: PageLog
) -> None:
    sid = site.seeded.main
    page.goto(f"{site.url}/studies/{sid}")
    expected = site.store.list_trials(sid, limit=50).data
    rows = _rows(page)
    assert len(rows) == 50
    for row, t in zip(rows, expected, strict=True):
        assert row[0] == str(t.id) and row[1] == t.method and row[2] == str(t.depth)
        assert row[5] == f"{t.lr:g}" and row[6] == f"{t.init_scale:g}" and row[7] == str(t.seed)
        assert row[8] == t.status.replace("_", " ")
        assert row[10:13] == [_fmt(t.train_loss), _fmt(t.val_acc), _fmt(t.test_acc)]
    assert "1–50 of 144 trials" in page.locator(".table-meta").inner_text()

    # Sort by test accuracy (the first click sorts best first), server-side over all pages.
    page.click('#trial-table a.sort[data-sort="test_acc"]')
    page.wait_for_function("() => location.search.includes('sort=test_acc')")
    best = site.store.list_trials(sid, limit=3, order_by="test_acc", descending=True).data
    assert [r[0] for r in _rows(page)[:3]] == [str(t.id) for t in best]
    assert _rows(page)[0][12] == _fmt(best[0].test_acc)

    # Filters: the failed lcw trial, then the diverged one.
    page.select_option('#trial-filters select[name="method"]', "lcw")
    page.select_option('#trial-filters select[name="status"]', "failed")
    page.wait_for_function("() => location.search.includes('status=failed')")
    rows = _rows(page)
    assert len(rows) == 1 and rows[0][8] == "failed" and rows[0][12] == "—"
    page.select_option('#trial-filters select[name="method"]', "")
    page.select_option('#trial-filters select[name="status"]', "diverged")
    page.wait_for_function(
        "() => location.search.includes('status=diverged') && !location.search.includes('method')"
    )
    diverged = site.store.get_trial(site.seeded.diverged_trial)
    assert _rows(page)[0][0] == str(diverged.id)

    # Pages: the second page of the unfiltered table, in expansion order.
    page.goto(f"{site.url}/studies/{sid}")
    page.click("#trial-table a.page-link")
    page.wait_for_function("() => location.search.includes('page=2')")
    second = site.store.list_trials(sid, limit=1, offset=50).data[0]
    assert second.index == 50 and _rows(page)[0][0] == str(second.id)
    assert page_log.errors == []


def test_trial_pages_failed_diverged_and_missing(
    site: Served, page: Any, page_log: PageLog
) -> None:
    page.goto(f"{site.url}/trials/{site.seeded.failed_trial}")
    assert page.locator("#trial-status").inner_text() == "failed"
    assert "killed by signal: Killed. <oom>" in page.locator("#trial-error").inner_text()
    page.goto(f"{site.url}/trials/{site.seeded.diverged_trial}")
    assert page.locator("#trial-status").inner_text() == "diverged"
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every((c) => c.querySelector('svg.main-svg'))"
    )
    assert page.get_by_text("Diverged").first.is_visible()
    screenshot(page, "trial", width=1280)
    page.goto(f"{site.url}/studies/{site.seeded.failed_study}")
    assert page.get_by_text("Every trial failed, so there is nothing to compare").is_visible()
    assert "cifar10/data_batch_1 is missing" in page.locator("#failed-callout").inner_text()
    screenshot(page, "study-failed", width=1280)
    for path in ("/studies/99999", "/trials/99999", "/studies/abc"):
        response = page.goto(site.url + path)
        assert response.status == 404
        assert page.locator("h1").inner_text() == "Nothing here"
    page_log.errors = [e for e in page_log.errors if "404" not in e]  # the 404s themselves
    assert page_log.errors == []


def test_form_submits_a_valid_spec_and_shows_field_errors(
    site: Served, page: Any, page_log: PageLog
) -> None:
    page.goto(site.url + "/")
    before = site.store.list_studies(limit=1).count
    spec = page.locator("#spec")
    spec.fill(
        "name: from-the-form\ndataset: digits\nmethods: [plain, lcw]\n"
        "learning_rates: [0.1]\nseeds: 2\n"
    )
    page.click("#submit-study")
    page.wait_for_selector("#spec-feedback .success")
    page.locator("#studies a.study-link", has_text="from-the-form").wait_for()
    assert site.store.list_studies(limit=1).data[0].name == "from-the-form"
    assert site.store.list_studies(limit=1).count == before + 1

    spec.fill("name: broken\ndataset: digits\nmethods: [plain, magic]\nlearning_rates: [0.1]\n")
    page.click("#submit-study")
    error = page.locator('#spec-feedback .field-error[data-field="methods[1]"]')
    error.wait_for()
    assert "'magic' is not one of" in error.inner_text()
    assert "line 3" in error.inner_text()
    assert site.store.list_studies(limit=1).count == before + 1  # nothing stored
    spec.fill("name: broken\ndataset: digits\nmethods: [plain]\nlearning_rates: [0.1]\nseeds: 0\n")
    page.click("#submit-study")
    page.locator('#spec-feedback .field-error[data-field="seeds"]').wait_for()
    screenshot(page, "form-error", width=1280)
    assert page_log.errors == [] or all("422" in e for e in page_log.errors)


def test_markup_in_a_study_name_is_shown_as_text(
    site: Served, page: Any, page_log: PageLog
) -> None:
    name = "<script>alert(1)</script>"
    page.goto(site.url + "/")
    link = page.locator(f'tr[data-study-id="{site.seeded.xss}"] a.study-link')
    assert link.inner_text() == name
    page.goto(f"{site.url}/studies/{site.seeded.xss}")
    assert page.locator("#study-name").inner_text() == name
    assert page.get_by_text("No completed trials yet").is_visible()
    assert page.title().startswith(name)
    executable = page.evaluate(
        "() => [...document.scripts].filter((s) => s.type !== 'application/json')"
        ".some((s) => s.textContent.includes('alert'))"
    )
    assert not executable
    assert page.locator('img[src="x"]').count() == 0
    page.wait_for_timeout(300)
    assert page_log.dialogs == []
    assert page_log.errors == []


def test_a_running_studys_progress_advances_without_reload(
    site: Served, page: Any, page_log: PageLog
) -> None:
    page.goto(f"{site.url}/studies/{site.seeded.live}")
    bar = page.locator("#study-progress")
    assert bar.get_attribute("data-done") == "0"
    assert page.locator("#study-status").inner_text() == "running"
    assert page.get_by_text("No completed trials yet").is_visible()
    page.evaluate("() => { window.__sameDocument = true; }")
    first, second, *rest = site.seeded.live_trials
    finish_live_trial(site.store, first)
    finish_live_trial(site.store, second)
    page.wait_for_function(
        "() => document.getElementById('study-progress').dataset.done === '2'", timeout=10_000
    )
    width = page.evaluate("() => document.querySelector('#study-progress .seg-ok').style.width")
    assert width == "50%"
    assert re.fullmatch(r"\d+ (s|min \d\d s)", page.locator("#remaining").inner_text())
    screenshot(page, "study-running", width=1280)
    for trial_id in rest:
        finish_live_trial(site.store, trial_id)
    page.wait_for_function(
        "() => document.getElementById('study-status').textContent === 'completed'",
        timeout=10_000,
    )
    page.wait_for_function(CHARTS_READY, timeout=10_000)  # the charts appear by themselves
    assert page.evaluate("() => window.__sameDocument === true")  # never reloaded
    assert page.locator("#cancel-form").is_hidden()
    assert page_log.errors == []


def test_with_auth_on_the_form_needs_the_token(auth_site: Served, page: Any) -> None:
    page.goto(auth_site.url + "/")
    assert page.locator("#token").is_visible()
    page.click("#submit-study")
    message = page.locator("#spec-feedback p.bad")
    message.wait_for()
    assert "needs an API token" in message.inner_text()
    assert auth_site.store.list_studies().count == 0
    page.fill("#token", "wrong-token")
    page.click("#submit-study")
    page.wait_for_function(
        "() => document.querySelector('#spec-feedback').textContent.includes('refused')"
    )
    page.fill("#token", TOKEN)
    page.click("#submit-study")
    page.wait_for_selector("#spec-feedback .success")
    assert auth_site.store.list_studies().count == 1
    assert TOKEN not in page.url and TOKEN not in page.content()

    # Cancel needs the token too.
    study = auth_site.store.list_studies().data[0]
    page.goto(f"{auth_site.url}/studies/{study.id}")
    page.click("#cancel-btn")
    page.click("#cancel-btn")  # confirm
    page.wait_for_function("() => document.getElementById('cancel-msg').textContent !== ''")
    assert "needs a valid API token" in page.locator("#cancel-msg").inner_text()
    page.fill("#cancel-token", TOKEN)
    page.click("#cancel-btn")
    page.click("#cancel-btn")
    page.wait_for_function(
        "() => document.getElementById('study-status').textContent === 'cancelled'"
    )
    assert auth_site.store.get_study(study.id).status == "cancelled"
