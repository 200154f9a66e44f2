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
    from scipy import stats as st

    p = float(st.wilcoxon(list(diffs)).pvalue)
    if not math.isfinite(p):
        return None, "the signed-rank test is undefined for these differences"
    return p, None


def _cell_summary(key: CellKey, trials: list[TrialOutcome]) -> tuple[dict[str, Any], float | None]:
    by_lr: dict[float, list[TrialOutcome]] = defaultdict(list)
    for t in trials:
        if t.lr is not None:
            by_lr[t.lr].append(t)
    lrs = []
    best: tuple[float, float] | None = None  # (mean val_acc, -lr): ties go to the smaller LR
    best_lr: float | None = None
    for lr in sorted(by_lr):
        group = by_lr[lr]
        scored = [t for t in group if t.status in SCORED and t.val_acc is not None]
        val_mean = _mean([t.val_acc for t in scored if t.val_acc is not None])
        tests = [t.test_acc for t in scored if t.test_acc is not None]
        lrs.append(
            {
                "lr": lr,
                "val_acc_mean": val_mean,
                "test_acc_mean": _mean(tests),
                "n": len(scored),
                "diverged": sum(t.status == "diverged" for t in group),
                "failed": sum(t.status == "failed" for t in group),
                "unfinished": sum(t.status in UNFINISHED for t in group),
            }
        )
        if val_mean is not None and (best is None or (val_mean, -lr) > best):
            best, best_lr = (val_mean, -lr), lr
    tests_at_best = [t.test_acc for t in _scored_at(trials, best_lr) if t.test_acc is not None]
    ci, note = t_interval(tests_at_best)
    method, depth, width, activation = key
    cell = {
        "method": method,
        "depth": depth,
        "width": width,
        "activation": activation,
        "best_lr": best_lr,
        "val_acc_mean": best[0] if best else None,
        "test_acc_mean": _mean(tests_at_best),
        "test_acc_std": _std(tests_at_best) if len(tests_at_best) > 1 else None,
        "test_acc_ci95": ci,
        "ci95_note": note,
        "n": len(tests_at_best),
        "diverged": sum(t.status == "diverged" for t in trials),
        "lrs": lrs,
    }
    return cell, best_lr


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
    cells: dict[CellKey, list[TrialOutcome]] = defaultdict(list)
    for row in rows:
        cells[(row.method, row.depth, row.width, row.activation)].append(row)

    def order(key: CellKey) -> tuple[Any, ...]:
        method, depth, width, activation = key
        return (activation, depth or 0, width or 0, method)

    out_cells = []
    best: dict[CellKey, float | None] = {}
    for key in sorted(cells, key=order):
        cell, best_lr = _cell_summary(key, cells[key])
        out_cells.append(cell)
        best[key] = best_lr

    comparisons = []
    for key in sorted(cells, key=order):
        target, depth, width, activation = key
        if target not in TARGETS:
            continue
        mine = _by_seed(cells[key], best[key])
        for other_key in sorted(cells, key=order):
            other, o_depth, o_width, o_activation = other_key
            if other == target or (o_depth, o_width, o_activation) != (depth, width, activation):
                continue
            theirs = _by_seed(cells[other_key], best[other_key])
            seeds = sorted(set(mine) & set(theirs))
            comparisons.append(
                {
                    "method": target,
                    "baseline": other,
                    "depth": depth,
                    "width": width,
                    "activation": activation,
                    "method_lr": best[key],
                    "baseline_lr": best[other_key],
                    **compare([mine[s] for s in seeds], [theirs[s] for s in seeds]),
                }
            )
    return {"cells": out_cells, "comparisons": comparisons}
