"""The study page's statistics in a real browser: the star follows the adjusted p (never the
raw one), a difference whose CI includes 0 is drawn faded, comparisons below 6 paired seeds say
"Not testable (n < 6)" in plain text, the adjustment line, the chosen setting (lr and init
scale) with the diverged and early-stopped counts beside the means, and one LR-chart series per
init scale. The seeded study is tests/cli/significance_study.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from significance_study import CHOSEN_SCALE
from web_helpers import PageLog, Served, screenshot

from service.schemas import SummaryPublic
from service.summary import Comparison

pytestmark = pytest.mark.browser

READY = "() => document.body.dataset.ready === '1'"
NOT_TESTABLE = "Not testable (n < 6)"


def _comparison(summary: SummaryPublic, activation: str, baseline: str) -> Comparison:
    return next(
        c
        for c in summary.comparisons
        if (c.method, c.baseline, c.activation) == ("lcw", baseline, activation)
    )


def _fmt_p(p: float) -> str:
    """The page's p-value format (two significant digits) for p >= 0.001."""
    assert p >= 0.001
    return repr(float(f"{p:.2g}"))


def _row(page: Any, activation: str, baseline: str) -> Any:
    return page.locator(
        f'#comparisons-table tr[data-method="lcw"][data-baseline="{baseline}"]'
        f'[data-activation="{activation}"]'
    )


def _cell(row: Any, col: str) -> Any:
    return row.locator(f'td[data-col="{col}"]')


def _heat(page: Any, activation: str) -> Any:
    return page.locator(f'[data-chart="heatmap-lcw"] td.heat[data-activation="{activation}"]')


def _spread(locator: Any, prop: str = "backgroundColor") -> int:
    """How saturated a colour of an element is (its background by default): max - min of its
    RGB channels, 0 for a grey."""
    rgb = locator.evaluate("(node, prop) => getComputedStyle(node)[prop]", prop)
    channels = [int(v) for v in re.findall(r"\d+", rgb)[:3]]
    return max(channels) - min(channels)


@pytest.fixture
def summary(site: Served) -> SummaryPublic:
    """The seeded study's summary, with the cases the tests rely on checked first."""
    summary = site.store.summary(site.seeded.significance)
    clear = _comparison(summary, "sigmoid", "plain")
    raw_only = _comparison(summary, "sigmoid", "bn")
    across_zero = _comparison(summary, "relu", "plain")
    few = _comparison(summary, "relu", "bn")
    assert clear.significant and clear.p_adjusted is not None and clear.p_adjusted < 0.05
    assert raw_only.p_value is not None and raw_only.p_value < 0.05
    assert raw_only.p_adjusted is not None and raw_only.p_adjusted >= 0.05
    assert not raw_only.significant
    assert raw_only.ci95 is not None and raw_only.ci95[0] > 0  # the CI alone excludes 0
    assert across_zero.ci95 is not None and across_zero.ci95[0] < 0 < across_zero.ci95[1]
    # ... with a mean large enough that its colour would be strong if it were not faded.
    assert across_zero.mean_diff is not None and across_zero.mean_diff > 0.05
    assert not few.testable and few.n == 4 and few.p_value is None
    assert summary.adjustment.method == "holm" and summary.adjustment.family_size == 3
    return summary


def test_star_follows_the_adjusted_p_and_a_ci_across_zero_is_faded(
    site: Served, page: Any, page_log: PageLog, summary: SummaryPublic
) -> None:
    page.goto(f"{site.url}/studies/{site.seeded.significance}")
    page.wait_for_function(READY)

    # The adjustment line, above the comparisons.
    line = page.locator("#adjustment")
    assert line.is_visible()
    text = line.inner_text()
    assert "p adjusted by Holm over 3 comparisons (1 significant" in text
    assert "primary test: paired t" in text
    floor = summary.adjustment.signed_rank_floor_adjusted
    assert floor is not None and f"floor after adjustment: {_fmt_p(floor)}" in text
    assert summary.adjustment.note in text

    # Significant after adjustment: a star beside the difference.
    clear = _row(page, "sigmoid", "plain")
    assert clear.locator(".star").count() == 1
    assert _cell(clear, "mean_diff").inner_text().endswith("*")
    assert "diff-pos" in (_cell(clear, "mean_diff").get_attribute("class") or "")

    # Raw p < 0.05, adjusted p >= 0.05: both shown, no star anywhere in the row.
    c = _comparison(summary, "sigmoid", "bn")
    raw_only = _row(page, "sigmoid", "bn")
    assert c.p_value is not None and c.p_adjusted is not None
    assert _cell(raw_only, "p_value").inner_text() == _fmt_p(c.p_value)
    assert _cell(raw_only, "p_adjusted").inner_text() == _fmt_p(c.p_adjusted)
    assert "*" not in raw_only.inner_text() and raw_only.locator(".star").count() == 0
    assert "sig" not in (raw_only.get_attribute("class") or "").split()

    # The 95% CI includes 0: faded (not the saturated colour), the number still shown.
    c = _comparison(summary, "relu", "plain")
    across_zero = _row(page, "relu", "plain")
    diff = _cell(across_zero, "mean_diff")
    assert "diff-ns" in (diff.get_attribute("class") or "")
    assert c.mean_diff is not None and diff.inner_text() == f"{c.mean_diff:+.3f}"
    assert _spread(diff, "color") < 30 < _spread(_cell(clear, "mean_diff"), "color")

    # Below 6 paired seeds: said in the row, as text.
    few = _row(page, "relu", "bn")
    assert few.get_by_text(NOT_TESTABLE).is_visible()
    assert _cell(few, "n").inner_text() == "4"
    assert page.locator("#comparisons-table").get_by_text(NOT_TESTABLE).count() == 1

    # The heatmap against plain (the page opens on the strongest baseline, bn here): a star on
    # the significant cell only, the CI-across-0 cell faded (a near-grey background) with its
    # number.
    assert page.locator("#baseline-select").input_value() == "bn"
    page.select_option("#baseline-select", "plain")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
        ".closest('figure').textContent.includes('lcw − plain')"
    )
    sig_cell, ns_cell = _heat(page, "sigmoid"), _heat(page, "relu")
    assert "heat-sig" in (sig_cell.get_attribute("class") or "")
    assert sig_cell.locator(".heat-value").inner_text().strip().endswith("*")
    ns_class = ns_cell.get_attribute("class") or ""
    assert "heat-ns" in ns_class and "heat-sig" not in ns_class
    assert f"{c.mean_diff:+.3f}" in ns_cell.inner_text() and "*" not in ns_cell.inner_text()
    assert _spread(ns_cell) < 25 < _spread(sig_cell)  # +0.1 unfaded would be ~50

    # Against bn: raw p < 0.05 but adjusted p >= 0.05, so no star; n = 4 says why there is no p.
    page.select_option("#baseline-select", "bn")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
        ".closest('figure').textContent.includes('lcw − bn')"
    )
    raw_cell, few_cell = _heat(page, "sigmoid"), _heat(page, "relu")
    assert "*" not in raw_cell.inner_text()
    assert "heat-sig" not in (raw_cell.get_attribute("class") or "")
    assert "heat-ns" not in (raw_cell.get_attribute("class") or "")  # its CI excludes 0
    assert NOT_TESTABLE in few_cell.inner_text()
    screenshot(page, "study-significance", width=1280)
    assert page_log.errors == []


def test_cells_show_the_chosen_setting_and_the_counts_beside_the_means(
    site: Served, page: Any, page_log: PageLog, summary: SummaryPublic
) -> None:
    page.goto(f"{site.url}/studies/{site.seeded.significance}")
    page.wait_for_function(READY)
    header = page.locator("#cells-table thead th").all_inner_texts()
    assert [h.lower() for h in header[3:5]] == ["best lr", "init scale"]
    assert [h.lower() for h in header[-3:]] == ["n", "diverged", "stopped early"]

    def row(method: str, activation: str) -> Any:
        return page.locator(
            f'#cells-table tr[data-method="{method}"][data-activation="{activation}"]'
        )

    for cell in summary.cells:
        r = row(cell.method, cell.activation)
        assert _cell(r, "best_lr").inner_text() == "0.1"
        assert _cell(r, "best_init_scale").inner_text() == f"×{CHOSEN_SCALE[cell.method]:g}"
        assert cell.test_acc_mean is not None
        assert _cell(r, "test_acc").inner_text() == f"{cell.test_acc_mean:.3f}"
        assert _cell(r, "diverged").inner_text() == str(cell.diverged)
        assert _cell(r, "stopped_early").inner_text() == str(cell.stopped_early)
    # The early-stopped trial is counted beside plain/sigmoid's mean, not in it (8 seeds at the
    # chosen setting); the diverged one (lcw/relu) is both counted and in the mean.
    assert _cell(row("plain", "sigmoid"), "stopped_early").inner_text() == "1"
    assert _cell(row("plain", "sigmoid"), "n").inner_text() == "8"
    assert _cell(row("lcw", "relu"), "diverged").inner_text() == "1"
    assert _cell(row("lcw", "relu"), "n").inner_text() == "8"
    # A comparison names both settings and the diverged trials of each side.
    pair = _row(page, "relu", "plain")
    assert _cell(pair, "settings").inner_text() == "lr 0.1 ×0.5 vs lr 0.1 ×1"
    assert _cell(pair, "diverged").inner_text() == "1 / 0"
    assert page_log.errors == []


_TRACES = """(key) => document.querySelector('[data-chart="' + key + '"]').data
  .filter((t) => t.mode === 'lines+markers')
  .map((t) => ({name: t.name, x: t.x, sizes: t.marker.size, symbol: t.marker.symbol}))"""


def test_lr_chart_draws_each_init_scale_as_its_own_series(
    site: Served, page: Any, page_log: PageLog
) -> None:
    page.goto(f"{site.url}/studies/{site.seeded.significance}")
    page.wait_for_function(READY)
    page.select_option("#lr-activation-select", "sigmoid")
    page.wait_for_function(READY)
    traces = {t["name"]: t for t in page.evaluate(_TRACES, "lr-sigmoid-5-100")}
    assert set(traces) == {f"{m} ×{s:g}" for m in ("plain", "bn", "lcw") for s in (0.5, 1.0)}
    # Two settings share lr 0.1: two points, one per series, never merged into one mean.
    assert all(t["x"] == [0.1] for t in traces.values())
    assert traces["lcw ×0.5"]["symbol"] != traces["lcw ×1"]["symbol"]
    # The chosen setting keeps the large marker: lcw at x0.5, plain at x1.
    assert traces["lcw ×0.5"]["sizes"] > traces["lcw ×1"]["sizes"]
    assert traces["plain ×1"]["sizes"] > traces["plain ×0.5"]["sizes"]
    chart = page.locator('[data-chart="lr-sigmoid-5-100"]')
    note = chart.locator("xpath=..").locator(".chart-note")
    assert note.inner_text().startswith("init scale: ● ×0.5 · ■ ×1")
    # A study with one init scale draws one series per method, without a note.
    page.goto(f"{site.url}/studies/{site.seeded.main}")
    page.wait_for_function(READY)
    names = [t["name"] for t in page.evaluate(_TRACES, "lr-sigmoid-5-100")]
    assert names == ["plain", "bn", "lcw", "bn_lcw"]
    assert page.locator("#lr-charts .chart-note").count() == 0
    assert page_log.errors == []


def test_a_study_with_three_seeds_says_nothing_is_testable(
    site: Served, page: Any, page_log: PageLog
) -> None:
    summary = site.store.summary(site.seeded.main)
    assert summary.comparisons and not any(c.testable for c in summary.comparisons)
    page.goto(f"{site.url}/studies/{site.seeded.main}")
    page.wait_for_function(READY)
    rows = page.locator("#comparisons-table tbody tr")
    assert rows.count() == len(summary.comparisons)
    for i in range(rows.count()):
        assert rows.nth(i).get_by_text(NOT_TESTABLE).is_visible()
    assert page.locator("#comparisons-table .star").count() == 0
    assert "no comparison is testable yet" in page.locator("#adjustment").inner_text()
    # Every heatmap cell says so too, and none has a star.
    heat = page.locator('[data-chart="heatmap-lcw"] td.heat')
    assert heat.count() > 0
    assert all(NOT_TESTABLE in t for t in heat.all_inner_texts())
    assert not any("*" in t for t in heat.all_inner_texts())
    assert page_log.errors == []
