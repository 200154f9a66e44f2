"""The status vocabulary of studies and trials, defined once (no SQLAlchemy, no torch).

Every other place takes its statuses from here: the database models and the store, the
statistics, the API's query parameters, the client and the CLI, the workers' LR search, and the
web pages (``as_json`` is handed to every page as ``window.LCW_VOCABULARY``; the templates get
the same groupings as Jinja globals).

A trial moves pending -> running -> one of the terminal statuses (``service.store``'s docstring
has the queue's transitions). The groupings:

* ``TRIAL_RESULT``: ran to a result (stored accuracies): completed, diverged, stopped_early.
* ``TRIAL_SCORED``: ran the whole budget, so it counts in a summary's means: completed and
  diverged (a diverged trial scores what its model does when it diverged);
  ``TRIAL_STOPPED`` (stopped early by the scheduler) is counted beside the means, never in them.
* ``TRIAL_UNFINISHED``: pending or running; ``TRIAL_TERMINAL``: every other status.
* ``TRIAL_RETRIABLE``: failed or cancelled, what a study's retry requeues (a trial with a
  result never runs again).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

StudyStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TrialStatus = Literal[
    "pending", "running", "completed", "diverged", "stopped_early", "failed", "cancelled"
]

STUDY_STATUSES: tuple[str, ...] = get_args(StudyStatus)
STUDY_FINISHED = frozenset({"completed", "failed", "cancelled"})

# In the order a study's trials move through them (``schemas.Progress``'s fields, less total).
TRIAL_STATUSES: tuple[str, ...] = get_args(TrialStatus)
TRIAL_UNFINISHED = frozenset({"pending", "running"})
TRIAL_TERMINAL = frozenset(TRIAL_STATUSES) - TRIAL_UNFINISHED
TRIAL_RESULT = frozenset({"completed", "diverged", "stopped_early"})
TRIAL_SCORED = frozenset({"completed", "diverged"})
TRIAL_STOPPED = "stopped_early"
TRIAL_RETRIABLE = frozenset({"failed", "cancelled"})


def with_result(progress: Any) -> int:
    """How many of a study's trials ran to a result (a ``Progress`` or anything with its
    per-status counts as attributes)."""
    return sum(getattr(progress, status) for status in TRIAL_STATUSES if status in TRIAL_RESULT)


def as_json() -> dict[str, Any]:
    """The vocabulary for the pages' scripts (lists in a fixed order)."""
    ordered = lambda group: [s for s in TRIAL_STATUSES if s in group]  # noqa: E731
    return {
        "study_statuses": list(STUDY_STATUSES),
        "study_finished": [s for s in STUDY_STATUSES if s in STUDY_FINISHED],
        "trial_statuses": list(TRIAL_STATUSES),
        "trial_result": ordered(TRIAL_RESULT),
        "trial_scored": ordered(TRIAL_SCORED),
        "trial_unfinished": ordered(TRIAL_UNFINISHED),
        "trial_terminal": ordered(TRIAL_TERMINAL),
        "trial_retriable": ordered(TRIAL_RETRIABLE),
    }


__all__ = [
    "STUDY_FINISHED",
    "STUDY_STATUSES",
    "TRIAL_RESULT",
    "TRIAL_RETRIABLE",
    "TRIAL_SCORED",
    "TRIAL_STATUSES",
    "TRIAL_STOPPED",
    "TRIAL_TERMINAL",
    "TRIAL_UNFINISHED",
    "StudyStatus",
    "TrialStatus",
    "as_json",
    "with_result",
]
