"""Per-layer diagnostics on one probe batch: activation shift, gradient norms, saturation.

Activation shift (Kutsuna 2018, sec. 3): a neuron's preactivation z = w . a has mean w . mu; with
sigmoid inputs mu is near a multiple of 1, so each neuron gets its own offset (horizontal stripes
in the neuron x sample matrix). Measured per hidden layer on the linear map's output z (before any
normalization), with neurons = output units (conv: channels, samples = batch x positions):

* ``shift``: std across neurons of the per-neuron mean of z, divided by the mean within-neuron
  std of z. LCW keeps it O(1); unconstrained deep sigmoid nets grow it with depth.
* ``abs_mean``: mean over neurons of |per-neuron mean|, divided by the same within-neuron std.
* ``grad_norm``: Frobenius norm of d loss / d (effective weight) on the probe batch (vanishing
  gradients show as a norm that falls off towards the input).
* ``saturated``: fraction of activation outputs in the flat tails (sigmoid: < 0.01 or > 0.99;
  tanh: |a| > 0.99); None for other activations.

The probe leaves the model as it was: parameter .grad fields are untouched (autograd.grad), and
batch-norm running statistics are not updated (momentum 0 during the probe).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw.layers import Block, effective_weight


def _neuron_matrix(z: Tensor) -> Tensor:
    """(N, units) or (N, C, H, W) -> (neurons, samples)."""
    if z.dim() == 2:
        return z.t()
    return z.transpose(0, 1).reshape(z.shape[1], -1)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def measure_layers(
    model: nn.Module, x: Tensor, y: Tensor, *, activation: str
) -> list[dict[str, Any]]:
    """Diagnostics for each ``Block`` of `model` on the probe batch (x, y)."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    preacts: list[Tensor] = []
    outputs: list[Tensor] = []
    handles = [b.linear.register_forward_hook(lambda _m, _i, o: preacts.append(o)) for b in blocks]
    handles += [b.act.register_forward_hook(lambda _m, _i, o: outputs.append(o)) for b in blocks]
    bn_state = [
        (
            m,
            m.momentum,
            m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None,
        )
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    for m, _, _ in bn_state:
        m.momentum = 0.0
    try:
        with parametrize.cached(), torch.enable_grad():
            weights = [effective_weight(b.linear) for b in blocks]  # cached: what forward uses
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        for m, momentum, tracked in bn_state:
            m.momentum = momentum
            counter = m.num_batches_tracked
            if tracked is not None and isinstance(counter, Tensor):
                counter.copy_(tracked)
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for i, (z, a, g) in enumerate(zip(preacts, outputs, grads, strict=True)):
            zm = _neuron_matrix(z.detach().double())
            means, stds = zm.mean(dim=1), zm.std(dim=1)
            within = float(stds.mean())
            shift = float(means.std()) / within if within > 0 else math.inf
            abs_mean = float(means.abs().mean()) / within if within > 0 else math.inf
            rows.append(
                {
                    "layer": i + 1,
                    "shift": _finite(shift),
                    "abs_mean": _finite(abs_mean),
                    "grad_norm": _finite(float(g.norm())) if g is not None else None,
                    "saturated": _saturation(a.detach(), activation),
                }
            )
    return rows


def _saturation(a: Tensor, activation: str) -> float | None:
    if activation == "sigmoid":
        return float(((a < 0.01) | (a > 0.99)).float().mean())
    if activation == "tanh":
        return float((a.abs() > 0.99).float().mean())
    return None
