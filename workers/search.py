"""Learning-rate search per cell: Ray Tune's ``OptunaSearch`` driven one slot at a time.

Every cell (``method|depth|width|activation``) of an ``lr_search`` study gets its own searcher,
seeded from the cell key, and the same budget: the study expands into ``trials_per_cell`` slots
per cell, each slot one LR run with every seed. The dispatcher asks the searcher for a slot's LR
when the slot's first trial is claimed (``suggest``) and stores it on the slot
(``Store.assign_lr``), so all seeds of the slot train with it; when every seed of a slot has
finished it reports the slot's mean final ``val_acc`` back (``observe``).

The searcher lives in the dispatcher's memory only. A restarted (or second) dispatcher rebuilds
it from ``Store.lr_history``: finished slots are added as evaluated points (Optuna's
``add_trial``, through ``OptunaSearch.add_evaluated_point``), assigned-but-unfinished slots are
remembered and reported when they finish, and no slot is ever given a second LR (``assign_lr``
never overwrites). We use the searcher API standalone, without ``Tuner``: the trials are rows in
our database, not Tune trials.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("lcw.workers.search")

_FINISHED = frozenset({"completed", "diverged", "stopped_early", "failed", "cancelled"})

# (slot, lr, mean final val_acc over the slot's finished seeds, status summary): lr_history rows.
HistoryRow = tuple[int, float | None, float | None, str]


def cell_seed(cell_key: str) -> int:
    """A stable per-cell sampler seed (the same spec proposes the same first LRs every run)."""
    return zlib.crc32(cell_key.encode())


def slot_finished(summary: str) -> bool:
    """Whether an lr_history status summary ("completed", "completed=2,running=1") is final."""
    statuses = [part.split("=", 1)[0] for part in summary.split(",") if part]
    return bool(statuses) and all(s in _FINISHED for s in statuses)


class CellSearch:
    """The LR searcher of one cell of one study."""

    def __init__(
        self,
        lr_search: dict[str, Any],
        *,
        cell_key: str,
        history: Sequence[HistoryRow] = (),
    ) -> None:
        import optuna
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch

        low, high = float(lr_search["low"]), float(lr_search["high"])
        domain = (
            tune.loguniform(low, high) if lr_search.get("log", True) else tune.uniform(low, high)
        )
        # The sampler's random stream restarts with its seed: a searcher rebuilt after a restart
        # would propose the first LRs again, so the seed moves on with the slots already given.
        seed = cell_seed(cell_key) + 1_000_003 * sum(lr is not None for _, lr, _, _ in history)
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if lr_search.get("sampler", "tpe") == "random"
            else optuna.samplers.TPESampler(seed=seed)
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per ask otherwise
        # Optuna distributions, converted once: OptunaSearch warns on raw Tune domains.
        space = OptunaSearch.convert_search_space({"lr": domain})
        self.low, self.high = low, high
        self.cell_key = cell_key
        self._searcher = OptunaSearch(space=space, metric="val_acc", mode="max", sampler=sampler)
        self._suggested: set[int] = set()  # slots whose LR this searcher proposed
        self._open: dict[int, float] = {}  # slots with an LR whose seeds are not all finished
        self._told: set[int] = set()  # slots reported to the sampler
        self._rebuild(history)

    @staticmethod
    def _id(slot: int) -> str:
        return f"slot-{slot}"

    def _rebuild(self, history: Sequence[HistoryRow]) -> None:
        """Load a cell's past slots (from ``Store.lr_history``) into the sampler."""
        for slot, lr, mean, summary in history:
            if lr is None or slot in self._told or slot in self._suggested:
                continue
            if slot_finished(summary):
                self._add_point(slot, lr, mean)
            else:
                self._open[slot] = lr

    def suggest(self, slot: int) -> float:
        """A new LR for `slot`, inside [low, high]."""
        params = self._searcher.suggest(self._id(slot))
        if params is None:  # pragma: no cover - OptunaSearch without a trial limit never ends
            raise RuntimeError(f"the LR searcher of cell {self.cell_key} has no suggestion")
        self._suggested.add(slot)
        # Clamp: float round-off of exp(log(x)) can land a hair outside the bounds.
        return min(max(float(params["lr"]), self.low), self.high)

    def assigned(self, slot: int, lr: float, proposed: float) -> None:
        """The slot's effective LR after ``assign_lr`` (another dispatcher may have won)."""
        if slot in self._suggested and not math.isclose(lr, proposed, rel_tol=1e-12):
            # Our proposal lost the race: withdraw it, the winner's LR is reported when done.
            self._searcher.on_trial_complete(self._id(slot), None, error=True)
            self._suggested.discard(slot)
        self._open[slot] = lr

    def observe(self, history: Sequence[HistoryRow]) -> list[int]:
        """Report every slot in `history` whose seeds have all finished; returns the slots told."""
        told = []
        for slot, lr, mean, summary in history:
            if lr is None or slot in self._told or not slot_finished(summary):
                continue
            if slot in self._suggested:
                result = {"val_acc": mean} if mean is not None else None
                self._searcher.on_trial_complete(self._id(slot), result, error=mean is None)
                self._told.add(slot)
            else:
                self._add_point(slot, lr, mean)
            self._open.pop(slot, None)
            told.append(slot)
        return told

    def _add_point(self, slot: int, lr: float, mean: float | None) -> None:
        lr = min(max(lr, self.low), self.high)  # add_trial rejects a value outside the space
        # A slot without a score (all seeds failed) is a failed Optuna trial: TPE ignores it.
        self._searcher.add_evaluated_point(
            {"lr": lr}, mean if mean is not None else 0.0, error=mean is None
        )
        self._told.add(slot)

    @property
    def told(self) -> int:
        """How many slots the sampler has a result (or failure) for."""
        return len(self._told)
