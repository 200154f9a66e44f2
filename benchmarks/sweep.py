"""lcw-sweep in the benchmark's process: a temporary database, a local Ray and a dispatcher.

``local_sweep`` is what ``serve`` runs minus the API: the real ``workers.dispatcher.Dispatcher``
with its warm actors on a real queue (SQLite in a temporary directory, or the PostgreSQL URL
given). ``run_study`` submits a spec through the store and waits for the study to end.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")


@contextmanager
def local_sweep(
    slots: int, *, url: str | None = None, pack_size: int | None = None, **options: Any
) -> Iterator[tuple[Any, Any]]:
    """(store, dispatcher) running on a thread until the block ends; `options` go to the
    Dispatcher (e.g. ``runner``, ``lease_seconds``)."""
    import ray

    from service.db import make_engine, upgrade_database
    from service.store import Store
    from workers.dispatcher import Dispatcher, connect_ray

    started_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="lcw-bench-") as tmp:
        engine = make_engine(url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade_database(engine)
        store = Store(engine)
        connect_ray(num_cpus=slots)
        dispatcher = Dispatcher(store, slots=slots, **{"lease_seconds": 60.0, **options})
        dispatcher.pack_size = pack_size
        stop = threading.Event()
        thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield store, dispatcher
        finally:
            stop.set()
            dispatcher.wake()
            thread.join(30)
            engine.dispose()
            if started_ray:
                ray.shutdown()


def run_study(
    store: Any, spec: dict[str, Any], *, timeout_s: float = 900.0, poll_s: float = 0.02
) -> dict[str, Any]:
    """Submit `spec` and wait for its end: the wall time a client sees (submission to the
    terminal status), the database's own (``finished_at - created_at``), trial compute."""
    from service.spec import plan_study

    planned, trials = plan_study(spec, max_trials=100_000)
    t0 = time.perf_counter()
    study, _ = store.create_study(planned, trials)
    deadline = time.monotonic() + timeout_s
    while (status := store.get_study(study.id).status) not in TERMINAL:
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study.id} did not finish within {timeout_s:g} s")
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    done = store.get_study(study.id)
    page = store.list_trials(study.id, limit=100_000).data
    details = [store.get_trial(t.id) for t in page]
    return {
        "study_id": study.id,
        "status": status,
        "trials": len(page),
        "wall_s": wall,
        "db_wall_s": (done.finished_at - done.created_at).total_seconds(),
        "compute_s": sum(d.run_info.get("compute_seconds") or 0.0 for d in details),
        "test_acc": [t.test_acc for t in page],
    }
