"""Asynchronous successive halving (ASHA) over the trials of one cell: which trials stop early.

Li et al., "A System for Massively Parallel Hyperparameter Tuning" (MLSys 2020); the rule is the
one of Ray Tune's ``AsyncHyperBandScheduler`` (``ray/tune/schedulers/async_hyperband.py``): rungs
at ``grace_period * reduction_factor**k`` epochs; a trial reaching a rung is compared with the
values recorded there by the trials that reached it before, and stops when it is below the top
``1 / reduction_factor`` of them. Asynchronous: nobody waits for a rung to fill, so the first
trial at a rung always continues.

**Per setting, not per trial.** The unit ASHA judges is a setting of a cell (a grid (lr, init
scale) or an lr_search slot), on the mean val_acc over *all* its seeds at the rung, so that a
seed of one method is never stopped while its pair runs on: seed pairs stay intact. A setting
is judged when its last seed reports the rung; its seeds that report earlier go on meanwhile (no
trial waits, so no worker is held). Once a setting is stopped at a rung, each of its seeds still
running stops at its next rung; a seed that already passed every rung completes. The summary
scores only trials that ran the whole budget and never picks a setting with an early-stopped
trial (``service.stats``).

Pure bookkeeping, no Ray and no database: the dispatcher asks ``on_rung`` when a trial reports a
rung epoch and tells the trial's actor the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The score of a trial without a value: below every accuracy, and finite so that the quantile's
# interpolation stays a number (-inf would make it NaN and stop nobody).
MISSING = -1.0


def rungs(*, grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The rung epochs below `max_epochs` (stopping at the last epoch would save nothing)."""
    if grace_period < 1 or reduction_factor < 2:
        raise ValueError(
            f"grace_period ({grace_period}) must be >= 1 and reduction_factor "
            f"({reduction_factor}) >= 2"
        )
    out = []
    epoch = grace_period
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= reduction_factor
    return out


def should_stop(recorded: list[float], value: float, *, reduction_factor: int) -> bool:
    """True when `value` is below the (1 - 1/rf) quantile of the values `recorded` at a rung.

    The quantile is linear-interpolated like ``numpy.percentile`` (Ray Tune's cutoff); with
    nothing recorded the trial continues.
    """
    if not recorded:
        return False
    ordered = sorted(recorded)
    q = (1.0 - 1.0 / reduction_factor) * (len(ordered) - 1)
    low = math.floor(q)
    high = min(low + 1, len(ordered) - 1)
    cutoff = ordered[low] + (ordered[high] - ordered[low]) * (q - low)
    return value < cutoff


@dataclass
class Asha:
    """ASHA state of one cell: the value each trial had at each rung it reached."""

    grace_period: int
    reduction_factor: int
    max_epochs: int
    # rung -> setting -> seed -> val_acc; rung -> setting -> mean over its seeds (once complete)
    _seen: dict[int, dict[Any, dict[int, float]]] = field(default_factory=dict)
    _recorded: dict[int, dict[Any, float]] = field(default_factory=dict)
    _stopped: set[Any] = field(default_factory=set)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, max_epochs: int) -> Asha:
        """From a study's ``scheduler`` block (``{"name": "asha", "grace_period", ...}``)."""
        return cls(
            grace_period=int(spec.get("grace_period", 1)),
            reduction_factor=int(spec.get("reduction_factor", 3)),
            max_epochs=max_epochs,
        )

    @property
    def rungs(self) -> list[int]:
        return rungs(
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            max_epochs=self.max_epochs,
        )

    def on_rung(
        self, setting: Any, seed: int, epoch: int, value: float | None, *, seeds: int
    ) -> bool:
        """Record seed `seed` of `setting` at rung `epoch` with `value` (val_acc); True: stop
        this trial (its setting was stopped, now or at an earlier rung).

        The setting is judged when all `seeds` of it have reported this rung, on their mean. A
        missing value (a diverged evaluation) ranks below everything. A seed already recorded
        at this rung (a rerun after a failure) keeps its first value.
        """
        if setting in self._stopped:
            return True
        if epoch not in self.rungs:
            return False
        seen = self._seen.setdefault(epoch, {}).setdefault(setting, {})
        if seed in seen:
            return False
        seen[seed] = MISSING if value is None or not math.isfinite(value) else float(value)
        recorded = self._recorded.setdefault(epoch, {})
        if len(seen) < seeds or setting in recorded:
            return False
        score = math.fsum(seen.values()) / len(seen)
        stop = should_stop(list(recorded.values()), score, reduction_factor=self.reduction_factor)
        recorded[setting] = score
        if stop:
            self._stopped.add(setting)
        return stop
