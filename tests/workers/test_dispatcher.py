"""The dispatcher on a real local Ray and a real SQLite queue: what a user of a study sees.

Grid and lr_search studies complete with one metrics row per epoch and the run info needed to
rerun them; ASHA stops weak trials early and keeps their metrics; cancellation frees the actors
within 10 s whether the trial stops at an epoch boundary or has to be killed; a timeout and a
SIGKILLed actor are failed attempts; a dispatcher that shuts down gives its trials back.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import defaultdict
from typing import Any

import pytest
from fastapi.testclient import TestClient
from wk_helpers import (
    DIGITS,
    LONG,
    Shared,
    assert_one_row_per_epoch,
    submit,
    trials_of,
    wait_study,
    wait_until,
)

from service.config import Settings
from service.main import create_app

# These tests count trials on actors one at a time; test_packing.py runs the same paths packed.
DISPATCHER_OPTIONS = {"pack_size": 1}


def test_grid_study_completes_with_metrics_and_run_info(shared: Shared) -> None:
    import ray

    store = shared.store
    study = wait_study(store, submit(store, DIGITS), timeout=120)
    assert study.status == "completed"
    trials = trials_of(store, study.id)
    assert [t.status for t in trials] == ["completed", "completed"]
    node_ids = {n["NodeID"] for n in ray.nodes()}
    for t in trials:
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == DIGITS["epochs"] + 1  # epoch 0 is the evaluation at init
        info = t.run_info
        assert info["config"]["lr"] == 0.1 and info["config"]["method"] == t.method
        assert info["config"]["device"] == "cpu" and info["config"]["threads"] == 1
        assert info["seed"] == t.seed and info["attempt"] == 1
        assert {"torch", "ray", "optuna", "lcw_sweep", "python"} <= set(info["versions"])
        assert info["versions"]["ray"] == ray.__version__
        assert info["device"] == "cpu" and info["device_name"]
        assert info["node_id"] in node_ids
        assert info["hostname"] == socket.gethostname()
        assert info["compute_seconds"] > 0
        assert t.test_acc is not None and t.test_acc == t.metrics[-1].test_acc


def test_lr_search_gives_every_cell_its_budget_of_lrs(shared: Shared) -> None:
    store = shared.store
    low, high, per_cell, seeds = 1e-3, 0.5, 4, 2
    spec = {
        **DIGITS,
        "name": "search",
        "learning_rates": None,
        "lr_search": {
            "low": low,
            "high": high,
            "trials_per_cell": per_cell,
            "init_scale": {"low": 0.5, "high": 2.0},  # searched with the LR, same budget
        },
        "seeds": seeds,
    }
    del spec["learning_rates"]
    study = wait_study(store, submit(store, spec), timeout=180)
    assert study.status == "completed"
    cells: dict[str, list[Any]] = defaultdict(list)
    for t in store.list_trials(study.id, limit=1000).data:
        cells[t.cell_key].append(t)
    assert len(cells) == len(spec["methods"])
    summary = {c.method: c for c in store.summary(study.id).cells}
    for cell_key, trials in cells.items():
        assert len(trials) == per_cell * seeds
        by_slot: dict[int, set[tuple[float, float]]] = defaultdict(set)
        for t in trials:
            assert t.lr is not None and low <= t.lr <= high
            assert t.init_scale is not None and 0.5 <= t.init_scale <= 2.0
            assert (t.config["lr"], t.config["init_scale"]) == (t.lr, t.init_scale)
            by_slot[t.slot].add((t.lr, t.init_scale))
        assert sorted(by_slot) == list(range(per_cell))
        # The seeds of a slot share its setting (lr and init scale).
        assert all(len(settings) == 1 for settings in by_slot.values())
        cell_settings = {s for settings in by_slot.values() for s in settings}
        assert len(cell_settings) == per_cell
        best = summary[trials[0].method]
        assert (best.best_lr, best.best_init_scale) in cell_settings
        history = store.lr_history(study.id, cell_key)
        assert [(h.slot, (h.lr, h.init_scale)) for h in history] == [
            (slot, next(iter(by_slot[slot]))) for slot in range(per_cell)
        ]


def test_asha_stops_weak_settings_over_all_their_seeds_and_keeps_their_metrics(
    shared: Shared,
) -> None:
    store = shared.store
    spec = {
        **DIGITS,
        "name": "asha",
        "methods": ["plain"],
        "depths": [5],
        # Strong LRs first: they set the bar that the weak ones then fail at the rungs.
        "learning_rates": [0.1, 0.3, 0.03, 3e-4, 1e-4, 5e-5],
        "seeds": 2,
        "epochs": 6,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    }
    study = wait_study(store, submit(store, spec), timeout=240)
    assert study.status == "completed"
    trials = trials_of(store, study.id)
    stopped = [t for t in trials if t.status == "stopped_early"]
    assert len(stopped) >= 2, [(t.lr, t.status) for t in trials]
    assert any(t.status == "completed" for t in trials)
    by_lr: dict[float, list[Any]] = defaultdict(list)
    for t in trials:
        by_lr[t.lr].append(t)

    def mean_at(lr: float, epoch: int) -> float:
        values = [{m.epoch: m.val_acc for m in t.metrics}.get(epoch) for t in by_lr[lr]]
        return sum(v if v is not None else -1.0 for v in values) / len(values)

    for t in trials:
        assert_one_row_per_epoch(t)
        last = t.metrics[-1].epoch
        if t.status == "stopped_early":
            assert last in (1, 2, 4)  # stopped exactly at a rung, its metrics kept
            assert t.val_acc == t.metrics[-1].val_acc
            # ...because its setting, judged on the mean of *both* seeds at a rung at or
            # before this one, was below another setting's mean there (the top 1/2 go on).
            assert any(
                mean_at(o, rung) > mean_at(t.lr, rung)
                for rung in (1, 2, 4)
                if rung <= last
                for o in by_lr
                if o != t.lr and all(rung in {m.epoch for m in x.metrics} for x in by_lr[o])
            ), (t.lr, last)
        else:
            assert last == spec["epochs"]
    # Seeds stay paired: a setting whose seed was stopped is never the chosen one, and the
    # summary's means hold only trials that ran the whole budget.
    [cell] = store.summary(study.id).cells
    assert all(t.status == "completed" for t in by_lr[cell.best_lr])
    assert cell.stopped_early == len(stopped)
    assert cell.n == 2
    for entry in cell.lrs:
        full = [t for t in by_lr[entry.lr] if t.status == "completed"]
        assert entry.n == len(full) and entry.stopped_early == len(by_lr[entry.lr]) - len(full)


@pytest.mark.parametrize(
    "batch_size",
    [
        pytest.param(100, id="stops-at-epoch-boundary"),
        # 2,000 steps per epoch: no boundary within the grace period, the actor is killed.
        pytest.param(2, id="killed-mid-epoch"),
    ],
)
def test_cancel_stops_running_trials_within_10_s(shared: Shared, batch_size: int) -> None:
    store, d = shared.store, shared.dispatcher
    wait_until(shared.idle, timeout=30, what="an idle dispatcher")
    before = dict(d.stats)
    sid = submit(store, {**LONG, "batch_size": batch_size})
    # Both slots busy past their evaluation at init, the other two trials waiting.
    wait_until(
        lambda: sum(bool(t.metrics) for t in trials_of(store, sid)) >= 2,
        timeout=90,
        what="two trials to report epoch 0",
    )
    assert len(d.running_trial_ids()) == 2
    with TestClient(create_app(Settings(database_url=shared.db_url))) as client:
        started = time.monotonic()
        response = client.post(f"/api/studies/{sid}/cancel")
        assert response.status_code == 200, response.text
    wait_until(
        lambda: not d.held_trial_ids() and not d.running_trial_ids(),
        timeout=10,
        what="the dispatcher to stop the cancelled trials",
    )
    elapsed = time.monotonic() - started
    assert elapsed < 10
    study = store.get_study(sid)
    assert study.status == "cancelled"
    assert study.progress.cancelled == study.progress.total == 4
    assert d.stats["completed"] == before["completed"]
    if batch_size == 2:
        assert d.stats["killed"] > before["killed"]
    else:
        assert d.stats["killed"] == before["killed"]  # asked nicely, stopped at the epoch end
    # The slots are free again for the next study.
    assert wait_study(store, submit(store, DIGITS), timeout=60).status == "completed"


def test_a_trial_past_its_timeout_is_killed_and_failed(shared: Shared) -> None:
    store, d = shared.store, shared.dispatcher
    before = dict(d.stats)
    spec = {
        **LONG,
        "methods": ["lcw"],
        "seeds": 1,
        "trial_timeout_s": 2.0,
        "max_retries": 1,
    }
    study = wait_study(store, submit(store, spec), timeout=90)
    (trial,) = trials_of(store, study.id)
    assert trial.status == "failed" and trial.attempt == 2
    assert "TrialTimeoutError" in (trial.error or "") and "2 s" in (trial.error or "")
    assert study.status == "failed"
    assert d.stats["killed"] == before["killed"] + 2


def test_a_sigkilled_actor_is_a_failed_attempt_and_the_trial_reruns(shared: Shared) -> None:
    store, d = shared.store, shared.dispatcher
    wait_until(shared.idle, timeout=30, what="an idle dispatcher")
    before = dict(d.stats)
    spec = {**LONG, "methods": ["lcw"], "seeds": 1, "depths": [20], "epochs": 6}
    sid = submit(store, spec)
    wait_until(lambda: d.running_trial_ids(), timeout=60, what="the trial to start")
    first = trials_of(store, sid)[0].id
    # Epoch 0 as the dispatcher has it (the database may see it up to a second later).
    wait_until(lambda: 0 in d.epochs_received(first), timeout=60, what="epoch 0")
    (pid,) = d.actor_pids().values()
    os.kill(pid, signal.SIGKILL)
    study = wait_study(store, sid, timeout=120)
    (trial,) = trials_of(store, sid)
    assert study.status == "completed" and trial.status == "completed"
    assert trial.attempt == 2 and trial.run_info["attempt"] == 2
    assert trial.run_info["pid"] != pid
    assert d.stats["died"] == before["died"] + 1
    assert_one_row_per_epoch(trial)
    assert len(trial.metrics) == spec["epochs"] + 1
