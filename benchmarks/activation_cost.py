"""What SIMD-exact activations cost (``lcw.activations.Sigmoid`` against ``nn.Sigmoid``).

16 depth-20 width-100 sigmoid LCW MLPs on mnist5k (2,000 training samples, 2 epochs, one torch
thread): 8 of them trained one by one, and all 16 as one pack, with each activation, interleaved
over 3 repeats; the medians of the per-repeat ratios of training seconds.

    python -m benchmarks.activation_cost     # also part of `make bench`
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

import lcw.activations as activations
from lcw import TrialConfig
from lcw.data import load_dataset
from lcw.trainer import train, train_pack


def run(repeats: int = 3, *, quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    base = dict(dataset="mnist5k", method="lcw", depth=20, width=100, activation="sigmoid",
                epochs=1 if quick else 2, diagnostics=False,
                train_limit=500 if quick else 2000)  # fmt: skip
    cfgs = [TrialConfig(lr=0.05 + 0.01 * k, seed=k, **base) for k in range(16)]  # type: ignore[arg-type]
    exact = activations.ACTIVATION_LAYERS["sigmoid"]
    times: dict[tuple[str, bool], list[float]] = {}
    try:
        for _ in range(repeats):
            for simd_exact in (True, False):
                activations.ACTIVATION_LAYERS["sigmoid"] = exact if simd_exact else nn.Sigmoid
                alone = sum(train(c, dataset=data).seconds for c in cfgs[:8])
                times.setdefault(("alone", simd_exact), []).append(alone)
                pack = train_pack(cfgs, dataset=data)[0].seconds
                times.setdefault(("pack", simd_exact), []).append(pack)
    finally:
        activations.ACTIVATION_LAYERS["sigmoid"] = exact

    def ratio(kind: str) -> float:
        pairs = zip(times[(kind, True)], times[(kind, False)], strict=True)
        return statistics.median(a / b for a, b in pairs)

    return {"alone_ratio": ratio("alone"), "pack_ratio": ratio("pack")}


if __name__ == "__main__":
    print(run())
