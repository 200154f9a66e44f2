"""Every query the service and the workers run: studies, the trial queue, metrics, summaries.

``Store(engine)`` is the only code that reads or writes the tables. Each method is one
transaction (``service.db.session_scope``); methods that write begin with the write lock on
SQLite (``BEGIN IMMEDIATE``), and on PostgreSQL lock rows in one order (trials, then their
study) so that concurrent claimers and completers never deadlock.

The queue contract the workers code against (``claim_trials`` ... ``cancelled_or_gone``):

- pending -> running (``claim_trials``: a lease owned by one worker, ``attempt`` + 1)
- running -> completed | diverged | stopped_early (``complete_trial``)
- running -> pending while attempts remain, else failed (``fail_trial_attempt``,
  ``release_expired`` for leases nobody renewed); ``attempt <= max_retries`` means another try
  is allowed, so a trial runs at most ``max_retries + 1`` times
- running -> pending without using up the attempt (``release_trials``: a worker shutting down
  gives back what it holds)
- pending | running -> cancelled (``cancel_study``; a running worker learns it from
  ``renew_leases``, which stops returning the trial)

Every call that changes trials updates their study's status in the same transaction. Calls from
a worker that no longer holds a trial's lease change nothing. Non-finite floats (a diverged
loss) are stored as NULL: JSON has no NaN, and the API must be able to serve every row.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    Float,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import stats
from service.db import session_scope, writer
from service.errors import ConflictError, IdempotencyKeyReusedError, NotFoundError
from service.models import (
    EPOCH_METRICS,
    FINAL_METRICS,
    STUDY_FINISHED,
    TRIAL_RESULT,
    TRIAL_STATUSES,
    Study,
    StudyCell,
    Trial,
    TrialMetric,
    utcnow,
)
from service.schemas import (
    Adjustment,
    CellSummary,
    Comparison,
    EpochMetricPublic,
    Progress,
    StudiesPublic,
    StudyCreate,
    StudyPublic,
    SummaryPublic,
    TrialDetailPublic,
    TrialPublic,
    TrialsPublic,
)
from service.spec import PlannedTrial, normalized, spec_hash

COMPLETE_STATUSES = frozenset(TRIAL_RESULT)
MAX_ERROR_CHARS = 20_000  # a traceback is kept, a runaway log is cut
_METRIC_BATCH = 500  # rows per INSERT (SQLite allows 32,766 bound parameters)
_IN_BATCH = 1000
log = logging.getLogger(__name__)
_EXPORT_BATCH = 500  # trials per export query
# Columns a trial list can be ordered by (the web table's sortable columns).
TRIAL_SORT_KEYS = frozenset(
    {"index", "method", "depth", "width", "activation", "lr", "init_scale", "seed"}
    | {"status", "attempt"}
    | set(FINAL_METRICS)
)

# A trial row as the summary reads it: the fields of stats.TrialOutcome, in order.
OUTCOME_COLUMNS = (
    Trial.method,
    Trial.depth,
    Trial.width,
    Trial.activation,
    Trial.lr,
    Trial.seed,
    Trial.status,
    Trial.val_acc,
    Trial.test_acc,
    Trial.init_scale,
)


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


def _num(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clean_json(value: Any) -> Any:
    """Plain JSON data: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return clean_json(item())
    return str(value)


def _is(column: Any, value: Any) -> Any:
    """`column` = `value`, or IS NULL for None."""
    return column.is_(None) if value is None else column == value


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _GroupSums:
    """The GROUP BY rows (one per status) of one (cell, lr, init_scale), added up into a
    ``stats.LrGroup`` (statuses classified as ``stats.group_outcomes`` does)."""

    __slots__ = ("cell", "counts", "tests", "vals")

    def __init__(self, cell: tuple[str, int | None, int | None, str]) -> None:
        self.cell = cell
        self.counts = dict.fromkeys(
            ("scored", "tested", "diverged", "stopped", "failed", "open"), 0
        )
        self.vals: list[float] = []
        self.tests: list[float] = []

    def add(self, status: str, n: int, nv: int, sv: Any, nt: int, st: Any) -> None:
        c = self.counts
        if status in stats.SCORED:
            c["scored"] += nv
            c["tested"] += nt
            self.vals.append(sv or 0.0)
            self.tests.append(st or 0.0)
            if status == "diverged":
                c["diverged"] += n
        elif status == stats.STOPPED:
            c["stopped"] += n
        elif status == "failed":
            c["failed"] += n
        elif status in stats.UNFINISHED:
            c["open"] += n

    def group(self, lr: float | None, scale: float | None) -> stats.LrGroup:
        c = self.counts
        return stats.LrGroup(
            *self.cell,
            lr,
            scale,
            c["scored"],
            math.fsum(self.vals),
            c["tested"],
            math.fsum(self.tests),
            c["diverged"],
            c["stopped"],
            c["failed"],
            c["open"],
        )


@dataclass(frozen=True)
class _CellPart:
    """One cell's part of a cached summary, computed when the cell's version was `version`."""

    version: int
    result: stats.CellResult
    model: CellSummary


@dataclass
class _SummaryEntry:
    """A study's cached summary: the cell versions it reflects, each cell's part, and the
    comparisons (each with the two parts it was computed from)."""

    status: str
    versions: dict[str, int]
    cells: dict[str, _CellPart]
    comparisons: dict[tuple[str, str], tuple[_CellPart, _CellPart, dict[str, Any]]]
    summary: SummaryPublic
    json: bytes | None = None


class _ResultWriter:
    """Stores computed cell results (``study_cells.result``) from a background thread, so a
    summary request never waits for a write. The stored results are a cache: a write that fails
    (the database busy or gone) is dropped, and the cell is computed again when next needed."""

    LINGER_S = 0.2
    IDLE_EXIT_S = 30.0  # the thread ends after this long with nothing to write

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.Queue[tuple[int, datetime, list[dict[str, Any]]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # settle(): write now, do not linger

    def put(self, study_id: int, created_at: datetime, rows: list[dict[str, Any]]) -> None:
        """Store `rows` ({"key", "v", "result"}: the result computed at cell version v) of the
        study `study_id` created at `created_at`."""
        with self._lock:
            self._queue.put((study_id, created_at, rows))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lcw-cell-results", daemon=True
                )
                self._thread.start()

    def settle(self) -> None:
        """Wait until everything put so far is written (or dropped)."""
        self._hurry.set()
        self._queue.join()

    def _run(self) -> None:
        # Guarded by the version: a result is never stored for a version that has moved on.
        # And by the study's creation time: a study id can be taken again by another study
        # (SQLite reuses the largest rowid after the newest study is deleted; a truncated or
        # restored PostgreSQL restarts its sequence) whose cells start at the same versions, and
        # a write still queued for the first must not land in the second (a foreign cell).
        statement = (
            update(StudyCell)
            .where(
                StudyCell.study_id == bindparam("sid"),
                StudyCell.cell_key == bindparam("key"),
                StudyCell.version == bindparam("v"),
                exists().where(
                    Study.id == bindparam("sid"), Study.created_at == bindparam("created")
                ),
            )
            .values(result=bindparam("result"), result_version=bindparam("v"))
        )
        while True:
            try:
                batch = [self._queue.get(timeout=self.IDLE_EXIT_S)]
            except queue.Empty:
                with self._lock:  # put() enqueues under this lock: nothing is left behind
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            # After the request that computed them has answered (this thread would otherwise
            # compete with its serialization for the GIL); what came meanwhile goes along.
            self._hurry.wait(self.LINGER_S)
            self._hurry.clear()
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            params = [
                {"sid": study_id, "created": created, **row}
                for study_id, created, rows in batch
                for row in rows
            ]
            try:
                with self._engine.begin() as conn:
                    conn.execute(statement, params)
            except Exception as exc:  # a cache write: the next summary computes the cells
                log.debug("storing %d cell results: %s", len(params), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()


class Store:
    """All persistence for one database (``engine``); safe to share between threads."""

    SUMMARY_CACHE_SIZE = 64  # studies whose summary is kept, per process

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = writer(engine)
        # study_id -> its last summary, per cell (see ``summary``).
        self._summaries: OrderedDict[int, _SummaryEntry] = OrderedDict()
        self._summaries_lock = threading.Lock()
        self._results = _ResultWriter(self._writer)

    # -- plumbing -----------------------------------------------------------------------------

    def _read(self) -> Any:
        return session_scope(self.engine)

    def _write(self) -> Any:
        return session_scope(self._writer)

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def ping(self) -> None:
        """Run a trivial query; raises when the database is unreachable."""
        with self._read() as s:
            s.execute(text("SELECT 1"))

    # -- studies ------------------------------------------------------------------------------

    def create_study(
        self,
        spec: StudyCreate,
        trials: Sequence[PlannedTrial],
        *,
        idempotency_key: str | None = None,
    ) -> tuple[StudyPublic, bool]:
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
                            return self._study_public(s, existing), False
                    study = self._insert_study(s, spec, trials, idempotency_key, digest)
                    return self._study_public(s, study), True
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
    ) -> Study:
        now = utcnow()
        study = Study(
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
        resources = spec.resources.model_dump()
        rows = [
            {
                "study_id": study.id,
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
        cells = [{"study_id": study.id, "cell_key": k, "version": 0}
                 for k in dict.fromkeys(t.cell_key for t in trials)]  # fmt: skip
        for chunk in _chunks(cells, 2000):
            s.execute(insert(StudyCell), list(chunk))
        return study

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
            progress = out[sid]
            if status in TRIAL_STATUSES:
                setattr(progress, status, n)
            progress.total += n
        return out

    def _public(self, study: Study, progress: Progress) -> StudyPublic:
        return StudyPublic(
            id=study.id,
            name=study.name,
            description=study.description,
            status=study.status,
            dataset=study.dataset,
            model=study.model,
            trial_count=study.trial_count,
            spec=study.spec,
            progress=progress,
            created_at=study.created_at,
            updated_at=study.updated_at,
            started_at=study.started_at,
            finished_at=study.finished_at,
        )

    def _study_public(self, s: Session, study: Study) -> StudyPublic:
        return self._public(study, self._progress(s, [study.id])[study.id])

    def _get_study(self, s: Session, study_id: int) -> Study:
        study = s.get(Study, study_id)
        if study is None:
            raise NotFoundError(f"study {study_id} does not exist")
        return study

    def get_study(self, study_id: int) -> StudyPublic:
        """One study with its progress; NotFoundError when missing."""
        with self._read() as s:
            return self._study_public(s, self._get_study(s, study_id))

    def list_studies(
        self, *, limit: int = 50, offset: int = 0, status: str | None = None
    ) -> StudiesPublic:
        """A page of studies, newest first, optionally of one status; count is of all matches."""
        with self._read() as s:
            where = [] if status is None else [Study.status == status]
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
            progress = self._progress(s, [st.id for st in studies])
            return StudiesPublic(
                data=[self._public(st, progress[st.id]) for st in studies], count=count
            )

    def cancel_study(self, study_id: int) -> StudyPublic:
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
            self._touch_cells(s, study_id, None)
            s.flush()
            return self._study_public(s, study)

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
                if new in STUDY_FINISHED:
                    study.finished_at = now
        s.flush()
        for sid in sorted(cells):
            self._touch_cells(s, sid, cells[sid])

    # -- trials (read side) -------------------------------------------------------------------

    def list_trials(
        self,
        study_id: int,
        *,
        limit: int = 100,
        offset: int = 0,
        method: str | None = None,
        depth: int | None = None,
        width: int | None = None,
        activation: str | None = None,
        status: str | None = None,
        order_by: str = "index",
        descending: bool = False,
    ) -> TrialsPublic:
        """A page of a study's trials with optional filters, in expansion order by default.

        `order_by` is one of ``TRIAL_SORT_KEYS`` (the web table sorts by any column); missing
        values sort last either way, and ties keep expansion order.
        """
        if order_by not in TRIAL_SORT_KEYS:
            raise ValueError(f"order_by: {order_by!r} is not one of {sorted(TRIAL_SORT_KEYS)}")
        with self._read() as s:
            self._get_study(s, study_id)
            where = [Trial.study_id == study_id]
            for column, value in (
                (Trial.method, method),
                (Trial.depth, depth),
                (Trial.width, width),
                (Trial.activation, activation),
                (Trial.status, status),
            ):
                if value is not None:
                    where.append(column == value)
            count = s.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
            column = getattr(Trial, order_by)
            order = [Trial.index.desc() if descending else Trial.index]
            if order_by != "index":
                # NULLs last in both directions, on SQLite and PostgreSQL alike.
                order = [column.is_(None), column.desc() if descending else column, Trial.index]
            trials = s.scalars(
                select(Trial).where(*where).order_by(*order).limit(limit).offset(offset)
            )
            return TrialsPublic(data=[_trial_public(t) for t in trials], count=count)

    def get_trial(self, trial_id: int) -> TrialDetailPublic:
        """One trial with its run info and every epoch's metrics; NotFoundError when missing."""
        with self._read() as s:
            trial = s.get(Trial, trial_id)
            if trial is None:
                raise NotFoundError(f"trial {trial_id} does not exist")
            metrics = s.scalars(
                select(TrialMetric)
                .where(TrialMetric.trial_id == trial_id)
                .order_by(TrialMetric.epoch)
            )
            return TrialDetailPublic(
                **_trial_public(trial).model_dump(),
                resources=trial.resources,
                timeout_s=trial.timeout_s,
                lease_owner=trial.lease_owner,
                lease_expires_at=trial.lease_expires_at,
                result=trial.result,
                run_info=trial.run_info,
                metrics=[
                    EpochMetricPublic(
                        epoch=m.epoch,
                        diagnostics=m.diagnostics,
                        **{k: getattr(m, k) for k in EPOCH_METRICS},
                    )
                    for m in metrics
                ],
            )

    def _cell_where(
        self, study_id: int, depth: int | None, width: int | None, activation: str
    ) -> list[Any]:
        return [
            Trial.study_id == study_id,
            Trial.depth.is_(None) if depth is None else Trial.depth == depth,
            Trial.width.is_(None) if width is None else Trial.width == width,
            Trial.activation == activation,
            Trial.status.in_(sorted(TRIAL_RESULT)),
        ]

    def cell_curves(
        self, study_id: int, *, depth: int | None, width: int | None, activation: str
    ) -> list[dict[str, Any]]:
        """Learning curves of one cell (depth x width x activation, every method and setting):
        per (method, lr, init_scale, epoch) the mean over scored trials' seeds of train_loss,
        val_acc and test_acc, and n (trials with that epoch), ordered by method, lr, scale, epoch.

        One grouped query over the cell's trials (index on trial_metrics' (trial_id, epoch));
        NotFoundError for an unknown study.
        """
        with self._read() as s:
            self._get_study(s, study_id)
            rows = s.execute(
                select(
                    Trial.method,
                    Trial.lr,
                    Trial.init_scale,
                    TrialMetric.epoch,
                    func.count(TrialMetric.id),
                    func.avg(TrialMetric.train_loss),
                    func.avg(TrialMetric.val_acc),
                    func.avg(TrialMetric.test_acc),
                )
                .join(TrialMetric, TrialMetric.trial_id == Trial.id)
                .where(*self._cell_where(study_id, depth, width, activation))
                .group_by(Trial.method, Trial.lr, Trial.init_scale, TrialMetric.epoch)
                .order_by(Trial.method, Trial.lr, Trial.init_scale, TrialMetric.epoch)
            ).all()
        keys = ("method", "lr", "init_scale", "epoch", "n", "train_loss", "val_acc", "test_acc")
        return [
            {k: (_num(v) if k in keys[5:] else v) for k, v in zip(keys, row, strict=True)}
            for row in rows
        ]

    def cell_diagnostics(
        self,
        study_id: int,
        *,
        depth: int | None,
        width: int | None,
        activation: str,
        settings: dict[str, tuple[float, float | None]],
    ) -> list[dict[str, Any]]:
        """Per-layer diagnostics of one cell's scored trials of each method at its setting
        (`settings`: method -> (lr, init_scale), e.g. each method's best) at init (epoch 0) and
        at the trial's last epoch: rows {"method", "seed", "epoch", "last", "layers"} in one
        query.
        """
        if not settings:
            return []
        last = (
            select(func.max(TrialMetric.epoch))
            .where(TrialMetric.trial_id == Trial.id)
            .correlate(Trial)
            .scalar_subquery()
        )
        with self._read() as s:
            self._get_study(s, study_id)
            rows = s.execute(
                select(Trial.method, Trial.seed, TrialMetric.epoch, last, TrialMetric.diagnostics)
                .join(TrialMetric, TrialMetric.trial_id == Trial.id)
                .where(
                    *self._cell_where(study_id, depth, width, activation),
                    or_(
                        *(
                            and_(Trial.method == m, Trial.lr == lr, _is(Trial.init_scale, scale))
                            for m, (lr, scale) in settings.items()
                        )
                    ),
                    or_(TrialMetric.epoch == 0, TrialMetric.epoch == last),
                )
                .order_by(Trial.method, Trial.seed, TrialMetric.epoch)
            ).all()
        return [
            {
                "method": method,
                "seed": seed,
                "epoch": epoch,
                "last": epoch == last_epoch,
                "layers": diag["layers"],
            }
            for method, seed, epoch, last_epoch, diag in rows
            if isinstance(diag, dict) and diag.get("layers")
        ]

    def summary(self, study_id: int) -> SummaryPublic:
        """The study's comparison (service.stats) from the trials' final-metric columns.

        Incremental: the last summary of each study is kept per cell, with the cell versions
        (``study_cells``) it was computed at. A request reads the study row and its cell
        versions, recomputes only the cells whose version moved (their GROUP BY and their
        trials at the best LR) and the comparisons that involve them, and reuses the rest;
        nothing changed costs those two reads. Everything a summary shows is a function of the
        cell's own trials, so this equals a full recomputation (tested).

        Each computed cell result is also stored with its version (``study_cells.result``, by
        a background thread): a process that starts, or has dropped the study from its cache,
        reads the current ones instead of computing every cell again.
        """
        return self._summary_entry(study_id).summary

    def summary_json(self, study_id: int) -> bytes:
        """``summary`` serialized, kept with the cached summary until a cell changes."""
        entry = self._summary_entry(study_id)
        if entry.json is None:
            entry.json = entry.summary.model_dump_json().encode()
        return entry.json

    def forget_summaries(self, *, stored: bool = True) -> None:
        """Drop every cached summary (after changes made to the tables outside this store):
        this process's and, unless `stored` is False (as a restart does), the stored ones."""
        self._results.settle()  # no write still queued puts one back afterwards
        with self._summaries_lock:
            self._summaries.clear()
        if stored:
            with self._write() as s:
                s.execute(update(StudyCell).values(result=None, result_version=None))

    def settle_summaries(self) -> None:
        """Wait until the cell results computed so far are stored (see ``summary``)."""
        self._results.settle()

    def _summary_entry(self, study_id: int) -> _SummaryEntry:
        with self._read() as s:
            if self.engine.dialect.name == "postgresql":
                # The versions and the cells' rows below: one snapshot.
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            study = self._get_study(s, study_id)
            versions: dict[str, int] = dict(
                s.execute(
                    select(StudyCell.cell_key, StudyCell.version).where(
                        StudyCell.study_id == study_id
                    )
                )
                .tuples()
                .all()
            )
            with self._summaries_lock:
                prev = self._summaries.get(study_id)
                if prev is not None:
                    self._summaries.move_to_end(study_id)
            if prev is not None and prev.versions == versions and prev.status == study.status:
                return prev
            old = prev.cells if prev is not None else {}
            stale = [k for k, v in versions.items() if k not in old or old[k].version != v]
            stored = self._stored_results(s, study_id, stale, len(versions)) if stale else {}
            missing = [k for k in stale if k not in stored]
            fresh = (
                self._cell_results(s, study_id, None if len(missing) == len(versions) else missing)
                if missing or not versions
                else {}
            )
        cells = {k: old[k] for k in versions if k not in fresh and k not in stored and k in old}
        for k, result in (stored | fresh).items():
            part = CellSummary.model_validate(result.summary)
            cells[k] = _CellPart(versions.get(k, -1), result, part)  # -1: recomputed next time
        computed = [
            {"key": k, "v": versions[k], "result": stats.cell_result_to_json(r)}
            for k, r in fresh.items()
            if k in versions
        ]
        if computed:
            self._results.put(study_id, study.created_at, computed)
        adjustment = (study.spec or {}).get("adjustment", "holm")
        entry = self._assemble(study_id, study.status, versions, cells, prev, adjustment)
        with self._summaries_lock:
            self._summaries[study_id] = entry
            self._summaries.move_to_end(study_id)
            while len(self._summaries) > self.SUMMARY_CACHE_SIZE:
                self._summaries.popitem(last=False)
        return entry

    @staticmethod
    def _assemble(
        study_id: int,
        status: str,
        versions: dict[str, int],
        cells: dict[str, _CellPart],
        prev: _SummaryEntry | None,
        adjustment: str,
    ) -> _SummaryEntry:
        """The summary from each cell's part; a raw comparison is reused while both its parts
        are the ones it was computed from, and the study's family is adjusted anew
        (``stats.assemble`` is the same without the reuse)."""
        by_key = {part.result.key: (cell_key, part) for cell_key, part in cells.items()}
        old = prev.comparisons if prev is not None else {}
        comparisons: dict[tuple[str, str], tuple[_CellPart, _CellPart, dict[str, Any]]] = {}
        for a, b in stats.comparison_pairs(by_key):
            (ka, pa), (kb, pb) = by_key[a], by_key[b]
            hit = old.get((ka, kb))
            if hit is not None and hit[0] is pa and hit[1] is pb:
                comparisons[ka, kb] = hit
            else:
                comparisons[ka, kb] = (pa, pb, stats.comparison(pa.result, pb.result))
        final, block = stats.adjusted((c[2] for c in comparisons.values()), adjustment)
        summary = SummaryPublic.model_construct(
            study_id=study_id,
            status=status,
            cells=[by_key[key][1].model for key in stats.cell_order(by_key)],
            comparisons=[Comparison.model_validate(c) for c in final],
            adjustment=Adjustment.model_validate(block),
        )
        return _SummaryEntry(status, versions, cells, comparisons, summary)

    @staticmethod
    def _stored_results(
        s: Session, study_id: int, cell_keys: list[str], cells: int
    ) -> dict[str, stats.CellResult]:
        """The stored results of the cells `cell_keys` that are still current (computed at the
        cell's present version, in a format this code reads); `cells`: the study's count."""
        query = select(StudyCell.cell_key, StudyCell.result).where(
            StudyCell.study_id == study_id, StudyCell.result_version == StudyCell.version
        )
        if len(cell_keys) == cells:
            rows: list[Any] = list(s.connection().execute(query))
        else:
            rows = []
            for chunk in _chunks(cell_keys, _IN_BATCH):
                rows += s.connection().execute(query.where(StudyCell.cell_key.in_(chunk)))
        out = {}
        for cell_key, data in rows:
            result = stats.cell_result_from_json(data)
            if result is not None:
                out[cell_key] = result
        return out

    def _cell_results(
        self, s: Session, study_id: int, cell_keys: list[str] | None
    ) -> dict[str, stats.CellResult]:
        """``stats.cell_result`` of the study's cells `cell_keys` (None: every cell)."""
        groups = self._lr_groups(s, study_id, cell_keys)
        trials: dict[stats.CellKey, list[stats.TrialOutcome]] = defaultdict(list)
        for t in self._trials_at(s, study_id, groups):
            trials[stats.cell_of(t)].append(t)
        out = {}
        for cell_key, cell_groups in groups.items():
            key = cell_groups[0].cell
            out[cell_key] = stats.cell_result(key, cell_groups, trials[key])
        return out

    def _lr_groups(
        self, s: Session, study_id: int, cell_keys: list[str] | None = None
    ) -> dict[str, list[stats.LrGroup]]:
        """``stats.group_outcomes`` of the study's trials (of the cells `cell_keys`; None: all),
        by cell_key, from a GROUP BY over the covering index ``ix_trials_study_summary``
        (~2,000 rows for 20,000 trials, no visit to the wide trial rows); statuses are grouped
        in SQL and added up here. Run on the session's connection (Core rows: the ORM's result
        layer cost ~3 ms more for these rows, SQLite and PostgreSQL)."""
        keys = (
            Trial.cell_key,
            Trial.lr,
            Trial.init_scale,
            Trial.method,
            Trial.depth,
            Trial.width,
            Trial.activation,
        )
        test_if_val = case((Trial.val_acc.is_not(None), Trial.test_acc))
        query = (
            select(
                *keys,
                Trial.status,
                func.count(),
                func.count(Trial.val_acc),
                func.sum(Trial.val_acc),
                func.count(test_if_val),
                func.sum(test_if_val),
            )
            .where(Trial.study_id == study_id)
            .group_by(*keys, Trial.status)
        )
        if cell_keys is None:
            rows: list[Any] = list(s.connection().execute(query))
        else:
            rows = []
            for chunk in _chunks(cell_keys, _IN_BATCH):
                rows += s.connection().execute(query.where(Trial.cell_key.in_(chunk)))
        # (cell_key, lr, init_scale) -> _GroupSums (the partial sums per scored status are added
        # with fsum: the same total in any row order).
        acc: dict[tuple[str, float | None, float | None], _GroupSums] = {}
        for cell_key, lr, scale, method, depth, width, activation, status, *counts in rows:
            e = acc.get((cell_key, lr, scale))
            if e is None:
                e = acc[cell_key, lr, scale] = _GroupSums((method, depth, width, activation))
            e.add(status, *counts)
        out: dict[str, list[stats.LrGroup]] = defaultdict(list)
        for (cell_key, lr, scale), e in acc.items():
            out[cell_key].append(e.group(lr, scale))
        return out

    def _trials_at(
        self, s: Session, study_id: int, groups: dict[str, list[stats.LrGroup]]
    ) -> list[stats.TrialOutcome]:
        """The trials of each cell at its best setting, in expansion order (stats picks the
        scored ones); index lookups on ``ix_trials_study_summary`` by (cell_key, lr), the init
        scale filtered here (rows at the best lr with another scale are few)."""
        best = stats.best_settings(g for cell in groups.values() for g in cell)
        wanted = {
            cell_key: setting
            for cell_key, cell in groups.items()
            if (setting := best[cell[0].cell]) is not None
        }
        at = sorted({(cell_key, setting[0]) for cell_key, setting in wanted.items()})
        rows: list[Any] = []
        query = select(Trial.index, Trial.cell_key, *OUTCOME_COLUMNS).where(
            Trial.study_id == study_id
        )
        postgres = self.engine.dialect.name == "postgresql"
        for chunk in _chunks(at, _IN_BATCH // 2):  # SQLite: bound parameters per statement
            if postgres:
                # A row-value IN (compiled once, a bitmap of index lookups): ~5 ms less there
                # than the VALUES join, which SQLite runs faster.
                chunk_query = query.where(tuple_(Trial.cell_key, Trial.lr).in_(list(chunk)))
            else:
                pairs = values(column("cell_key", String), column("lr", Float), name="best")
                best_at = pairs.data(list(chunk)).cte("best")
                chunk_query = query.join(
                    best_at, and_(Trial.cell_key == best_at.c.cell_key, Trial.lr == best_at.c.lr)
                )
            rows += s.connection().execute(chunk_query).all()
        # Sorted here: an ORDER BY makes SQLite walk the (study_id, index) index instead.
        rows.sort(key=lambda row: row[0])
        return [
            stats.TrialOutcome(*row[2:])
            for row in rows
            if (row[6], row[-1]) == wanted[row[1]]  # (lr, init_scale) is the best setting
        ]

    EXPORT_TRIAL_COLUMNS = (
        "trial_id",
        "trial_index",
        "status",
        "cell_key",
        "slot",
        "attempt",
    )

    def export_columns(self) -> list[str]:
        """Column names of ``iter_export`` rows, in order (config fields flattened)."""
        from lcw.config import TrialConfig

        config = TrialConfig().to_dict()
        config_cols = []
        for key, value in config.items():
            if isinstance(value, dict):
                config_cols += [f"{key}.{sub}" for sub in value]
            else:
                config_cols.append(key)
        metric_cols = ["epoch", *[f"epoch_{m}" if m == "lr" else m for m in EPOCH_METRICS]]
        return [*self.EXPORT_TRIAL_COLUMNS, *config_cols, *metric_cols]

    def iter_export(self, study_id: int, *, diagnostics: bool = False) -> Iterator[dict[str, Any]]:
        """One row per trial and epoch (a trial without metrics: one row, epoch None).

        Reads 500 trials at a time (keyset on index) and their metrics as plain columns, so a
        study of 20,000 trials x 20 epochs streams in bounded memory.
        """
        metric_cols: list[Any] = [TrialMetric.trial_id, TrialMetric.epoch]
        metric_cols += [getattr(TrialMetric, m) for m in EPOCH_METRICS]
        if diagnostics:
            metric_cols.append(TrialMetric.diagnostics)
        with self._read() as s:
            last_index = -1
            while True:
                trials = s.execute(
                    select(
                        Trial.id,
                        Trial.index,
                        Trial.status,
                        Trial.cell_key,
                        Trial.slot,
                        Trial.attempt,
                        Trial.config,
                    )
                    .where(Trial.study_id == study_id, Trial.index > last_index)
                    .order_by(Trial.index)
                    .limit(_EXPORT_BATCH)
                ).all()
                if not trials:
                    return
                last_index = trials[-1].index
                by_trial: dict[int, list[Any]] = defaultdict(list)
                for metric in s.execute(
                    select(*metric_cols)
                    .where(TrialMetric.trial_id.in_([t.id for t in trials]))
                    .order_by(TrialMetric.trial_id, TrialMetric.epoch)
                ):
                    by_trial[metric.trial_id].append(metric)
                for t in trials:
                    base: dict[str, Any] = {
                        "trial_id": t.id,
                        "trial_index": t.index,
                        "status": t.status,
                        "cell_key": t.cell_key,
                        "slot": t.slot,
                        "attempt": t.attempt,
                    }
                    for key, value in t.config.items():
                        if isinstance(value, dict):
                            base.update({f"{key}.{sub}": v for sub, v in value.items()})
                        else:
                            base[key] = value
                    for metric in by_trial.get(t.id) or [None]:
                        row = dict(base)
                        row["epoch"] = metric.epoch if metric is not None else None
                        for m in EPOCH_METRICS:
                            name = "epoch_lr" if m == "lr" else m
                            row[name] = getattr(metric, m) if metric is not None else None
                        if diagnostics:
                            row["diagnostics"] = metric.diagnostics if metric is not None else None
                        yield row

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

    # -- the queue (used by workers/) ---------------------------------------------------------

    def claim_trials(self, owner: str, *, limit: int, lease_seconds: float) -> list[ClaimedTrial]:
        """Lease up to `limit` pending trials to `owner`: oldest study first, then index.

        Atomic: two claimers never get the same trial (PostgreSQL: FOR UPDATE SKIP LOCKED;
        SQLite: the whole claim runs under BEGIN IMMEDIATE). Each claimed trial is `running`
        with attempt + 1, started now, and any metrics of a previous attempt are deleted (a
        re-run starts over). Trials of cancelled studies are never claimed.
        """
        if limit <= 0:
            return []
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        with self._write() as s:
            live = (
                select(Study.id)
                .where(Study.id == Trial.study_id, Study.status != "cancelled")
                .exists()
            )
            pick = (
                select(Trial.id)
                .where(Trial.status == "pending", live)
                .order_by(Trial.study_id, Trial.index)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(s.scalars(pick))
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
                )
                .execution_options(synchronize_session=False)
            ).all()
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
                )
                for row in claimed
            ]
            return sorted(out, key=lambda c: (c.study_id, c.index))

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
                        .where(
                            Trial.id.in_(chunk),
                            Trial.status == "running",
                            Trial.lease_owner == owner,
                        )
                        .values(
                            lease_expires_at=now + timedelta(seconds=lease_seconds),
                            updated_at=now,
                        )
                        .returning(Trial.id)
                        .execution_options(synchronize_session=False)
                    )
                )
        return held

    def write_metrics(self, owner: str, rows: list[tuple[int, dict[str, Any]]]) -> int:
        """Insert epoch metrics ``(trial_id, metrics)`` for trials `owner` holds; returns rows
        written. A (trial, epoch) already stored is ignored (written once), and so are rows of
        trials the owner no longer holds. Keys: epoch, train_loss ... test_acc, seconds,
        samples_per_s, lr, diagnostics."""
        if not rows:
            return 0
        with self._write() as s:
            ids = sorted({tid for tid, _ in rows})
            # FOR SHARE: a concurrent release/reclaim waits, so no stale attempt's rows land.
            held: set[int] = set()
            for chunk in _chunks(ids, _IN_BATCH):
                held.update(
                    s.scalars(
                        select(Trial.id)
                        .where(
                            Trial.id.in_(chunk),
                            Trial.status == "running",
                            Trial.lease_owner == owner,
                        )
                        .with_for_update(read=True)
                    )
                )
            values: dict[tuple[int, int], dict[str, Any]] = {}
            for tid, metrics in rows:
                epoch = metrics.get("epoch")
                if tid not in held or isinstance(epoch, bool) or not isinstance(epoch, int):
                    continue
                diag = metrics.get("diagnostics")
                values.setdefault(
                    (tid, epoch),
                    {
                        "trial_id": tid,
                        "epoch": epoch,
                        **{m: _num(metrics.get(m)) for m in EPOCH_METRICS},
                        "diagnostics": clean_json(diag) if diag is not None else None,
                    },
                )
            if not values:
                return 0
            now = utcnow()
            written = 0
            for chunk in _chunks(list(values.values()), _METRIC_BATCH):
                stmt = (
                    self._insert(TrialMetric)
                    .values([{**row, "created_at": now} for row in chunk])
                    .on_conflict_do_nothing(index_elements=["trial_id", "epoch"])
                    .returning(TrialMetric.id)
                )
                written += len(s.execute(stmt).all())
            return written

    def complete_trial(
        self,
        owner: str,
        trial_id: int,
        *,
        status: str,
        result: dict[str, Any],
        run_info: dict[str, Any],
    ) -> bool:
        """Finish a trial `owner` holds with `status` completed | diverged | stopped_early.

        `result` is stored whole (JSON) and its final train/val/test loss and accuracy are
        copied into columns for summaries. Returns False, changing nothing, when the owner no
        longer holds the trial.
        """
        if status not in COMPLETE_STATUSES:
            raise ValueError(f"status: '{status}' is not one of {sorted(COMPLETE_STATUSES)}")
        now = utcnow()
        with self._write() as s:
            changed = s.execute(
                update(Trial)
                .where(Trial.id == trial_id, Trial.status == "running", Trial.lease_owner == owner)
                .values(
                    status=status,
                    result=clean_json(result),
                    run_info=clean_json(run_info),
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                    **{m: _num(result.get(m)) for m in FINAL_METRICS},
                )
                .returning(Trial.study_id, Trial.cell_key)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if changed is None:
                return False
            self._refresh_studies(s, [tuple(changed)], now)
            return True

    def fail_trial_attempt(self, owner: str, trial_id: int, *, error: str) -> str:
        """Record a failed attempt of a trial `owner` holds; returns the trial's new status.

        "pending" (another attempt will run) while attempt <= max_retries, else "failed"; the
        error text is kept in both cases. When the owner no longer holds the trial nothing
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
            new = "pending" if row.attempt <= row.max_retries else "failed"
            s.execute(
                update(Trial)
                .where(Trial.id == trial_id)
                .values(
                    status=new,
                    last_error=error[:MAX_ERROR_CHARS],
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now if new == "failed" else None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            self._refresh_studies(s, [(row.study_id, row.cell_key)], now)
            return new

    def release_trials(self, owner: str, trial_ids: list[int]) -> int:
        """Give back trials `owner` holds unfinished (a worker shutting down): they return to
        pending and the attempt they were claimed for is not counted. Returns how many."""
        if not trial_ids:
            return 0
        now = utcnow()
        with self._write() as s:
            changed: list[tuple[int, str]] = []
            for chunk in _chunks(sorted(set(trial_ids)), _IN_BATCH):
                changed += s.execute(
                    update(Trial)
                    .where(
                        Trial.id.in_(chunk),
                        Trial.status == "running",
                        Trial.lease_owner == owner,
                    )
                    .values(
                        status="pending",
                        attempt=Trial.attempt - 1,
                        lease_owner=None,
                        lease_expires_at=None,
                        updated_at=now,
                    )
                    .returning(Trial.study_id, Trial.cell_key)
                    .execution_options(synchronize_session=False)
                ).tuples()
            if changed:
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
                changed += s.execute(
                    update(Trial)
                    .where(*expired, condition)
                    .values(
                        status="failed" if exhausted else "pending",
                        last_error=message
                        + literal("; no attempts left" if exhausted else "; trial requeued"),
                        lease_owner=None,
                        lease_expires_at=None,
                        finished_at=now if exhausted else None,
                        updated_at=now,
                    )
                    .returning(Trial.study_id, Trial.cell_key)
                    .execution_options(synchronize_session=False)
                ).tuples()
            if changed:
                self._refresh_studies(s, changed, now)
            return len(changed)

    def assign_lr(
        self,
        study_id: int,
        cell_key: str,
        slot: int,
        lr: float,
        *,
        init_scale: float | None = None,
    ) -> None:
        """Set the setting of an lr_search slot (the lr column and config["lr"], and, when the
        scale is searched too, init_scale) on every trial of the slot whose lr is still NULL,
        in one transaction. Idempotent; never overwrites a set lr: read the effective setting
        back with ``slot_setting`` when several workers may race."""
        for name, value in (("lr", lr), ("init_scale", init_scale)):
            if value is None and name == "init_scale":
                continue
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name}: {value!r} must be a finite number > 0")
        scale = {} if init_scale is None else {"init_scale": float(init_scale)}
        now = utcnow()
        with self._write() as s:
            rows = s.execute(
                select(Trial.id, Trial.config)
                .where(
                    Trial.study_id == study_id,
                    Trial.cell_key == cell_key,
                    Trial.slot == slot,
                    Trial.lr.is_(None),
                )
                .with_for_update()
            ).all()
            if rows:
                s.execute(
                    update(Trial),
                    [
                        {
                            "id": tid,
                            "lr": float(lr),
                            **scale,
                            "config": {**config, "lr": float(lr), **scale},
                            "updated_at": now,
                        }
                        for tid, config in rows
                    ],
                )
                self._touch_cells(s, study_id, [cell_key])

    def slot_setting(
        self, study_id: int, cell_key: str, slot: int
    ) -> tuple[float, float | None] | None:
        """The (lr, init_scale) assigned to an lr_search slot, None while unassigned."""
        with self._read() as s:
            row = s.execute(
                select(Trial.lr, Trial.init_scale)
                .where(
                    Trial.study_id == study_id,
                    Trial.cell_key == cell_key,
                    Trial.slot == slot,
                    Trial.lr.is_not(None),
                )
                .limit(1)
            ).first()
        return None if row is None else (row[0], row[1])

    def lr_history(
        self, study_id: int, cell_key: str
    ) -> list[tuple[int, float | None, float | None, float | None, str]]:
        """Per lr_search slot of a cell: (slot, lr, init_scale, mean final val_acc over
        finished seeds, status summary), ordered by slot, so a restarted worker can rebuild its
        sampler.

        The status summary is the slots' common status ("completed"), or "status=count" pairs
        joined by commas when its seeds differ ("completed=2,running=1"). Grid studies: [].
        """
        with self._read() as s:
            rows = s.execute(
                select(Trial.slot, Trial.lr, Trial.init_scale, Trial.status, Trial.val_acc)
                .where(
                    Trial.study_id == study_id,
                    Trial.cell_key == cell_key,
                    Trial.slot.is_not(None),
                )
                .order_by(Trial.slot, Trial.index)
            ).all()
        slots: dict[int, dict[str, Any]] = defaultdict(
            lambda: {"lr": None, "scale": None, "accs": [], "statuses": Counter()}
        )
        for slot, lr, scale, status, val_acc in rows:
            entry = slots[slot]
            if entry["lr"] is None and lr is not None:
                entry["lr"], entry["scale"] = lr, scale
            entry["statuses"][status] += 1
            if status in TRIAL_RESULT and val_acc is not None:
                entry["accs"].append(val_acc)
        out = []
        for slot in sorted(slots):
            entry = slots[slot]
            statuses: Counter[str] = entry["statuses"]
            summary = (
                next(iter(statuses))
                if len(statuses) == 1
                else ",".join(f"{k}={statuses[k]}" for k in sorted(statuses))
            )
            accs = entry["accs"]
            mean = sum(accs) / len(accs) if accs else None
            out.append((slot, entry["lr"], entry["scale"], mean, summary))
        return out

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


def _trial_public(t: Trial) -> TrialPublic:
    return TrialPublic(
        id=t.id,
        study_id=t.study_id,
        index=t.index,
        cell_key=t.cell_key,
        method=t.method,
        depth=t.depth,
        width=t.width,
        activation=t.activation,
        seed=t.seed,
        slot=t.slot,
        lr=t.lr,
        init_scale=t.init_scale,
        status=t.status,
        attempt=t.attempt,
        max_retries=t.max_retries,
        config=t.config,
        error=t.last_error,
        train_loss=t.train_loss,
        train_acc=t.train_acc,
        val_loss=t.val_loss,
        val_acc=t.val_acc,
        test_loss=t.test_loss,
        test_acc=t.test_acc,
        created_at=t.created_at,
        started_at=t.started_at,
        finished_at=t.finished_at,
    )


__all__ = ["TRIAL_SORT_KEYS", "ClaimedTrial", "Store", "clean_json"]
