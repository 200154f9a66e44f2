"""The write-behind queue: what the dispatcher owes the database, written each tick, retried.

Nothing on the actors' path waits for SQL. Epoch metrics (``rows``) and finished trials
(``ops``: complete, fail or release) queue here, and ``flush`` writes them once a tick: the
metrics in one ``write_metrics`` call first (a trial's rows before its outcome), then the
operations in order, each dropped from the queue only once stored. Metrics alone (no outcome
queued behind them) are written at most every ``METRICS_EVERY_S``: a page sees an epoch within
that, and short trials' epochs cost a few writes a second instead of one a tick (each write is
a transaction, on the cores the trials train on). A database error (SQLAlchemy's,
or the store's error raised from one) leaves the rest queued and backs off (0.5 s, doubling up
to ``DB_BACKOFF_MAX_S``); ``db`` runs the loop's other database work (renewals, claims) under
the same backoff. The store fences every write by
owner, so a late write can never overwrite the run of a trial that someone else holds now.

A trial leaves ``Held`` once its operation is stored; a final lr_search outcome is handed to
``on_final`` (the searcher learns from it). Each store write is timed, and what it stored (rows,
trials by outcome) counted, on the dispatcher's metrics (``workers.metrics``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from service.errors import NotFoundError, StoreError
from service.store import ClaimedTrial, Completion, Store
from workers.messages import Permanent
from workers.metrics import DispatcherMetrics
from workers.state import Held, Trial, first_line

log = logging.getLogger("lcw.workers")

DB_BACKOFF_MAX_S = 10.0
METRICS_EVERY_S = 1.0  # longest a queued epoch waits for a write when no outcome follows it
METRICS_MAX_ROWS = 5000  # ... or until this many rows are queued


@dataclass(frozen=True)
class Op:
    """One store operation on finished trials (complete and fail: one trial; fail_pending:
    none, the study's pending ones)."""

    kind: Literal["complete", "fail", "release", "fail_pending"]
    trial_ids: tuple[int, ...]
    args: dict[str, Any] = field(default_factory=dict)


def database_error(exc: BaseException) -> bool:
    """A failed or unreachable database: the store's ``StoreError``, or an error of SQLAlchemy's
    that the store passes on (a constraint it does not handle itself)."""
    return isinstance(exc, StoreError | SQLAlchemyError)


def _nothing(claim: ClaimedTrial) -> None:
    return None


class WriteBack:
    """The queued metrics and trial outcomes of one dispatcher (see the module docstring)."""

    def __init__(self, store: Store, owner: str, held: Held, metrics: DispatcherMetrics) -> None:
        self.store = store
        self.owner = owner
        self.held = held
        self.prom = metrics
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.ops: deque[Op] = deque()
        self.retry_at = 0.0  # no database work before this (monotonic time)
        self.metrics_at = 0.0  # when metrics alone are written next (monotonic time)
        self.backoff = 0.0
        # Told of every trial with a slot and lr_search whose final outcome was stored.
        self.on_final: Callable[[ClaimedTrial], None] = _nothing

    # -- queueing -----------------------------------------------------------------------------

    def metrics(self, t: Trial, metrics: dict[str, Any]) -> None:
        """Queue one epoch's metrics of `t`, once per epoch."""
        if metrics["epoch"] not in t.written:
            t.written.add(metrics["epoch"])
            self.rows.append((t.id, metrics))

    def finish(self, t: Trial, op: Op) -> None:
        """Queue `t`'s outcome for the database (after its metrics: rows flush first)."""
        if t in self.held.backlog:
            self.held.backlog.remove(t)
        t.phase = "finishing"
        self.ops.append(op)

    def fail(self, t: Trial, error: str, *, permanent: Permanent | None = None) -> None:
        """A failed attempt of `t`: retried while its max_retries allows, unless the error is
        `permanent` (no retry can fix it). ``Permanent.STUDY`` (a missing dataset) fails the
        study's other trials too: those waiting here for an actor, and its pending ones."""
        if permanent is None:
            self.finish(t, Op("fail", (t.id,), {"error": error}))
            return
        self.finish(t, Op("fail", (t.id,), {"error": error, "retry": False}))
        if permanent is Permanent.STUDY:
            study = t.claim.study_id
            for other in [w for w in self.held.backlog if w.claim.study_id == study]:
                self.finish(other, Op("fail", (other.id,), {"error": error, "retry": False}))
            self.ops.append(Op("fail_pending", (), {"study_id": study, "error": error}))

    def release(self, t: Trial) -> None:
        """Give `t` back to the queue unused (it never ran, or we stopped it)."""
        self.finish(t, Op("release", (t.id,)))

    def release_backlog(self) -> None:
        """Give every trial that waits for an actor back to the queue (one operation)."""
        waiting = list(self.held.backlog)
        for t in waiting:
            self.held.backlog.remove(t)
            t.phase = "finishing"
        if waiting:
            self.ops.append(Op("release", tuple(t.id for t in waiting)))

    # -- writing ------------------------------------------------------------------------------

    def db(self, fn: Callable[[], None]) -> bool:
        """Run database work; on a database error back off (the work is retried later)."""
        if time.monotonic() < self.retry_at:
            return False
        try:
            fn()
        except Exception as exc:
            if not database_error(exc):
                raise
            self.backoff = min(max(self.backoff * 2, 0.5), DB_BACKOFF_MAX_S)
            self.retry_at = time.monotonic() + self.backoff
            log.warning(
                "database unavailable (%s); retrying in %.1f s",
                first_line(exc),
                self.backoff,
            )
            return False
        self.backoff = 0.0
        return True

    def flush(self, *, now: bool = False) -> bool:
        """Store the queued metrics (one call), then the finished trials; True when all done.
        Metrics with no operation queued wait until ``METRICS_EVERY_S`` after the last write
        (or ``METRICS_MAX_ROWS`` are queued); False while they wait.

        `now`: try at once, even while backing off (shutdown, an ASHA rung)."""
        if now:
            self.retry_at = 0.0
        if not self.rows and not self.ops:
            return True
        due = self.metrics_at <= time.monotonic() or len(self.rows) >= METRICS_MAX_ROWS
        if not (now or self.ops or due):
            return False
        return self.db(self._flush_now)

    def _flush_now(self) -> None:
        if self.rows:
            with self.prom.timed("write_metrics"):
                written = self.store.write_metrics(self.owner, self.rows)
            self.prom.rows_written.inc(written)
            self.rows = []
            self.metrics_at = time.monotonic() + METRICS_EVERY_S
        while self.ops:
            if self.ops[0].kind == "complete":
                self._complete()
                continue
            self._apply(self.ops[0])
            self.ops.popleft()

    def _complete(self) -> None:
        """The completions at the head of the queue, in one transaction (``complete_trials``)."""
        ops: list[Op] = []
        for op in self.ops:
            if op.kind != "complete":
                break
            ops.append(op)
        with self.prom.timed("complete_trials"):
            stored = self.store.complete_trials(
                self.owner, [Completion(op.trial_ids[0], **op.args) for op in ops]
            )
        for op in ops:
            self.ops.popleft()
            if op.trial_ids[0] in stored:
                self.prom.trials[op.args["status"]].inc()
            self._settled(op.trial_ids[0], final=op.trial_ids[0] in stored)

    def _settled(self, trial_id: int, *, final: bool) -> None:
        """`trial_id`'s operation is stored: it leaves Held (a final lr_search outcome teaches
        its searcher)."""
        t = self.held.trials.pop(trial_id, None)
        if t is not None and final and t.claim.slot is not None and t.claim.lr_search:
            self.on_final(t.claim)

    def _apply(self, op: Op) -> None:
        """A fail, fail_pending or release operation (completions: ``_complete``)."""
        final = False
        counts = self.prom.trials
        try:
            if op.kind == "fail":
                with self.prom.timed("fail_trial_attempt"):
                    status = self.store.fail_trial_attempt(self.owner, op.trial_ids[0], **op.args)
                final = status == "failed"
                if final or status == "pending":  # else: not ours any more, nothing stored
                    counts["failed" if final else "failed_attempt"].inc()
                log.info(
                    "trial %d attempt failed (%s): %s",
                    op.trial_ids[0],
                    status,
                    first_line(op.args["error"]),
                )
            elif op.kind == "fail_pending":
                with self.prom.timed("fail_pending"):
                    n = self.store.fail_pending(op.args["study_id"], op.args["error"])
                log.info(
                    "study %d: %d pending trials failed without running: %s",
                    op.args["study_id"],
                    n,
                    first_line(op.args["error"]),
                )
            else:
                with self.prom.timed("release_trials"):
                    n = self.store.release_trials(self.owner, list(op.trial_ids))
                counts["released"].inc(n)
        except NotFoundError:  # deleted meanwhile
            final = False
        for tid in op.trial_ids:
            self._settled(tid, final=final)


__all__ = ["DB_BACKOFF_MAX_S", "METRICS_EVERY_S", "METRICS_MAX_ROWS", "Op", "WriteBack"]
