"""Per-layer diagnostics on one probe batch: activation shift, gradient norms, saturation.

Activation shift (T. Kutsuna, ECML PKDD 2019, doi 10.1007/978-3-030-46147-8_16): a neuron's
preactivation z = w . a has mean w . mu; with sigmoid inputs mu is near a multiple of 1, so each
neuron gets its own offset (horizontal stripes in the neuron x sample matrix). Measured per
hidden layer on the linear map's output z (before any normalization), with neurons = output
units (conv: channels, samples = batch x positions):

* ``shift``: std across neurons of the per-neuron mean of z, divided by the mean within-neuron
  std of z. LCW keeps it O(1); unconstrained deep sigmoid nets grow it with depth.
* ``abs_mean``: mean over neurons of |per-neuron mean|, divided by the same within-neuron std.
* ``grad_norm``: Frobenius norm of the weight gradient the optimizer applies, on the probe
  batch (vanishing gradients show as a norm that falls off towards the input). For
  unconstrained layers that is d loss / d (effective weight). For zero-sum layers (lcw and
  bn_lcw with any impl, cwn) it is that gradient with each row's mean removed: what projection
  applies; for centering the gradient of v itself; for basis B^T g, of the same norm; for cwn
  the only part that can move its zero-sum weight. The row-mean part of the raw gradient
  (row j's mean: sum over samples of dL/dz_j times the input's mean, large behind sigmoid's
  mean-0.5 outputs) never reaches a weight.
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

from lcw import catalog
from lcw.config import TrialConfig
from lcw.init import init_gain
from lcw.layers import Block, effective_weight, is_zero_sum
from lcw.meanfield import predicted_profile
from lcw.models import build_model


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def measure_layers(
    model: nn.Module, x: Tensor, y: Tensor, *, activation: str, packs: int | None = None
) -> Any:
    """Diagnostics for each ``Block`` of `model` on the probe batch (x, y).

    `packs=None`: `model` is a plain ``Net`` taking (B, ...) and the result is one list of
    per-layer rows. `packs=K`: `model` takes (K, B, ...) and returns (K, B, classes) (a single
    trial adapted by ``lcw.trainer`` or a ``PackedNet``, members laid out along channels), and the
    result is one list of rows per member.
    """
    k = packs or 1
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    preacts: list[Tensor] = []
    outputs: list[Tensor] = []
    handles = [b.linear.register_forward_hook(lambda _m, _i, o: preacts.append(o)) for b in blocks]
    handles += [b.act.register_forward_hook(lambda _m, _i, o: outputs.append(o)) for b in blocks]
    bn_state: list[tuple[Any, Any, Tensor | None]] = [
        (m, m.momentum, _tracked(m)) for m in model.modules() if _is_batch_norm(m)
    ]
    for m, _, _ in bn_state:
        m.momentum = 0.0
    try:
        with parametrize.cached(), torch.enable_grad():
            weights = [effective_weight(b.linear) for b in blocks]  # cached: what forward uses
            if packs is None:
                logits = model(x).unsqueeze(0)
            else:
                logits = model(x.unsqueeze(0).expand(k, *x.shape))  # (K, B, C)
            flat = F.cross_entropy(logits.flatten(0, 1), y.repeat(k), reduction="none")
            loss = flat.view(k, -1).mean(dim=1).sum()  # members are independent: sum of means
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        for m, momentum, tracked in bn_state:
            m.momentum = momentum
            counter = m.num_batches_tracked
            if tracked is not None and isinstance(counter, Tensor):
                counter.copy_(tracked)
    members: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    with torch.no_grad():
        for i, (b, z, a, g) in enumerate(zip(blocks, preacts, outputs, grads, strict=True)):
            zs = _neurons(b.linear, z.detach().double(), k)
            acts = _neurons(b.linear, a.detach(), k)
            gs = None if g is None else _applied(b.linear, g.detach()).reshape(k, -1)
            for j, row in enumerate(_layer_rows(i + 1, zs, acts, gs, activation)):
                members[j].append(row)
    return members[0] if packs is None else members


def _applied(layer: nn.Module, g: Tensor) -> Tensor:
    """The part of an effective-weight gradient that reaches the weight (module docstring)."""
    if not is_zero_sum(layer):
        return g
    rows = g.reshape(g.shape[0], -1)  # (out, fan_in); a pack's members own disjoint rows
    return rows - rows.mean(dim=1, keepdim=True)


def _is_batch_norm(m: nn.Module) -> bool:
    return isinstance(getattr(m, "running_mean", None), Tensor)  # batch norms, packed or not


def _tracked(m: nn.Module) -> Tensor | None:
    t = getattr(m, "num_batches_tracked", None)
    return t.clone() if isinstance(t, Tensor) else None


def _neurons(layer: nn.Module, t: Tensor, k: int) -> Tensor:
    """A block's activations as (K, neurons, samples): each member's neuron x sample matrix.

    Every member's matrix is laid out alike whatever K is (a view for linear layers, a copy for
    convolutions), so a member's figures do not depend on its pack (``lcw.packed``).
    """
    if getattr(layer, "member_major", False):  # (K, B, units): packed linear layers
        return t.transpose(1, 2)
    n = t.shape[0]  # (B, K * C, ...): a trial alone (K = 1) or a packed convolution
    split = t.reshape(n, k, t.shape[1] // k, -1)  # (B, K, C, positions)
    return split.permute(1, 2, 0, 3).reshape(k, t.shape[1] // k, -1)


def _layer_rows(
    layer: int, z: Tensor, a: Tensor, g: Tensor | None, activation: str
) -> list[dict[str, Any]]:
    """Each member's row for this layer, from (K, neurons, samples) matrices.

    The reductions over samples run for all members at once; those over one member's neurons
    run member by member, on 1-D rows: torch reduces the rows of a (K, n) tensor with other
    kernels (other rounding) than a lone 1-D row, and a member must not depend on K.
    """
    means, stds = _mean_std(z)  # (K, neurons)
    k = z.shape[0]
    per_member = [(stds[j].mean(), means[j].std(), means[j].abs().mean()) for j in range(k)]
    figures = torch.stack([torch.stack(x) for x in per_member]).tolist()  # one sync
    norms = None if g is None else torch.stack([g[j].norm() for j in range(k)]).tolist()
    saturated = _saturation(a, activation)
    rows = []
    for j, (w, s, m) in enumerate(figures):
        rows.append({
            "layer": layer,
            "shift": _finite(s / w if w > 0 else math.inf),
            "abs_mean": _finite(m / w if w > 0 else math.inf),
            "grad_norm": None if norms is None else _finite(norms[j]),
            "saturated": None if saturated is None else saturated[j],
        })  # fmt: skip
    return rows


def _mean_std(z: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) std over the last dim of (K, neurons, samples), in two passes:
    ``Tensor.std``'s one-pass Welford kernel is several times slower on this (double) data,
    and each figure is a plain sum over one member's own entries, whatever K is."""
    n = z.shape[2]
    means = z.sum(dim=2) / n
    centered = z - means.unsqueeze(2)
    return means, ((centered * centered).sum(dim=2) / (n - 1)).sqrt()


def _saturation(a: Tensor, activation: str) -> list[float] | None:
    """Per member: the fraction of activation outputs in the flat tails (counts are exact)."""
    if activation == "sigmoid":
        tails = (a < 0.01) | (a > 0.99)
    elif activation == "tanh":
        tails = a.abs() > 0.99
    else:
        return None
    n = a[0].numel()  # counts are exact in any layout: no copy into one
    return [c / n for c in torch.count_nonzero(tails, dim=tuple(range(1, a.dim()))).tolist()]


def depth_profile(
    method: str,
    activation: str,
    *,
    depth: int = 20,
    width: int = 500,
    batch: int = 256,
    seed: int = 0,
    init_scale: float = 1.0,
) -> dict[str, Any]:
    """Signal and gradient sizes through an MLP at its default init, layer by layer, measured
    and as mean-field theory predicts them (``lcw.meanfield.predicted_profile``).

    Inputs are `batch` standard-normal vectors of size `width` and labels uniform over 10
    classes, both from a generator seeded with `seed` (the weights use the trial's init
    generator, seeded alike). Standard-normal inputs give layer 1 the same fan-in and the unit
    input statistics every prediction starts from, so the profile shows what depth does and
    nothing the data does. Per hidden layer, in train mode (batch statistics), for the mean
    cross-entropy over the batch:

    * ``q``: mean square of the linear map's output (the mean-field preactivation variance);
    * ``grad_z``: Frobenius norm of d loss / d (linear output) over the batch: the backward
      signal, which shrinks or grows by sqrt(chi) a layer;
    * ``grad_norm``: the weight gradient the optimizer applies (``measure_layers``' figure).

    Returns {"gain", "measured": {name: per-layer list}, "predicted": {name: per-layer list}};
    predicted gradients are relative to the last layer's (only their ratios are predicted).
    """  # fmt: skip
    cfg = TrialConfig(dataset="digits", method=method, activation=activation, depth=depth,
                      width=width, seed=seed, init_scale=init_scale)  # fmt: skip
    model = build_model(cfg, input_shape=(1, 1, width), num_classes=10)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 1, width, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    blocks = model.blocks
    preacts: list[Tensor] = []
    handles = [b.linear.register_forward_hook(lambda _m, _i, o: preacts.append(o)) for b in blocks]
    try:
        with parametrize.cached(), torch.enable_grad():
            weights = [effective_weight(b.linear) for b in blocks]
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, [*preacts, *weights])
    finally:
        for h in handles:
            h.remove()
    gz, gw = grads[:depth], grads[depth:]
    info = catalog.METHODS[method]
    gain = init_gain(method, activation, scale=init_scale)
    theory = predicted_profile(activation, gain, zero_sum=info.constrained, norm=info.norm,
                               depth=depth)  # fmt: skip
    return {
        "gain": gain,
        "measured": {
            "q": [float(z.detach().double().square().mean()) for z in preacts],
            "grad_z": [float(g.double().norm()) for g in gz],
            "grad_norm": [
                float(_applied(b.linear, g.double()).norm())
                for b, g in zip(blocks, gw, strict=True)
            ],
        },
        "predicted": {
            "q": theory["q"],
            "grad_z": [math.sqrt(v) for v in theory["grad2"]],
            "grad_norm": [math.sqrt(v) for v in theory["grad_w2"]],
        },
    }
