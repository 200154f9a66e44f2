"""Learning-rate slots of an ``lr_search`` study: assign a slot's setting once, read it back,
and the per-slot history a restarted sampler is rebuilt from."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.orm import Session

from service.models import Trial, TrialMetric, utcnow
from service.store.studies import Studies
from service.vocabulary import TRIAL_RESULT, TRIAL_TERMINAL


def _slot(study_id: int, cell_key: str, slot: int) -> tuple[Any, ...]:
    """The trials (one per seed) of one lr_search slot."""
    return (Trial.study_id == study_id, Trial.cell_key == cell_key, Trial.slot == slot)


def _assigned(
    s: Session, study_id: int, cell_key: str, slot: int
) -> tuple[float, float | None] | None:
    """The (lr, init_scale) set on a slot, None while unassigned."""
    row = s.execute(
        select(Trial.lr, Trial.init_scale)
        .where(*_slot(study_id, cell_key, slot), Trial.lr.is_not(None))
        .limit(1)
    ).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


@dataclass(frozen=True)
class SlotHistory:
    """One lr_search slot of a cell, as ``Store.lr_history`` reads it."""

    slot: int
    lr: float | None  # None while unassigned
    init_scale: float | None
    mean_val_acc: float | None  # over the slot's seeds that ran to a result; None: none did
    statuses: dict[str, int]  # the slot's seeds by status

    @property
    def finished(self) -> bool:
        """Every seed of the slot is in a terminal status."""
        return bool(self.statuses) and all(s in TRIAL_TERMINAL for s in self.statuses)


@dataclass(frozen=True)
class RungValue:
    """A trial's val_acc at an ASHA rung epoch, as stored (``Store.rung_history``)."""

    setting: Any  # the lr_search slot, or the grid (lr, init_scale): ``workers.resolve.slot_of``
    seed: int
    epoch: int
    val_acc: float | None


class Slots(Studies):
    """The (lr, init_scale) of each lr_search slot, set once for all its seeds."""

    def assign_lr(
        self,
        study_id: int,
        cell_key: str,
        slot: int,
        lr: float,
        *,
        init_scale: float | None = None,
    ) -> tuple[float, float | None]:
        """Assign-or-get, in one transaction: set the setting of an lr_search slot (the lr
        column and config["lr"], and, when the scale is searched too, init_scale) on every
        trial of the slot whose lr is still NULL, and return the slot's effective (lr,
        init_scale): this one, or the one another worker assigned first (a set lr is never
        overwritten, so racing workers all get the winner's)."""
        for name, value in (("lr", lr), ("init_scale", init_scale)):
            if value is None and name == "init_scale":
                continue
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name}: {value!r} must be a finite number > 0")
        scale = {} if init_scale is None else {"init_scale": float(init_scale)}
        now = utcnow()
        with self._write() as s:
            rows = s.execute(
                select(Trial.id, Trial.config)
                .where(*_slot(study_id, cell_key, slot), Trial.lr.is_(None))
                .with_for_update()
            ).all()
            if rows:
                s.execute(
                    update(Trial),
                    [
                        {
                            "id": tid,
                            "lr": float(lr),
                            **scale,
                            "config": {**config, "lr": float(lr), **scale},
                            "updated_at": now,
                        }
                        for tid, config in rows
                    ],
                )
                self._touch_cells(s, study_id, [cell_key])
            setting = _assigned(s, study_id, cell_key, slot)
            assert setting is not None  # the slot has trials: set now or before
            return setting

    def slot_setting(
        self, study_id: int, cell_key: str, slot: int
    ) -> tuple[float, float | None] | None:
        """The (lr, init_scale) assigned to an lr_search slot, None while unassigned."""
        with self._read() as s:
            return _assigned(s, study_id, cell_key, slot)

    def lr_history(self, study_id: int, cell_key: str) -> list[SlotHistory]:
        """Per lr_search slot of a cell, ordered by slot: its setting, the mean final val_acc
        of its seeds that ran to a result, and its seeds by status, so a restarted worker can
        rebuild its sampler. Grid studies: []."""
        with self._read() as s:
            rows = s.execute(
                select(Trial.slot, Trial.lr, Trial.init_scale, Trial.status, Trial.val_acc)
                .where(
                    Trial.study_id == study_id,
                    Trial.cell_key == cell_key,
                    Trial.slot.is_not(None),
                )
                .order_by(Trial.slot, Trial.index)
            ).all()
        slots: dict[int, dict[str, Any]] = defaultdict(
            lambda: {"lr": None, "scale": None, "accs": [], "statuses": Counter()}
        )
        for slot, lr, scale, status, val_acc in rows:
            entry = slots[slot]
            if entry["lr"] is None and lr is not None:
                entry["lr"], entry["scale"] = lr, scale
            entry["statuses"][status] += 1
            if status in TRIAL_RESULT and val_acc is not None:
                entry["accs"].append(val_acc)
        out = []
        for slot in sorted(slots):
            entry = slots[slot]
            accs = entry["accs"]
            mean = sum(accs) / len(accs) if accs else None
            statuses = dict(sorted(entry["statuses"].items()))
            out.append(SlotHistory(slot, entry["lr"], entry["scale"], mean, statuses))
        return out

    def rung_history(self, study_id: int, cell_key: str, epochs: list[int]) -> list[RungValue]:
        """Every stored val_acc of the cell's trials at the rung `epochs`, in the order the
        rows were written (the order the rungs were reported), so a restarted dispatcher
        replays its ASHA brackets (``workers.resolve``)."""
        if not epochs:
            return []
        with self._read() as s:
            rows = s.execute(
                select(
                    Trial.slot, Trial.lr, Trial.init_scale, Trial.seed,
                    TrialMetric.epoch, TrialMetric.val_acc,
                )
                .join(TrialMetric, TrialMetric.trial_id == Trial.id)
                .where(
                    Trial.study_id == study_id,
                    Trial.cell_key == cell_key,
                    TrialMetric.epoch.in_(sorted(set(epochs))),
                )
                .order_by(TrialMetric.id)
            ).all()  # fmt: skip
        return [
            RungValue(slot if slot is not None else (lr, scale), seed, epoch, val_acc)
            for slot, lr, scale, seed, epoch, val_acc in rows
        ]
