"""Learning-rate search per cell: Ray Tune's ``OptunaSearch`` driven one slot at a time.

With ``lr_search.init_scale`` the searcher proposes (lr, init scale) pairs from the same
``trials_per_cell`` budget: the scale is tuned exactly as the learning rate, for every method.

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

from service.store import SlotHistory

log = logging.getLogger("lcw.workers.search")

Setting = tuple[float, float | None]  # (lr, init_scale); None: the scale is not searched


def _domain(block: dict[str, Any]) -> Any:
    from ray import tune

    low, high = float(block["low"]), float(block["high"])
    return tune.loguniform(low, high) if block.get("log", True) else tune.uniform(low, high)


def cell_seed(cell_key: str) -> int:
    """A stable per-cell sampler seed (the same spec proposes the same first LRs every run)."""
    return zlib.crc32(cell_key.encode())


class CellSearch:
    """The LR searcher of one cell of one study."""

    def __init__(
        self,
        lr_search: dict[str, Any],
        *,
        cell_key: str,
        history: Sequence[SlotHistory] = (),
    ) -> None:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        low, high = float(lr_search["low"]), float(lr_search["high"])
        scale_block = lr_search.get("init_scale")
        domains = {"lr": _domain(lr_search)}
        if scale_block:
            domains["init_scale"] = _domain(scale_block)
        self.scale_range = (
            (float(scale_block["low"]), float(scale_block["high"])) if scale_block else None
        )
        # The sampler's random stream restarts with its seed: a searcher rebuilt after a restart
        # would propose the first LRs again, so the seed moves on with the slots already given.
        seed = cell_seed(cell_key) + 1_000_003 * sum(row.lr is not None for row in history)
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if lr_search.get("sampler", "tpe") == "random"
            else optuna.samplers.TPESampler(seed=seed)
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per ask otherwise
        # Optuna distributions, converted once: OptunaSearch warns on raw Tune domains.
        space = OptunaSearch.convert_search_space(domains)
        self.low, self.high = low, high
        self.cell_key = cell_key
        self._searcher = OptunaSearch(space=space, metric="val_acc", mode="max", sampler=sampler)
        self._suggested: set[int] = set()  # slots whose LR this searcher proposed
        self._open: dict[int, Setting] = {}  # slots with a setting, seeds not all finished
        self._told: set[int] = set()  # slots reported to the sampler
        self._rebuild(history)

    @staticmethod
    def _id(slot: int) -> str:
        return f"slot-{slot}"

    def _rebuild(self, history: Sequence[SlotHistory]) -> None:
        """Load a cell's past slots (from ``Store.lr_history``) into the sampler."""
        for row in history:
            if row.lr is None or row.slot in self._told or row.slot in self._suggested:
                continue
            if row.finished:
                self._add_point(row.slot, (row.lr, row.init_scale), row.mean_val_acc)
            else:
                self._open[row.slot] = (row.lr, row.init_scale)

    def suggest(self, slot: int) -> Setting:
        """A new (lr, init_scale) for `slot` inside the ranges (scale None: not searched)."""
        params = self._searcher.suggest(self._id(slot))
        if params is None:  # pragma: no cover - OptunaSearch without a trial limit never ends
            raise RuntimeError(f"the LR searcher of cell {self.cell_key} has no suggestion")
        self._suggested.add(slot)
        return self._clamp((float(params["lr"]), params.get("init_scale")))

    def _clamp(self, setting: Setting) -> Setting:
        # Float round-off of exp(log(x)) can land a hair outside the bounds (and add_trial
        # rejects a value outside the space).
        lr, scale = setting
        lr = min(max(lr, self.low), self.high)
        if self.scale_range is not None and scale is not None:
            scale = min(max(float(scale), self.scale_range[0]), self.scale_range[1])
        return lr, scale

    def assigned(self, slot: int, setting: Setting, proposed: Setting) -> None:
        """The slot's effective setting after ``assign_lr`` (another dispatcher may have won)."""
        same = math.isclose(setting[0], proposed[0], rel_tol=1e-12) and (
            setting[1] == proposed[1]
            or (
                setting[1] is not None
                and proposed[1] is not None
                and math.isclose(setting[1], proposed[1], rel_tol=1e-12)
            )
        )
        if slot in self._suggested and not same:
            # Our proposal lost the race: withdraw it, the winner's is reported when done.
            self._searcher.on_trial_complete(self._id(slot), None, error=True)
            self._suggested.discard(slot)
        self._open[slot] = setting

    def observe(self, history: Sequence[SlotHistory]) -> list[int]:
        """Report every slot in `history` whose seeds have all finished; returns the slots told."""
        told = []
        for row in history:
            slot, lr, scale, mean = row.slot, row.lr, row.init_scale, row.mean_val_acc
            if lr is None or slot in self._told or not row.finished:
                continue
            if slot in self._suggested:
                result = {"val_acc": mean} if mean is not None else None
                self._searcher.on_trial_complete(self._id(slot), result, error=mean is None)
                self._told.add(slot)
            else:
                self._add_point(slot, (lr, scale), mean)
            self._open.pop(slot, None)
            told.append(slot)
        return told

    def _add_point(self, slot: int, setting: Setting, mean: float | None) -> None:
        lr, scale = self._clamp(setting)
        point = {"lr": lr} if self.scale_range is None else {"lr": lr, "init_scale": scale}
        # A slot without a score (all seeds failed) is a failed Optuna trial: TPE ignores it.
        self._searcher.add_evaluated_point(
            point, mean if mean is not None else 0.0, error=mean is None
        )
        self._told.add(slot)

    @property
    def told(self) -> int:
        """How many slots the sampler has a result (or failure) for."""
        return len(self._told)
