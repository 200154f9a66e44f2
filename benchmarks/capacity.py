"""Control-plane capacity: how many trials per second one deployment's queue can carry.

The trials train nothing: each dispatcher's actors are ``NoopRunner``s, the real
``workers.runner.TrialRunner`` (its Ray actor, its epoch callback, ``drain`` long polls, pack
replies) with ``lcw.train``/``lcw.train_pack`` swapped for functions that report every epoch
at once. Everything else is the real path a trial takes: claim and lease, the run sent to an
actor, its epoch metrics over Ray, ``write_metrics``, ``complete_trial``, lease renewals.

Each case runs 1 or 2 dispatchers, each in a process of its own with its own local Ray (2 CPUs,
2 actors), on SQLite (a file, WAL) or PostgreSQL (a new database on the local server); one
study of ``TRIALS`` trials of ``EPOCHS`` epochs (21 metric rows each: epoch 0 is the
evaluation at init) is submitted once every dispatcher's actors are up, and timed from
submission to its last completion. Trials/s = trials / wall; rows/s = metric rows / wall.
Unpacked and packed (the automatic pack size, 16 here) are both measured.

    python -m benchmarks.capacity [--trials 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import postgres_database

EPOCHS = 20
TRIALS = 2000
SLOTS = 2  # actors per dispatcher


def capacity_spec(trials: int) -> dict[str, Any]:
    """`trials` trials of one pack key (20 learning rates x trials/20 seeds)."""
    return {
        "name": "capacity",
        "dataset": "digits",
        "model": "mlp",
        "methods": ["plain"],
        "depths": [5],
        "learning_rates": [round(0.01 * (i + 1), 2) for i in range(20)],
        "seeds": trials // 20,
        "epochs": EPOCHS,
        "max_retries": 0,
    }


def _report(on_epoch: Any, config: dict[str, Any]) -> Any:
    """Report `config`'s epochs at once; the result lcw would return for them."""
    from lcw.trainer import TrialResult

    epochs = []
    for epoch in range(int(config["epochs"]) + 1):
        m = {"epoch": epoch, "val_loss": 1.0, "val_acc": 0.5, "test_loss": 1.0,
             "test_acc": 0.5, "lr": config["lr"], "diagnostics": None, "train_loss": 1.0,
             "train_acc": 0.5, "seconds": 0.0, "samples_per_s": None}  # fmt: skip
        epochs.append(m)
        if on_epoch(m):
            break
    last = epochs[-1]
    return TrialResult(status="completed", config=dict(config), epochs=epochs,
                       **{k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc",
                                               "test_loss", "test_acc")})  # fmt: skip


def _noop_train(config: dict[str, Any], *, on_epoch: Any, checkpoint: Any = None) -> Any:
    return _report(on_epoch, config)


def _noop_train_pack(
    configs: list[dict[str, Any]], *, on_epoch: Any, checkpoint: Any = None
) -> Any:
    return [_report(lambda m, k=k: on_epoch(k, m), c) for k, c in enumerate(configs)]


def noop_runner() -> Any:
    """The Ray actor class of a TrialRunner whose trials train nothing."""
    import ray

    from workers.runner import CONCURRENCY_GROUPS, TrialRunner

    class NoopRunner(TrialRunner):
        def __init__(self) -> None:
            super().__init__()
            self._train = _noop_train
            self._train_pack = _noop_train_pack

    options: dict[str, Any] = {"concurrency_groups": CONCURRENCY_GROUPS, "max_restarts": 0}
    return ray.remote(**options)(NoopRunner)


def dispatch(url: str, pack_size: int | None) -> None:
    """A dispatcher process: prints "ready" once its actors answer, runs until SIGTERM."""
    import threading

    import cloudpickle

    import benchmarks.capacity
    from service.db import make_engine
    from service.store import Store
    from workers.dispatcher import Dispatcher, connect_ray

    cloudpickle.register_pickle_by_value(benchmarks.capacity)  # actors need not import it
    connect_ray(num_cpus=SLOTS)
    engine = make_engine(url)
    dispatcher = Dispatcher(
        Store(engine), lease_seconds=60.0, slots=SLOTS, pack_size=pack_size, runner=noop_runner()
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dispatcher.start()
    dispatcher.actor_pids(timeout=120.0)
    print("ready", flush=True)
    if profile := os.environ.get("LCW_BENCH_PROFILE"):  # where to write the loop's cProfile
        import cProfile

        cProfile.runctx("dispatcher.run(stop)", globals(), locals(), f"{profile}.{os.getpid()}")
    else:
        dispatcher.run(stop)
    engine.dispose()


def _measure(url: str, dispatchers: int, pack_size: int | None, trials: int) -> dict[str, Any]:
    from service.db import make_engine
    from service.spec import plan_study
    from service.store import Store

    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    mode = "1" if pack_size == 1 else "auto"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.capacity", "--dispatch", url, "--pack", mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(dispatchers)
    ]
    engine = make_engine(url)
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a capacity dispatcher did not start")
        store = Store(engine)
        planned, planned_trials = plan_study(capacity_spec(trials), max_trials=1_000_000)
        t0 = time.perf_counter()
        study, _ = store.create_study(planned, planned_trials)
        while (status := store.get_study(study.id).status) not in ("completed", "failed"):
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        progress = store.get_study(study.id).progress
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        engine.dispose()
    if status != "completed" or progress.completed != trials:
        raise RuntimeError(f"capacity study ended {status}: {progress}")
    rows = trials * (EPOCHS + 1)
    return {"wall_s": wall, "trials_per_s": trials / wall, "rows_per_s": rows / wall}


def _database(kind: str, tmp: str) -> Any:
    from contextlib import nullcontext

    if kind == "postgresql":
        return postgres_database()
    return nullcontext(f"sqlite:///{Path(tmp) / f'capacity-{time.monotonic_ns()}.db'}")


def run(*, trials: int = TRIALS, repeats: int = 3) -> dict[str, Any]:
    """Every (database, dispatchers, packing) case `repeats` times, interleaved; medians."""
    from service.db import make_engine, upgrade_database

    cases = [(db, n, pack) for db in ("sqlite", "postgresql") for pack in (1, None)
             for n in (1, 2)]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="lcw-capacity-") as tmp:
        for _ in range(repeats):
            for db, n, pack in cases:
                with _database(db, tmp) as url:
                    engine = make_engine(url)
                    upgrade_database(engine)
                    engine.dispose()
                    name = f"{db}_{n}d_{'unpacked' if pack == 1 else 'packed'}"
                    runs.setdefault(name, []).append(_measure(url, n, pack, trials))
    return {
        "what": f"no-op trials of {EPOCHS} epochs: completions/s and metric rows/s",
        "trials": trials,
        "epochs": EPOCHS,
        "repeats": repeats,
        "cases": {
            name: {
                "trials_per_s": statistics.median(r["trials_per_s"] for r in rs),
                "rows_per_s": statistics.median(r["rows_per_s"] for r in rs),
                "runs": rs,
            }
            for name, rs in runs.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dispatch", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--pack", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dispatch:
        dispatch(args.dispatch, 1 if args.pack == "1" else None)
        return
    print(json.dumps(run(trials=args.trials, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
