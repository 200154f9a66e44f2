"""Studies: create (idempotently), read, list, cancel, delete; a study's status derived from
its trials, and the cell versions a summary watches (``study_cells``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import ConflictError, IdempotencyKeyReusedError, NotFoundError
from service.models import Study, StudyCell, Trial, utcnow
from service.records import Page, Progress, StudyRecord, field_names
from service.schemas import StudyCreate
from service.spec import PlannedTrial, normalized, spec_hash
from service.store.base import _IN_BATCH, _chunks
from service.store.notifications import Notifications
from service.vocabulary import STUDY_FINISHED, TRIAL_RESULT

_STUDY_COLUMNS = [n for n in field_names(StudyRecord) if n not in ("progress", "last_error")]


class Studies(Notifications):
    """Study rows and the derived state every trial change updates in its transaction (a
    study that finishes also queues its webhook call: ``service.store.notifications``)."""

    def create_study(
        self,
        spec: StudyCreate,
        trials: Sequence[PlannedTrial],
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> tuple[StudyRecord, bool]:
        """Store a validated spec and its expanded trials; returns (study, created).

        With an `idempotency_key` already used for the same normalized spec, returns that study
        and created=False; with a different spec, raises IdempotencyKeyReusedError.
        """
        digest = spec_hash(spec)
        for attempt in range(2):
            try:
                with self._write() as s:
                    if idempotency_key is not None:
                        existing = s.scalar(
                            select(Study).where(Study.idempotency_key == idempotency_key)
                        )
                        if existing is not None:
                            if existing.request_hash != digest:
                                raise IdempotencyKeyReusedError(idempotency_key)
                            return self._study_record(s, existing), False
                    study = self._insert_study(s, spec, trials, idempotency_key, digest, owner)
                    return self._study_record(s, study), True
            except IntegrityError:
                # Another request with the same key committed first: read its study.
                if idempotency_key is None or attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert_study(
        self,
        s: Session,
        spec: StudyCreate,
        trials: Sequence[PlannedTrial],
        key: str | None,
        digest: str,
        owner: str | None = None,
    ) -> Study:
        now = utcnow()
        study = Study(
            owner=owner,
            priority=spec.priority,
            name=spec.name,
            description=spec.description,
            status="queued",
            dataset=spec.dataset,
            model=spec.model,
            spec=normalized(spec),
            trial_count=len(trials),
            idempotency_key=key,
            request_hash=digest,
            created_at=now,
            updated_at=now,
        )
        s.add(study)
        s.flush()
        self._insert_trials(s, study.id, spec, trials, now)
        return study

    def _insert_trials(
        self,
        s: Session,
        study_id: int,
        spec: StudyCreate,
        trials: Sequence[PlannedTrial],
        now: datetime,
    ) -> None:
        """Insert `trials` pending with a fresh attempt budget, and their cells that are new
        (a cell already stored keeps its row and version)."""
        resources = spec.resources.model_dump()
        rows = [
            {
                "study_id": study_id,
                "index": t.index,
                "cell_key": t.cell_key,
                "method": t.method,
                "depth": t.depth,
                "width": t.width,
                "activation": t.activation,
                "seed": t.seed,
                "slot": t.slot,
                "lr": t.lr,
                "init_scale": t.init_scale,
                "config": t.config,
                "status": "pending",
                "attempt": 0,
                "max_retries": spec.max_retries,
                "timeout_s": spec.trial_timeout_s,
                "resources": resources,
                "created_at": now,
                "updated_at": now,
            }
            for t in trials
        ]
        for chunk in _chunks(rows, 2000):
            s.execute(insert(Trial), list(chunk))
        stored = set(s.scalars(select(StudyCell.cell_key).where(StudyCell.study_id == study_id)))
        cells = [{"study_id": study_id, "cell_key": k, "version": 0}
                 for k in dict.fromkeys(t.cell_key for t in trials) if k not in stored]  # fmt: skip
        for chunk in _chunks(cells, 2000):
            s.execute(insert(StudyCell), list(chunk))

    def _progress(self, s: Session, study_ids: Sequence[int]) -> dict[int, Progress]:
        out = {sid: Progress() for sid in study_ids}
        if not study_ids:
            return out
        query = (
            select(Trial.study_id, Trial.status, func.count())
            .where(Trial.study_id.in_(study_ids))
            .group_by(Trial.study_id, Trial.status)
        )
        for sid, status, n in s.execute(query):
            out[sid].count(status, n)
        return out

    def _last_errors(self, s: Session, study_ids: Sequence[int]) -> dict[int, str]:
        """Each study's most recently failed trial's error (studies with none are absent)."""
        if not study_ids:
            return {}
        newest = (
            select(func.max(Trial.id))
            .where(
                Trial.study_id.in_(study_ids),
                Trial.status == "failed",
                Trial.last_error.is_not(None),
            )
            .group_by(Trial.study_id)
        )
        rows = s.execute(select(Trial.study_id, Trial.last_error).where(Trial.id.in_(newest)))
        return {sid: error for sid, error in rows.tuples() if error is not None}

    def _record(self, study: Study, progress: Progress, last_error: str | None) -> StudyRecord:
        """A study row as a record: its columns of the same names, its `progress`, and the
        error of its most recently failed trial."""
        return StudyRecord(
            **{name: getattr(study, name) for name in _STUDY_COLUMNS},
            progress=progress,
            last_error=last_error,
        )

    def _study_record(self, s: Session, study: Study) -> StudyRecord:
        progress = self._progress(s, [study.id])[study.id]
        error = self._last_errors(s, [study.id]).get(study.id) if progress.failed else None
        return self._record(study, progress, error)

    def _get_study(self, s: Session, study_id: int) -> Study:
        study = s.get(Study, study_id)
        if study is None:
            raise NotFoundError(f"study {study_id} does not exist")
        return study

    def get_study(self, study_id: int) -> StudyRecord:
        """One study with its progress; NotFoundError when missing."""
        with self._read() as s:
            return self._study_record(s, self._get_study(s, study_id))

    def list_studies(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        owner: str | None = None,
    ) -> Page[StudyRecord]:
        """A page of studies, newest first, optionally of one status and one owner; count is
        of all matches."""
        with self._read() as s:
            where = [] if status is None else [Study.status == status]
            if owner is not None:
                where.append(Study.owner == owner)
            count = s.scalar(select(func.count()).select_from(Study).where(*where)) or 0
            studies = list(
                s.scalars(
                    select(Study)
                    .where(*where)
                    .order_by(Study.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            ids = [st.id for st in studies]
            progress = self._progress(s, ids)
            errors = self._last_errors(s, [i for i in ids if progress[i].failed])
            return Page([self._record(st, progress[st.id], errors.get(st.id)) for st in studies],
                        count)  # fmt: skip

    def cancel_study(self, study_id: int) -> StudyRecord:
        """Cancel the study's pending and running trials; ConflictError when already finished."""
        now = utcnow()
        with self._write() as s:
            study = self._get_study(s, study_id)
            if study.status in STUDY_FINISHED:
                raise ConflictError(f"study {study_id} is already {study.status}")
            s.execute(
                update(Trial)
                .where(Trial.study_id == study_id, Trial.status.in_(("pending", "running")))
                .values(
                    status="cancelled",
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            study.status = "cancelled"
            study.finished_at = now
            study.updated_at = now
            self._notify_finished(s, study, now)
            self._touch_cells(s, study_id, None)
            s.flush()
            return self._study_record(s, study)

    def delete_study(self, study_id: int) -> None:
        """Delete a finished or cancelled study with its trials and metrics (ConflictError else)."""
        with self._write() as s:
            study = self._get_study(s, study_id)
            if study.status not in STUDY_FINISHED:
                raise ConflictError(
                    f"study {study_id} is {study.status}; only completed, failed or cancelled "
                    "studies can be deleted (cancel it first)"
                )
            # ON DELETE CASCADE removes trials and trial_metrics in the database.
            s.execute(
                delete(Study)
                .where(Study.id == study_id)
                .execution_options(synchronize_session=False)
            )

    def counts_by_status(self) -> tuple[dict[str, int], dict[str, int]]:
        """(studies per status, trials per status) over the whole database."""
        with self._read() as s:
            studies = dict(
                s.execute(select(Study.status, func.count()).group_by(Study.status)).tuples().all()
            )
            trials = dict(
                s.execute(select(Trial.status, func.count()).group_by(Trial.status)).tuples().all()
            )
            return studies, trials

    def _touch_cells(self, s: Session, study_id: int, cell_keys: Iterable[str] | None) -> None:
        """Move the version of the study's cells `cell_keys` (None: all of them): their trials
        changed in a way a summary can see (``summary`` recomputes exactly those cells)."""
        bump = (
            update(StudyCell)
            .where(StudyCell.study_id == study_id)
            .values(version=StudyCell.version + 1)
            .execution_options(synchronize_session=False)
        )
        # PostgreSQL: lock the rows in cell_key order first. An UPDATE ... IN locks them in
        # scan order, and two writers touching overlapping cells deadlocked (seen in the
        # concurrent-writers test); SQLite has one writer at a time.
        lock = (
            select(StudyCell.cell_key)
            .where(StudyCell.study_id == study_id)
            .order_by(StudyCell.cell_key)
            .with_for_update()
        )
        postgres = self.engine.dialect.name == "postgresql"
        if cell_keys is None:
            if postgres:
                s.execute(lock)
            s.execute(bump)
            return
        for chunk in _chunks(sorted(set(cell_keys)), _IN_BATCH):
            if postgres:
                s.execute(lock.where(StudyCell.cell_key.in_(chunk)))
            s.execute(bump.where(StudyCell.cell_key.in_(chunk)))

    def _refresh_studies(
        self, s: Session, changed: Iterable[tuple[int, str]], now: datetime
    ) -> None:
        """After trials of the (study_id, cell_key) pairs in `changed` changed state: derive
        each study's status from its trials, and move the changed cells' versions (in the
        transaction of the trial change; the study rows are locked first, then their cells).

        queued: nothing claimed yet; running: claimed at least once and not all trials terminal;
        completed: all terminal and at least one with a result; failed: all terminal and every
        one failed. cancelled is set by cancel_study and never changes afterwards.
        """
        cells: dict[int, set[str]] = defaultdict(set)
        for sid, cell_key in changed:
            cells[sid].add(cell_key)
        for sid in sorted(cells):
            # Lock the study row: two completers of a study's last trials then see each other.
            study = s.execute(
                select(Study)
                .where(Study.id == sid)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
            if study is None or study.status == "cancelled":
                continue
            unfinished = s.scalar(
                select(Trial.id)
                .where(Trial.study_id == sid, Trial.status.in_(("pending", "running")))
                .limit(1)
            )
            if unfinished is not None:
                new = "running" if study.started_at is not None else "queued"
            else:
                counts = Counter(
                    dict(
                        s.execute(
                            select(Trial.status, func.count())
                            .where(Trial.study_id == sid)
                            .group_by(Trial.status)
                        )
                        .tuples()
                        .all()
                    )
                )
                total = sum(counts.values())
                if total == 0:
                    continue
                if any(counts[st] for st in TRIAL_RESULT):
                    new = "completed"
                elif counts["failed"] == total:
                    new = "failed"
                elif counts["cancelled"]:
                    new = "cancelled"
                else:
                    new = "failed"
            study.updated_at = now
            if new != study.status:
                study.status = new
                # finished now, or running again (trials added or requeued)
                study.finished_at = now if new in STUDY_FINISHED else None
                if new in STUDY_FINISHED:
                    self._notify_finished(s, study, now)
        s.flush()
        for sid in sorted(cells):
            self._touch_cells(s, sid, cells[sid])
