"""The study summary aggregated in SQL equals ``stats.summarize`` over every trial row.

``Store.summary`` reads one GROUP BY row per (cell, lr) and then only the trials at each cell's
best LR; ``stats.summarize`` is the row-by-row definition (checked against scipy in
test_stats.py). Random studies on SQLite and PostgreSQL: grid, lr_search with unassigned (NULL)
and coinciding LRs, and a fixed-layout model (depth and width NULL), every trial status, missing
accuracies. Accuracies are multiples of 1/1024, which every summation order adds exactly, so the
two paths agree to the bit; with arbitrary floats the database's SUM may round the last bit
differently, and everything else is still equal.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import select, update
from svc_helpers import lr_search_study, make_study, row_based_summary

from service.db import session_scope, writer
from service.models import Trial
from service.stats import TrialOutcome, best_settings, group_outcomes, summarize
from service.store import Store
from service.vocabulary import TRIAL_STATUSES

GRID = {
    "name": "grid",
    "dataset": "digits",
    "methods": ["plain", "bn", "lcw", "bn_lcw"],
    "depths": [2, 5],
    "activations": ["sigmoid", "relu"],
    "learning_rates": [0.01, 0.1, 1.0],
    "init_scales": [0.5, 1.0],
    "seeds": 6,
}
LR_SEARCH = lr_search_study(trials_per_cell=4, init_scale={"low": 0.5, "high": 2.0})
FIXED_LAYOUT = {
    "name": "vgg",
    "dataset": "synthetic",
    "model": "vgg11",
    "methods": ["plain", "bn", "lcw"],
    "learning_rates": [0.01, 0.1],
    "seeds": 5,
}
# Mostly scored trials, so that cells have best LRs and comparisons have pairs.
STATUSES = ["completed"] * 6 + ["diverged", "stopped_early"] * 2 + list(TRIAL_STATUSES)


def _accuracy(rng: random.Random, *, dyadic: bool) -> float | None:
    if rng.random() < 0.08:
        return None
    return rng.randrange(1025) / 1024 if dyadic else rng.random()


def _randomize(store: Store, study_id: int, rng: random.Random, *, dyadic: bool) -> None:
    with session_scope(writer(store.engine)) as s:
        trials = s.execute(
            select(Trial.id, Trial.cell_key, Trial.slot).where(Trial.study_id == study_id)
        ).all()
        slot_lrs: dict[tuple[str, int], tuple[float | None, float | None]] = {}
        for _, cell_key, slot in trials:
            if slot is not None and (cell_key, slot) not in slot_lrs:
                # Some slots still unassigned; two slots of a cell may draw the same setting.
                lr = rng.choice([None, 0.01, 0.05, 0.05, 0.2, 0.7])
                slot_lrs[cell_key, slot] = (lr, None if lr is None else rng.choice([0.5, 2.0]))
        rows = []
        for tid, cell_key, slot in trials:
            row: dict[str, Any] = {
                "id": tid,
                "status": rng.choice(STATUSES),
                "val_acc": _accuracy(rng, dyadic=dyadic),
                "test_acc": _accuracy(rng, dyadic=dyadic),
            }
            if slot is not None:
                row["lr"], row["init_scale"] = slot_lrs[cell_key, slot]
            rows.append(row)
        s.execute(update(Trial), rows)
    store.forget_summaries()


def _close(got: Any, want: Any, path: str = "") -> None:
    """Equal, except floats within 1e-12 relative (a SUM's last bit)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


@pytest.mark.parametrize("spec", [GRID, LR_SEARCH, FIXED_LAYOUT], ids=lambda s: s["name"])
def test_sql_aggregate_summary_is_the_row_based_summary(store: Store, spec: dict) -> None:
    study_id = make_study(store, spec)
    for seed in range(3):
        _randomize(store, study_id, random.Random(seed), dyadic=True)
        want = row_based_summary(store, study_id)
        assert want["cells"] and want["comparisons"]
        assert store.summary(study_id).model_dump() == want


def test_sql_aggregate_summary_with_arbitrary_floats(store: Store) -> None:
    study_id = make_study(store, GRID)
    _randomize(store, study_id, random.Random(7), dyadic=False)
    _close(store.summary(study_id).model_dump(), row_based_summary(store, study_id))


def test_unscored_lrs_and_unassigned_slots_have_no_best_lr() -> None:
    rows = [
        TrialOutcome("lcw", 5, 100, "relu", 0.1, 0, "failed", None, None),
        TrialOutcome("lcw", 5, 100, "relu", None, 1, "diverged", 0.9, 0.9),
        TrialOutcome("bn", 5, 100, "relu", 0.1, 0, "completed", 0.5, 0.4),
        TrialOutcome("bn", 5, 100, "relu", 0.01, 0, "completed", 0.5, 0.6),  # tie: smaller LR
    ]
    assert best_settings(group_outcomes(rows)) == {
        ("lcw", 5, 100, "relu"): None,
        ("bn", 5, 100, "relu"): (0.01, 1.0),
    }
    [lcw] = [c for c in summarize(rows)["cells"] if c["method"] == "lcw"]
    assert lcw["best_lr"] is None and lcw["diverged"] == 1 and lcw["n"] == 0
    assert [lr["failed"] for lr in lcw["lrs"]] == [1]
