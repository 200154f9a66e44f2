"""Summary statistics (service.stats) against values computed by hand and by scipy."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as st

from service.significance import t_interval, wilcoxon_p
from service.stats import TrialOutcome, summarize

T975_DF4 = 2.7764451051977987  # Student t, 97.5% quantile, 4 degrees of freedom


def _rows(
    method: str,
    lr: float,
    vals: list[float],
    tests: list[float],
    *,
    status: str = "completed",
    depth: int | None = 5,
) -> list[TrialOutcome]:
    return [
        TrialOutcome(method, depth, 100, "sigmoid", lr, seed, status, v, t)
        for seed, (v, t) in enumerate(zip(vals, tests, strict=True))
    ]


LCW_TEST = [0.78, 0.80, 0.77, 0.79, 0.83]
PLAIN_TEST = [0.70, 0.69, 0.75, 0.71, 0.72]


def _study() -> list[TrialOutcome]:
    rows = []
    # lcw: lr 0.1 wins on validation (mean 0.81 vs 0.70) even though lr 1.0 has better test.
    rows += _rows("lcw", 0.1, [0.80, 0.82, 0.79, 0.81, 0.83], LCW_TEST)
    rows += _rows("lcw", 1.0, [0.70] * 5, [0.95] * 5)
    # plain: lr 1.0 wins; seed 2 diverged at lr 1.0 and counts with its stored accuracy.
    rows += _rows("plain", 0.1, [0.50] * 5, [0.50] * 5)
    plain_best = _rows("plain", 1.0, [0.72, 0.71, 0.74, 0.73, 0.72], PLAIN_TEST)
    plain_best[2] = TrialOutcome("plain", 5, 100, "sigmoid", 1.0, 2, "diverged", 0.74, 0.75)
    rows += plain_best
    # Excluded from every number: failed, cancelled and unfinished trials.
    rows += [
        TrialOutcome("plain", 5, 100, "sigmoid", 1.0, 9, "failed", None, None),
        TrialOutcome("plain", 5, 100, "sigmoid", 1.0, 8, "cancelled", 0.99, 0.99),
        TrialOutcome("plain", 5, 100, "sigmoid", 0.01, 0, "pending", None, None),
    ]
    return rows


def test_cells_pick_the_best_validation_lr_and_report_test_accuracy() -> None:
    cells = {c["method"]: c for c in summarize(_study())["cells"]}
    lcw = cells["lcw"]
    assert lcw["best_lr"] == 0.1 and lcw["n"] == 5
    assert lcw["val_acc_mean"] == pytest.approx(0.81)
    assert lcw["test_acc_mean"] == pytest.approx(np.mean(LCW_TEST))
    assert lcw["test_acc_std"] == pytest.approx(np.std(LCW_TEST, ddof=1))
    sem = np.std(LCW_TEST, ddof=1) / math.sqrt(5)
    low, high = st.t.interval(0.95, 4, loc=np.mean(LCW_TEST), scale=sem)
    assert lcw["test_acc_ci95"] == pytest.approx([low, high])
    assert lcw["test_acc_ci95"][1] - np.mean(LCW_TEST) == pytest.approx(T975_DF4 * sem)
    plain = cells["plain"]
    assert plain["best_lr"] == 1.0 and plain["n"] == 5 and plain["diverged"] == 1
    assert plain["test_acc_mean"] == pytest.approx(np.mean(PLAIN_TEST))
    lrs = {e["lr"]: e for e in plain["lrs"]}
    assert sorted(lrs) == [0.01, 0.1, 1.0]
    assert lrs[1.0]["n"] == 5 and lrs[1.0]["failed"] == 1 and lrs[1.0]["diverged"] == 1
    assert lrs[0.01] == {
        "lr": 0.01,
        "init_scale": 1.0,
        "val_acc_mean": None,
        "test_acc_mean": None,
        "n": 0,
        "diverged": 0,
        "stopped_early": 0,
        "failed": 0,
        "unfinished": 1,
    }


def test_paired_comparison_matches_scipy() -> None:
    [comp] = summarize(_study())["comparisons"]
    assert (comp["method"], comp["baseline"]) == ("lcw", "plain")
    assert (comp["method_lr"], comp["baseline_lr"], comp["n"]) == (0.1, 1.0, 5)
    assert (comp["method_init_scale"], comp["baseline_init_scale"]) == (1.0, 1.0)
    assert (comp["method_diverged"], comp["baseline_diverged"]) == (0, 1)  # plain's seed 2
    diffs = np.array(LCW_TEST) - np.array(PLAIN_TEST)
    assert comp["mean_diff"] == pytest.approx(diffs.mean())
    ci = st.ttest_rel(LCW_TEST, PLAIN_TEST).confidence_interval(0.95)
    assert comp["ci95"] == pytest.approx([ci.low, ci.high])
    # Five pairs: not testable (the primary test needs six), with the reason.
    assert comp["testable"] is False and comp["p_value"] is None and comp["p_adjusted"] is None
    assert comp["p_value_note"].startswith("not testable (n < 6)")
    assert comp["ci95_note"] is None


def test_six_seeds_give_paired_t_and_signed_rank_p_values_adjusted_by_holm() -> None:
    lcw = [0.78, 0.80, 0.77, 0.79, 0.83, 0.81]
    plain, bn = [0.70, 0.69, 0.75, 0.71, 0.72, 0.70], [0.79, 0.78, 0.80, 0.76, 0.81, 0.80]
    rows = _rows("lcw", 0.1, lcw, lcw) + _rows("plain", 0.1, plain, plain)
    rows += _rows("bn", 0.1, bn, bn)
    out = summarize(rows)
    comps = {c["baseline"]: c for c in out["comparisons"]}
    vs_plain, vs_bn = comps["plain"], comps["bn"]
    assert vs_plain["p_value"] == pytest.approx(st.ttest_rel(lcw, plain).pvalue, rel=1e-12)
    assert vs_plain["p_signed_rank"] == pytest.approx(st.wilcoxon(lcw, plain).pvalue)
    # Holm over the family of 2, by hand.
    p1, p2 = sorted([vs_plain["p_value"], vs_bn["p_value"]])
    by_hand = {p1: min(1, 2 * p1), p2: max(min(1, 2 * p1), p2)}
    for c in (vs_plain, vs_bn):
        assert c["p_adjusted"] == pytest.approx(by_hand[c["p_value"]])
        assert c["p_adjusted"] >= c["p_value"]
    assert vs_plain["significant"] and not vs_bn["significant"]
    assert out["adjustment"]["family_size"] == 2 and out["adjustment"]["method"] == "holm"
    bh = summarize(rows, adjustment="bh")
    assert bh["adjustment"]["method"] == "bh"
    # Benjamini-Hochberg over 2, by hand: the larger p stays, the smaller is min(2 p, larger).
    by_hand_bh = {p2: p2, p1: min(2 * p1, p2)}
    for c in bh["comparisons"]:
        assert c["p_adjusted"] == pytest.approx(by_hand_bh[c["p_value"]])


def test_early_stopped_trials_are_counted_beside_the_means_and_their_setting_is_not_picked() -> (
    None
):
    rows = _rows("lcw", 0.1, [0.8, 0.8, 0.8], [0.7, 0.7, 0.7])
    # lr 1.0 has the best validation accuracy, but one of its seeds was stopped early: its
    # seeds are not all there, so the cell keeps lr 0.1 and the stop is counted.
    stopped = _rows("lcw", 1.0, [0.95, 0.95, 0.2], [0.9, 0.9, 0.2])
    stopped[2] = TrialOutcome("lcw", 5, 100, "sigmoid", 1.0, 2, "stopped_early", 0.2, 0.2)
    [cell] = summarize(rows + stopped)["cells"]
    assert cell["best_lr"] == 0.1 and cell["stopped_early"] == 1
    lrs = {e["lr"]: e for e in cell["lrs"]}
    assert lrs[1.0]["n"] == 2 and lrs[1.0]["stopped_early"] == 1
    assert lrs[1.0]["val_acc_mean"] == pytest.approx(0.95)  # the stopped trial is not in it


def test_the_best_setting_is_an_lr_and_an_init_scale_chosen_on_validation() -> None:
    rows = []
    for scale, val, test in ((0.5, 0.6, 0.9), (1.0, 0.7, 0.7), (2.0, 0.8, 0.6)):
        rows += [
            TrialOutcome("lcw", 5, 100, "relu", 0.1, seed, "completed", val, test, scale)
            for seed in range(3)
        ]
    [cell] = summarize(rows)["cells"]
    assert (cell["best_lr"], cell["best_init_scale"]) == (0.1, 2.0)
    assert cell["test_acc_mean"] == pytest.approx(0.6)  # test accuracy there, not the best
    assert [(e["lr"], e["init_scale"]) for e in cell["lrs"]] == [(0.1, 0.5), (0.1, 1.0), (0.1, 2.0)]


def test_small_samples_carry_a_reason_instead_of_a_number() -> None:
    rows = _rows("lcw", 0.1, [0.8], [0.7]) + _rows("bn", 0.1, [0.6], [0.5])
    rows += _rows("bn_lcw", 0.1, [0.9], [0.9])
    out = summarize(rows)
    cell = next(c for c in out["cells"] if c["method"] == "lcw")
    assert cell["n"] == 1 and cell["test_acc_ci95"] is None and cell["test_acc_std"] is None
    assert "n=1" in cell["ci95_note"]
    comps = {(c["method"], c["baseline"]): c for c in out["comparisons"]}
    # lcw vs bn_lcw once, never mirrored.
    assert set(comps) == {("lcw", "bn"), ("lcw", "bn_lcw"), ("bn_lcw", "bn")}
    c = comps[("lcw", "bn")]
    assert c["mean_diff"] == pytest.approx(0.2) and c["ci95"] is None and c["p_value"] is None
    assert "not testable (n < 6)" in c["p_value_note"]
    assert comps[("lcw", "bn_lcw")]["mean_diff"] == pytest.approx(-0.2)


def test_comparisons_pair_by_seed_within_the_same_architecture() -> None:
    rows = _rows("lcw", 0.1, [0.8] * 5, [0.8, 0.81, 0.82, 0.83, 0.84])
    rows += _rows("plain", 0.1, [0.7] * 3, [0.7, 0.7, 0.7])  # seeds 0..2 only
    rows += _rows("plain", 0.1, [0.7] * 5, [0.1] * 5, depth=20)  # another depth: not paired
    [comp] = [c for c in summarize(rows)["comparisons"] if c["depth"] == 5]
    assert comp["n"] == 3 and comp["mean_diff"] == pytest.approx(0.11)


def test_helpers_edge_cases() -> None:
    assert t_interval([]) == (None, "no finished trials")
    assert t_interval([0.5, 0.5, 0.5]) == ([0.5, 0.5], None)
    p, note = wilcoxon_p([0.0] * 6)
    assert p is None and "zero" in (note or "")
    out = summarize([])
    assert out["cells"] == [] and out["comparisons"] == []
    assert out["adjustment"]["family_size"] == 0


def test_permutation_p_value_is_scipys_for_ties_and_zeros() -> None:
    """Small samples with tied or zero differences (accuracies are k / N, so they tie often):
    the subset-count p-value equals scipy's exact permutation test to the bit."""
    from service.significance import PERMUTATION_MAX_N, signed_rank_permutation_p

    rng = random.Random(0)
    checked = 0
    # scipy's side costs ~2^n (1 s at n = 13): many small samples, a few of each large size.
    large = [n for n in range(10, PERMUTATION_MAX_N + 1) for _ in range(3 if n < 12 else 2)]
    for n in [rng.randint(1, 9) for _ in range(200)] + large:
        scale = rng.choice([4, 10, 360])
        diffs = [rng.randint(-3, 3) / scale for _ in range(n)]
        if all(d == 0 for d in diffs):
            continue
        want = float(st.wilcoxon(diffs).pvalue)
        assert signed_rank_permutation_p(diffs) == want, diffs
        if n >= 6:
            assert wilcoxon_p(diffs) == (want, None), diffs
        checked += 1
    assert checked > 180
    # Without ties or zeros scipy's exact null distribution gives the same numbers.
    assert signed_rank_permutation_p([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]) == float(
        st.wilcoxon([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]).pvalue
    )
