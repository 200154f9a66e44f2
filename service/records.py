"""What the store returns: plain, immutable records of studies and trials.

The store (``service.store``) builds these from its rows and knows nothing of HTTP; the API
(``service.api``) and the web view map them to their response models (``service.schemas``'s
``*Public``), which are the REST contract. A record's fields are the row's columns of the same
names, except ``TrialRecord.error`` (the column ``last_error``) and the derived ``progress``.

No SQLAlchemy, no pydantic, no torch: a record can be built in a test or a script without a
database, and a change to a response model cannot reach the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

from service.vocabulary import TRIAL_STATUSES

T = TypeVar("T")


@dataclass(slots=True)
class Progress:
    """A study's trials counted by status (one field per ``TRIAL_STATUSES`` entry) and in all."""

    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    diverged: int = 0
    stopped_early: int = 0
    failed: int = 0
    cancelled: int = 0

    def count(self, status: str, n: int) -> None:
        """Add `n` trials of `status` (a status outside the vocabulary only adds to total)."""
        if status in TRIAL_STATUSES:
            setattr(self, status, getattr(self, status) + n)
        self.total += n


@dataclass(frozen=True, slots=True)
class StudyRecord:
    id: int
    name: str
    description: str | None
    status: str
    dataset: str
    model: str
    owner: str | None  # the API token's name that submitted it (None: auth off or no name)
    priority: int
    trial_count: int
    spec: dict[str, Any]
    progress: Progress
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Why its trials failed: the error of its most recently failed trial (None: none failed);
    # a study failed at once (a missing dataset) shows the fix here.
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class TrialRecord:
    id: int
    study_id: int
    index: int
    cell_key: str
    method: str
    depth: int | None
    width: int | None
    activation: str
    seed: int
    slot: int | None
    lr: float | None
    init_scale: float | None
    status: str
    attempt: int
    max_retries: int
    config: dict[str, Any]
    error: str | None
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch's metrics of a trial (``trial_metrics``)."""

    epoch: int
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    seconds: float | None
    samples_per_s: float | None
    lr: float | None
    diagnostics: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TrialDetail(TrialRecord):
    """A trial with what only its own page shows: lease, run info, every epoch's metrics."""

    resources: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    result: dict[str, Any] | None = None
    run_info: dict[str, Any] | None = None
    metrics: list[EpochRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and how many rows match in all."""

    data: list[T]
    count: int


def field_names(record: type[Any]) -> list[str]:
    """The fields of a record class, in declaration order."""
    return [f.name for f in fields(record)]
