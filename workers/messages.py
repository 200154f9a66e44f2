"""What a trial runner (``workers.runner``) sends its dispatcher over Ray: typed replies.

Plain frozen dataclasses and one enum, with neither torch nor Ray: the dispatcher reads them
without loading torch, and Ray pickles them by reference to this module on both sides.

* ``info`` answers an ``ActorInfo``: the actor's ``RunnerInfo`` (versions, host, node, pid,
  platform), recorded in every run info, and its device's free memory now.
* ``drain`` answers a list of reports: ``Started`` (a run began; its timeout counts from
  here), ``EpochReport`` (one epoch's metrics; ``rung``: the run waits for the ASHA verdict)
  and ``Stopped`` (a pack member obeyed a stop request; its pack goes on).
* ``run`` answers a ``TrialResult`` (trained to its end: completed, diverged or stopped
  early), a ``TrialSkipped`` (asked to stop before it started) or a ``TrialError`` (it
  raised). ``run_pack`` answers a ``PackReply`` (each member's ``TrialResult`` or
  ``TrialSkipped`` by token) or a ``TrialError`` (the pack raised: every member failed).

Every reply names its kind in ``outcome``, an ``Outcome``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class Outcome(StrEnum):
    """What became of a run: the ``outcome`` of each reply of ``run`` and ``run_pack``."""

    RESULT = "result"  # trained to its end (completed, diverged or stopped early)
    ERROR = "error"  # it raised: a failed attempt
    SKIPPED = "skipped"  # asked to stop before it started: it never ran
    PACK = "pack"  # a pack's members, each a result or skipped


@dataclass(frozen=True)
class RunnerInfo:
    """Where an actor runs and with what (fixed for the actor's life)."""

    versions: dict[str, str]
    hostname: str
    node_id: str
    pid: int
    platform: str


@dataclass(frozen=True)
class ActorInfo:
    """The answer of ``info``: the runner, and its device's free memory (None: unknown)."""

    runner: RunnerInfo
    free_bytes: int | None


@dataclass(frozen=True)
class Started:
    """Run `token` began training (not stopped while it was queued)."""

    token: str


@dataclass(frozen=True)
class EpochReport:
    """One epoch's metrics of run `token`; `rung`: it waits for the ASHA verdict (``decide``)."""

    token: str
    metrics: dict[str, Any]
    rung: bool = False


@dataclass(frozen=True)
class Stopped:
    """Run `token` (a pack member) obeyed a stop request; its pack-mates go on."""

    token: str


Report = Started | EpochReport | Stopped


@dataclass(frozen=True)
class TrialResult:
    """A run trained to its end: ``status`` completed, diverged or stopped_early.

    From ``run`` it carries its compute seconds and runner; as a member of a ``PackReply`` both
    are None (the pack's are on the reply).
    """

    outcome: ClassVar[Outcome] = Outcome.RESULT
    token: str
    status: str
    result: dict[str, Any]  # lcw's TrialResult.to_dict() without its epochs
    epochs: list[dict[str, Any]]  # every epoch's metrics (the reports may have missed some)
    compute_seconds: float | None = None
    runner: RunnerInfo | None = None


@dataclass(frozen=True)
class TrialSkipped:
    """Run `token` was asked to stop before it started: it never ran."""

    outcome: ClassVar[Outcome] = Outcome.SKIPPED
    token: str
    runner: RunnerInfo | None = None


class Permanent(StrEnum):
    """An error no retry can fix, and how far it reaches (``TrialError.permanent``)."""

    TRIAL = "trial"  # this trial's config (invalid, or a model that does not fit the data)
    STUDY = "study"  # what every trial of the study needs (its dataset's files, missing or damaged)


def permanence(exc: BaseException) -> Permanent | None:
    """Whether an exception from lcw is one a retry cannot fix (None: it may be transient)."""
    from lcw.config import ConfigError
    from lcw.dataset_files import DatasetCorruptError, DatasetNotFoundError

    if isinstance(exc, DatasetNotFoundError | DatasetCorruptError):
        return Permanent.STUDY
    if isinstance(exc, ConfigError):
        return Permanent.TRIAL
    return None


@dataclass(frozen=True)
class TrialError:
    """The run (a whole pack: `token` None) raised: type, message and traceback in `error`;
    `permanent` when no retry can fix it (the trial fails at once; ``Permanent.STUDY``: so do
    the study's pending trials)."""

    outcome: ClassVar[Outcome] = Outcome.ERROR
    error: str
    compute_seconds: float
    runner: RunnerInfo
    token: str | None = None
    permanent: Permanent | None = None


Member = TrialResult | TrialSkipped


@dataclass(frozen=True)
class PackReply:
    """A pack's members by token; `compute_seconds`: the whole pack's training time."""

    outcome: ClassVar[Outcome] = Outcome.PACK
    members: dict[str, Member]
    compute_seconds: float
    runner: RunnerInfo


RunReply = TrialResult | TrialSkipped | TrialError  # what ``run`` answers
PackRunReply = PackReply | TrialError  # what ``run_pack`` answers


__all__ = [
    "ActorInfo",
    "EpochReport",
    "Member",
    "Outcome",
    "PackReply",
    "PackRunReply",
    "Permanent",
    "Report",
    "RunReply",
    "RunnerInfo",
    "Started",
    "Stopped",
    "TrialError",
    "TrialResult",
    "TrialSkipped",
    "permanence",
]
