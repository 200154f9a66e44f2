"""The queue's side of checkpoints: a study's ``checkpoint_every`` reaches the claim, and a
claim that keeps metrics lets each attempt replace exactly the epochs it re-runs.

``attempt_start`` on an attempt's first row (epoch 0 for a fresh start, E + 1 after resuming
from the checkpoint of epoch E) deletes the trial's stored rows from that epoch on; the rows
before it, which a resumed attempt does not re-run, stay. Bad settings: an unsupported scheme in
``LCW_CHECKPOINT_DIR`` stops the process at startup, naming the setting and what is allowed.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from svc_helpers import make_study

from service.config import Settings
from service.store import Store


def _rows(store: Store, tid: int) -> list[tuple[int, float | None]]:
    return [(m.epoch, m.val_acc) for m in store.get_trial(tid).metrics]


def test_checkpoint_every_reaches_the_claim(store: Store) -> None:
    make_study(store, methods=["lcw"], seeds=1, checkpoint_every=3)
    make_study(store, methods=["lcw"], seeds=1, name="auto")
    every = [c.checkpoint_every for c in store.claim_trials("w", limit=2, lease_seconds=60)]
    assert every == [3, None]


def test_an_attempt_replaces_only_the_epochs_it_reruns(store: Store) -> None:
    make_study(store, methods=["lcw"], seeds=1, max_retries=3)
    [c] = store.claim_trials("w1", limit=1, lease_seconds=60, keep_metrics=True)
    first = [(c.id, {"epoch": e, "val_acc": 0.1 * e}) for e in range(4)]
    first[0][1]["attempt_start"] = True
    assert store.write_metrics("w1", first) == 4
    assert store.fail_trial_attempt("w1", c.id, error="killed") == "pending"
    # The next attempt resumed from the checkpoint of epoch 1: epochs 0 and 1 stay, 2 and 3
    # are replaced by what it runs; its result repeats every epoch (ignored where stored).
    [again] = store.claim_trials("w2", limit=1, lease_seconds=60, keep_metrics=True)
    assert again.attempt == 2 and _rows(store, c.id) == [(e, 0.1 * e) for e in range(4)]
    assert store.write_metrics("w2", [(c.id, {"epoch": 2, "val_acc": 0.5, "attempt_start": True})])
    assert _rows(store, c.id) == [(0, 0.0), (1, 0.1), (2, 0.5)]
    rest = [(c.id, {"epoch": e, "val_acc": v}) for e, v in ((0, 9.0), (1, 9.0), (3, 0.6), (4, 0.7))]
    assert store.write_metrics("w2", rest) == 2
    assert _rows(store, c.id) == [(0, 0.0), (1, 0.1), (2, 0.5), (3, 0.6), (4, 0.7)]
    assert store.fail_trial_attempt("w2", c.id, error="killed") == "pending"
    # A fresh start (no checkpoint) replaces every row, also those of an earlier attempt that
    # came first in the same batch.
    store.claim_trials("w3", limit=1, lease_seconds=60, keep_metrics=True)
    fresh = [(c.id, {"epoch": 4, "val_acc": 1.0}), (c.id, {"epoch": 0, "val_acc": 0.2,
             "attempt_start": True}), (c.id, {"epoch": 1, "val_acc": 0.3})]  # fmt: skip
    assert store.write_metrics("w3", fresh) == 2
    assert _rows(store, c.id) == [(0, 0.2), (1, 0.3)]


def test_a_claim_without_keep_metrics_still_starts_over(store: Store) -> None:
    make_study(store, methods=["lcw"], seeds=1)
    [c] = store.claim_trials("w1", limit=1, lease_seconds=60)
    store.write_metrics("w1", [(c.id, {"epoch": 0, "val_acc": 0.1})])
    store.fail_trial_attempt("w1", c.id, error="x")
    store.claim_trials("w1", limit=1, lease_seconds=60)
    assert _rows(store, c.id) == []


def test_an_unsupported_checkpoint_scheme_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LCW_CHECKPOINT_DIR", "ftpx://host/ckpt")
    with pytest.raises(ValidationError) as info:
        Settings()
    text = str(info.value)
    assert "LCW_CHECKPOINT_DIR" in text and "unsupported scheme 'ftpx'" in text
    assert "a local path" in text and "s3" in text and "file" in text
    monkeypatch.setenv("LCW_CHECKPOINT_DIR", "memory://bucket/ckpt")
    assert Settings().effective_checkpoint_dir == "memory://bucket/ckpt"
    monkeypatch.delenv("LCW_CHECKPOINT_DIR")
    assert Settings(data_home="/srv/lcw").effective_checkpoint_dir == "/srv/lcw/checkpoints"
