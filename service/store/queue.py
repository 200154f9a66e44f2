"""The lease queue the workers code against: claim, renew, write metrics, complete, fail,
release, expire (the state machine: ``service.store``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    literal,
    null,
    select,
    update,
)

from service.errors import NotFoundError
from service.models import FINAL_METRICS, Study, Trial, TrialMetric, utcnow
from service.store.base import _IN_BATCH, _chunks
from service.store.fair_share import pick_trials
from service.store.results import Results, _held_by

MAX_ERROR_CHARS = 20_000  # a traceback is kept, a runaway log is cut


@dataclass(frozen=True)
class ClaimedTrial:
    """A trial handed to a worker by ``claim_trials``; the worker holds its lease."""

    id: int
    study_id: int
    index: int
    attempt: int  # 1-based: the how-many-th time this trial runs
    config: dict[str, Any]  # lcw.TrialConfig.to_dict(); "lr" is None for an unassigned slot
    cell_key: str  # method|depth|width|activation
    slot: int | None  # lr_search slot, None for a grid LR
    seed: int
    max_retries: int
    timeout_s: float | None
    resources: dict[str, Any]  # {"cpu": float, "gpu": float}
    lr_search: dict[str, Any] | None  # the study's lr_search block
    scheduler: dict[str, Any] | None  # the study's scheduler block
    packing: bool = True  # the study's packing switch: False, every trial trains alone
    seeds: int = 1  # the study's seeds per setting (ASHA judges a setting over all of them)
    checkpoint_every: int | None = None  # the study's checkpoint interval in epochs (None: auto)
    created_at: datetime | None = None  # when the trial was created (the queue-wait metric)


class Queue(Results):
    """Leases on trials: every write is fenced by the lease owner."""

    def claim_trials(
        self, owner: str, *, limit: int, lease_seconds: float, keep_metrics: bool = False
    ) -> list[ClaimedTrial]:
        """Lease up to `limit` pending trials to `owner`: the highest priority first, the workers
        shared fairly across owners and then their studies, each study's trials in index order
        (``service.store.fair_share``); returned in the order the slots were given.

        Atomic: two claimers never get the same trial (PostgreSQL: FOR UPDATE SKIP LOCKED;
        SQLite: the whole claim runs under BEGIN IMMEDIATE). Each claimed trial is `running`
        with attempt + 1, started now, and any metrics of a previous attempt are deleted (a
        re-run starts over), unless `keep_metrics`: a worker whose attempts may resume from a
        checkpoint keeps them, and its first row of each attempt says from which epoch on they
        are replaced (``write_metrics``'s ``attempt_start``). Trials of cancelled studies are
        never claimed.
        """
        if limit <= 0:
            return []
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        with self._write() as s:
            ids = pick_trials(s, limit)
            if not ids:
                return []
            claimed = s.execute(
                update(Trial)
                .where(Trial.id.in_(ids), Trial.status == "pending")
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_expires_at=expires,
                    attempt=Trial.attempt + 1,
                    started_at=now,
                    finished_at=None,
                    updated_at=now,
                    result=null(),
                    run_info=null(),
                    **dict.fromkeys(FINAL_METRICS),
                )
                .returning(
                    Trial.id,
                    Trial.study_id,
                    Trial.index,
                    Trial.attempt,
                    Trial.config,
                    Trial.cell_key,
                    Trial.slot,
                    Trial.seed,
                    Trial.max_retries,
                    Trial.timeout_s,
                    Trial.resources,
                    Trial.created_at,
                )
                .execution_options(synchronize_session=False)
            ).all()
            if not keep_metrics:
                s.execute(
                    delete(TrialMetric)
                    .where(TrialMetric.trial_id.in_(ids))
                    .execution_options(synchronize_session=False)
                )
            study_ids = sorted({row.study_id for row in claimed})
            specs = dict(
                s.execute(select(Study.id, Study.spec).where(Study.id.in_(study_ids)))
                .tuples()
                .all()
            )
            for sid in study_ids:
                s.execute(
                    update(Study)
                    .where(Study.id == sid, Study.status == "queued")
                    .values(status="running", started_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            out = [
                ClaimedTrial(
                    id=row.id,
                    study_id=row.study_id,
                    index=row.index,
                    attempt=row.attempt,
                    config=row.config,
                    cell_key=row.cell_key,
                    slot=row.slot,
                    seed=row.seed,
                    max_retries=row.max_retries,
                    timeout_s=row.timeout_s,
                    resources=row.resources,
                    lr_search=specs[row.study_id].get("lr_search"),
                    scheduler=specs[row.study_id].get("scheduler"),
                    packing=specs[row.study_id].get("packing", True),
                    seeds=int(specs[row.study_id].get("seeds", 1)),
                    checkpoint_every=specs[row.study_id].get("checkpoint_every"),
                    created_at=row.created_at,
                )
                for row in claimed
            ]
            position = {tid: i for i, tid in enumerate(ids)}
            return sorted(out, key=lambda c: position[c.id])  # the order slots were given

    def renew_leases(self, owner: str, trial_ids: list[int], *, lease_seconds: float) -> set[int]:
        """Extend `owner`'s leases; returns the ids it still holds and that are still running.

        A trial missing from the answer was cancelled, reclaimed or deleted: stop running it.
        """
        if not trial_ids:
            return set()
        now = utcnow()
        held: set[int] = set()
        with self._write() as s:
            for chunk in _chunks(sorted(set(trial_ids)), _IN_BATCH):
                held.update(
                    s.scalars(
                        update(Trial)
                        .where(Trial.id.in_(chunk), *_held_by(owner))
                        .values(
                            lease_expires_at=now + timedelta(seconds=lease_seconds),
                            updated_at=now,
                        )
                        .returning(Trial.id)
                        .execution_options(synchronize_session=False)
                    )
                )
        return held

    def fail_trial_attempt(
        self, owner: str, trial_id: int, *, error: str, retry: bool = True
    ) -> str:
        """Record a failed attempt of a trial `owner` holds; returns the trial's new status.

        "pending" (another attempt will run) while attempt <= max_retries, else "failed";
        "failed" at once with `retry` False (an error no retry can fix). The error text is kept
        in both cases. When the owner no longer holds the trial nothing
        changes and its current status is returned. NotFoundError for an unknown id.
        """
        now = utcnow()
        with self._write() as s:
            row = s.execute(
                select(
                    Trial.status,
                    Trial.lease_owner,
                    Trial.attempt,
                    Trial.max_retries,
                    Trial.study_id,
                    Trial.cell_key,
                )
                .where(Trial.id == trial_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"trial {trial_id} does not exist")
            if row.status != "running" or row.lease_owner != owner:
                return str(row.status)
            new = "pending" if retry and row.attempt <= row.max_retries else "failed"
            changed = self._unlease(
                s, (Trial.id == trial_id,), now, status=new, last_error=error[:MAX_ERROR_CHARS],
                finished_at=now if new == "failed" else None,
            )  # fmt: skip
            self._refresh_studies(s, changed, now)
            return new

    def release_trials(self, owner: str, trial_ids: list[int]) -> int:
        """Give back trials `owner` holds unfinished (a worker shutting down): they return to
        pending and the attempt they were claimed for is not counted. Returns how many."""
        if not trial_ids:
            return 0
        now = utcnow()
        with self._write() as s:
            changed = [
                row
                for chunk in _chunks(sorted(set(trial_ids)), _IN_BATCH)
                for row in self._unlease(s, (Trial.id.in_(chunk), *_held_by(owner)), now,
                                         status="pending", attempt=Trial.attempt - 1)
            ]  # fmt: skip
            self._refresh_studies(s, changed, now)
            return len(changed)

    def release_expired(self) -> int:
        """Return running trials whose lease expired to pending, or fail them when they used
        their last attempt (attempt > max_retries); returns how many were released."""
        now = utcnow()
        expired = (Trial.status == "running", Trial.lease_expires_at < now)
        message = (
            literal("lease expired: worker ")
            + func.coalesce(Trial.lease_owner, "?")
            + literal(" stopped renewing")
        )
        with self._write() as s:
            changed: list[tuple[int, str]] = []
            for exhausted in (True, False):
                condition = (
                    Trial.attempt > Trial.max_retries
                    if exhausted
                    else Trial.attempt <= Trial.max_retries
                )
                changed += self._unlease(
                    s, (*expired, condition), now, status="failed" if exhausted else "pending",
                    last_error=message
                    + literal("; no attempts left" if exhausted else "; trial requeued"),
                    finished_at=now if exhausted else None,
                )  # fmt: skip
            # Once, after both updates: the study's status from all its trials' new states.
            self._refresh_studies(s, changed, now)
            return len(changed)

    def cancelled_or_gone(self, trial_ids: list[int]) -> set[int]:
        """The ids among `trial_ids` whose trial is cancelled or no longer exists."""
        ids = sorted(set(trial_ids))
        found: dict[int, str] = {}
        with self._read() as s:
            for chunk in _chunks(ids, _IN_BATCH):
                found.update(
                    s.execute(select(Trial.id, Trial.status).where(Trial.id.in_(chunk)))
                    .tuples()
                    .all()
                )
        return {tid for tid in ids if found.get(tid, "cancelled") == "cancelled"}
