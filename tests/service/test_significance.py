"""Significance (service.significance): the paired t-test, Holm and Benjamini-Hochberg against
hand computations and scipy, and what a study's seed count can reach."""

from __future__ import annotations

import random

import pytest
from scipy import stats as st

from service.significance import (
    MIN_PAIRS,
    NO_PAIRS,
    adjust,
    adjust_family,
    benjamini_hochberg,
    compare,
    holm,
    paired_t_p,
    signed_rank_floor,
    wilcoxon_p,
)


def test_paired_t_p_is_scipys_one_sample_t_test() -> None:
    rng = random.Random(3)
    for n in range(MIN_PAIRS, 20):
        diffs = [rng.gauss(0.02, 0.05) for _ in range(n)]
        p, note = paired_t_p(diffs)
        assert note is None
        assert p == pytest.approx(st.ttest_1samp(diffs, 0.0).pvalue, rel=1e-12)


def test_below_six_pairs_nothing_is_testable_and_the_note_says_what_is_reachable() -> None:
    for n in range(1, MIN_PAIRS):
        p, note = paired_t_p([0.5] * n)
        assert p is None and note is not None
        assert note.startswith(f"not testable (n < {MIN_PAIRS})")
        assert "0.0312" in note  # 2/2^6: the signed-rank floor at six seeds
        assert wilcoxon_p([0.5] * n)[0] is None
    assert compare([0.9] * 5, [0.1] * 5)["testable"] is False


def test_no_pairs_at_all_is_not_advice_to_add_seeds() -> None:
    # A study whose trials all failed has comparisons with n = 0: more seeds are not the fix.
    p, note = paired_t_p([])
    assert p is None and note == NO_PAIRS and "seeds (" not in note
    assert wilcoxon_p([])[0] is None


def test_zero_spread_has_no_t_p() -> None:
    assert paired_t_p([0.0] * 8) == (None, "every paired difference is zero")
    p, note = paired_t_p([0.25] * 8)
    assert p is None and note is not None and "zero spread" in note


def test_six_paired_seeds_with_a_clear_difference_reach_p_below_005_after_adjustment() -> None:
    # The case that could never be significant with the exact signed-rank test: lcw - plain
    # around +0.68 on all six seeds; raw signed-rank p is its floor 2/2^6 = 0.03125, and Holm
    # over a family of 6 makes it 0.1875. The paired t-test reaches far below 0.05.
    lcw = [0.91, 0.90, 0.93, 0.89, 0.92, 0.90]
    plain = [0.22, 0.25, 0.19, 0.24, 0.21, 0.23]
    row = compare(lcw, plain)
    assert row["p_signed_rank"] == pytest.approx(0.03125)
    family = [dict(row) for _ in range(6)]
    block = adjust_family(family)
    assert block["family_size"] == 6
    assert all(c["p_adjusted"] < 0.05 and c["significant"] for c in family)
    assert all(c["p_signed_rank_adjusted"] == pytest.approx(0.1875) for c in family)
    assert block["signed_rank_floor_adjusted"] == pytest.approx(6 * 2 / 2**6)


def test_holm_against_a_hand_computed_family() -> None:
    raw = [0.01, 0.04, 0.03, 0.005]
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06,
    # the running maximum keeps the order).
    assert holm(raw) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_benjamini_hochberg_is_scipys_false_discovery_control() -> None:
    rng = random.Random(7)
    for m in (1, 2, 5, 17, 60):
        raw = [rng.random() ** 3 for _ in range(m)]
        assert benjamini_hochberg(raw) == pytest.approx(
            list(st.false_discovery_control(raw)), rel=1e-12
        )


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_an_adjusted_p_is_never_below_its_raw_p(method: str) -> None:
    rng = random.Random(11)
    for _ in range(200):
        raw = [rng.random() ** rng.choice([1, 4]) for _ in range(rng.randint(1, 30))]
        for a, p in zip(adjust(raw, method), raw, strict=True):
            assert p <= a <= 1.0


def test_the_family_is_the_comparisons_with_a_p_value() -> None:
    testable = compare([0.9, 0.8, 0.85, 0.95, 0.9, 0.88], [0.7, 0.75, 0.7, 0.8, 0.72, 0.71])
    untestable = compare([0.9, 0.8], [0.1, 0.2])
    family = [dict(testable), dict(untestable)]
    block = adjust_family(family, "holm")
    assert block["family_size"] == 1 and block["method"] == "holm"
    assert family[0]["p_adjusted"] == family[0]["p_value"]  # a family of one
    assert family[1]["p_adjusted"] is None and family[1]["significant"] is False
    nothing = adjust_family([dict(untestable)])
    assert nothing["family_size"] == 0 and nothing["signed_rank_floor_adjusted"] is None
    assert "nothing is testable" in nothing["note"]
    with pytest.raises(ValueError, match="adjustment"):
        adjust([0.1], "bonferroni")


def test_signed_rank_floor() -> None:
    assert signed_rank_floor(54, 6) == 1.0  # 54 comparisons at 6 seeds: never significant
    assert signed_rank_floor(54, 12) == pytest.approx(54 * 2 / 4096)
    assert signed_rank_floor(54, 6, "bh") == pytest.approx(2 / 64)
