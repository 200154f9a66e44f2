"""A stored study's life after submission: extend it with new trials, retry (or resume) its
failed and cancelled trials, and fail its pending trials at once on an error no retry fixes.

Each call is one transaction that locks the study row first (then trials, then cells, the
store's lock order), records what it did in ``study_changes`` (extend, retry) and derives the
study's status again: a finished study with new or requeued trials is running (or queued) and
its ``finished_at`` is cleared. Stored trials, their indices and their metrics never change in
an extension; a retry gives each requeued trial a fresh attempt budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import ConflictError, IdempotencyKeyReusedError
from service.models import Study, StudyChange, Trial, utcnow
from service.records import StudyRecord
from service.schemas import StudyCreate
from service.spec import PlannedTrial, normalized
from service.store.slots import _assigned, _slot
from service.store.studies import Studies
from service.vocabulary import TRIAL_RETRIABLE

# (the stored normalized spec, the next free trial index) -> (merged spec, trials to add)
Planner = Callable[[Mapping[str, Any], int], tuple[StudyCreate, list[PlannedTrial]]]


class Lifecycle(Studies):
    """Extend, retry, and fail fast (see the module docstring)."""

    def _locked_study(self, s: Session, study_id: int) -> Study:
        study = s.execute(
            select(Study).where(Study.id == study_id).with_for_update()
        ).scalar_one_or_none()
        if study is None:
            return self._get_study(s, study_id)  # raises NotFoundError
        return study

    def _replayed(
        self, s: Session, study_id: int, kind: str, key: str | None, digest: str
    ) -> StudyChange | None:
        """The earlier change made with this Idempotency-Key, if the request is the same."""
        if key is None:
            return None
        change = s.scalar(
            select(StudyChange).where(StudyChange.kind == kind, StudyChange.idempotency_key == key)
        )
        if change is not None and (change.study_id != study_id or change.request_hash != digest):
            raise IdempotencyKeyReusedError(key, what=f"{kind} request")
        return change

    def extend_study(
        self,
        study_id: int,
        request: Mapping[str, Any],
        plan: Planner,
        *,
        digest: str,
        idempotency_key: str | None = None,
    ) -> tuple[StudyRecord, int, bool]:
        """Add the trials `plan` makes of the stored spec; returns (study, trials added,
        replayed). With an `idempotency_key` already used for the same request (`digest`), the
        study and the count of that call, replayed=True; with another request,
        IdempotencyKeyReusedError. A cancelled study is a ConflictError (retry resumes it)."""
        for attempt in range(2):
            try:
                with self._write() as s:
                    study = self._locked_study(s, study_id)
                    earlier = self._replayed(s, study_id, "extend", idempotency_key, digest)
                    if earlier is not None:
                        return self._study_record(s, study), earlier.trials, True
                    if study.status == "cancelled":
                        raise ConflictError(
                            f"study {study_id} is cancelled; resume it first "
                            f"(POST /api/studies/{study_id}/retry), then extend it"
                        )
                    last = s.scalar(select(func.max(Trial.index)).where(Trial.study_id == study_id))
                    spec, trials = plan(study.spec, 0 if last is None else last + 1)
                    now = utcnow()
                    self._insert_trials(s, study_id, spec, trials, now)
                    self._fill_assigned_slots(s, study_id, trials)
                    study.spec = normalized(spec)
                    study.trial_count += len(trials)
                    study.updated_at = now
                    s.add(
                        self._change(
                            study_id, "extend", request, len(trials), idempotency_key, digest
                        )
                    )
                    self._refresh_studies(s, {(study_id, t.cell_key) for t in trials}, now)
                    s.flush()
                    return self._study_record(s, study), len(trials), False
            except IntegrityError:
                # Another request with the same key committed first: replay it.
                if idempotency_key is None or attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _fill_assigned_slots(
        self, s: Session, study_id: int, trials: Sequence[PlannedTrial]
    ) -> None:
        """New seeds of an lr_search slot that already has its setting train with it."""
        slots = {(t.cell_key, t.slot) for t in trials if t.slot is not None}
        for cell_key, slot in sorted(slots):
            assigned = _assigned(s, study_id, cell_key, slot)
            if assigned is None:
                continue
            lr, scale = assigned
            where = _slot(study_id, cell_key, slot)
            pending = s.execute(select(Trial.id, Trial.config).where(*where, Trial.lr.is_(None)))
            s.execute(
                update(Trial),
                [
                    {
                        "id": tid,
                        "lr": lr,
                        "init_scale": scale,
                        "config": {**config, "lr": lr, "init_scale": scale},
                    }
                    for tid, config in pending
                ],
            )

    @staticmethod
    def _change(
        study_id: int,
        kind: str,
        request: Mapping[str, Any],
        trials: int,
        key: str | None,
        digest: str | None,
    ) -> StudyChange:
        return StudyChange(
            study_id=study_id,
            kind=kind,
            request=dict(request),
            trials=trials,
            idempotency_key=key,
            request_hash=digest,
            created_at=utcnow(),
        )

    def retry_study(self, study_id: int) -> tuple[StudyRecord, int]:
        """Requeue the study's failed and cancelled trials with a fresh attempt budget (a
        cancelled study resumes); completed, diverged and stopped trials never run again.
        ConflictError when there is nothing to retry."""
        now = utcnow()
        with self._write() as s:
            study = self._locked_study(s, study_id)
            rows = s.execute(
                select(Trial.id, Trial.cell_key)
                .where(Trial.study_id == study_id, Trial.status.in_(sorted(TRIAL_RETRIABLE)))
                .order_by(Trial.id)
                .with_for_update()
            ).all()
            if not rows:
                raise ConflictError(
                    f"study {study_id} has no failed or cancelled trials to retry "
                    f"(it is {study.status})"
                )
            ids = [tid for tid, _ in rows]
            s.execute(
                update(Trial)
                .where(Trial.id.in_(ids))
                .values(
                    status="pending",
                    attempt=0,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if study.status == "cancelled":
                study.status = "queued"  # derived again below: running once it has started
            s.add(self._change(study_id, "retry", {}, len(ids), None, None))
            self._refresh_studies(s, {(study_id, cell) for _, cell in rows}, now)
            s.flush()
            return self._study_record(s, study), len(ids)

    def fail_pending(self, study_id: int, error: str) -> int:
        """Fail every pending trial of the study with `error` at once (an error no retry can
        fix, such as a missing dataset, that every one of them would hit); returns how many."""
        now = utcnow()
        with self._write() as s:
            self._locked_study(s, study_id)
            rows = s.execute(
                select(Trial.id, Trial.cell_key)
                .where(Trial.study_id == study_id, Trial.status == "pending")
                .with_for_update()
            ).all()
            if not rows:
                return 0
            s.execute(
                update(Trial)
                .where(Trial.id.in_([tid for tid, _ in rows]), Trial.status == "pending")
                .values(status="failed", last_error=error, finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            self._refresh_studies(s, {(study_id, cell) for _, cell in rows}, now)
            return len(rows)


__all__ = ["Lifecycle", "Planner"]
