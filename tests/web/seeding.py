"""Seed studies for the web tests through the store's queue API, as a dispatcher would.

The numbers follow the shape of the measured results (README: the quick demo and the paper's
claims; deep unconstrained sigmoid nets do not train, LCW ones do; the activation shift
compounds with depth without LCW and the gradient vanishes towards the input), with a
deterministic per-seed jitter.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

from significance_study import seed_significance_study  # tests/cli, shared with its tests
from testkit import study_spec

from service.spec import plan_study
from service.store import ClaimedTrial, Store

OWNER = "web-test-worker"
EPOCHS = 5
FAIL_ERROR = (
    "Traceback (most recent call last):\n"
    '  File "workers/runner.py", line 130, in run\n'
    "    result = train(config, on_epoch=on_epoch)\n"
    "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed. <oom>"
)

MAIN_SPEC: dict[str, Any] = {
    "name": "deep-sigmoid-vs-relu",
    "description": "Does LCW make deep sigmoid MLPs trainable? 4 methods, 2 depths, 2 activations.",
    "dataset": "mnist5k",
    "model": "mlp",
    "methods": ["plain", "bn", "lcw", "bn_lcw"],
    "depths": [5, 20],
    "widths": [100],
    "activations": ["sigmoid", "relu"],
    "learning_rates": [0.01, 0.1, 1.0],
    "seeds": 3,
    "epochs": EPOCHS,
    "max_retries": 1,
}

# Final test accuracy at the best LR: (activation, depth) -> method -> accuracy.
_BASE = {
    ("sigmoid", 5): {"plain": 0.90, "bn": 0.93, "lcw": 0.92, "bn_lcw": 0.95},
    ("sigmoid", 20): {"plain": 0.11, "bn": 0.86, "lcw": 0.84, "bn_lcw": 0.91},
    ("relu", 5): {"plain": 0.94, "bn": 0.95, "lcw": 0.94, "bn_lcw": 0.96},
    ("relu", 20): {"plain": 0.83, "bn": 0.93, "lcw": 0.90, "bn_lcw": 0.94},
}
_LR_FACTOR = {0.01: 0.9, 0.1: 1.0, 1.0: 0.8}


@dataclass
class Seeded:
    """Ids of what was seeded."""

    main: int = 0
    failed_study: int = 0
    live: int = 0
    xss: int = 0
    significance: int = 0  # tests/cli/significance_study.py: every case of the star rule
    failed_trial: int = 0
    diverged_trial: int = 0
    live_trials: list[int] = field(default_factory=list)


def _jitter(*key: Any) -> float:
    """A deterministic value in [-1, 1) from `key`."""
    return (zlib.crc32(repr(key).encode()) % 2000) / 1000 - 1


def final_acc(c: ClaimedTrial) -> float:
    cfg = c.config
    base = _BASE.get((cfg["activation"], cfg["depth"]), {}).get(cfg["method"], 0.9)
    acc = 0.1 + (base - 0.1) * _LR_FACTOR.get(cfg["lr"], 0.9)
    return max(0.05, min(0.99, acc + 0.012 * _jitter(c.cell_key, cfg["lr"], c.seed)))


def _diagnostics(c: ClaimedTrial, epoch: int) -> dict[str, Any]:
    cfg = c.config
    depth, method, sigmoid = cfg["depth"], cfg["method"], cfg["activation"] == "sigmoid"
    constrained = method in ("lcw", "bn_lcw")
    growth = 1.0 if constrained else (1.55 if sigmoid else 1.12)
    decay = (0.93 if constrained else (0.3 if sigmoid else 0.8)) ** (1.0 + 0.1 * epoch)
    layers = []
    for i in range(1, depth + 1):
        j = 1 + 0.05 * _jitter(c.seed, i, epoch)
        shift = (0.6 if constrained else 0.8 * growth ** (i - 1)) * (1 - 0.05 * epoch) * j
        grad = 0.2 * decay ** (depth - i) * j
        layers.append(
            {
                "layer": i,
                "shift": shift,
                "abs_mean": shift * 0.8,
                "grad_norm": grad,
                "saturated": None,
            }
        )
    return {"layers": layers}


def epoch_rows(c: ClaimedTrial, acc: float, *, diverge_at: int | None = None) -> list[dict]:
    rows = []
    for e in range(EPOCHS + 1):
        frac = (1 - math.exp(-e / 1.4)) / (1 - math.exp(-EPOCHS / 1.4))
        test = 0.1 + (acc - 0.1) * frac
        loss = 2.3 - (2.3 + 0.9 * math.log(max(acc, 0.11))) * frac
        bad = diverge_at is not None and e >= diverge_at
        rows.append(
            {
                "epoch": e,
                "train_loss": float("nan") if bad else loss,
                "train_acc": None if bad else min(0.999, test + 0.03 * frac),
                "val_loss": None if bad else loss * 1.05,
                "val_acc": None if bad else test - 0.004,
                "test_loss": None if bad else loss * 1.06,
                "test_acc": None if bad else test,
                "seconds": 0.8,
                "samples_per_s": 4200.0,
                "lr": c.config["lr"],
                "diagnostics": _diagnostics(c, e),
            }
        )
    return rows


def _create(store: Store, spec: dict[str, Any]) -> int:
    parsed, trials = plan_study(spec, max_trials=5000)
    study, _ = store.create_study(parsed, trials)
    return study.id


def _result(acc: float) -> dict[str, Any]:
    return {
        "train_loss": 0.9 * -math.log(acc),
        "train_acc": min(0.999, acc + 0.03),
        "val_loss": 0.95 * -math.log(acc),
        "val_acc": acc - 0.004,
        "test_loss": -math.log(acc),
        "test_acc": acc,
    }


def seed(store: Store) -> Seeded:
    """The main study (run to the end, one trial failed, one diverged), a study whose trials
    all failed, one whose comparisons hit every case of the significance rules, a running
    study, and one whose name is markup."""
    out = Seeded()
    out.main = _create(store, MAIN_SPEC)
    trials = store.list_trials(out.main, limit=1000).data
    fail = next(
        t
        for t in trials
        if (t.method, t.depth, t.activation, t.lr, t.seed) == ("lcw", 5, "sigmoid", 0.01, 2)
    )
    diverge = next(
        t
        for t in trials
        if (t.method, t.depth, t.activation, t.lr, t.seed) == ("plain", 20, "relu", 1.0, 0)
    )
    out.failed_trial, out.diverged_trial = fail.id, diverge.id
    run_info = {"device": "cpu", "hostname": "web-test", "versions": {"lcw": "0.1.0"}}
    while claimed := store.claim_trials(OWNER, limit=500, lease_seconds=600):
        rows: list[tuple[int, dict[str, Any]]] = []
        done: list[tuple[ClaimedTrial, float]] = []
        for c in claimed:
            if c.id == fail.id:
                store.fail_trial_attempt(OWNER, c.id, error=FAIL_ERROR)
                continue
            acc = final_acc(c)
            diverge_at = 3 if c.id == diverge.id else None
            rows += [(c.id, m) for m in epoch_rows(c, acc, diverge_at=diverge_at)]
            done.append((c, acc))
        store.write_metrics(OWNER, rows)
        for c, acc in done:
            if c.id == diverge.id:
                result = {**_result(0.098), "train_loss": None, "diverged_epoch": 3}
                store.complete_trial(
                    OWNER, c.id, status="diverged", result=result, run_info=run_info
                )
            else:
                store.complete_trial(
                    OWNER, c.id, status="completed", result=_result(acc), run_info=run_info
                )

    out.failed_study = _create(
        store,
        study_spec(
            "vgg-on-missing-cifar",
            description="Every trial failed: the data directory was not mounted.",
            depths=None,
            max_retries=0,
        ),
    )
    for c in store.claim_trials(OWNER, limit=10, lease_seconds=600):
        store.fail_trial_attempt(
            OWNER, c.id, error="FileNotFoundError: $LCW_DATA_DIR/cifar10/data_batch_1 is missing"
        )

    out.significance = seed_significance_study(store, owner=OWNER)

    out.live = _create(store, study_spec("live-progress", depths=[5], seeds=2, epochs=EPOCHS))
    out.live_trials = [c.id for c in store.claim_trials(OWNER, limit=10, lease_seconds=3600)]

    out.xss = _create(
        store,
        study_spec(
            "<script>alert(1)</script>",
            description='<img src=x onerror="alert(2)"> & friends',
            depths=None,
        ),
    )
    return out


def finish_live_trial(store: Store, trial_id: int) -> None:
    """Complete one of the running study's trials (as the dispatcher would)."""
    trial = store.get_trial(trial_id)
    claimed = ClaimedTrial(
        id=trial.id,
        study_id=trial.study_id,
        index=trial.index,
        attempt=trial.attempt,
        config=trial.config,
        cell_key=trial.cell_key,
        slot=trial.slot,
        seed=trial.seed,
        max_retries=trial.max_retries,
        timeout_s=None,
        resources={},
        lr_search=None,
        scheduler=None,
    )
    acc = final_acc(claimed)
    store.write_metrics(OWNER, [(trial.id, m) for m in epoch_rows(claimed, acc)])
    store.complete_trial(OWNER, trial.id, status="completed", result=_result(acc), run_info={})
