"""The 64-trial grid every control-plane benchmark runs, and a warm process pool to run it.

Digits, depth-5 MLPs, plain and lcw x sigmoid and relu x 4 learning rates x 4 seeds: 64
trials, 20 epochs each by default. The configs are the ones ``service.spec.plan_study`` gives
the dispatcher, so every runner trains exactly the same trials (and, on CPU, gets the same
accuracies bit for bit). The baseline is a warm ``multiprocessing.Pool(2)`` calling
``lcw.train`` on them: the least a sweep can cost on this machine.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

SLOTS = 2  # concurrent trials: one per core on the 2-core machine the targets are set on


def grid_spec(*, epochs: int = 20, name: str = "grid64") -> dict[str, Any]:
    return {
        "name": name,
        "dataset": "digits",
        "model": "mlp",
        "methods": ["plain", "lcw"],
        "activations": ["sigmoid", "relu"],
        "depths": [5],
        "learning_rates": [0.01, 0.03, 0.1, 0.3],
        "seeds": 4,
        "epochs": epochs,
    }


def grid_configs(*, epochs: int = 20) -> list[dict[str, Any]]:
    """The trial configs of the grid, in the study's trial order."""
    from service.spec import plan_study

    _, trials = plan_study(grid_spec(epochs=epochs), max_trials=100_000)
    return [t.config for t in trials]


def _warm(config: dict[str, Any], ready: Any) -> None:
    """A pool process's start: torch, the trainer and the dataset loaded by one short trial;
    then it counts itself in `ready` (a shared integer)."""
    import lcw

    lcw.train({**config, "epochs": 1})
    with ready.get_lock():
        ready.value += 1


def warm_pool(config: dict[str, Any]) -> Any:
    """A spawned ``Pool(SLOTS)`` (no forked Ray threads) whose processes have all run `config`
    for one epoch (torch, the trainer and the dataset loaded) before it is returned."""
    ctx = mp.get_context("spawn")
    ready = ctx.Value("i", 0)
    pool = ctx.Pool(SLOTS, initializer=_warm, initargs=(config, ready))
    while ready.value < SLOTS:
        time.sleep(0.05)
    return pool


def train_one(config: dict[str, Any]) -> float | None:
    """One trial in a pool process: its test accuracy (to compare runners' results)."""
    import lcw

    return lcw.train(config).test_acc


def speed_probe() -> float:
    """Seconds for a fixed loop of 400 (16, 100, 100) batched matmuls on one thread: this
    core's speed just now (a pack's matmuls have that shape). Run in a pool process, which has
    torch loaded and one thread already (``WarmPool.probe``)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 16, 100, 100, generator=gen)
    t0 = time.perf_counter()
    for _ in range(400):
        torch.bmm(a, b)
    return time.perf_counter() - t0


class WarmPool:
    """The baseline: a warm ``multiprocessing.Pool(SLOTS)`` (``warm_pool``) mapping
    ``lcw.train`` over the configs, one at a time per process."""

    def __init__(self, warm_config: dict[str, Any]) -> None:
        self.pool = warm_pool(warm_config)

    def run(self, configs: list[dict[str, Any]]) -> tuple[float, list[float | None]]:
        """Wall seconds to train `configs` (one at a time per process), and their accuracies."""
        t0 = time.perf_counter()
        accs = self.pool.map(train_one, configs, chunksize=1)
        return time.perf_counter() - t0, accs

    def probe(self) -> float:
        """``speed_probe`` in one of the pool's idle processes."""
        return float(self.pool.apply(speed_probe))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
