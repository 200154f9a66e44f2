"""Packed trials through the real queue and a real local Ray (``workers.packing``).

Trials of a study that differ only in learning rate and seed train as one fused model on one
actor, yet a user sees ordinary trials: one metrics row per epoch each, their own status and
run info (with the pack), the same numbers as the trials run alone, a diverged member next to
pack-mates that complete, cancellation that stops the pack, a dead actor that fails (and
reruns) every member, and ``LCW_PACK_SIZE=1`` for unpacked runs.
"""

from __future__ import annotations

import math
import os
import signal
from typing import Any

import pytest
from wk_helpers import (
    Shared,
    assert_one_row_per_epoch,
    study_spec,
    submit,
    trials_of,
    wait_study,
    wait_until,
)

from service.config import Settings
from workers import packing
from workers.entry import dispatcher_from_settings

SPEC = study_spec(
    "packed",
    methods=["plain", "bn"],
    learning_rates=[0.1, 0.03],
    seeds=2,
    epochs=3,
    diagnostics=False,
)


def _packs(trials: list[Any]) -> dict[int, list[int]]:
    return {t.id: t.run_info.get("pack_trial_ids", [t.id]) for t in trials}


def _close(a: float | None, b: float | None, *, rel: float) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and math.isclose(a, b, rel_tol=rel)
    )


def test_a_packed_study_equals_its_unpacked_run(shared: Shared) -> None:
    store = shared.store
    wait_until(shared.idle, timeout=60, what="an idle dispatcher")
    packed = wait_study(store, submit(store, SPEC), timeout=120)
    assert packed.status == "completed"
    trials = trials_of(store, packed.id)
    # 8 trials in 2 groups (method) of 4 on 2 idle actors: 2 packs of 4, one per method.
    for t in trials:
        assert t.status == "completed"
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == SPEC["epochs"] + 1
        info = t.run_info
        assert info["pack_size"] == 4 and t.id in info["pack_trial_ids"]
        assert {m.method for m in trials if m.id in info["pack_trial_ids"]} == {t.method}
        assert info["config"]["lr"] == t.lr and info["seed"] == t.seed
        assert 0 < info["compute_seconds"] < info["pack_compute_seconds"]
        assert t.result["env"]["pack_size"] == 4
    assert len({tuple(ids) for ids in _packs(trials).values()}) == 2

    # The same spec with the study's packing switched off: every trial alone, the same numbers.
    alone_spec = {**SPEC, "name": "alone", "packing": False}
    alone = wait_study(store, submit(store, alone_spec), timeout=120)
    singles = trials_of(store, alone.id)
    assert all("pack_size" not in t.run_info for t in singles)
    assert all(t.result["env"].get("pack_size", 1) == 1 for t in singles)
    one_sample = {"val_acc": 1 / 180, "test_acc": 1 / 360}  # digits: accuracies are k / N
    for p, s in zip(trials, singles, strict=True):
        assert (p.method, p.lr, p.seed) == (s.method, s.lr, s.seed)
        for mp, ms in zip(p.metrics, s.metrics, strict=True):
            assert _close(mp.train_loss, ms.train_loss, rel=1e-4), (p.id, mp.epoch)
            assert _close(mp.val_loss, ms.val_loss, rel=1e-4), (p.id, mp.epoch)
        for acc, step in one_sample.items():  # equal, or one sample apart at a near-tie
            assert abs(getattr(p, acc) - getattr(s, acc)) <= step * 1.001, (p.id, acc)
    a, b = store.summary(packed.id), store.summary(alone.id)
    for ca, cb in zip(a.cells, b.cells, strict=True):
        assert (ca.method, ca.best_lr, ca.n) == (cb.method, cb.best_lr, cb.n)
        assert _close(ca.val_acc_mean, cb.val_acc_mean, rel=1e-4)
        assert _close(ca.test_acc_mean, cb.test_acc_mean, rel=1e-4)


def test_a_diverged_member_ends_diverged_while_its_pack_mates_complete(shared: Shared) -> None:
    store = shared.store
    wait_until(shared.idle, timeout=60, what="an idle dispatcher")
    # 4 trials, 2 idle actors: packs (0.1, 1e3) and (0.03, 0.3), in index order.
    spec = {**SPEC, "methods": ["plain"], "learning_rates": [0.1, 1e3, 0.03, 0.3], "seeds": 1}
    study = wait_study(store, submit(store, spec), timeout=120)
    assert study.status == "completed"
    trials = {t.lr: t for t in trials_of(store, study.id)}
    bad = trials[1e3]
    assert bad.status == "diverged" and bad.attempt == 1
    assert bad.result["diverged_epoch"] == 1
    assert [m.epoch for m in bad.metrics] == [0, 1]  # frozen at its divergence
    assert bad.run_info["pack_size"] == 2
    mates = [t for t in trials.values() if t.id in bad.run_info["pack_trial_ids"] and t != bad]
    assert [t.lr for t in mates] == [0.1]
    for t in mates:
        assert t.status == "completed"
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == spec["epochs"] + 1


def test_cancelling_a_study_stops_its_packs(shared: Shared) -> None:
    store, d = shared.store, shared.dispatcher
    wait_until(shared.idle, timeout=60, what="an idle dispatcher")
    spec = {
        "name": "long packs",
        "dataset": "mnist5k",
        "methods": ["lcw"],
        "depths": [20],
        "learning_rates": [0.1, 0.03],
        "seeds": 2,
        "epochs": 40,
        "diagnostics": False,
    }
    sid = submit(store, spec)
    wait_until(
        lambda: sum(bool(t.metrics) for t in trials_of(store, sid)) == 4,
        timeout=60,
        what="two packs of two to report epoch 0",
    )
    assert len(d.running_trial_ids()) == 4
    assert sorted(len(w.trials) for w in d._workers) == [2, 2]
    store.cancel_study(sid)
    wait_until(
        lambda: not d.held_trial_ids() and not d.running_trial_ids(),
        timeout=10,
        what="the dispatcher to stop the cancelled packs",
    )
    study = store.get_study(sid)
    assert study.status == "cancelled" and study.progress.cancelled == 4


def test_a_dead_pack_fails_every_member_and_they_rerun(shared: Shared) -> None:
    store, d = shared.store, shared.dispatcher
    wait_until(shared.idle, timeout=60, what="an idle dispatcher")
    # 4 trials, one group, 2 idle actors: 2 packs of 2.
    spec = {**SPEC, "dataset": "mnist5k", "methods": ["lcw"], "depths": [10], "epochs": 4}
    sid = submit(store, spec)
    wait_until(lambda: len(d.running_trial_ids()) == 4, timeout=60, what="the packs to start")
    first = trials_of(store, sid)[0].id
    # Epoch 0 as the dispatcher has it (the database may see it up to a second later).
    wait_until(lambda: 0 in d.epochs_received(first), timeout=60, what="epoch 0")
    pids = d.actor_pids()
    victim = pids[first]
    members = [tid for tid, pid in pids.items() if pid == victim]
    assert len(members) == 2
    os.kill(victim, signal.SIGKILL)
    study = wait_study(store, sid, timeout=120)
    assert study.status == "completed"
    for t in trials_of(store, sid):
        assert t.status == "completed"
        assert t.attempt == (2 if t.id in members else 1)
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == spec["epochs"] + 1


def test_lcw_pack_size_1_switches_packing_off(
    shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LCW_PACK_SIZE", "1")
    settings = Settings(database_url=shared.db_url, migrate_on_start=False)
    assert settings.pack_size == 1
    assert dispatcher_from_settings(settings).pack_size == 1
    monkeypatch.delenv("LCW_PACK_SIZE")
    assert Settings().pack_size is None  # automatic


def test_pack_size_rule() -> None:
    from lcw.trainer import EVAL_BATCH

    assert packing.EVAL_BATCH == EVAL_BATCH
    mlp = {"dataset": "digits", "model": "mlp", "depth": 5, "width": 100, "batch_size": 100}
    # Caps: 16 on a CPU, 64 on a GPU; LCW_PACK_SIZE overrides; 1 is off.
    kw: dict[str, Any] = {"free_bytes": None, "sharing": 1, "member_seconds": None}
    assert packing.pack_limit(mlp, gpu=False, cap=None, **kw) == 16
    assert packing.pack_limit(mlp, gpu=True, cap=None, **kw) == 64
    assert packing.pack_limit(mlp, gpu=False, cap=4, **kw) == 4
    assert packing.pack_limit(mlp, gpu=False, cap=1, **kw) == 1
    # Memory: half the free memory, shared by the actors on the device.
    need = packing.member_bytes(mlp)
    assert 1e5 < need < 1e8
    kw.update(free_bytes=10 * need / packing.MEMORY_FRACTION, sharing=2)
    assert packing.pack_limit(mlp, gpu=True, cap=None, **kw) == 5
    # Cost (CPU): a pack should finish within PACK_TARGET_S.
    kw.update(free_bytes=None, sharing=1, member_seconds=packing.PACK_TARGET_S / 3)
    assert packing.pack_limit(mlp, gpu=False, cap=None, **kw) == 3
    assert packing.pack_limit(mlp, gpu=True, cap=None, **kw) == 64
    # Fairness: never more than ceil(waiting / idle actors).
    assert [packing.fair_share(n, 2) for n in (1, 2, 3, 8, 64)] == [1, 1, 2, 4, 32]
    vgg = {"dataset": "synthetic", "model": "vgg11", "batch_size": 128}
    assert packing.member_bytes(vgg) > 50 * need
    # Keys: lr and seed may differ, nothing else; never across studies.
    assert packing.group_key(1, {**mlp, "lr": 0.1, "seed": 0}) == packing.group_key(
        1, {**mlp, "lr": 0.3, "seed": 4}
    )
    assert packing.group_key(1, mlp) != packing.group_key(2, mlp)
    assert packing.group_key(1, mlp) != packing.group_key(1, {**mlp, "depth": 6})


def test_group_key_is_lcws_pack_key_and_packing_stays_torch_free() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from lcw import catalog
    from lcw.config import TrialConfig, pack_key

    cfg = TrialConfig(depth=3, width=16).to_dict()
    other_member = TrialConfig(depth=3, width=16, lr=0.5, seed=3)
    assert packing.group_key(7, cfg) == f"7:{pack_key(cfg)}" == f"7:{pack_key(other_member)}"
    # Sizes are the catalog's counts: lcw's hidden layers have no bias, plain's have.
    lcw_cfg = {"dataset": "digits", "model": "mlp", "method": "lcw", "depth": 2, "width": 10}
    plain_cfg = {**lcw_cfg, "method": "plain"}
    assert packing._layer_sizes(lcw_cfg) == catalog.model_size(
        "mlp", input_shape=(1, 8, 8), num_classes=10, method="lcw", depth=2, width=10
    )
    assert packing._layer_sizes(plain_cfg)[0] - packing._layer_sizes(lcw_cfg)[0] == 2 * 10
    check = (
        "import sys, workers.packing as p; "
        "p.member_bytes({'dataset': 'synthetic', 'model': 'vgg11', 'method': 'bn'}); "
        "assert 'torch' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", check], cwd=root, check=True, timeout=60)
