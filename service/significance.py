"""Significance of paired differences, and its adjustment across a study's comparisons.

Pure functions over plain numbers, tested against scipy (tests/service/test_significance.py).

The protocol (README, "Statistics"):

* **Primary test: the paired t-test**, two-sided, on the per-seed differences of test accuracy
  (method minus baseline, same seed = same data order, initial draw and augmentation). It is the
  test behind the t interval the summary already shows, so the CI and the p-value agree (the CI
  excludes 0 exactly when p < 0.05). Assumption: the mean of the differences is roughly normal;
  with few seeds that is a model of the seeds' spread, stated as such. Unlike the exact
  signed-rank test it has no floor: a large, consistent effect can reach any p.
* **Robustness column: the exact Wilcoxon signed-rank p** (no normality assumption). Its
  two-sided p cannot go below 2 / 2^n (0.031 at n = 6), so after adjusting over m comparisons it
  needs 2^(n-1) > m / alpha pairs to ever be significant; the summary states that floor.
* **Testable from ``MIN_PAIRS`` = 6 paired seeds.** Below, no p-value is reported (the note says
  why and what is reachable): a t-test on 2-5 seeds leans wholly on the normality assumption.
* **Adjustment over the study** (the family: every comparison with a p-value): Holm's step-down
  method by default (controls the family-wise error rate under any dependence), or
  Benjamini-Hochberg (false discovery rate) when the spec asks for ``adjustment: bh``. An
  adjusted p is never below its raw p. The star on pages and tables follows the adjusted p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

ALPHA = 0.05
MIN_PAIRS = 6  # paired seeds a comparison needs before it gets a p-value
ADJUSTMENTS = ("holm", "bh")
PRIMARY_TEST = "paired_t"
ROBUSTNESS_TEST = "signed_rank_exact"


@lru_cache(maxsize=1024)
def _t_quantile(df: int) -> float:
    from scipy import stats as st

    return float(st.t.ppf(0.975, df))


def warm_up() -> None:
    """Import scipy's statistics (about a second) before a summary needs them."""
    _t_quantile(2)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1)."""
    n = len(values)
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def t_interval(values: Sequence[float]) -> tuple[list[float] | None, str | None]:
    """95% Student-t interval of the mean: ([low, high], None) or (None, reason)."""
    n = len(values)
    if n == 0:
        return None, "no finished trials"
    if n == 1:
        return None, "n=1: one value has no spread to estimate an interval from"
    m = sum(values) / n
    half = _t_quantile(n - 1) * std(values) / math.sqrt(n)
    return [m - half, m + half], None


def not_testable_note(n: int) -> str:
    """Why a comparison of `n` < MIN_PAIRS pairs has no p-value, and what more seeds reach."""
    floor = 2.0 / 2**MIN_PAIRS
    return (
        f"not testable (n < {MIN_PAIRS}): {n} paired seed{'s' if n != 1 else ''}; run at least "
        f"{MIN_PAIRS} seeds (the exact signed-rank p alone cannot go below 2/2^n: "
        f"{2.0 / 2 ** max(n, 1):.3g} at n={n}, {floor:.3g} at n={MIN_PAIRS})"
    )


def paired_t_p(diffs: Sequence[float]) -> tuple[float | None, str | None]:
    """Two-sided one-sample t-test p of paired differences against 0, or (None, reason)."""
    return _paired_t_p(tuple(diffs))


NO_PAIRS = "no paired result yet: no seed has a finished trial of both methods"


def _untestable(diffs: tuple[float, ...]) -> str | None:
    """Why neither test gives a p for `diffs` (no pairs, too few, or no difference at all);
    more seeds are advised only when there are pairs and too few of them."""
    if not diffs:
        return NO_PAIRS
    if len(diffs) < MIN_PAIRS:
        return not_testable_note(len(diffs))
    if all(d == 0 for d in diffs):
        return "every paired difference is zero"
    return None


@lru_cache(maxsize=8192)
def _paired_t_p(diffs: tuple[float, ...]) -> tuple[float | None, str | None]:
    if (reason := _untestable(diffs)) is not None:
        return None, reason
    n = len(diffs)
    sd = std(diffs)
    if sd == 0:
        return None, "every paired difference is the same: zero spread, the t-test is undefined"
    from scipy import stats as st

    t = (sum(diffs) / n) / (sd / math.sqrt(n))
    p = float(2.0 * st.t.sf(abs(t), n - 1))
    return (p, None) if math.isfinite(p) else (None, "the t-test is undefined here")


def wilcoxon_p(diffs: Sequence[float]) -> tuple[float | None, str | None]:
    """Two-sided exact Wilcoxon signed-rank p-value of paired differences, or (None, reason)."""
    return _wilcoxon_p(tuple(diffs))


# scipy's test costs ~2 ms a call; a study's summary repeats it for every comparison whenever
# any trial changes, with mostly unchanged inputs. Caching on the exact differences is exact.
@lru_cache(maxsize=8192)
def _wilcoxon_p(diffs: tuple[float, ...]) -> tuple[float | None, str | None]:
    if (reason := _untestable(diffs)) is not None:
        return None, reason
    n = len(diffs)
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


def compare(method: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Paired comparison of test accuracies (same order = same seed): method minus baseline.

    Raw p-values only; ``adjust_family`` fills ``p_adjusted`` once the study's family is known.
    """
    diffs = [a - b for a, b in zip(method, baseline, strict=True)]
    ci, ci_note = t_interval(diffs)
    p, p_note = paired_t_p(diffs)
    p_rank, _ = wilcoxon_p(diffs)
    return {
        "n": len(diffs),
        "mean_diff": mean(diffs),
        "ci95": ci,
        "ci95_note": ci_note,
        "p_value": p,
        "p_value_note": p_note,
        "p_signed_rank": p_rank,
        "testable": len(diffs) >= MIN_PAIRS,
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (Holm 1979)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    out = [0.0] * m
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k  # 1-based rank in ascending order
        running = min(running, m * pvalues[i] / rank)
        out[i] = min(1.0, running)
    return out


_ADJUST = {"holm": holm, "bh": benjamini_hochberg}


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values by `method` ('holm' or 'bh'); each is >= its raw p."""
    if method not in _ADJUST:
        raise ValueError(f"adjustment: {method!r} is not one of 'holm' or 'bh'")
    adjusted = _ADJUST[method](list(pvalues))
    return [max(a, p) for a, p in zip(adjusted, pvalues, strict=True)]  # rounding guard


def adjust_family(comparisons: list[dict[str, Any]], method: str = "holm") -> dict[str, Any]:
    """Fill ``p_adjusted``, ``p_signed_rank_adjusted`` and ``significant`` on every comparison
    (in place; the family is every comparison with a raw p) and return the summary's
    ``adjustment`` block."""
    family = [c for c in comparisons if c["p_value"] is not None]
    for c in comparisons:
        c["p_adjusted"] = c["p_signed_rank_adjusted"] = None
        c["significant"] = False
    adjusted = adjust([c["p_value"] for c in family], method)
    for c, p in zip(family, adjusted, strict=True):
        c["p_adjusted"] = p
        c["significant"] = p < ALPHA
    ranked = [c for c in family if c["p_signed_rank"] is not None]
    for c, p in zip(ranked, adjust([c["p_signed_rank"] for c in ranked], method), strict=True):
        c["p_signed_rank_adjusted"] = p
    m = len(family)
    n_max = max((c["n"] for c in comparisons), default=0)
    floor = signed_rank_floor(m, n_max, method) if m else None
    if not comparisons:
        note = "no comparisons yet"
    elif not n_max:
        note = f"nothing is testable yet: {NO_PAIRS}"
    elif not m:
        note = (
            f"nothing is testable yet: a comparison needs >= {MIN_PAIRS} paired seeds "
            f"(the most here: {n_max})"
        )
    else:
        name = "Holm" if method == "holm" else "Benjamini-Hochberg"
        note = (
            f"p adjusted by {name} over the study's {m} comparison{'s' if m != 1 else ''}; "
            f"primary test: paired t (no floor); the exact signed-rank p cannot go below "
            f"{floor:.3g} after adjustment at n={n_max}"
        )
    return {
        "method": method,
        "family_size": m,
        "alpha": ALPHA,
        "primary_test": PRIMARY_TEST,
        "robustness_test": ROBUSTNESS_TEST,
        "min_pairs": MIN_PAIRS,
        "signed_rank_floor_adjusted": floor,
        "note": note,
    }


def signed_rank_floor(family_size: int, n: int, method: str = "holm") -> float:
    """The smallest adjusted exact signed-rank p a comparison of `n` pairs can reach in a family
    of `family_size`: Holm multiplies the smallest raw p (>= 2/2^n) by m; Benjamini-Hochberg
    reaches 2/2^n itself only when every comparison of the family sits at that floor."""
    raw = 2.0 / 2**n
    return min(1.0, family_size * raw if method == "holm" else raw)
