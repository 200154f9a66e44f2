"""Asynchronous successive halving (ASHA) over the trials of one cell: which trials stop early.

Li et al., "A System for Massively Parallel Hyperparameter Tuning" (MLSys 2020); the rule is the
one of Ray Tune's ``AsyncHyperBandScheduler`` (``ray/tune/schedulers/async_hyperband.py``): rungs
at ``grace_period * reduction_factor**k`` epochs; a trial reaching a rung is compared with the
values recorded there by the trials that reached it before, and stops when it is below the top
``1 / reduction_factor`` of them. Asynchronous: nobody waits for a rung to fill, so the first
trial at a rung always continues.

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
    _recorded: dict[int, dict[Any, float]] = field(default_factory=dict)

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

    def on_rung(self, trial: Any, epoch: int, value: float | None) -> bool:
        """Record `trial`'s `value` (val_acc) at rung `epoch`; True: stop it.

        A missing value (a diverged evaluation) ranks below everything. A trial already
        recorded at this rung (a rerun after a failure) keeps its first value and continues.
        """
        if epoch not in self.rungs:
            return False
        recorded = self._recorded.setdefault(epoch, {})
        if trial in recorded:
            return False
        score = MISSING if value is None or not math.isfinite(value) else float(value)
        stop = should_stop(list(recorded.values()), score, reduction_factor=self.reduction_factor)
        recorded[trial] = score
        return stop
