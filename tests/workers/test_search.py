"""The per-cell LR searcher (workers.search): Ray Tune's OptunaSearch fed slot by slot."""

from __future__ import annotations

import pytest

from service.store import SlotHistory
from workers.search import CellSearch

SPACE = {"low": 1e-3, "high": 1.0, "trials_per_cell": 6, "sampler": "tpe", "log": True}


def _row(slot: int, lr: float | None, scale: float | None, mean: float | None,
         statuses: str) -> SlotHistory:  # fmt: skip
    """A slot's history row; `statuses` as "completed" or "completed=1,running=1"."""
    counts = dict(part.split("=") if "=" in part else (part, "1") for part in statuses.split(","))
    return SlotHistory(slot, lr, scale, mean, {k: int(v) for k, v in counts.items()})


def test_a_slot_is_finished_when_every_seed_is_terminal() -> None:
    assert _row(0, 0.1, None, 0.5, "completed").finished
    assert _row(0, 0.1, None, 0.5, "completed=1,diverged=1").finished
    assert not _row(0, 0.1, None, 0.5, "completed=1,running=1").finished
    assert not _row(0, None, None, None, "pending").finished


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_suggestions_are_seeded_per_cell_and_inside_the_bounds(sampler: str) -> None:
    spec = {**SPACE, "sampler": sampler}
    a = [CellSearch(spec, cell_key="lcw|5|100|sigmoid").suggest(s) for s in range(1)]
    b = [CellSearch(spec, cell_key="lcw|5|100|sigmoid").suggest(s) for s in range(1)]
    other = CellSearch(spec, cell_key="plain|5|100|sigmoid").suggest(0)
    assert a == b  # same cell, same seed: a study reproduces its first proposals
    assert other != a[0]  # every cell has its own sampler
    search = CellSearch(spec, cell_key="bn|5|100|sigmoid")
    lrs = [search.suggest(slot)[0] for slot in range(6)]
    assert all(1e-3 <= lr <= 1.0 for lr in lrs)
    assert len(set(lrs)) == 6


def test_linear_space_when_log_is_false() -> None:
    search = CellSearch({**SPACE, "low": 0.5, "high": 0.6, "log": False}, cell_key="c")
    assert all(0.5 <= search.suggest(s)[0] <= 0.6 for s in range(5))
    assert all(search.suggest(s)[1] is None for s in range(5, 8))  # the scale is not searched


def test_the_init_scale_is_searched_with_the_lr_inside_its_range() -> None:
    space = {**SPACE, "init_scale": {"low": 0.25, "high": 4.0, "log": True}}
    search = CellSearch(space, cell_key="lcw|5|100|relu")
    settings = [search.suggest(slot) for slot in range(6)]
    assert all(1e-3 <= lr <= 1.0 and 0.25 <= scale <= 4.0 for lr, scale in settings)  # type: ignore[operator]
    assert len({scale for _, scale in settings}) == 6
    for slot, setting in enumerate(settings):
        search.assigned(slot, setting, setting)
    history = [
        _row(s, lr, scale, 0.5 + 0.01 * s, "completed") for s, (lr, scale) in enumerate(settings)
    ]
    assert search.observe(history) == list(range(6))
    rebuilt = CellSearch(space, cell_key="lcw|5|100|relu", history=history)
    assert rebuilt.told == 6


def test_results_reach_the_sampler_and_a_rebuild_keeps_them() -> None:
    search = CellSearch(SPACE, cell_key="lcw|5|100|sigmoid")
    lrs = {slot: search.suggest(slot)[0] for slot in range(3)}
    for slot, lr in lrs.items():
        search.assigned(slot, (lr, None), (lr, None))
    history = [
        _row(0, lrs[0], None, 0.8, "completed"),
        _row(1, lrs[1], None, None, "failed"),
        _row(2, lrs[2], None, 0.5, "completed=1,running=1"),
        _row(3, None, None, None, "pending"),
    ]
    assert search.observe(history) == [0, 1]
    assert search.observe(history) == []  # told once
    # A restarted dispatcher: finished slots are evaluated points, slot 2 is still open.
    rebuilt = CellSearch(SPACE, cell_key="lcw|5|100|sigmoid", history=history)
    assert rebuilt.told == 2
    assert rebuilt.suggest(3)[0] not in lrs.values()  # the seed moved on: no repeat
    assert rebuilt.observe([_row(2, lrs[2], None, 0.55, "completed")]) == [2]
    assert rebuilt.told == 3


def test_losing_an_assignment_race_withdraws_the_proposal() -> None:
    search = CellSearch(SPACE, cell_key="c")
    proposed = search.suggest(0)
    search.assigned(0, (0.123, None), proposed)  # another dispatcher stored its LR first
    assert search.observe([_row(0, 0.123, None, 0.7, "completed")]) == [0]
    assert search.told == 1
