"""Packed trials in the dispatcher: which claimed trials train together, and how many at once.

``lcw.train_pack`` trains trials that differ only in ``lr`` and ``seed`` as one fused model
(``lcw.packed``; HFTA, Wang et al., MLSys 2021, measured 2.4-11.5x throughput on GPUs). The
dispatcher packs the trials of one study whose resolved configs agree in every other field
(``group_key``, on ``lcw.config.pack_key``) and runs each pack on one actor. Torch-free: the
dispatcher never loads torch (sizes come from ``lcw.catalog.model_size``).

How many members a pack gets (``pack_limit`` and ``fair_share``), the smallest of

* the cap: ``LCW_PACK_SIZE`` if set (1 switches packing off), else 16 on a CPU actor and 64 on
  a GPU actor. On a CPU the fused model is matmul-bound like the trials it replaces (1.15-1.3x
  measured for depth-20 MLPs, far more for small ones whose steps are mostly Python overhead);
  on a GPU a small trial leaves most of the device idle;
* memory: ``MEMORY_FRACTION`` of the free memory the actor reported at its start (host memory
  on a CPU, ``torch.cuda.mem_get_info`` on a GPU), shared by the dispatcher's actors on that
  node or device, divided by ``member_bytes`` (weights, gradients and optimizer state, plus the
  activations a training step keeps for backward and an evaluation batch);
* cost, on a CPU only: ``PACK_TARGET_S`` divided by the measured seconds per member of the same
  configuration (none measured yet: no bound), so that a pack, whose members share one core,
  still finishes in minutes and results keep coming in;
* fairness: ``ceil(trials waiting / idle actors)``, so a pack never takes trials that another
  idle actor could start now (a 4-trial study on 2 actors runs as 2 packs of 2, not 1 of 4).
"""

from __future__ import annotations

import math
from typing import Any

from lcw import catalog
from lcw.config import pack_key

CPU_CAP = 16
GPU_CAP = 64
MEMORY_FRACTION = 0.5  # of the device's free memory: the estimate is rough, other work runs too
PACK_TARGET_S = 120.0  # CPU: a pack should take about this long at most (members share a core)
EVAL_BATCH = 2048  # lcw.trainer.EVAL_BATCH: evaluation activations are sized by it


def group_key(study_id: int, config: dict[str, Any]) -> str:
    """Trials of one study with equal keys can train as one pack (configs resolved).

    The study's id, then ``lcw.config.pack_key``: the config but for the fields a pack's
    members may differ in (``lr`` and ``seed``).
    """
    return f"{study_id}:{pack_key(config)}"


def config_key(config: dict[str, Any]) -> str:
    """The key of a configuration's cost (the same for every study and seed)."""
    return group_key(0, config)


def _layer_sizes(config: dict[str, Any]) -> tuple[int, int]:
    """(parameters, activation floats per sample in the hidden layers) of one member."""
    info = catalog.DATASETS.get(str(config.get("dataset")))
    return catalog.model_size(
        _known(config.get("model"), catalog.MODELS, "mlp"),
        input_shape=info.input_shape if info else (1, 28, 28),
        num_classes=info.num_classes if info else 10,
        method=_known(config.get("method"), catalog.METHODS, "plain"),
        depth=int(config.get("depth", 1)),
        width=int(config.get("width", 100)),
        bias=_known(config.get("bias"), catalog.BIAS_MODES, "default"),
        lcw_impl=str(config.get("lcw_impl", "projection")),
    )


def _known(value: Any, names: Any, default: str) -> str:
    """`value` if the catalog knows it, else `default` (an estimate never fails)."""
    return str(value) if value in names else default


def member_bytes(config: dict[str, Any]) -> int:
    """Estimated memory one pack member needs on its device (fp32)."""
    params, per_sample = _layer_sizes(config)
    batch = int(config.get("batch_size", 100))
    # Weights, gradients, two optimizer buffers (momentum; Adam's two moments).
    state = 4 * params * 4
    # A training step keeps about 4 tensors per hidden unit for backward (map output, norm
    # output, activation, their gradient); evaluation keeps about 2 per unit of one batch.
    train = 4 * 4 * per_sample * batch
    evaluation = 2 * 4 * per_sample * EVAL_BATCH
    return state + train + evaluation


def pack_limit(
    config: dict[str, Any],
    *,
    gpu: bool,
    cap: int | None,
    free_bytes: float | None,
    sharing: int,
    member_seconds: float | None,
) -> int:
    """The most members a pack of `config` should get on an actor (fairness aside)."""
    limit = cap if cap is not None else (GPU_CAP if gpu else CPU_CAP)
    if limit <= 1:
        return 1
    if free_bytes:
        budget = free_bytes * MEMORY_FRACTION / max(sharing, 1)
        limit = min(limit, int(budget // max(member_bytes(config), 1)))
    if not gpu and member_seconds:
        limit = min(limit, int(PACK_TARGET_S // member_seconds))
    return max(limit, 1)


def fair_share(waiting: int, idle: int) -> int:
    """Members per pack that leave work for every idle actor: ceil(waiting / idle)."""
    return max(1, math.ceil(waiting / max(idle, 1)))


__all__ = [
    "CPU_CAP",
    "GPU_CAP",
    "MEMORY_FRACTION",
    "PACK_TARGET_S",
    "config_key",
    "fair_share",
    "group_key",
    "member_bytes",
    "pack_limit",
]
