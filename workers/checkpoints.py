"""Checkpoints on the workers' side: what a run is told, where the files go, when they go away.

The dispatcher (``workers.pool``) sends every run a small plain dict, ``CheckpointSpec``:

* ``location``: the directory (``LCW_CHECKPOINT_DIR``, ``service.config``), None for the
  actor's own default (``lcw.checkpoint.default_location``: its environment's
  ``LCW_CHECKPOINT_DIR``, else ``<LCW_DATA_HOME>/checkpoints``);
* ``members``: one name per trial, ``s<study id>-t<trial id>``: a pack's checkpoint is named
  after its members and resumes only the same member set;
* ``every``: the study's ``checkpoint_every`` (None: automatic, ``lcw.checkpoint``);
* ``final``: every trial of the run is on its last attempt (a failure is final).

The runner (``workers.runner``) turns it into an ``lcw.checkpoint.CheckpointPlan`` (``plan``)
and deletes the checkpoint when its trials reach a final state (``discard``): after a result
(completed, diverged, or stopped by ASHA), or after an error on the last attempt or one no
retry fixes (``workers.messages.permanence``). A run stopped by a request keeps it (a shutdown
or a lost lease: another attempt resumes it). What is not deleted: the checkpoint of a trial
whose study was cancelled mid-run, and of one whose last attempt's process died (its actor
cannot clean up); they stay in the directory until removed by hand.

``mark_start`` flags the first epoch a run reports (0, or the one after the checkpoint it
resumed from) with ``attempt_start``: the store then replaces the trial's rows from that epoch
on (``Store.write_metrics``), and keeps the earlier ones a resumed attempt does not re-run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("lcw.workers")

CheckpointSpec = dict[str, Any]
ATTEMPT_START = "attempt_start"


def member_name(study_id: int, trial_id: int) -> str:
    return f"s{study_id}-t{trial_id}"


def spec(
    location: str | None, members: Sequence[str], every: int | None, *, final: bool
) -> CheckpointSpec:
    return {"location": location, "members": list(members), "every": every, "final": final}


def plan(checkpoint: CheckpointSpec | None, members: Sequence[str] | None = None) -> Any:
    """The ``CheckpointPlan`` of a run (`members`: the names of the trials that run, when only
    some of a pack's do), None when the run was sent no checkpoint spec."""
    if checkpoint is None:
        return None
    from lcw.checkpoint import CheckpointPlan, auto_interval, default_location

    return CheckpointPlan(
        location=checkpoint.get("location") or default_location(),
        members=tuple(members if members is not None else checkpoint["members"]),
        every=checkpoint.get("every"),
        interval_s=auto_interval(),
    )


def discard(checkpoint_plan: Any, configs: Sequence[dict[str, Any]]) -> None:
    """Delete a run's checkpoint (its trials are final); a storage error is only logged."""
    if checkpoint_plan is None:
        return
    from lcw.checkpoint import delete_checkpoint

    try:
        delete_checkpoint(checkpoint_plan, configs)
    except (OSError, ValueError) as exc:
        log.warning("could not delete checkpoint in %s: %s", checkpoint_plan.location, exc)


def mark_start(epochs: list[dict[str, Any]], resumed_from: int | None) -> list[dict[str, Any]]:
    """`epochs` (a result's) with the first one this run ran flagged ``attempt_start``."""
    first = 0 if resumed_from is None else resumed_from + 1
    return [
        {**e, ATTEMPT_START: True}
        if e.get("epoch") == first
        else {k: v for k, v in e.items() if k != ATTEMPT_START}
        for e in epochs
    ]


__all__ = [
    "ATTEMPT_START",
    "CheckpointSpec",
    "discard",
    "mark_start",
    "member_name",
    "plan",
    "spec",
]
