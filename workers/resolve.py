"""A claimed trial's setting: the config its actor runs, and the ASHA verdicts at its rungs.

A trial is claimed with the config its study planned. Before it can go to an actor it is
resolved (``resolve``): an lr_search slot without an LR gets one from its cell's searcher
(``workers.search``; stored on the slot with ``Store.assign_lr``, so every seed of the slot
trains with it, whichever dispatcher claims it), the device and torch threads follow the
trial's resources, an ASHA study's trials get their rung epochs (``workers.asha``), and a
packable trial its ``packing.group_key``. A slot's searcher learns from the slot once every
seed of it has finished (``observe``); ASHA judges a setting over all its seeds at a rung
(``asha_stops``).

The searchers and the ASHA brackets live in this dispatcher's memory: a restarted one rebuilds
the searchers from ``Store.lr_history`` and each cell's brackets from the rung values stored
in the trials' metrics (``Store.rung_history``), replayed in the order they were written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.store import ClaimedTrial, Store
from workers import packing
from workers.asha import Asha
from workers.search import CellSearch
from workers.state import Trial
from workers.writeback import WriteBack


def slot_of(t: Trial) -> Any:
    """The setting a trial belongs to, as ASHA judges it: its lr_search slot, or its grid
    (lr, init_scale); every seed of it stops or goes on together."""
    if t.claim.slot is not None:
        return t.claim.slot
    config = t.config or t.claim.config
    return (config.get("lr"), config.get("init_scale"))


class Resolver:
    """The LR searchers and ASHA brackets of one dispatcher, per (study, cell)."""

    def __init__(self, store: Store, writes: WriteBack, *, pack_size: int | None) -> None:
        self.store = store
        self.writes = writes
        self.pack_size = pack_size
        self.searches: dict[tuple[int, str], CellSearch] = {}
        self.ashas: dict[tuple[int, str], Asha] = {}
        # (study, cell, slot) -> the slot's (lr, init_scale), once known
        self.slot_settings: dict[tuple[int, str, int], tuple[float, float | None]] = {}

    def resolve_waiting(self, backlog: Iterable[Trial], ready: int) -> None:
        """Resolve the waiting trials that can be (database work: run it under ``db``).

        An lr_search slot without an LR yet gets one proposed only for the trials about to
        run (the searcher learns from each finished slot): two per `ready` actor, counting
        the resolved trials that wait already. Seeds of assigned slots resolve at once, and
        so can train in one pack.
        """
        waiting = list(backlog)
        budget = 2 * ready - sum(t.config is not None for t in waiting)
        for t in waiting:
            if t.config is not None:
                continue
            c = t.claim
            unassigned = c.lr_search and c.slot is not None and c.config.get("lr") is None
            if unassigned and (c.study_id, c.cell_key, c.slot) not in self.slot_settings:
                if budget <= 0:
                    continue
                budget -= 1
            self.resolve(t)

    def resolve(self, t: Trial) -> None:
        """The config the actor runs: the slot's LR (searched), device, threads, ASHA rungs."""
        c = t.claim
        config = dict(c.config)
        try:
            if config.get("lr") is None and c.slot is not None and c.lr_search:
                config["lr"], scale = self.slot_setting(c)
                if scale is not None:
                    config["init_scale"] = scale
        except ValueError as exc:  # an LR the store refuses: fail, don't loop
            self.writes.fail(t, f"{type(exc).__name__}: {exc}")
            return
        config["device"] = t.shape.device
        config["threads"] = t.shape.threads
        if c.scheduler and c.scheduler.get("name") == "asha":
            key = (c.study_id, c.cell_key)
            asha = self.ashas.get(key)
            if asha is None:
                asha = self.ashas[key] = self._rebuilt_asha(c, int(config.get("epochs", 1)))
            t.rungs = asha.rungs
        t.config = config
        # ASHA's early stops save nothing inside a pack (a stopped member is only masked until
        # its pack-mates finish), so ASHA studies run their trials alone; so do studies that
        # switched packing off.
        if not t.rungs and self.pack_size != 1 and c.packing:
            t.key = packing.group_key(c.study_id, config)

    def _rebuilt_asha(self, c: ClaimedTrial, max_epochs: int) -> Asha:
        """The cell's ASHA brackets, replayed from the rung values already stored (a restarted
        dispatcher, or one that took over a study, judges as the one before it would)."""
        assert c.scheduler is not None
        asha = Asha.from_spec(c.scheduler, max_epochs=max_epochs)
        for row in self.store.rung_history(c.study_id, c.cell_key, asha.rungs):
            asha.on_rung(row.setting, row.seed, row.epoch, row.val_acc, seeds=c.seeds)
        return asha

    def _search(self, c: ClaimedTrial) -> CellSearch:
        key = (c.study_id, c.cell_key)
        search = self.searches.get(key)
        if search is None:
            assert c.lr_search is not None
            history = self.store.lr_history(c.study_id, c.cell_key)
            search = self.searches[key] = CellSearch(
                c.lr_search, cell_key=c.cell_key, history=history
            )
        return search

    def slot_setting(self, c: ClaimedTrial) -> tuple[float, float | None]:
        """The slot's (lr, init_scale): already assigned (another seed, another dispatcher) or
        proposed now (the scale None when the study does not search it)."""
        assert c.slot is not None
        key = (c.study_id, c.cell_key, c.slot)
        setting = self.slot_settings.get(key)
        if setting is None:
            setting = self.store.slot_setting(c.study_id, c.cell_key, c.slot)
        if setting is None:
            search = self._search(c)
            proposed = search.suggest(c.slot)
            setting = self.store.assign_lr(
                c.study_id, c.cell_key, c.slot, proposed[0], init_scale=proposed[1]
            )
            search.assigned(c.slot, setting, proposed)
        if not (c.lr_search or {}).get("init_scale"):
            setting = (setting[0], None)  # the scale is fixed in the trial's config
        self.slot_settings[key] = setting
        return setting

    def observe(self, c: ClaimedTrial) -> None:
        """Tell the cell's searcher about every slot whose seeds have all finished."""
        search = self.searches.get((c.study_id, c.cell_key))
        if search is not None:
            search.observe(self.store.lr_history(c.study_id, c.cell_key))

    def asha_stops(self, t: Trial, epoch: int, val_acc: float | None) -> bool:
        """ASHA's verdict for `t` at its rung `epoch`: True when its setting stops here.

        The cell's brackets are replayed from the database first (the caller stores this
        dispatcher's rung values before asking), so every dispatcher on one database judges
        on the same rows in the same order: two of them cooperate on one study's cells."""
        key = (t.claim.study_id, t.claim.cell_key)
        asha = self.ashas.get(key)
        if asha is None:
            return False
        max_epochs = asha.max_epochs

        def replay() -> None:
            self.ashas[key] = self._rebuilt_asha(t.claim, max_epochs)

        self.writes.db(replay)  # the database failing: judge from memory (and back off)
        return self.ashas[key].on_rung(
            slot_of(t), t.claim.seed, epoch, val_acc, seeds=t.claim.seeds
        )


__all__ = ["Resolver", "slot_of"]
