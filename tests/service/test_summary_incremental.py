"""The incremental summary (per-cell cache, ``study_cells`` versions) equals a recomputation.

A long-lived ``Store`` keeps each study's summary per cell and recomputes only the cells whose
version moved. Through random sequences of the real queue operations (claims, results, failed
attempts, releases, expired leases, lr_search assignments, a cancel) its answer after every step
must equal a fresh store's full computation and the row-by-row ``stats.summarize``; on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update
from svc_helpers import lr_search_study, make_study, result, row_based_summary

from service.db import session_scope, writer
from service.models import StudyCell, Trial, utcnow
from service.store import Store

GRID = {
    "name": "grid",
    "dataset": "digits",
    "methods": ["plain", "bn", "lcw"],
    "depths": [2, 3],
    "activations": ["relu"],
    "learning_rates": [0.01, 0.1],
    "seeds": 5,
    "max_retries": 1,
}
LR_SEARCH = lr_search_study(trials_per_cell=3)


def _check(store: Store, study_id: int) -> None:
    incremental = store.summary(study_id).model_dump()
    store.settle_summaries()
    # A process that starts now: from the stored cell results, computing the cells they lack.
    assert incremental == Store(store.engine).summary(study_id).model_dump()
    assert incremental == row_based_summary(store, study_id)
    assert store.summary_json(study_id) == store.summary(study_id).model_dump_json().encode()


def _step(store: Store, study_id: int, rng: random.Random, held: dict[int, str]) -> None:
    """One random queue operation by one of two workers."""
    owner = rng.choice(["w1", "w2"])
    mine = [tid for tid, o in held.items() if o == owner]
    op = rng.choice(["claim", "claim", "complete", "complete", "complete", "fail", "release",
                     "expire"])  # fmt: skip
    if op == "claim" or not mine:
        for c in store.claim_trials(owner, limit=rng.randint(1, 4), lease_seconds=60):
            held[c.id] = owner
            if c.slot is not None and c.config.get("lr") is None:
                store.assign_lr(study_id, c.cell_key, c.slot, rng.choice([0.01, 0.05, 0.3]))
        return
    tid = rng.choice(mine)
    if op == "complete":
        acc = rng.randrange(1025) / 1024  # dyadic: every summation order is exact
        status = rng.choice(["completed", "completed", "diverged", "stopped_early"])
        store.complete_trial(owner, tid, status=status, result=result(acc, acc / 2), run_info={})
        del held[tid]
    elif op == "fail":
        store.fail_trial_attempt(owner, tid, error="boom")
        del held[tid]
    elif op == "release":
        store.release_trials(owner, [tid])
        del held[tid]
    else:  # this worker stopped renewing: its lease runs out
        with session_scope(writer(store.engine)) as s:
            s.execute(
                update(Trial)
                .where(Trial.id == tid)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        store.release_expired()
        del held[tid]


@pytest.mark.parametrize("spec", [GRID, LR_SEARCH], ids=lambda s: s["name"])
def test_incremental_summary_equals_a_recomputation_after_every_change(
    store: Store, spec: dict[str, Any]
) -> None:
    study_id = make_study(store, spec)
    other = make_study(store, GRID)  # a second study's changes must not disturb the first
    rng = random.Random(3)
    held: dict[int, str] = {}
    _check(store, study_id)
    for i in range(70):
        _step(store, study_id, rng, held)
        if i % 3 == 0:
            _check(store, study_id)
    assert any(c["n"] for c in store.summary(study_id).model_dump()["cells"])
    store.cancel_study(study_id)
    _check(store, study_id)
    _check(store, other)


def test_only_changed_cells_are_recomputed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    study_id = make_study(store, GRID)
    store.summary(study_id)
    asked = _spy_groups(store, monkeypatch)
    store.summary(study_id)
    assert asked == []  # nothing changed: no GROUP BY at all
    [claimed] = store.claim_trials("w", limit=1, lease_seconds=60)
    store.summary(study_id)
    assert asked == []  # a claim changes nothing a summary shows (pending -> running)
    store.complete_trial("w", claimed.id, status="completed", result=result(0.5, 0.5), run_info={})
    store.summary(study_id)
    assert asked == [[claimed.cell_key]]
    with session_scope(store.engine) as s:
        versions = dict(
            s.execute(select(StudyCell.cell_key, StudyCell.version).where(
                StudyCell.study_id == study_id)).tuples().all()
        )  # fmt: skip
    assert versions[claimed.cell_key] == 1
    assert sum(versions.values()) == 1 and len(versions) == 6


def test_forget_summaries_after_changes_outside_the_store(store: Store) -> None:
    study_id = make_study(store, GRID)
    before = store.summary(study_id)
    with session_scope(writer(store.engine)) as s:
        s.execute(
            update(Trial).where(Trial.study_id == study_id).values(
                status="completed", val_acc=0.5, test_acc=0.5)
        )  # fmt: skip
    assert store.summary(study_id) == before  # no version moved: the cached answer stands
    store.forget_summaries()
    assert store.summary(study_id).model_dump() == row_based_summary(store, study_id)


def _spy_groups(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    asked: list[list[str] | None] = []
    real = store._lr_groups

    def spy(s: Any, sid: int, cell_keys: list[str] | None = None) -> Any:
        asked.append(cell_keys)
        return real(s, sid, cell_keys)

    monkeypatch.setattr(store, "_lr_groups", spy)
    return asked


def _finish(store: Store, n: int) -> list[str]:
    done = []
    for i, c in enumerate(store.claim_trials("w", limit=n, lease_seconds=60)):
        acc = (i % 8 + 1) / 16
        store.complete_trial("w", c.id, status="completed", result=result(acc, acc), run_info={})
        done.append(c.cell_key)
    return done


def test_a_restarted_process_reads_the_stored_cell_results(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_id = make_study(store, GRID)
    _finish(store, 24)
    want = store.summary(study_id).model_dump()
    store.settle_summaries()
    restarted = Store(store.engine)
    asked = _spy_groups(restarted, monkeypatch)
    assert restarted.summary(study_id).model_dump() == want
    assert asked == []  # every cell's stored result is at its current version: nothing computed

    [changed] = _finish(store, 1)
    again = Store(store.engine)
    asked = _spy_groups(again, monkeypatch)
    assert again.summary(study_id).model_dump() == row_based_summary(store, study_id)
    assert asked == [[changed]]  # the one cell that moved, the others read

    # A stored result of a layout this code does not read is computed again, not trusted.
    again.settle_summaries()
    with session_scope(writer(store.engine)) as s:
        s.execute(update(StudyCell).values(result={"format": -1}))
    third = Store(store.engine)
    asked = _spy_groups(third, monkeypatch)
    assert third.summary(study_id).model_dump() == row_based_summary(store, study_id)
    assert asked == [None]

    # forget_summaries(stored=False) is a restart: the stored results stay and are read.
    third.settle_summaries()
    third.forget_summaries(stored=False)
    asked.clear()
    assert third.summary(study_id).model_dump() == row_based_summary(store, study_id)
    assert asked == []


def test_a_failed_store_of_cell_results_loses_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    study_id = make_study(store, GRID)
    _finish(store, 12)
    # The writer's database is unreachable: the summary is served, nothing is stored.
    monkeypatch.setattr(
        store._results, "_engine", create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    )
    assert store.summary(study_id).model_dump() == row_based_summary(store, study_id)
    store.settle_summaries()
    with session_scope(store.engine) as s:
        stored = s.execute(select(StudyCell.result).where(StudyCell.study_id == study_id)).all()
    assert stored and all(r is None for (r,) in stored)
    assert Store(store.engine).summary(study_id).model_dump() == row_based_summary(store, study_id)


def test_a_queued_cell_result_never_lands_in_another_study_with_the_same_id(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study id can be taken again: SQLite reuses the largest rowid after the newest study is
    deleted, and a truncated or restored PostgreSQL restarts its sequence. A cell result still
    queued for the first study, computed at the same cell versions, must not be stored for the
    second (it would serve a foreign cell: the failure once seen in a clean-clone CI run)."""
    first = make_study(store, GRID)
    _finish(store, 12)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(store._results, "put", lambda *args: queued.append(args))
    store.summary(first)  # computes every cell; its writes are held back
    assert queued
    if db_url.startswith("sqlite"):
        store.cancel_study(first)
        store.delete_study(first)
    else:
        with session_scope(writer(store.engine)) as s:
            s.execute(
                text(
                    "TRUNCATE trial_metrics, trials, study_cells, studies RESTART IDENTITY CASCADE"
                )
            )
    fresh = Store(store.engine)
    second = make_study(fresh, GRID)
    assert second == first  # the same id, and the same trials finish: the same cell versions
    for i, c in enumerate(fresh.claim_trials("w", limit=12, lease_seconds=60)):
        acc = (i % 3 + 1) / 4  # other accuracies than the first study's
        fresh.complete_trial("w", c.id, status="completed", result=result(acc, acc), run_info={})
    monkeypatch.undo()
    for args in queued:  # the first study's writes land now, late
        store._results.put(*args)
    store.settle_summaries()
    assert Store(store.engine).summary(second).model_dump() == row_based_summary(store, second)


@pytest.mark.parametrize("seed", range(3))
def test_concurrent_writers_readers_and_restarts_agree_with_the_rows(
    store: Store, seed: int
) -> None:
    """Two workers finish, fail and release trials while readers ask for the summary from a
    long-lived store and from stores built anew (restarted processes) with the background
    result writer running; every answer read after the writers stop, from any store, is the
    row-by-row summary."""
    import threading

    study_id = make_study(store, GRID)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(owner: str, rng: random.Random) -> None:
        try:
            while not stop.is_set():
                claimed = store.claim_trials(owner, limit=3, lease_seconds=60)
                if not claimed:
                    return
                for c in claimed:
                    acc = rng.randrange(1, 16) / 16
                    if rng.random() < 0.2:
                        store.fail_trial_attempt(owner, c.id, error="boom")
                    elif rng.random() < 0.1:
                        store.release_trials(owner, [c.id])
                    else:
                        store.complete_trial(
                            owner, c.id, status="completed", result=result(acc, acc), run_info={}
                        )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                store.summary(study_id)
                Store(store.engine).summary(study_id)  # a restarted process, mid-flight
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    rng = random.Random(seed)
    threads = [
        threading.Thread(target=worker, args=("w1", random.Random(rng.random()))),
        threading.Thread(target=worker, args=("w2", random.Random(rng.random()))),
        threading.Thread(target=reader),
        threading.Thread(target=reader),
    ]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join(timeout=120)
    stop.set()
    for t in threads[2:]:
        t.join(timeout=60)
    assert not errors, errors
    want = row_based_summary(store, study_id)
    assert store.summary(study_id).model_dump() == want
    store.settle_summaries()
    assert Store(store.engine).summary(study_id).model_dump() == want
