"""Summary statistics of a study: the best setting per cell, CIs, paired comparisons.

Pure functions over plain rows (one per trial, final metrics only), so they are tested without a
database. The protocol (README, "Statistics: what a comparison claims"):

* A *setting* is a (learning rate, init scale) pair; every method of a study gets the same
  settings (the grid, or the same lr_search budget per cell).
* Each method x depth x width x activation cell picks the setting with the highest mean
  *validation* accuracy over seeds, and reports *test* accuracy there.
* Only trials that ran the whole budget are scored: ``completed`` and ``diverged`` ones (a
  diverged trial keeps the accuracy of the model as it was when it diverged, non-finite logits
  counting as wrong: a method that blows up at a setting is charged for it, never excused).
  Diverged counts stand beside every mean. ``stopped_early`` trials (ASHA) are not in any mean
  and are counted beside it; a setting with an early-stopped trial is not eligible as the best
  (its seeds are not all there). Failed, cancelled and unfinished trials are left out.
* ``lcw`` and ``bn_lcw`` are compared with every other method of the same depth/width/activation
  (lcw vs bn_lcw once), each at its own best setting, paired by seed: mean difference with a
  paired-t 95% CI, the paired t-test p, the exact signed-rank p, and both adjusted across the
  study (``service.significance``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.significance import (
    PERMUTATION_MAX_N,
    adjust_family,
    compare,
    mean,
    signed_rank_permutation_p,
    std,
    t_interval,
    warm_up,
    wilcoxon_p,
)
from service.vocabulary import TRIAL_SCORED, TRIAL_STOPPED, TRIAL_UNFINISHED

TARGETS = ("lcw", "bn_lcw")


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's final numbers, as the summary needs them."""

    method: str
    depth: int | None
    width: int | None
    activation: str
    lr: float | None
    seed: int
    status: str
    val_acc: float | None
    test_acc: float | None
    init_scale: float | None = 1.0


CellKey = tuple[str, int | None, int | None, str]  # method, depth, width, activation
Setting = tuple[float, float | None]  # (lr, init_scale)


@dataclass(frozen=True)
class LrGroup:
    """One cell's trials at one setting (learning rate, init scale), aggregated: a row of the
    summary's GROUP BY.

    ``lr`` None holds lr_search slots not assigned yet (they count only in ``unfinished``).
    """

    method: str
    depth: int | None
    width: int | None
    activation: str
    lr: float | None
    init_scale: float | None
    scored: int  # trials with a scored status (TRIAL_SCORED) and a val_acc
    val_sum: float  # their val_acc, summed
    tested: int  # of those, trials with a test_acc
    test_sum: float  # their test_acc, summed
    diverged: int
    stopped_early: int
    failed: int
    unfinished: int

    @property
    def cell(self) -> CellKey:
        return (self.method, self.depth, self.width, self.activation)

    @property
    def setting(self) -> Setting | None:
        return None if self.lr is None else (self.lr, self.init_scale)


def _counts_in_summary(t: TrialOutcome) -> bool:
    return t.status in TRIAL_SCORED and t.val_acc is not None


def group_outcomes(rows: Iterable[TrialOutcome]) -> list[LrGroup]:
    """The per-(cell, setting) aggregates of trial rows, as ``Store.summary`` reads them in SQL."""
    acc: dict[tuple[CellKey, float | None, float | None], list[Any]] = {}
    for t in rows:
        key = ((t.method, t.depth, t.width, t.activation), t.lr, t.init_scale)
        entry = acc.setdefault(key, [0, 0.0, 0, 0.0, 0, 0, 0, 0])
        if _counts_in_summary(t):
            entry[0] += 1
            entry[1] += t.val_acc
            if t.test_acc is not None:
                entry[2] += 1
                entry[3] += t.test_acc
        entry[4] += t.status == "diverged"
        entry[5] += t.status == TRIAL_STOPPED
        entry[6] += t.status == "failed"
        entry[7] += t.status in TRIAL_UNFINISHED
    return [LrGroup(*cell, lr, scale, *entry) for (cell, lr, scale), entry in acc.items()]


def _scale_rank(scale: float | None) -> float:
    """Tie-break between equally good settings: the init scale nearer the default (1)."""
    return -abs(math.log(scale)) if scale else 0.0


def best_settings(groups: Iterable[LrGroup]) -> dict[CellKey, Setting | None]:
    """Each cell's setting with the highest mean val_acc (ties: the smaller LR, then the init
    scale nearer 1); a setting with an early-stopped trial is not eligible."""
    best: dict[CellKey, tuple[tuple[float, float, float], Setting] | None] = {}
    for g in groups:
        current = best.setdefault(g.cell, None)
        setting = g.setting
        if setting is None or not g.scored or g.stopped_early:
            continue
        candidate = (g.val_sum / g.scored, -setting[0], _scale_rank(setting[1]))
        if current is None or candidate > current[0]:
            best[g.cell] = (candidate, setting)
    return {cell: None if b is None else b[1] for cell, b in best.items()}


def _order(key: CellKey) -> tuple[Any, ...]:
    method, depth, width, activation = key
    return (activation, depth or 0, width or 0, method)


def _setting_order(g: LrGroup) -> tuple[float, float]:
    return (g.lr or 0.0, g.init_scale or 0.0)


def _cell_summary(
    key: CellKey, groups: list[LrGroup], best: Setting | None, at_best: list[TrialOutcome]
) -> dict[str, Any]:
    lrs = []
    best_val: float | None = None
    for g in sorted((g for g in groups if g.lr is not None), key=_setting_order):
        val_mean = g.val_sum / g.scored if g.scored else None
        if g.setting == best:
            best_val = val_mean
        lrs.append(
            {
                "lr": g.lr,
                "init_scale": g.init_scale,
                "val_acc_mean": val_mean,
                "test_acc_mean": g.test_sum / g.tested if g.tested else None,
                "n": g.scored,
                "diverged": g.diverged,
                "stopped_early": g.stopped_early,
                "failed": g.failed,
                "unfinished": g.unfinished,
            }
        )
    tests_at_best = [t.test_acc for t in _scored_at(at_best, best) if t.test_acc is not None]
    ci, note = t_interval(tests_at_best)
    method, depth, width, activation = key
    return {
        "method": method,
        "depth": depth,
        "width": width,
        "activation": activation,
        "best_lr": None if best is None else best[0],
        "best_init_scale": None if best is None else best[1],
        "val_acc_mean": best_val,
        "test_acc_mean": mean(tests_at_best),
        "test_acc_std": std(tests_at_best) if len(tests_at_best) > 1 else None,
        "test_acc_ci95": ci,
        "ci95_note": note,
        "n": len(tests_at_best),
        "diverged": sum(g.diverged for g in groups),
        "stopped_early": sum(g.stopped_early for g in groups),
        "lrs": lrs,
    }


def _at(t: TrialOutcome, setting: Setting | None) -> bool:
    return setting is not None and (t.lr, t.init_scale) == setting


def _scored_at(trials: Iterable[TrialOutcome], setting: Setting | None) -> list[TrialOutcome]:
    """Trials at `setting` that ran the whole budget, with both accuracies."""
    return [
        t
        for t in trials
        if _at(t, setting)
        and t.status in TRIAL_SCORED
        and t.val_acc is not None
        and t.test_acc is not None
    ]


def _by_seed(
    trials: Iterable[TrialOutcome], setting: Setting | None
) -> tuple[dict[int, float], frozenset[int]]:
    """Test accuracy per seed at `setting` (the mean if two lr_search slots drew the same
    setting), and the seeds of which a trial diverged."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    diverged = set()
    for t in _scored_at(trials, setting):
        per_seed[t.seed].append(t.test_acc)  # type: ignore[arg-type]
        if t.status == "diverged":
            diverged.add(t.seed)
    return {seed: sum(v) / len(v) for seed, v in per_seed.items()}, frozenset(diverged)


def summarize(rows: Iterable[TrialOutcome], *, adjustment: str = "holm") -> dict[str, Any]:
    """{"cells", "comparisons", "adjustment"} for a study's trials (see module docstring)."""
    rows = list(rows)
    groups = group_outcomes(rows)
    best = best_settings(groups)
    at_best = [t for t in rows if _at(t, best.get(cell_of(t)))]
    return summarize_groups(groups, at_best, adjustment=adjustment)


def cell_of(t: TrialOutcome) -> CellKey:
    return (t.method, t.depth, t.width, t.activation)


def summarize_groups(
    groups: Iterable[LrGroup], at_best: Iterable[TrialOutcome], *, adjustment: str = "holm"
) -> dict[str, Any]:
    """``summarize`` from per-(cell, setting) aggregates and the trials at each cell's best
    setting (``best_settings(groups)``; rows elsewhere are ignored): the same output, without
    every row."""
    cells: dict[CellKey, list[LrGroup]] = defaultdict(list)
    for g in groups:
        cells[g.cell].append(g)
    trials: dict[CellKey, list[TrialOutcome]] = defaultdict(list)
    for t in at_best:
        trials[cell_of(t)].append(t)
    results = {key: cell_result(key, cells[key], trials[key]) for key in cells}
    return assemble(results, adjustment=adjustment)


@dataclass(frozen=True)
class CellResult:
    """One cell's part of a summary: its row and its test accuracy per seed at the best
    setting (and which of those seeds diverged).

    A function of that cell's trials alone, so a summary can keep the results of cells whose
    trials did not change and recompute only the others (``Store.summary``).
    """

    key: CellKey
    best: Setting | None
    summary: dict[str, Any]
    by_seed: dict[int, float]
    diverged_seeds: frozenset[int] = frozenset()


# The layout of a stored CellResult (``study_cells.result``); a stored result of another layout
# is not read (recomputed instead). Move it whenever what a cell's result holds changes.
CELL_RESULT_FORMAT = 2


def cell_result_to_json(result: CellResult) -> dict[str, Any]:
    """`result` as JSON-safe data (floats round-trip exactly), for ``cell_result_from_json``."""
    return {
        "format": CELL_RESULT_FORMAT,
        "key": list(result.key),
        "best": None if result.best is None else list(result.best),
        "summary": result.summary,
        "by_seed": [[seed, acc] for seed, acc in result.by_seed.items()],
        "diverged_seeds": sorted(result.diverged_seeds),
    }


def cell_result_from_json(data: Any) -> CellResult | None:
    """The CellResult `data` holds; None when it is of another format or not one at all."""
    if not isinstance(data, dict) or data.get("format") != CELL_RESULT_FORMAT:
        return None
    try:
        method, depth, width, activation = data["key"]
        by_seed = {int(seed): float(acc) for seed, acc in data["by_seed"]}
        best = None if data["best"] is None else (float(data["best"][0]), data["best"][1])
        return CellResult(
            (method, depth, width, activation),
            best,
            dict(data["summary"]),
            by_seed,
            frozenset(int(s) for s in data["diverged_seeds"]),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def cell_result(key: CellKey, groups: list[LrGroup], at_best: Iterable[TrialOutcome]) -> CellResult:
    """The cell's result from its per-setting aggregates and its trials (those not at the best
    setting are ignored)."""
    best = best_settings(groups).get(key)
    trials = [t for t in at_best if _at(t, best)]
    by_seed, diverged = _by_seed(trials, best)
    return CellResult(key, best, _cell_summary(key, groups, best, trials), by_seed, diverged)


def comparison(mine: CellResult, theirs: CellResult) -> dict[str, Any]:
    """`mine` (an lcw method) against `theirs` (another method of the same depth, width and
    activation), paired by seed, each at its own best setting. Raw p-values: ``assemble``
    adjusts them over the study."""
    target, depth, width, activation = mine.key
    seeds = sorted(set(mine.by_seed) & set(theirs.by_seed))
    return {
        "method": target,
        "baseline": theirs.key[0],
        "depth": depth,
        "width": width,
        "activation": activation,
        "method_lr": None if mine.best is None else mine.best[0],
        "baseline_lr": None if theirs.best is None else theirs.best[0],
        "method_init_scale": None if mine.best is None else mine.best[1],
        "baseline_init_scale": None if theirs.best is None else theirs.best[1],
        **compare([mine.by_seed[s] for s in seeds], [theirs.by_seed[s] for s in seeds]),
        "method_diverged": sum(s in mine.diverged_seeds for s in seeds),
        "baseline_diverged": sum(s in theirs.diverged_seeds for s in seeds),
    }


def cell_order(keys: Iterable[CellKey]) -> list[CellKey]:
    """Cells in summary order: activation, depth, width, method."""
    return sorted(keys, key=_order)


def comparison_pairs(keys: Iterable[CellKey]) -> list[tuple[CellKey, CellKey]]:
    """(target, baseline) cell pairs in summary order: each lcw-family cell against every other
    method of its depth, width and activation; two targets (lcw, bn_lcw) are compared once,
    the first of ``TARGETS`` as the method."""
    ordered = cell_order(keys)
    by_arch: dict[tuple[Any, ...], list[CellKey]] = defaultdict(list)
    for key in ordered:
        by_arch[key[1:]].append(key)
    return [
        (key, other)
        for key in ordered
        if key[0] in TARGETS
        for other in by_arch[key[1:]]
        if other[0] != key[0]
        and not (other[0] in TARGETS and TARGETS.index(other[0]) < TARGETS.index(key[0]))
    ]


def adjusted(
    comparisons: Iterable[dict[str, Any]], adjustment: str = "holm"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Copies of raw `comparisons` with their adjusted p-values, and the adjustment block."""
    out = [dict(c) for c in comparisons]
    return out, adjust_family(out, adjustment)


def assemble(cells: dict[CellKey, CellResult], *, adjustment: str = "holm") -> dict[str, Any]:
    """{"cells", "comparisons", "adjustment"} from every cell's result (``Store.summary`` does
    the same from cached parts, reusing the raw comparisons of unchanged cells)."""
    raw = [comparison(cells[a], cells[b]) for a, b in comparison_pairs(cells)]
    comparisons, block = adjusted(raw, adjustment)
    return {
        "cells": [cells[key].summary for key in cell_order(cells)],
        "comparisons": comparisons,
        "adjustment": block,
    }


__all__ = [
    "PERMUTATION_MAX_N",
    "CellResult",
    "LrGroup",
    "TrialOutcome",
    "assemble",
    "best_settings",
    "compare",
    "signed_rank_permutation_p",
    "summarize",
    "t_interval",
    "warm_up",
    "wilcoxon_p",
]
