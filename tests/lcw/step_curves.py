"""Per-step training losses of trials run alone and as one pack, and how far two curves are
apart: shared by the packing tests on the CPU (test_packed) and on a GPU (test_gpu). Imports
only lcw, so it runs on a GPU machine that has PyTorch alone."""

from __future__ import annotations

import torch

from lcw.config import TrialConfig
from lcw.data import Dataset
from lcw.trainer import TrialResult, train, train_pack


def curves_alone(cfgs: list[TrialConfig], data: Dataset | None = None) -> list[list[float]]:
    """Each trial trained alone: its training loss at every step."""
    out = []
    for c in cfgs:
        steps: list[float] = []
        train(c, dataset=data, on_step=lambda _s, losses, st=steps: st.append(float(losses[0])))
        out.append(steps)
    return out


def curves_packed(
    cfgs: list[TrialConfig], data: Dataset | None = None
) -> tuple[list[list[float]], list[TrialResult]]:
    """The trials trained as one pack: each member's training loss at every step, and results."""
    steps: list[list[float]] = [[] for _ in cfgs]

    def record(_s: int, losses: torch.Tensor) -> None:
        for k, v in enumerate(losses.tolist()):
            steps[k].append(v)

    results = train_pack(cfgs, dataset=data, on_step=record)
    return steps, results


def max_rel(a: list[float], b: list[float]) -> float:
    """Largest relative difference of curve `a` from curve `b` (same length)."""
    assert len(a) == len(b)
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b, strict=True))
