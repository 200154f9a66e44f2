"""Contract test of the queue API (service.store.Store) on SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest
from svc_helpers import make_study, result

from service.errors import ConflictError, NotFoundError
from service.store import ClaimedTrial, SlotHistory, Store

RUN_INFO = {"versions": {"lcw": "0.1.0"}, "device": "cpu", "node": "test"}


def test_claim_shares_the_workers_across_studies_in_index_order(store: Store) -> None:
    first = make_study(store)
    second = make_study(store, name="second")
    claimed = store.claim_trials("w1", limit=5, lease_seconds=60)
    # One owner (none), two studies: the slots alternate, the older study first; each
    # study's trials in index order.
    assert [(c.study_id, c.index) for c in claimed] == [
        (first, 0),
        (second, 0),
        (first, 1),
        (second, 1),
        (first, 2),
    ]
    c = claimed[0]
    assert isinstance(c, ClaimedTrial)
    assert c.attempt == 1 and c.seed == 0 and c.slot is None and c.cell_key == "plain|5|100|sigmoid"
    assert c.config["method"] == "plain" and c.config["lr"] == 0.1
    assert c.max_retries == 2 and c.resources == {"cpu": 1.0, "gpu": 0.0}
    assert c.lr_search is None and c.scheduler is None
    assert store.get_study(first).status == "running"
    assert store.get_study(first).progress.running == 3
    assert store.get_study(second).progress.pending == 2
    assert store.get_study(first).started_at is not None


def test_two_claimers_never_get_the_same_trial(store: Store) -> None:
    make_study(
        store, methods=["plain", "bn", "lcw", "bn_lcw"], learning_rates=[0.01, 0.1, 1.0], seeds=5
    )  # 60 trials
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    barrier = threading.Barrier(len(got))

    def claimer(owner: str) -> None:
        barrier.wait()
        while batch := store.claim_trials(owner, limit=2, lease_seconds=60):
            got[owner] += [c.id for c in batch]

    threads = [threading.Thread(target=claimer, args=(o,)) for o in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [i for batch in got.values() for i in batch]
    assert len(ids) == 60 and len(set(ids)) == 60


def test_renew_cancel_and_stale_owner(store: Store) -> None:
    sid = make_study(store)
    ids = [c.id for c in store.claim_trials("w1", limit=2, lease_seconds=60)]
    assert store.renew_leases("w1", ids, lease_seconds=60) == set(ids)
    assert store.renew_leases("w2", ids, lease_seconds=60) == set()  # not its trials
    assert store.cancelled_or_gone(ids) == set()
    study = store.cancel_study(sid)
    assert study.status == "cancelled" and study.progress.cancelled == 4
    assert store.renew_leases("w1", ids, lease_seconds=60) == set()  # the worker stops them
    assert store.cancelled_or_gone([*ids, 10_000]) == {*ids, 10_000}
    assert not store.complete_trial(
        "w1", ids[0], status="completed", result=result(0.9, 0.9), run_info=RUN_INFO
    )
    assert store.claim_trials("w1", limit=10, lease_seconds=60) == []
    with pytest.raises(ConflictError):
        store.cancel_study(sid)


def test_expired_leases_are_reclaimed_and_the_stale_owner_refused(store: Store) -> None:
    sid = make_study(store, methods=["lcw"], seeds=1)
    [old] = store.claim_trials("w1", limit=1, lease_seconds=-1)  # expired at once
    assert store.write_metrics("w1", [(old.id, {"epoch": 0, "val_acc": 0.1})]) == 1
    assert store.release_expired() == 1
    trial = store.get_trial(old.id)
    assert trial.status == "pending" and "lease expired: worker w1" in (trial.error or "")
    [new] = store.claim_trials("w2", limit=1, lease_seconds=60)
    assert new.id == old.id and new.attempt == 2
    assert store.get_trial(old.id).metrics == []  # a re-run starts over
    # The first worker wakes up: none of its writes land.
    assert store.write_metrics("w1", [(old.id, {"epoch": 1, "val_acc": 0.5})]) == 0
    assert not store.complete_trial(
        "w1", old.id, status="completed", result=result(0.5, 0.5), run_info=RUN_INFO
    )
    assert store.fail_trial_attempt("w1", old.id, error="boom") == "running"
    assert store.renew_leases("w1", [old.id], lease_seconds=60) == set()
    assert store.release_expired() == 0  # w2's lease is live
    assert store.complete_trial(
        "w2", old.id, status="completed", result=result(0.8, 0.7), run_info=RUN_INFO
    )
    assert store.get_study(sid).status == "completed"


def test_expired_lease_on_the_last_attempt_fails_the_trial(store: Store) -> None:
    sid = make_study(store, methods=["lcw"], seeds=1, max_retries=0)
    store.claim_trials("w1", limit=1, lease_seconds=-1)
    assert store.release_expired() == 1
    assert store.list_trials(sid).data[0].status == "failed"
    assert store.get_study(sid).status == "failed"


def test_duplicate_epochs_are_ignored(store: Store) -> None:
    make_study(store)
    a, b = store.claim_trials("w1", limit=2, lease_seconds=60)
    diag = {
        "layers": [{"layer": 0, "shift": 0.5, "abs_mean": 0.1, "grad_norm": 1e-3, "saturated": 0.0}]
    }
    rows = [
        (a.id, {"epoch": 0, "val_acc": 0.1, "diagnostics": diag}),
        (a.id, {"epoch": 1, "val_acc": 0.5, "train_loss": math.nan, "lr": 0.1}),
        (b.id, {"epoch": 0, "val_acc": 0.2}),
    ]
    assert store.write_metrics("w1", rows) == 3
    assert (
        store.write_metrics(
            "w1",
            [
                (a.id, {"epoch": 1, "val_acc": 0.9}),
                (a.id, {"epoch": 2, "val_acc": 0.7}),
                (a.id, {"epoch": 2, "val_acc": 0.8}),
            ],
        )
        == 1
    )
    metrics = store.get_trial(a.id).metrics
    assert [(m.epoch, m.val_acc) for m in metrics] == [(0, 0.1), (1, 0.5), (2, 0.7)]
    assert metrics[0].diagnostics == diag
    assert metrics[1].train_loss is None and metrics[1].lr == 0.1  # NaN is stored as null
    assert store.write_metrics("w2", [(b.id, {"epoch": 1})]) == 0


def test_retries_then_failed(store: Store) -> None:
    sid = make_study(store, methods=["lcw"], seeds=1, max_retries=2)
    outcomes = []
    for attempt in (1, 2, 3):
        [c] = store.claim_trials("w1", limit=1, lease_seconds=60)
        assert c.attempt == attempt
        outcomes.append(store.fail_trial_attempt("w1", c.id, error=f"error {attempt}"))
    assert outcomes == ["pending", "pending", "failed"]
    [trial] = store.list_trials(sid).data
    assert trial.status == "failed" and trial.error == "error 3" and trial.attempt == 3
    assert store.claim_trials("w1", limit=1, lease_seconds=60) == []
    study = store.get_study(sid)
    assert study.status == "failed" and study.finished_at is not None
    with pytest.raises(NotFoundError):
        store.fail_trial_attempt("w1", 999_999, error="x")


def test_study_status_follows_its_trials(store: Store) -> None:
    sid = make_study(store)
    assert store.get_study(sid).status == "queued"
    claimed = store.claim_trials("w1", limit=4, lease_seconds=60)
    statuses = ["completed", "diverged", "stopped_early"]
    for c, status in zip(claimed, statuses, strict=False):
        extra = {"train_loss": math.inf} if status == "diverged" else {}
        assert store.complete_trial(
            "w1", c.id, status=status, result=result(0.5, 0.4, **extra), run_info=RUN_INFO
        )
        assert store.get_study(sid).status == "running"
    store.fail_trial_attempt("w1", claimed[3].id, error="x")  # back to pending, study running
    assert store.get_study(sid).status == "running"
    [again] = store.claim_trials("w1", limit=1, lease_seconds=60)
    assert store.complete_trial(
        "w1", again.id, status="completed", result=result(0.6, 0.5), run_info=RUN_INFO
    )
    study = store.get_study(sid)
    assert study.status == "completed" and study.finished_at is not None
    assert Counter(t.status for t in store.list_trials(sid).data) == {
        "completed": 2,
        "diverged": 1,
        "stopped_early": 1,
    }
    diverged = store.get_trial(claimed[1].id)
    assert diverged.test_acc == 0.4 and diverged.train_loss is None
    assert diverged.result is not None and diverged.result["train_loss"] is None
    assert diverged.run_info == RUN_INFO
    with pytest.raises(ValueError, match="status"):
        store.complete_trial("w1", again.id, status="failed", result={}, run_info={})


def test_lr_search_slots(store: Store) -> None:
    sid = make_study(
        store,
        methods=["lcw"],
        learning_rates=None,
        seeds=3,
        lr_search={"low": 1e-3, "high": 1.0, "trials_per_cell": 2},
    )
    claimed = store.claim_trials("w1", limit=6, lease_seconds=60)
    assert [(c.slot, c.seed, c.config["lr"]) for c in claimed] == [
        (0, 0, None),
        (0, 1, None),
        (0, 2, None),
        (1, 0, None),
        (1, 1, None),
        (1, 2, None),
    ]
    assert claimed[0].lr_search == {
        "low": 1e-3,
        "high": 1.0,
        "trials_per_cell": 2,
        "sampler": "tpe",
        "log": True,
        "init_scale": None,
    }
    cell = claimed[0].cell_key
    assert store.slot_setting(sid, cell, 0) is None
    store.assign_lr(sid, cell, 0, 0.05)
    store.assign_lr(sid, cell, 0, 0.5)  # never overwrites
    assert store.slot_setting(sid, cell, 0) == (0.05, 1.0)
    trials = store.list_trials(sid).data
    assert [(t.slot, t.lr, t.config["lr"]) for t in trials[:3]] == [(0, 0.05, 0.05)] * 3
    assert trials[3].lr is None and trials[3].config["lr"] is None
    for c, acc in zip(claimed[:2], (0.6, 0.8), strict=True):
        store.complete_trial(
            "w1", c.id, status="completed", result=result(acc, acc), run_info=RUN_INFO
        )
    history = store.lr_history(sid, cell)
    assert (history[0].slot, history[0].lr, history[0].init_scale) == (0, 0.05, 1.0)
    assert history[0].mean_val_acc == pytest.approx(0.7)
    assert history[0].statuses == {"completed": 2, "running": 1} and not history[0].finished
    assert history[1] == SlotHistory(1, None, None, None, {"running": 3})
    with pytest.raises(ValueError):
        store.assign_lr(sid, cell, 1, -1.0)


def test_delete_only_finished_studies(store: Store) -> None:
    sid = make_study(store)
    [c] = store.claim_trials("w1", limit=1, lease_seconds=60)
    store.write_metrics("w1", [(c.id, {"epoch": 0})])
    with pytest.raises(ConflictError):
        store.delete_study(sid)
    store.cancel_study(sid)
    store.delete_study(sid)
    with pytest.raises(NotFoundError):
        store.get_study(sid)
    with pytest.raises(NotFoundError):
        store.get_trial(c.id)
    assert store.cancelled_or_gone([c.id]) == {c.id}
    assert store.counts_by_status() == ({}, {})


def test_release_trials_gives_back_without_using_an_attempt(store: Store) -> None:
    sid = make_study(store, methods=["lcw"], seeds=2)
    a, b = store.claim_trials("w1", limit=2, lease_seconds=60)
    assert store.release_trials("w2", [a.id, b.id]) == 0  # not its trials
    assert store.release_trials("w1", [a.id]) == 1
    trial = store.get_trial(a.id)
    assert trial.status == "pending" and trial.attempt == 0 and trial.lease_owner is None
    assert store.get_study(sid).status == "running"
    [again] = store.claim_trials("w2", limit=1, lease_seconds=60)
    assert again.id == a.id and again.attempt == 1


def test_assign_lr_returns_the_slot_setting_whoever_assigned_it(store: Store) -> None:
    sid = make_study(
        store, methods=["lcw"], depths=[2], learning_rates=None, seeds=2,
        lr_search={"low": 1e-3, "high": 1.0, "trials_per_cell": 2},
    )  # fmt: skip
    [c] = store.claim_trials("w1", limit=1, lease_seconds=60)
    assert store.assign_lr(sid, c.cell_key, 0, 0.05) == (0.05, 1.0)
    # A second worker's proposal loses: it gets the first one's setting back, in one call.
    assert store.assign_lr(sid, c.cell_key, 0, 0.5) == (0.05, 1.0)
    assert store.slot_setting(sid, c.cell_key, 0) == (0.05, 1.0)
