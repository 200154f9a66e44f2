"""Packed trials: training throughput of K fused trials vs the same K trials run one by one.

K = 16 depth-20 width-100 sigmoid LCW MLPs on mnist5k (different seeds and LRs), one torch
thread for both, samples/s of the training loops (the trainer's own epoch timers; evaluation
and diagnostics excluded). Median of interleaved repeats, and best-of (each trial's fastest
repeat against the fastest pack, the figure least disturbed by other load).

``matmul_gflops``: the arithmetic bound on what fusing can gain on this CPU: one trial's
100x100 layer on a batch of 100 (``torch.mm``) against K of them batched (``torch.bmm``), one
thread, GFLOP/s (median of repeats of a timed loop).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

from lcw import TrialConfig
from lcw.data import load_dataset
from lcw.trainer import train, train_pack


def run(*, packs: int = 16, repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    base: dict[str, Any] = dict(
        dataset="mnist5k", method="lcw", depth=20, width=100, activation="sigmoid",
        epochs=1 if quick else 2, diagnostics=False, train_limit=1000 if quick else 2000,
    )  # fmt: skip
    cfgs = [TrialConfig(lr=0.05 + 0.01 * k, seed=k, **base) for k in range(packs)]
    samples = len(data.y_train[: base["train_limit"]]) * base["epochs"] * packs
    ratios, separate_sps, packed_sps = [], [], []
    t_single: list[list[float]] = [[] for _ in cfgs]  # each trial's training seconds, per repeat
    t_packs: list[float] = []
    for _ in range(repeats):
        for k, c in enumerate(cfgs):
            t_single[k].append(train(c, dataset=data).seconds)
        t_sep = sum(ts[-1] for ts in t_single)
        t_pack = train_pack(cfgs, dataset=data)[0].seconds
        t_packs.append(t_pack)
        separate_sps.append(samples / t_sep)
        packed_sps.append(samples / t_pack)
        ratios.append(t_sep / t_pack)
    # Best-of figures: each trial's fastest repeat and the fastest pack (the least disturbed by
    # other load on the machine); the medians above are the headline.
    best_sep, best_pack = sum(min(ts) for ts in t_single), min(t_packs)
    return {
        "packs": packs,
        "separate_samples_per_s": statistics.median(separate_sps),
        "packed_samples_per_s": statistics.median(packed_sps),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_best": best_sep / best_pack,
        "best_separate_samples_per_s": samples / best_sep,
        "best_packed_samples_per_s": samples / best_pack,
        "matmul_gflops": matmul_gflops(packs, repeats=repeats),
    }


def matmul_gflops(packs: int, *, n: int = 100, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of an (n x n) @ (n x n) matmul alone and of `packs` of them batched."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    ab, bb = torch.randn(packs, n, n), torch.randn(packs, n, n)

    def rate(fn: Any, flop: float, loops: int) -> float:
        fn()  # warm up
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        return flop * loops / (time.perf_counter() - t0) / 1e9

    flop = 2.0 * n**3
    alone = [rate(lambda: torch.mm(a, b), flop, 2000) for _ in range(repeats)]
    batched = [rate(lambda: torch.bmm(ab, bb), flop * packs, 200) for _ in range(repeats)]
    return {"alone": statistics.median(alone), "batched": statistics.median(batched)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
