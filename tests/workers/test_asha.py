"""ASHA's stopping rule (workers.asha): rungs, the quantile cutoff, and the per-cell record."""

from __future__ import annotations

import numpy as np
import pytest

from workers.asha import Asha, rungs, should_stop


def test_rungs_are_grace_times_powers_of_rf_below_the_last_epoch() -> None:
    assert rungs(grace_period=1, reduction_factor=3, max_epochs=10) == [1, 3, 9]
    assert rungs(grace_period=2, reduction_factor=2, max_epochs=16) == [2, 4, 8]
    assert rungs(grace_period=5, reduction_factor=3, max_epochs=5) == []
    with pytest.raises(ValueError, match="reduction_factor"):
        rungs(grace_period=1, reduction_factor=1, max_epochs=5)


@pytest.mark.parametrize("rf", [2, 3, 4])
def test_cutoff_matches_ray_tunes_percentile(rf: int) -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 12):
        recorded = list(rng.random(n))
        cutoff = float(np.percentile(recorded, (1 - 1 / rf) * 100))
        assert should_stop(recorded, cutoff - 1e-9, reduction_factor=rf)
        assert not should_stop(recorded, cutoff + 1e-9, reduction_factor=rf)
    assert not should_stop([], 0.0, reduction_factor=rf)  # the first at a rung continues


def test_asha_keeps_the_top_third_at_each_rung() -> None:
    asha = Asha(grace_period=1, reduction_factor=3, max_epochs=9)
    assert asha.rungs == [1, 3]
    # Values arrive one at a time (asynchronous): each is judged against those before it.
    decisions = [asha.on_rung(f"t{i}", 1, v) for i, v in enumerate([0.5, 0.9, 0.2, 0.95, 0.6])]
    assert decisions == [False, False, True, False, True]
    assert not asha.on_rung("t1", 3, 0.91)  # first at rung 3
    assert asha.on_rung("t3", 3, 0.5)
    assert not asha.on_rung("t1", 3, 0.0)  # a rerun keeps its first record and goes on
    assert not asha.on_rung("t9", 2, 0.0)  # not a rung


def test_a_missing_value_ranks_last() -> None:
    asha = Asha.from_spec({"name": "asha", "grace_period": 1, "reduction_factor": 2}, max_epochs=4)
    assert not asha.on_rung("a", 1, 0.1)
    assert asha.on_rung("b", 1, None)
    assert asha.on_rung("c", 1, float("nan"))
