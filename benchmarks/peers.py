"""The 64-trial grid through lcw-sweep's peers, each as its users would run it on 2 cores.

* ``tune``: Ray Tune's ``Tuner`` on a local Ray with 2 CPUs, one CPU per trial,
  ``reuse_actors=True``, a function trainable that calls ``lcw.train`` and reports every
  epoch with ``tune.report``. Timed: ``Tuner.fit()`` (Ray already started); its trial actors
  start inside the fit, as they do for every Tune run.
* ``optuna``: an Optuna study on a journal file storage, the 64 configs enqueued, and two warm
  processes (torch and the dataset loaded) each running ``study.optimize`` for 32 trials; each
  epoch is reported with ``trial.report``. Timed: from the enqueueing to both processes' end.

Prints one JSON line: the wall seconds and the test accuracies in the grid's order.

    python -m benchmarks.peers tune|optuna [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.grid import SLOTS, grid_configs, warm_pool


def _tune(configs: list[dict[str, Any]], tmp: str) -> tuple[float, list[float | None]]:
    import ray
    from ray import tune

    def trainable(params: dict[str, Any]) -> None:
        import lcw

        result = lcw.train(
            configs[params["i"]], on_epoch=lambda m: bool(tune.report({"val_acc": m["val_acc"]}))
        )
        tune.report({"test_acc": result.test_acc, "done": True})

    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=SLOTS),
        run_config=tune.RunConfig(storage_path=tmp, verbose=0),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    accs: list[float | None] = [None] * len(configs)
    for k in range(len(grid)):
        result = grid[k]
        accs[(result.config or {})["i"]] = (result.metrics or {})["test_acc"]
    ray.shutdown()
    return wall, accs


def _optimize(storage_path: str, n_trials: int, configs: list[dict[str, Any]]) -> None:
    import optuna

    import lcw

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(storage_path))
    study = optuna.load_study(study_name="grid", storage=storage)

    def objective(trial: optuna.Trial) -> float:
        config = configs[trial.suggest_int("i", 0, len(configs) - 1)]

        def on_epoch(m: dict[str, Any]) -> bool:
            trial.report(m["val_acc"] or 0.0, m["epoch"])
            return False

        result = lcw.train(config, on_epoch=on_epoch)
        trial.set_user_attr("test_acc", result.test_acc)
        return result.val_acc or 0.0

    study.optimize(objective, n_trials=n_trials)


def _optuna(configs: list[dict[str, Any]], tmp: str) -> tuple[float, list[float | None]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = str(Path(tmp) / "journal.log")
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    pool = warm_pool(configs[0])
    try:
        t0 = time.perf_counter()
        study = optuna.create_study(study_name="grid", storage=storage, direction="maximize")
        for i in range(len(configs)):
            study.enqueue_trial({"i": i})
        share = len(configs) // SLOTS
        pool.starmap(_optimize, [(path, share, configs)] * SLOTS, chunksize=1)
        wall = time.perf_counter() - t0
    finally:
        pool.terminate()
        pool.join()
    accs: list[float | None] = [None] * len(configs)
    for t in study.get_trials():
        accs[t.params["i"]] = t.user_attrs["test_acc"]
    return wall, accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=("tune", "optuna"))
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    configs = grid_configs(epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="lcw-peers-") as tmp:
        wall, accs = (_tune if args.peer == "tune" else _optuna)(configs, tmp)
    print(json.dumps({"peer": args.peer, "wall_s": wall, "test_acc": accs}))


if __name__ == "__main__":
    main()
