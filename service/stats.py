"""Summary statistics of a study: best learning rate per cell, CIs, paired comparisons.

Pure functions over plain rows (one per trial, final metrics only), so they are tested without a
database. The protocol (DESIGN.md, "Fair comparison"): each method x depth x width x activation
cell picks the learning rate with the highest mean *validation* accuracy over seeds, and reports
*test* accuracy at that rate. Diverged and early-stopped trials count with the accuracy they
reached; failed, cancelled and unfinished trials are left out. ``lcw`` and ``bn_lcw`` are then
compared with every other method of the same depth/width/activation, each at its own best LR,
paired by seed: mean difference with a paired-t 95% CI and a Wilcoxon signed-rank p-value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SCORED = frozenset({"completed", "diverged", "stopped_early"})
UNFINISHED = frozenset({"pending", "running"})
TARGETS = ("lcw", "bn_lcw")
MIN_WILCOXON_N = 5  # below 5 pairs the two-sided exact p-value cannot go under 0.0625


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


CellKey = tuple[str, int | None, int | None, str]  # method, depth, width, activation


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@lru_cache(maxsize=1024)
def _t_quantile(df: int) -> float:
    from scipy import stats as st

    return float(st.t.ppf(0.975, df))


def warm_up() -> None:
    """Import scipy's statistics (about a second) before a summary needs them."""
    _t_quantile(2)


def t_interval(values: Sequence[float]) -> tuple[list[float] | None, str | None]:
    """95% Student-t interval of the mean: ([low, high], None) or (None, reason)."""
    n = len(values)
    if n == 0:
        return None, "no finished trials"
    if n == 1:
        return None, "n=1: one value has no spread to estimate an interval from"
    mean = sum(values) / n
    sd = _std(values)
    half = _t_quantile(n - 1) * sd / math.sqrt(n)
    return [mean - half, mean + half], None


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1)."""
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def wilcoxon_p(diffs: Sequence[float]) -> tuple[float | None, str | None]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, or (None, reason)."""
    return _wilcoxon_p(tuple(diffs))


# scipy's test costs ~2 ms a call; a study's summary repeats it for every comparison whenever
# any trial changes, with mostly unchanged inputs. Caching on the exact differences is exact.
@lru_cache(maxsize=8192)
def _wilcoxon_p(diffs: tuple[float, ...]) -> tuple[float | None, str | None]:
    n = len(diffs)
    if n < MIN_WILCOXON_N:
        return None, (
            f"n={n} < {MIN_WILCOXON_N} pairs: the signed-rank test cannot reach significance; "
            "add seeds"
        )
    if all(d == 0 for d in diffs):
        return None, "every paired difference is zero"
    nonzero = [abs(d) for d in diffs if d != 0]
    if n <= PERMUTATION_MAX_N and (len(nonzero) < n or len(set(nonzero)) < len(nonzero)):
        p = signed_rank_permutation_p(diffs)
    else:
        from scipy import stats as st

        p = float(st.wilcoxon(list(diffs)).pvalue)
    if not math.isfinite(p):
        return None, "the signed-rank test is undefined for these differences"
    return p, None


# scipy.stats.wilcoxon (method "auto") answers n <= 13 differences with ties or zeros by an
# exact permutation test over all 2^n sign flips, ~200 ms a call through its generic machinery.
# Accuracies are multiples of 1/N, so paired differences tie often; the same p-value is
# computed here exactly by counting subset sums of the (doubled, integral) ranks.
PERMUTATION_MAX_N = 13


def signed_rank_permutation_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of the exact sign-flip permutation test of Wilcoxon's signed-rank
    statistic (zeros dropped, tied magnitudes given average ranks): what
    ``scipy.stats.wilcoxon`` returns for n <= 13 differences with ties or zeros."""
    values = sorted(abs(d) for d in diffs if d != 0)
    doubled: dict[float, int] = {}  # |d| -> twice its average rank (an integer)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        doubled[values[i]] = (i + 1) + (j + 1)  # 2 x the mean of ranks i+1 .. j+1
        i = j + 1
    observed = sum(doubled[abs(d)] for d in diffs if d > 0)
    counts = [1] + [0] * sum(doubled[v] for v in values)  # subsets by rank sum (doubled)
    for v in values:
        r = doubled[v]
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    total = 2 ** len(values)
    at_most = sum(counts[: observed + 1]) / total
    at_least = sum(counts[observed:]) / total
    return min(1.0, 2 * min(at_most, at_least))


@dataclass(frozen=True)
class LrGroup:
    """One cell's trials at one learning rate, aggregated: a row of the summary's GROUP BY.

    ``lr`` None holds lr_search slots not assigned yet (they count only in ``diverged``).
    """

    method: str
    depth: int | None
    width: int | None
    activation: str
    lr: float | None
    scored: int  # trials with a scored status and a val_acc
    val_sum: float  # their val_acc, summed
    tested: int  # of those, trials with a test_acc
    test_sum: float  # their test_acc, summed
    diverged: int
    failed: int
    unfinished: int

    @property
    def cell(self) -> CellKey:
        return (self.method, self.depth, self.width, self.activation)


def _counts_in_summary(t: TrialOutcome) -> bool:
    return t.status in SCORED and t.val_acc is not None


def group_outcomes(rows: Iterable[TrialOutcome]) -> list[LrGroup]:
    """The per-(cell, lr) aggregates of trial rows, as ``Store.summary`` reads them in SQL."""
    acc: dict[tuple[CellKey, float | None], list[Any]] = {}
    for t in rows:
        key = ((t.method, t.depth, t.width, t.activation), t.lr)
        entry = acc.setdefault(key, [0, 0.0, 0, 0.0, 0, 0, 0])
        if _counts_in_summary(t):
            entry[0] += 1
            entry[1] += t.val_acc
            if t.test_acc is not None:
                entry[2] += 1
                entry[3] += t.test_acc
        entry[4] += t.status == "diverged"
        entry[5] += t.status == "failed"
        entry[6] += t.status in UNFINISHED
    return [LrGroup(*cell, lr, *entry) for (cell, lr), entry in acc.items()]


def best_lrs(groups: Iterable[LrGroup]) -> dict[CellKey, float | None]:
    """Each cell's learning rate with the highest mean val_acc (ties: the smaller LR)."""
    best: dict[CellKey, tuple[float, float] | None] = {}
    for g in groups:
        current = best.setdefault(g.cell, None)
        if g.lr is None or not g.scored:
            continue
        candidate = (g.val_sum / g.scored, -g.lr)
        if current is None or candidate > current:
            best[g.cell] = candidate
    return {cell: None if b is None else -b[1] for cell, b in best.items()}


def _order(key: CellKey) -> tuple[Any, ...]:
    method, depth, width, activation = key
    return (activation, depth or 0, width or 0, method)


def _cell_summary(
    key: CellKey, groups: list[LrGroup], best_lr: float | None, at_best: list[TrialOutcome]
) -> dict[str, Any]:
    lrs = []
    best_val: float | None = None
    for g in sorted((g for g in groups if g.lr is not None), key=lambda g: g.lr or 0.0):
        val_mean = g.val_sum / g.scored if g.scored else None
        if g.lr == best_lr:
            best_val = val_mean
        lrs.append(
            {
                "lr": g.lr,
                "val_acc_mean": val_mean,
                "test_acc_mean": g.test_sum / g.tested if g.tested else None,
                "n": g.scored,
                "diverged": g.diverged,
                "failed": g.failed,
                "unfinished": g.unfinished,
            }
        )
    tests_at_best = [t.test_acc for t in _scored_at(at_best, best_lr) if t.test_acc is not None]
    ci, note = t_interval(tests_at_best)
    method, depth, width, activation = key
    return {
        "method": method,
        "depth": depth,
        "width": width,
        "activation": activation,
        "best_lr": best_lr,
        "val_acc_mean": best_val,
        "test_acc_mean": _mean(tests_at_best),
        "test_acc_std": _std(tests_at_best) if len(tests_at_best) > 1 else None,
        "test_acc_ci95": ci,
        "ci95_note": note,
        "n": len(tests_at_best),
        "diverged": sum(g.diverged for g in groups),
        "lrs": lrs,
    }


def _scored_at(trials: Iterable[TrialOutcome], lr: float | None) -> list[TrialOutcome]:
    """Trials at learning rate `lr` that reached a result with both accuracies."""
    if lr is None:
        return []
    return [
        t
        for t in trials
        if t.lr == lr and t.status in SCORED and t.val_acc is not None and t.test_acc is not None
    ]


def _by_seed(trials: Iterable[TrialOutcome], lr: float | None) -> dict[int, float]:
    """Test accuracy per seed at `lr` (the mean if two lr_search slots drew the same LR)."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for t in _scored_at(trials, lr):
        per_seed[t.seed].append(t.test_acc)  # type: ignore[arg-type]
    return {seed: sum(v) / len(v) for seed, v in per_seed.items()}


def compare(method: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Paired comparison of test accuracies (same order = same seed): method minus baseline."""
    diffs = [a - b for a, b in zip(method, baseline, strict=True)]
    ci, ci_note = t_interval(diffs)
    p, p_note = wilcoxon_p(diffs)
    return {
        "n": len(diffs),
        "mean_diff": _mean(diffs),
        "ci95": ci,
        "ci95_note": ci_note,
        "p_value": p,
        "p_value_note": p_note,
    }


def summarize(rows: Iterable[TrialOutcome]) -> dict[str, list[dict[str, Any]]]:
    """{"cells": [...], "comparisons": [...]} for a study's trials (see module docstring)."""
    rows = list(rows)
    groups = group_outcomes(rows)
    best = best_lrs(groups)
    at_best = [t for t in rows if t.lr is not None and best.get(cell_of(t)) == t.lr]
    return summarize_groups(groups, at_best)


def cell_of(t: TrialOutcome) -> CellKey:
    return (t.method, t.depth, t.width, t.activation)


def summarize_groups(
    groups: Iterable[LrGroup], at_best: Iterable[TrialOutcome]
) -> dict[str, list[dict[str, Any]]]:
    """``summarize`` from per-(cell, lr) aggregates and the trials at each cell's best LR
    (``best_lrs(groups)``; rows at other LRs are ignored): the same output, without every row.
    """
    cells: dict[CellKey, list[LrGroup]] = defaultdict(list)
    for g in groups:
        cells[g.cell].append(g)
    trials: dict[CellKey, list[TrialOutcome]] = defaultdict(list)
    for t in at_best:
        trials[cell_of(t)].append(t)
    return assemble({key: cell_result(key, cells[key], trials[key]) for key in cells})


@dataclass(frozen=True)
class CellResult:
    """One cell's part of a summary: its row and its test accuracy per seed at the best LR.

    A function of that cell's trials alone, so a summary can keep the results of cells whose
    trials did not change and recompute only the others (``Store.summary``).
    """

    key: CellKey
    best_lr: float | None
    summary: dict[str, Any]
    by_seed: dict[int, float]


# The layout of a stored CellResult (``study_cells.result``); a stored result of another layout
# is not read (recomputed instead). Move it whenever what a cell's result holds changes.
CELL_RESULT_FORMAT = 1


def cell_result_to_json(result: CellResult) -> dict[str, Any]:
    """`result` as JSON-safe data (floats round-trip exactly), for ``cell_result_from_json``."""
    return {
        "format": CELL_RESULT_FORMAT,
        "key": list(result.key),
        "best_lr": result.best_lr,
        "summary": result.summary,
        "by_seed": [[seed, acc] for seed, acc in result.by_seed.items()],
    }


def cell_result_from_json(data: Any) -> CellResult | None:
    """The CellResult `data` holds; None when it is of another format or not one at all."""
    if not isinstance(data, dict) or data.get("format") != CELL_RESULT_FORMAT:
        return None
    try:
        method, depth, width, activation = data["key"]
        by_seed = {int(seed): float(acc) for seed, acc in data["by_seed"]}
        return CellResult(
            (method, depth, width, activation), data["best_lr"], dict(data["summary"]), by_seed
        )
    except (KeyError, TypeError, ValueError):
        return None


def cell_result(key: CellKey, groups: list[LrGroup], at_best: Iterable[TrialOutcome]) -> CellResult:
    """The cell's result from its per-lr aggregates and its trials (those not at the best LR
    are ignored)."""
    best = best_lrs(groups).get(key)
    trials = [t for t in at_best if best is not None and t.lr == best]
    return CellResult(key, best, _cell_summary(key, groups, best, trials), _by_seed(trials, best))


def comparison(mine: CellResult, theirs: CellResult) -> dict[str, Any]:
    """`mine` (an lcw method) against `theirs` (another method of the same depth, width and
    activation), paired by seed, each at its own best LR."""
    target, depth, width, activation = mine.key
    seeds = sorted(set(mine.by_seed) & set(theirs.by_seed))
    return {
        "method": target,
        "baseline": theirs.key[0],
        "depth": depth,
        "width": width,
        "activation": activation,
        "method_lr": mine.best_lr,
        "baseline_lr": theirs.best_lr,
        **compare([mine.by_seed[s] for s in seeds], [theirs.by_seed[s] for s in seeds]),
    }


def cell_order(keys: Iterable[CellKey]) -> list[CellKey]:
    """Cells in summary order: activation, depth, width, method."""
    return sorted(keys, key=_order)


def comparison_pairs(keys: Iterable[CellKey]) -> list[tuple[CellKey, CellKey]]:
    """(target, baseline) cell pairs in summary order: each lcw-family cell against every other
    method of its depth, width and activation."""
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
    ]


def assemble(cells: dict[CellKey, CellResult]) -> dict[str, list[dict[str, Any]]]:
    """{"cells": [...], "comparisons": [...]} from every cell's result (``Store.summary`` does
    the same from cached parts, reusing the comparisons of unchanged cells)."""
    return {
        "cells": [cells[key].summary for key in cell_order(cells)],
        "comparisons": [comparison(cells[a], cells[b]) for a, b in comparison_pairs(cells)],
    }
