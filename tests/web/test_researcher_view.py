"""The study page as a researcher reads it, in Debian's Chromium against a real server and studies
trained for real (tests/web/training.py: lcw.trainer on digits, stored through the queue):
the heatmap opens on the strongest baseline, color follows the CI, counts and "not testable"
are text, unfinished cells are marked provisional while the study runs, one trial number
everywhere, readable log ticks, the Extend form, and the layout at 1280 and 390 px."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import _stop, serve
from layout import layout_problems, screenshots
from training import OWNER, claim, create, train_claimed, train_study
from web_helpers import PageLog, Served

from service.config import Settings
from service.store import ClaimedTrial
from service.summary import Summary

pytestmark = pytest.mark.browser

READY = "() => document.body.dataset.ready === '1'"
NOT_TESTABLE = "Not testable (n < 6)"
GRID = {"dataset": "digits", "methods": ["plain", "bn", "lcw"], "depths": [2, 6],
        "widths": [16], "activations": ["sigmoid"], "learning_rates": [0.03, 0.3],
        "epochs": 2, "max_retries": 0}  # fmt: skip


@dataclass
class Trained:
    served: Served
    grid: int  # 6 seeds: every comparison testable
    few: int  # 2 seeds: none testable
    live: int  # half trained; the rest held by `held` until a test trains them
    held: list[ClaimedTrial]
    no_diagnostics: int  # diagnostics: false in the spec
    half: int  # depth 2 trained, depth 3 still running
    extendable: int  # finished, for the Extend form


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    db = tmp_path_factory.mktemp("researcher") / "web.db"
    served = serve(Settings(database_url=f"sqlite:///{db}", api_tokens=[]))
    grid = train_study(served.store, {**GRID, "name": "grid-6-seeds", "seeds": 6})
    few = train_study(served.store, {**GRID, "name": "grid-2-seeds", "seeds": 2})
    live = create(
        served.store,
        {**GRID, "name": "live", "methods": ["plain", "lcw"], "depths": [2, 4],
         "learning_rates": [0.1], "seeds": 2},
    )  # fmt: skip
    claimed = claim(served.store)
    # Depth 2 finishes, and seed 0 of depth 4; seed 1 of depth 4 stays running.
    done = [c for c in claimed if c.config["depth"] == 2 or c.seed == 0]
    train_claimed(served.store, done)
    small = {**GRID, "methods": ["plain", "lcw"], "learning_rates": [0.1], "seeds": 1}
    no_diagnostics = train_study(
        served.store, {**small, "name": "no-probes", "depths": [2], "diagnostics": False}
    )
    half = create(served.store, {**small, "name": "half", "depths": [2, 3]})
    train_claimed(served.store, [c for c in claim(served.store) if c.config["depth"] == 2])
    extendable = train_study(
        served.store, {**small, "name": "extendable", "depths": [2], "seeds": 2}
    )
    held = [c for c in claimed if c not in done]
    yield Trained(served, grid, few, live, held, no_diagnostics, half, extendable)
    _stop(served)


def _strongest(summary: Summary) -> str:
    """The non-LCW method with the highest mean test accuracy over the cells (read here from
    the summary's cells, independently of the page's code)."""
    means: dict[str, list[float]] = {}
    for c in summary.cells:
        if c.method not in ("lcw", "bn_lcw") and c.test_acc_mean is not None:
            means.setdefault(c.method, []).append(c.test_acc_mean)
    return max(means, key=lambda m: sum(means[m]) / len(means[m]))


def _spread(locator: Any) -> int:
    """How saturated an element's background is: max - min of its RGB channels."""
    rgb = locator.evaluate("(node) => getComputedStyle(node).backgroundColor")
    channels = [int(v) for v in re.findall(r"\d+", rgb)[:3]]
    return max(channels) - min(channels)


def _open(page: Any, served: Served, sid: int) -> None:
    page.goto(f"{served.url}/studies/{sid}")
    page.wait_for_function(READY)


def test_heatmap_opens_on_the_strongest_baseline_and_colors_only_what_the_ci_supports(
    trained: Trained, page: Any, page_log: PageLog
) -> None:
    served, sid = trained.served, trained.grid
    summary = served.store.summary(sid)
    strongest = _strongest(summary)
    _open(page, served, sid)
    assert page.locator("#baseline-select").input_value() == strongest
    caption = page.locator('[data-chart="heatmap-lcw"]').locator("xpath=..").locator("figcaption")
    assert caption.inner_text().startswith(f"lcw − {strongest}")

    for baseline in ("plain", "bn"):
        page.select_option("#baseline-select", baseline)
        page.wait_for_function(
            "(b) => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
            ".closest('figure').textContent.includes('lcw − ' + b)",
            arg=baseline,
        )
        rows = [c for c in summary.comparisons if (c.method, c.baseline) == ("lcw", baseline)]
        assert len(rows) == 2
        colored = []
        for r in rows:
            cell = page.locator(f'[data-chart="heatmap-lcw"] td.heat[data-depth="{r.depth}"]')
            assert r.mean_diff is not None and r.ci95 is not None and r.testable
            across_zero = r.ci95[0] <= 0 <= r.ci95[1]
            # The number is there either way; color only where the CI excludes 0.
            assert cell.locator(".heat-value").inner_text().startswith(f"{r.mean_diff:+.3f}")
            assert ("heat-ns" in (cell.get_attribute("class") or "")) == across_zero
            if across_zero:
                assert _spread(cell) < 25 and "CI includes 0" in cell.inner_text()
            else:
                colored.append((abs(r.mean_diff), cell))
            # The star follows the adjusted p, and the cell says which p it is; no "not
            # testable" at 6 seeds.
            assert cell.inner_text().split("\n")[0].endswith("*") == r.significant
            assert r.p_adjusted is not None
            sign = "<" if r.significant else "≥"
            assert f"p adj {float(f'{r.p_adjusted:.2g}'):g} {sign} 0.05" in cell.inner_text() or (
                r.p_adjusted < 0.001 and f"{sign} 0.05" in cell.inner_text()
            )
            assert NOT_TESTABLE not in cell.inner_text()
        # The scale is set by the colored differences alone: the largest of them is saturated,
        # whatever the size of a difference whose CI includes 0.
        if colored:
            assert _spread(max(colored, key=lambda x: x[0])[1]) > 100
    # lcw - plain at depth 6 (plain sigmoid does not train that deep in 2 epochs): colored.
    assert any(
        c.baseline == "plain" and c.depth == 6 and c.ci95 is not None and c.ci95[0] > 0
        for c in summary.comparisons
    )
    assert page_log.errors == []


def test_not_testable_and_counts_are_visible_text(
    trained: Trained, site: Served, page: Any, page_log: PageLog
) -> None:
    _open(page, trained.served, trained.few)
    heat = page.locator('[data-chart="heatmap-lcw"] td.heat')
    assert heat.count() == 2
    for i in range(heat.count()):
        assert heat.nth(i).get_by_text(NOT_TESTABLE).is_visible()
    rows = page.locator("#comparisons-table tbody tr")
    assert rows.count() == 4 and rows.get_by_text(NOT_TESTABLE).count() == 4
    # Diverged and early-stopped counts stand in the heatmap cell as text (the seeded study of
    # every significance case has one of each: lcw diverged at relu, plain stopped at sigmoid).
    _open(page, site, site.seeded.significance)
    page.select_option("#baseline-select", "plain")
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"heatmap-lcw\"]')"
        ".closest('figure').textContent.includes('lcw − plain')"
    )
    relu = page.locator('[data-chart="heatmap-lcw"] td.heat[data-activation="relu"]')
    sigmoid = page.locator('[data-chart="heatmap-lcw"] td.heat[data-activation="sigmoid"]')
    assert relu.get_by_text("diverged 1 / 0").is_visible()
    assert sigmoid.get_by_text("stopped early 1").is_visible()
    assert page_log.errors == []


def test_lr_charts_plot_validation_accuracy_with_a_key_for_the_chosen_marker(
    trained: Trained, page: Any, page_log: PageLog
) -> None:
    served, sid = trained.served, trained.grid
    _open(page, served, sid)
    key = page.locator("#lr-key")
    assert key.is_visible() and "chosen setting" in key.inner_text()
    traces = page.evaluate(
        """() => document.querySelector('[data-chart="lr-sigmoid-6-16"]').data
          .filter((t) => t.mode === 'lines+markers')
          .map((t) => ({name: t.name, x: t.x, y: t.y, size: t.marker.size}))"""
    )
    cells = {c.method: c for c in served.store.summary(sid).cells if c.depth == 6}
    assert {t["name"] for t in traces} == set(cells)
    for t in traces:
        cell = cells[t["name"]]
        by_lr = {lr.lr: lr for lr in cell.lrs}
        assert t["y"] == [by_lr[x].val_acc_mean for x in t["x"]]  # validation, not test
        big = [x for x, s in zip(t["x"], t["size"], strict=True) if s > 7]
        assert big == [cell.best_lr]
    title = page.locator('[data-chart="lr-sigmoid-6-16"] .g-ytitle').text_content()
    assert title == "validation accuracy"
    assert page_log.errors == []


def test_unfinished_cells_are_provisional_until_they_finish(
    trained: Trained, page: Any, page_log: PageLog
) -> None:
    served, sid = trained.served, trained.live
    _open(page, served, sid)
    assert page.locator("#study-status").inner_text() == "running"
    # The cells table: depth 4 rows say provisional, depth 2 rows do not.
    for depth, expected in ((2, False), (4, True)):
        rows = page.locator(f'#cells-table tr[data-depth="{depth}"]')
        assert rows.count() == 2
        for i in range(2):
            assert rows.nth(i).get_by_text("provisional").count() == int(expected)
    heat = page.locator('[data-chart="heatmap-lcw"] td.heat[data-depth="4"]')
    assert "heat-provisional" in (heat.get_attribute("class") or "")
    assert heat.get_by_text("provisional").is_visible()
    assert (
        "provisional"
        not in page.locator('[data-chart="heatmap-lcw"] td.heat[data-depth="2"]').inner_text()
    )
    # The depth chart draws depth 4 with open (white) markers and says why under the chart.
    markers = page.evaluate(
        """() => document.querySelector('[data-chart="comparison-sigmoid-16"]').data
          .filter((t) => t.name).map((t) => ({x: t.x, color: t.marker.color}))"""
    )
    for m in markers:
        assert [c == "#ffffff" for c in m["color"]] == [x == 4 for x in m["x"]]
    note = page.locator('[data-chart="comparison-sigmoid-16"]').locator("xpath=..")
    assert "provisional" in note.locator(".chart-note").inner_text()
    # The LR chart of depth 4 and the learning curves of depth 4 say so too.
    assert "provisional" in page.locator("#lr-charts").inner_text()
    page.select_option("#cell-select", "4|16|sigmoid")
    page.wait_for_function(READY)
    assert "provisional" in page.locator("#curve-charts figcaption").first.inner_text()

    # The rest finishes: the page (polling) drops every mark without a reload.
    train_claimed(served.store, trained.held, owner=OWNER)
    page.wait_for_function(
        "() => document.getElementById('study-status').textContent === 'completed'"
    )
    page.wait_for_function(READY)
    page.wait_for_function("() => !document.querySelector('#results .prov-mark')")
    assert page.locator(".heat-provisional, .heat-note.prov, tr.provisional").count() == 0
    assert "provisional" not in " ".join(page.locator("#results .chart-note").all_inner_texts())
    assert "provisional" not in " ".join(page.locator("#results figcaption").all_inner_texts())
    colors = page.evaluate(
        """() => document.querySelector('[data-chart="comparison-sigmoid-16"]').data
          .filter((t) => t.name).flatMap((t) => t.marker.color)"""
    )
    assert "#ffffff" not in colors
    assert page_log.errors == []


def test_empty_diagnostics_say_why(trained: Trained, page: Any, page_log: PageLog) -> None:
    served = trained.served
    _open(page, served, trained.no_diagnostics)
    assert page.locator("#diag-off").is_visible()
    for chart in ("#chart-shift", "#chart-grad"):
        assert "Diagnostics are off in this study's spec" in page.inner_text(chart)
    tid = served.store.list_trials(trained.no_diagnostics, limit=1).data[0].id
    page.goto(f"{served.url}/trials/{tid}")
    page.wait_for_function("() => document.querySelector('#chart-loss svg.main-svg')")
    assert "Diagnostics are off for this trial" in page.inner_text("#chart-shift")
    # Diagnostics on, but the cell's trials are still running: not measured yet.
    _open(page, served, trained.half)
    assert page.locator("#diag-off").count() == 0
    assert "No diagnostics" not in page.inner_text("#chart-shift")
    page.select_option("#cell-select", "3|16|sigmoid")
    page.wait_for_function(READY)
    for chart in ("#chart-shift", "#chart-grad"):
        assert page.inner_text(chart).startswith("Not measured yet: no trial of depth 3")
    assert page_log.errors == []


def test_one_trial_number_the_id_everywhere(trained: Trained, page: Any, page_log: PageLog) -> None:
    served, sid = trained.served, trained.few
    _open(page, served, sid)
    links = page.locator("#trial-table tbody tr td[data-col='id'] a")
    assert links.count() == served.store.get_study(sid).trial_count
    first_index_differs = False
    for i in range(links.count()):
        link = links.nth(i)
        row_id = link.locator("xpath=ancestor::tr").get_attribute("data-trial-id")
        assert link.inner_text() == row_id and link.get_attribute("href") == f"/trials/{row_id}"
        trial = served.store.get_trial(int(row_id or 0))
        first_index_differs |= trial.index != trial.id
    assert first_index_differs  # the old "#index" would not have matched these ids
    link = links.nth(3)
    tid = link.inner_text()
    link.click()
    page.wait_for_url(f"**/trials/{tid}")
    assert page.title().startswith(f"Trial {tid} ·")
    assert page.locator("#trial-title").inner_text().startswith(f"Trial {tid} ·")
    assert page.locator("#trial-crumb").inner_text() == f"trial {tid}"
    assert page_log.errors == []


_YTICKS = """(id) => [...document.querySelectorAll('#' + id + ' .ytick text')]
  .map((t) => t.textContent).filter((t) => t.trim() !== '')"""


def test_log_axes_have_readable_ticks_when_losses_span_less_than_a_decade(
    trained: Trained, page: Any, page_log: PageLog
) -> None:
    served = trained.served
    trials = served.store.list_trials(trained.grid, limit=500).data
    narrow = None
    for t in trials:
        losses = [
            v
            for m in served.store.get_trial(t.id).metrics
            for v in (m.train_loss, m.val_loss, m.test_loss)
            if v is not None
        ]
        if losses and max(losses) / min(losses) < 10:
            narrow = t
            break
    assert narrow is not None, "no trained trial with losses within a decade"
    page.goto(f"{served.url}/trials/{narrow.id}")
    page.wait_for_function("() => document.querySelector('#chart-loss svg.main-svg')")
    ticks = page.evaluate(_YTICKS, "chart-loss")
    assert len(ticks) >= 3, ticks
    values = [float(t) for t in ticks]
    assert values == sorted(values) and len(set(values)) == len(values)
    # Every labelled tick lies inside the plotted area (plotly drops the ones outside).
    layout = page.evaluate("() => document.getElementById('chart-loss').layout.yaxis.range")
    assert all(10 ** layout[0] <= v <= 10 ** layout[1] for v in values)
    assert page_log.errors == []


def test_extend_form_opens_and_submits(trained: Trained, page: Any, page_log: PageLog) -> None:
    served, sid = trained.served, trained.extendable
    assert served.store.get_study(sid).status == "completed"
    _open(page, served, sid)
    form = page.locator("#extend-form")
    assert not form.is_visible()
    page.click("#study-actions summary")
    assert form.is_visible()
    page.fill("#extend-form input[name=seeds]", "3")
    page.click("#extend-btn")
    page.wait_for_function(
        "() => document.getElementById('study-status').textContent === 'running'"
    )
    assert "Added 2 trials (6 in all)" in page.locator("#extend-msg").inner_text()
    assert served.store.get_study(sid).trial_count == 6
    train_claimed(served.store, claim(served.store))  # the new seed, trained for real
    page.wait_for_function(
        "() => document.getElementById('study-status').textContent === 'completed'",
        timeout=15_000,
    )
    assert page.locator("#count-total").inner_text() == "6"
    assert page_log.errors == []


@pytest.mark.parametrize("which", ["grid", "live"])
def test_screenshots_have_no_overlaps_at_1280_and_390(
    trained: Trained, page: Any, page_log: PageLog, tmp_path: Path, which: str
) -> None:
    sid = getattr(trained, which)
    _open(page, trained.served, sid)
    problems = screenshots(page, tmp_path, f"study-{which}")
    assert problems == {1280: [], 390: []}
    assert (tmp_path / f"study-{which}-390.png").stat().st_size > 10_000
    # The depth chart spans its card (one activation: one chart, the grid's full width).
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(400)
    widths = page.evaluate(
        """() => [document.querySelector('[data-chart^="comparison-"]'),
                  document.getElementById('comparison-charts')]
          .map((node) => node.getBoundingClientRect().width)"""
    )
    assert widths[0] >= 0.98 * widths[1]
    # The check itself sees an overlap and an overflow when there is one.
    page.add_style_tag(content="#cells { margin-top: -120px } #trials { min-width: 1500px }")
    found = layout_problems(page)
    assert any(p.startswith("cards overlap") and "cells" in p for p in found), found
    assert any(p.startswith("page is") for p in found), found
    # The trial page too.
    tid = trained.served.store.list_trials(sid, limit=1).data[0].id
    page.goto(f"{trained.served.url}/trials/{tid}")
    page.wait_for_function("() => document.querySelector('#chart-loss svg.main-svg')")
    assert screenshots(page, tmp_path, f"trial-{which}") == {1280: [], 390: []}
    assert page_log.errors == []
