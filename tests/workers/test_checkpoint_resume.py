"""Checkpoint and resume through the real queue (SQLite) and a real local Ray.

A trial (and a pack of two) with ``checkpoint_every: 1`` runs on a dispatcher whose
checkpoints go to a temporary directory; once its checkpoint of epoch 2 is on disk the Ray
worker process training it is SIGKILLed. The next attempt resumes from the latest checkpoint
(``run_info.resumed_from_epoch``), every epoch has exactly one metrics row, the final metrics
and each epoch's equal an uninterrupted ``lcw.train`` of the same config bit for bit, and the
checkpoint is gone once the trial completed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from wk_helpers import (
    Started,
    assert_one_row_per_epoch,
    study_spec,
    submit,
    trials_of,
    wait_study,
    wait_until,
)

import lcw
from lcw.checkpoint import Files, from_bytes
from service.store import Store
from workers.checkpoints import member_name

# About half a second per epoch here (batch 2: ~700 steps on digits), 5 epochs.
SPEC = study_spec(
    "checkpointed",
    methods=["lcw"],
    depths=[3],
    widths=[64],
    learning_rates=[0.03],
    epochs=5,
    batch_size=2,
    diagnostics=False,
    max_retries=2,
    checkpoint_every=1,
)
COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr")


def _saved_epoch(files: Files, name: str) -> int | None:
    data = files.read(name)
    return None if data is None else int(from_bytes(data)["epoch"])


def _reference(config: dict[str, Any]) -> lcw.TrialResult:
    threads = torch.get_num_threads()
    try:
        return lcw.train(config)
    finally:
        torch.set_num_threads(threads)


def _kill_after_second_checkpoint(
    store: Store, started: Started, sid: int, ckpt: Path, pack: int
) -> int:
    """SIGKILL the actor training the study once its checkpoint of epoch >= 2 exists; returns
    the epoch of the checkpoint left on disk."""
    d = started.dispatcher
    wait_until(lambda: len(d.running_trial_ids()) == pack, timeout=60, what="the run to start")
    ids = sorted(d.running_trial_ids())
    name = "+".join(member_name(sid, tid) for tid in ids) + ".pt"
    files = Files(str(ckpt))
    wait_until(
        lambda: (_saved_epoch(files, name) or 0) >= 2, timeout=60, interval=0.05,
        what="the checkpoint of epoch 2",
    )  # fmt: skip
    (pid,) = set(d.actor_pids().values())
    os.kill(pid, signal.SIGKILL)
    saved = _saved_epoch(files, name)
    assert saved is not None and saved >= 2
    return saved


def _assert_resumed_and_equal(store: Store, sid: int, saved: int, ckpt: Path) -> None:
    study = wait_study(store, sid, timeout=120)
    assert study.status == "completed", study.progress
    for trial in trials_of(store, sid):
        assert trial.status == "completed" and trial.attempt == 2
        assert trial.run_info["resumed_from_epoch"] == saved, trial.run_info
        assert_one_row_per_epoch(trial)
        assert len(trial.metrics) == SPEC["epochs"] + 1
        reference = _reference(trial.run_info["config"])
        assert trial.test_acc == reference.test_acc and trial.val_acc == reference.val_acc
        assert trial.train_loss == reference.train_loss
        stored = [{c: getattr(m, c) for c in COLUMNS} for m in trial.metrics]
        assert stored == [{c: e[c] for c in COLUMNS} for e in reference.epochs]
    assert list(ckpt.glob("*.pt")) == []  # deleted once the trials completed


@pytest.mark.parametrize("pack", [1, 2], ids=["alone", "packed"])
def test_a_killed_trial_resumes_from_its_checkpoint_bit_for_bit(
    dispatch: Callable[..., Started], store: Store, tmp_path: Path, pack: int
) -> None:
    ckpt = tmp_path / "checkpoints"
    started = dispatch(pack_size=pack, checkpoint_dir=str(ckpt))
    sid = submit(store, {**SPEC, "seeds": pack})
    saved = _kill_after_second_checkpoint(store, started, sid, ckpt, pack)
    _assert_resumed_and_equal(store, sid, saved, ckpt)
    assert started.dispatcher.stats["died"] == 1
