"""SQLAlchemy 2.0 tables: studies, their trials (the queue) and per-epoch trial metrics.

The database is the single source of truth and the queue. A trial row carries its lease
(``lease_owner``, ``lease_expires_at``) and its final metrics as columns, so that summaries and
progress never touch ``trial_metrics``. Every change goes through :mod:`service.store`; the
Alembic migrations in ``service/migrations/versions`` create exactly these tables (a test
compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

FINAL_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
EPOCH_METRICS = (*FINAL_METRICS, "seconds", "samples_per_s", "lr")

# Deterministic constraint names, so migrations and models agree on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)  # stored as text; compare as UTC text
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class _FinalMetrics:
    """The columns of ``FINAL_METRICS``: a trial's final values, or one epoch's."""

    train_loss: Mapped[float | None] = mapped_column(Float)
    train_acc: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_acc: Mapped[float | None] = mapped_column(Float)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)


class Study(Base):
    """One submitted spec; its status follows its trials (derived by ``service.store.studies``
    in the transaction of each trial change)."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the normalized spec, defaults filled in
    trial_count: Mapped[int] = mapped_column(Integer)
    # A client's Idempotency-Key and the hash of the normalized spec it came with: a retried
    # submission with the same key and spec returns this study instead of creating another.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Who submitted it: the name of the API token used (``name:token`` in LCW_API_TOKENS);
    # None when auth is off or the token has no name.
    owner: Mapped[str | None] = mapped_column(String(100), index=True)
    # Higher runs first; within a priority, claims share the workers across owners, then
    # across each owner's studies (``service.store.queue``).
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Trial(_FinalMetrics, Base):
    """One training run of the study grid: the queue entry, its lease and its final result."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "index", name="uq_trials_study_id_index"),
        Index("ix_trials_study_status", "study_id", "status"),
        Index("ix_trials_study_cell", "study_id", "cell_key", "slot"),
        # The claim query: pending trials, oldest study first, then index. Also serves counts
        # by status over all studies (/metrics).
        Index("ix_trials_claim", "status", "study_id", "index"),
        Index("ix_trials_lease", "status", "lease_expires_at"),
        # Store.summary: its GROUP BY (cell, lr, init_scale, status) reads this index alone,
        # never the wide trial rows; its read of the trials at each cell's best setting seeks
        # (cell_key, lr).
        Index(
            "ix_trials_study_summary",
            "study_id",
            "cell_key",
            "lr",
            "init_scale",
            "method",
            "depth",
            "width",
            "activation",
            "status",
            "seed",
            "val_acc",
            "test_acc",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)  # position in the deterministic expansion
    cell_key: Mapped[str] = mapped_column(String(200))  # method|depth|width|activation
    method: Mapped[str] = mapped_column(String(32))
    depth: Mapped[int | None] = mapped_column(Integer)  # None: the model has a fixed layout
    width: Mapped[int | None] = mapped_column(Integer)
    activation: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int | None] = mapped_column(Integer)  # lr_search slot; None for a grid LR
    lr: Mapped[float | None] = mapped_column(Float)  # None until the lr_search fills it in
    # Multiplier of the method's default init std; None until an lr_search that searches the
    # scale fills it in with the slot's lr. (lr, init_scale) is the trial's setting.
    init_scale: Mapped[float | None] = mapped_column(Float)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # lcw.TrialConfig.to_dict()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # claims so far (1-based once run)
    max_retries: Mapped[int] = mapped_column(Integer, default=2)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    run_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StudyCell(Base):
    """A (study, cell) pair and a counter moved by every change to the cell's trials that a
    summary can see (a result, a failure, a requeue, a cancel, an assigned lr_search LR).

    ``Store.summary`` keeps each cell's part of a summary with the version it was computed at
    (in memory, and here) and recomputes only the cells whose version moved, so a summary after
    one trial finishes reads that trial's cell, not the whole study.
    """

    __tablename__ = "study_cells"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    cell_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # The cell's part of a summary (``stats.cell_result_to_json``) as computed at version
    # `result_version`: a process that starts (or forgot it) reads it instead of recomputing
    # while the two versions agree.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_version: Mapped[int | None] = mapped_column(Integer)


class StudyChange(Base):
    """A change made to a stored study after its submission: an ``extend`` (trials added) or a
    ``retry`` (failed or cancelled trials requeued). The record a reviewer needs to see that
    seeds were added after results were in, and what an Idempotency-Key replays."""

    __tablename__ = "study_changes"
    __table_args__ = (
        UniqueConstraint("kind", "idempotency_key", name="uq_study_changes_kind_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "extend" or "retry"
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the extension as sent, or {}
    trials: Mapped[int] = mapped_column(Integer)  # trials added or requeued
    # A client's Idempotency-Key (unique per kind of change) and the hash of its request.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrialMetric(_FinalMetrics, Base):
    """One epoch of one trial (epoch 0: evaluation at init); written once per epoch."""

    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "epoch", name="uq_trial_metrics_trial_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    samples_per_s: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    # {"layers": [{"layer", "shift", "abs_mean", "grad_norm", "saturated"}, ...]} or None
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StudyNotification(Base):
    """A webhook call owed for a study that finished (completed, failed or cancelled): the
    outbox ``service.notify`` delivers from.

    Written by the store in the transaction that finishes the study, so a finish is never
    lost nor told twice by the writer; the API process's deliverer POSTs it, retries with a
    backoff until ``LCW_WEBHOOK_RETRY_S`` after ``created_at``, and records the outcome.
    ``url`` is the study's ``notify.webhook``, or None: the deliverer's ``LCW_WEBHOOK_URL``.
    """

    __tablename__ = "study_notifications"
    __table_args__ = (Index("ix_study_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    url: Mapped[str | None] = mapped_column(String(2000))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # the event, less the URLs
    # pending -> delivered | gave_up | skipped (no URL: neither the spec's nor the server's)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # POSTs started so far
    # When a deliverer may next take it: due now, after a backoff, or after a claim's lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
