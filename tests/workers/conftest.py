"""Fixtures for tests/workers: one real local Ray for the session, SQLite stores, dispatchers.

Ray starts once (``ray.init(num_cpus=2)``, a few seconds) and every in-process test shares it.
Most tests of a module share one warm dispatcher on one database (``shared``: its actors have
imported torch and loaded the datasets, as in a running service) and look only at their own
studies; tests that stop or reconfigure a dispatcher start their own (``dispatch``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wk_helpers import Shared, Started, ray_tmpdir

from service.db import make_engine, upgrade_database
from service.store import Store
from workers.dispatcher import Dispatcher


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray with 2 CPUs for the whole session (never someone else's cluster)."""
    import ray

    if ray.is_initialized():  # pragma: no cover - another plugin started it
        yield
        return
    tmp = ray_tmpdir()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tmp,
        log_to_driver=False,
    )
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lcw.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    upgrade_database(engine)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def dispatch(ray_local: None, store: Store) -> Iterator[Callable[..., Started]]:
    """Start Dispatchers on `store` in background threads; all stopped after the test."""
    running: list[Started] = []

    def start(**options: Any) -> Started:
        options.setdefault("lease_seconds", 10.0)
        dispatcher = Dispatcher(store, **options)
        dispatcher.start()
        running.append(Started(dispatcher))
        return running[-1]

    yield start
    for started in running:
        started.stop()


@pytest.fixture(scope="module")
def shared(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Shared]:
    """One dispatcher (lease 10 s) on one SQLite database for a whole test module; a module's
    ``DISPATCHER_OPTIONS`` dict adds Dispatcher arguments (``{"pack_size": 1}``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'lcw.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    store = Store(engine)
    options = getattr(request.module, "DISPATCHER_OPTIONS", {})
    dispatcher = Dispatcher(store, lease_seconds=10.0, **options)
    dispatcher.start()
    started = Started(dispatcher)
    yield Shared(store=store, dispatcher=dispatcher, db_url=url)
    started.stop()
    engine.dispose()
