"""Dispatchers that need the local Ray to themselves: shutdown, and PostgreSQL as the queue.

Kept out of test_dispatcher.py, whose module-wide dispatcher holds every CPU of the local Ray
while that module runs (a second dispatcher would get no actors until it stops).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from wk_helpers import (
    DIGITS,
    LONG,
    Started,
    assert_one_row_per_epoch,
    fresh_pg_database,
    submit,
    trials_of,
    wait_study,
    wait_until,
)

from service.db import make_engine, upgrade_database
from service.store import Store
from workers.dispatcher import Dispatcher

Dispatch = Callable[..., Started]


def test_shutdown_gives_running_trials_back_unused(store: Store, dispatch: Dispatch) -> None:
    started = dispatch()
    sid = submit(store, LONG)
    # Two packs of two (or, packing off, two trials) on the two actors.
    wait_until(
        lambda: len(started.dispatcher.running_trial_ids()) >= 2, timeout=60, what="two trials"
    )
    started.stop()
    trials = store.list_trials(sid).data
    assert [t.status for t in trials] == ["pending"] * 4
    assert [t.attempt for t in trials] == [0] * 4  # no attempt used up by the shutdown
    assert all(t.lease_owner is None for t in map(lambda t: store.get_trial(t.id), trials))


@pytest.mark.postgres
def test_grid_and_lr_search_studies_run_the_same_on_postgresql(ray_local: None) -> None:
    with fresh_pg_database() as url:
        engine = make_engine(url)
        upgrade_database(engine)
        store = Store(engine)
        dispatcher = Dispatcher(store, lease_seconds=10.0)
        dispatcher.start()
        started = Started(dispatcher)
        try:
            grid = submit(store, DIGITS)
            search = submit(
                store,
                {
                    **{k: v for k, v in DIGITS.items() if k != "learning_rates"},
                    "name": "search",
                    "lr_search": {"low": 0.01, "high": 1.0, "trials_per_cell": 3},
                },
            )
            for sid in (grid, search):
                assert wait_study(store, sid, timeout=120).status == "completed"
                for t in trials_of(store, sid):
                    assert t.status == "completed" and t.lr is not None
                    assert_one_row_per_epoch(t)
                    assert len(t.metrics) == DIGITS["epochs"] + 1
            assert len({t.lr for t in store.list_trials(search).data}) == 2 * 3
        finally:
            started.stop()
            engine.dispose()
