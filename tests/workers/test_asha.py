"""ASHA's stopping rule (workers.asha): rungs, the quantile cutoff, and the per-cell record."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from workers.asha import Asha, rungs, should_stop


def test_rungs_are_grace_times_powers_of_rf_below_the_last_epoch() -> None:
    assert rungs(grace_period=1, reduction_factor=3, max_epochs=10) == [1, 3, 9]
    assert rungs(grace_period=2, reduction_factor=2, max_epochs=16) == [2, 4, 8]
    assert rungs(grace_period=5, reduction_factor=3, max_epochs=5) == []
    with pytest.raises(ValueError, match="reduction_factor"):
        rungs(grace_period=1, reduction_factor=1, max_epochs=5)


@pytest.mark.parametrize("rf", [2, 3, 4])
def test_cutoff_matches_ray_tunes_percentile(rf: int) -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 12):
        recorded = list(rng.random(n))
        cutoff = float(np.percentile(recorded, (1 - 1 / rf) * 100))
        assert should_stop(recorded, cutoff - 1e-9, reduction_factor=rf)
        assert not should_stop(recorded, cutoff + 1e-9, reduction_factor=rf)
    assert not should_stop([], 0.0, reduction_factor=rf)  # the first at a rung continues


def test_asha_keeps_the_top_third_at_each_rung() -> None:
    asha = Asha(grace_period=1, reduction_factor=3, max_epochs=9)
    assert asha.rungs == [1, 3]
    # Values arrive one at a time (asynchronous): each is judged against those before it.
    # One seed per setting: the rule is the per-trial one.
    values = [0.5, 0.9, 0.2, 0.95, 0.6]
    decisions = [asha.on_rung(f"s{i}", 0, 1, v, seeds=1) for i, v in enumerate(values)]
    assert decisions == [False, False, True, False, True]
    assert not asha.on_rung("s1", 0, 3, 0.91, seeds=1)  # first at rung 3
    assert asha.on_rung("s3", 0, 3, 0.5, seeds=1)
    assert not asha.on_rung("s1", 0, 3, 0.0, seeds=1)  # a rerun keeps its first record
    assert not asha.on_rung("s9", 0, 2, 0.0, seeds=1)  # not a rung
    assert asha.on_rung("s2", 0, 3, 0.99, seeds=1)  # stopped at rung 1: stays stopped


def test_asha_judges_a_setting_on_the_mean_of_all_its_seeds() -> None:
    asha = Asha(grace_period=1, reduction_factor=2, max_epochs=8)
    assert asha.rungs == [1, 2, 4]
    # Setting A (3 seeds) is judged only when its third seed reports; its seeds go on before.
    assert [asha.on_rung("A", s, 1, v, seeds=3) for s, v in enumerate([0.9, 0.1, 0.5])] == [
        False,
        False,
        False,
    ]  # first setting at the rung: continues
    # Setting B's seed 0 alone (0.95) would beat A's mean (0.5); its mean over 3 seeds (0.4)
    # does not: B stops as a whole, and each of its seeds is told to stop at its next rung.
    assert not asha.on_rung("B", 0, 1, 0.95, seeds=3)
    assert not asha.on_rung("B", 1, 1, 0.05, seeds=3)
    assert asha.on_rung("B", 2, 1, 0.2, seeds=3)
    assert asha.on_rung("B", 0, 2, 0.99, seeds=3)  # seed 0 ran ahead: stopped at rung 2
    assert asha.on_rung("B", 1, 2, 0.99, seeds=3)
    # A goes on as a whole.
    assert not asha.on_rung("A", 0, 2, 0.9, seeds=3)


def test_a_missing_value_ranks_last() -> None:
    asha = Asha.from_spec({"name": "asha", "grace_period": 1, "reduction_factor": 2}, max_epochs=4)
    assert not asha.on_rung("a", 0, 1, 0.1, seeds=1)
    assert asha.on_rung("b", 0, 1, None, seeds=1)
    assert asha.on_rung("c", 0, 1, float("nan"), seeds=1)


def test_a_restarted_dispatcher_replays_the_stored_rungs(store: Any) -> None:
    """ASHA's brackets after a dispatcher restart: rebuilt from the rung values stored in the
    trials' metrics, they equal the brackets the first dispatcher built live."""
    from service.spec import plan_study
    from service.store import Store
    from workers.metrics import DispatcherMetrics
    from workers.resolve import Resolver, slot_of
    from workers.state import Held
    from workers.writeback import WriteBack

    spec = {"name": "asha", "dataset": "digits", "methods": ["plain"], "depths": [2],
            "learning_rates": [0.01, 0.03, 0.1, 0.3, 1.0], "seeds": 2, "epochs": 9,
            "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}}  # fmt: skip
    parsed, trials = plan_study(spec, max_trials=100)
    store.create_study(parsed, trials)

    def resolver() -> Resolver:
        held = Held()
        writes = WriteBack(cast(Store, store), "d", held, DispatcherMetrics())
        return Resolver(cast(Store, store), writes, pack_size=None), held

    first, held = resolver()
    claims = store.claim_trials("d", limit=100, lease_seconds=60)
    live = {c.id: held.add(c) for c in claims}
    for t in live.values():
        first.resolve(t)
    # Rung 1 (epoch 1) for every trial, rung 3 for those that go on: the accuracy falls with
    # the LR index downwards, so the later (worse) LRs are stopped. Each report is stored as
    # it is judged.
    acc = {lr: 0.9 - 0.1 * i for i, lr in enumerate(spec["learning_rates"])}
    decisions = {}
    for epoch in (1, 3):
        for c in claims:
            if decisions.get(c.id):
                continue
            value = acc[c.config["lr"]] + 0.01 * c.seed + 0.001 * epoch
            store.write_metrics("d", [(c.id, {"epoch": epoch, "val_acc": value})])
            decisions[c.id] = first.asha_stops(live[c.id], epoch, value)
    stopped = {slot_of(live[tid]) for tid, stop in decisions.items() if stop}
    assert stopped and len(stopped) < 5  # some settings stopped, the best one goes on

    again, held2 = resolver()  # a new dispatcher on the same database
    t = held2.add(claims[0])
    again.resolve(t)
    key = (claims[0].study_id, claims[0].cell_key)
    rebuilt, original = again.ashas[key], first.ashas[key]
    assert rebuilt._recorded == original._recorded
    assert rebuilt._stopped == original._stopped == stopped


def test_two_dispatchers_on_one_database_judge_as_one(store: Any, tmp_path: Any) -> None:
    """Two dispatchers each hold half of an ASHA study's trials: asking at each rung after
    storing its value, each judges on the same stored rows, so together they stop exactly
    the settings one dispatcher alone stops."""
    from service.db import make_engine, upgrade_database
    from service.spec import plan_study
    from service.store import Store
    from workers.metrics import DispatcherMetrics
    from workers.resolve import Resolver, slot_of
    from workers.state import Held
    from workers.writeback import WriteBack

    spec = {"name": "asha", "dataset": "digits", "methods": ["plain"], "depths": [2],
            "learning_rates": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "seeds": 2, "epochs": 9,
            "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}}  # fmt: skip
    acc = [0.6, 0.9, 0.5, 0.8, 0.4, 0.7]  # by LR: neither order nor reverse

    def run(db: Store, dispatchers: int) -> set[Any]:
        parsed, trials = plan_study(spec, max_trials=100)
        db.create_study(parsed, trials)
        claims = db.claim_trials("d", limit=100, lease_seconds=60)
        parts = []
        for _ in range(dispatchers):
            held = Held()
            writes = WriteBack(cast(Store, db), "d", held, DispatcherMetrics())
            parts.append((Resolver(cast(Store, db), writes, pack_size=None), held))
        stopped: set[Any] = set()
        decided: dict[int, bool] = {}
        tracked = {}
        for i, c in enumerate(claims):  # trial i belongs to dispatcher i % n
            resolver, held = parts[i % dispatchers]
            tracked[c.id] = (resolver, held.add(c))
            resolver.resolve(tracked[c.id][1])
        for epoch in (1, 3):
            for c in claims:
                if decided.get(c.id):
                    continue
                resolver, t = tracked[c.id]
                lr_index = spec["learning_rates"].index(c.config["lr"])
                value = acc[lr_index] + 0.01 * c.seed + 0.001 * epoch
                db.write_metrics("d", [(c.id, {"epoch": epoch, "val_acc": value})])
                decided[c.id] = resolver.asha_stops(t, epoch, value)
                if decided[c.id]:
                    stopped.add(slot_of(t))
        return stopped

    alone = run(store, 1)
    engine = make_engine(f"sqlite:///{tmp_path / 'two.db'}")
    upgrade_database(engine)
    try:
        together = run(Store(engine), 2)
    finally:
        engine.dispose()
    assert alone and len(alone) < 6
    assert together == alone
