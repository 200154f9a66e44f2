"""Contract test of the store queries behind the web view (sorted trial lists, per-cell learning
curves and diagnostics) on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from svc_helpers import make_study, result

from service.errors import NotFoundError
from service.store import Store

RUN_INFO = {"device": "cpu"}


def _epochs(test_acc: float, *, n: int = 3, layers: int = 2) -> list[dict[str, Any]]:
    """Epochs 0..n-1 whose numbers are simple functions of (test_acc, epoch, layer)."""
    return [
        {
            "epoch": e,
            "train_loss": 2.0 - e * test_acc,
            "val_acc": test_acc * e / (n - 1),
            "test_acc": test_acc * e / (n - 1),
            "diagnostics": {
                "layers": [
                    {"layer": i, "shift": test_acc * (i + 1) + e, "grad_norm": 10.0**-i}
                    for i in range(layers)
                ]
            },
        }
        for e in range(n)
    ]


def _run_all(store: Store, accs: dict[tuple[str, int], float], *, diverge: set[int]) -> None:
    """Claim every trial, write its epochs and complete it (accuracy from (method, seed))."""
    for c in store.claim_trials("w", limit=100, lease_seconds=60):
        acc = accs[(c.config["method"], c.seed)]
        store.write_metrics("w", [(c.id, m) for m in _epochs(acc)])
        status = "diverged" if c.index in diverge else "completed"
        assert store.complete_trial(
            "w", c.id, status=status, result=result(acc, acc), run_info=RUN_INFO
        )


def test_list_trials_orders_by_a_column_with_missing_values_last(store: Store) -> None:
    sid = make_study(store, seeds=3)  # plain x 3 seeds, lcw x 3 seeds
    claimed = store.claim_trials("w", limit=4, lease_seconds=60)  # two trials stay pending
    for c, acc in zip(claimed, (0.5, 0.9, 0.7, 0.6), strict=True):
        store.complete_trial("w", c.id, status="completed", result=result(acc, acc), run_info={})
    default = store.list_trials(sid)
    assert [t.index for t in default.data] == list(range(6))  # unchanged: expansion order
    up = store.list_trials(sid, order_by="test_acc")
    assert [t.test_acc for t in up.data] == [0.5, 0.6, 0.7, 0.9, None, None]
    down = store.list_trials(sid, order_by="test_acc", descending=True, limit=3, offset=1)
    assert [t.test_acc for t in down.data] == [0.7, 0.6, 0.5] and down.count == 6
    by_method = store.list_trials(sid, order_by="method")
    assert [t.method for t in by_method.data] == ["lcw"] * 3 + ["plain"] * 3
    assert [t.index for t in by_method.data[:3]] == [3, 4, 5]  # ties in expansion order
    by_method = store.list_trials(sid, order_by="method", descending=True)
    assert [t.method for t in by_method.data] == ["plain"] * 3 + ["lcw"] * 3
    assert [t.index for t in store.list_trials(sid, descending=True).data] == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="order_by"):
        store.list_trials(sid, order_by="config")


def test_cell_curves_average_scored_seeds_per_method_lr_and_epoch(store: Store) -> None:
    sid = make_study(store, learning_rates=[0.1, 1.0], seeds=2)
    accs = {("plain", 0): 0.2, ("plain", 1): 0.4, ("lcw", 0): 0.8, ("lcw", 1): 0.9}
    _run_all(store, accs, diverge=set())
    other = make_study(store, name="other", depths=[7])  # another study's rows never mix in
    _run_all(store, accs, diverge=set())
    curves = store.cell_curves(sid, depth=5, width=100, activation="sigmoid")
    assert [(r["method"], r["lr"], r["epoch"]) for r in curves] == [
        (m, lr, e) for m in ("lcw", "plain") for lr in (0.1, 1.0) for e in range(3)
    ]
    plain_last = next(r for r in curves if r["method"] == "plain" and r["epoch"] == 2)
    assert plain_last["n"] == 2
    assert plain_last["test_acc"] == pytest.approx(0.3)
    assert plain_last["train_loss"] == pytest.approx(2.0 - 2 * 0.3)
    assert store.cell_curves(sid, depth=7, width=100, activation="sigmoid") == []
    assert len(store.cell_curves(other, depth=7, width=100, activation="sigmoid")) == 6
    with pytest.raises(NotFoundError):
        store.cell_curves(10_000, depth=5, width=100, activation="sigmoid")


def test_cell_diagnostics_at_init_and_last_epoch_for_the_chosen_lrs(store: Store) -> None:
    sid = make_study(store, learning_rates=[0.1, 1.0], seeds=2)
    accs = {("plain", 0): 0.2, ("plain", 1): 0.4, ("lcw", 0): 0.8, ("lcw", 1): 0.9}
    _run_all(store, accs, diverge={0})  # plain lr 0.1 seed 0 diverged: still scored
    rows = store.cell_diagnostics(
        sid,
        depth=5,
        width=100,
        activation="sigmoid",
        settings={"plain": (0.1, 1.0), "lcw": (1.0, 1.0)},
    )
    assert [(r["method"], r["seed"], r["epoch"], r["last"]) for r in rows] == [
        (m, seed, e, e == 2) for m in ("lcw", "plain") for seed in (0, 1) for e in (0, 2)
    ]
    first = rows[0]
    assert [layer["shift"] for layer in first["layers"]] == pytest.approx([0.8, 1.6])
    assert store.cell_diagnostics(sid, depth=5, width=100, activation="sigmoid", settings={}) == []
    assert (
        store.cell_diagnostics(
            sid, depth=5, width=100, activation="relu", settings={"lcw": (1.0, 1.0)}
        )
        == []
    )
