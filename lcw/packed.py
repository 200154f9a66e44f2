"""Packed trials: K models of one architecture trained as one fused model (HFTA-style).

Trials that share everything but the learning rate and the seed are stacked along the channel
axis, activations laid out as (B, K * features):

* a hidden linear layer is ``PackedLinear``: one (K * out, in) weight applied with a batched
  matmul, so the rows (and therefore the LCW constraint, weight norm, init) are each member's
  own rows; a conv layer is a grouped ``nn.Conv2d`` with ``groups=K`` (the same row layout);
* batch norm over K * out channels is per-member batch norm; layer norm is ``GroupNorm(K, .)``
  (each member's units form one group);
* ``PackedSGD`` / ``PackedAdam`` (``lcw.optim``, re-exported here) follow ``torch.optim.SGD`` /
  ``Adam`` / ``AdamW`` exactly, with a per-member learning rate, a per-member active mask (a
  diverged or stopped member is frozen without disturbing the others) and the same
  weight-decay groups as a single trial.

Each member starts from exactly the weights its unpacked trial would draw (its own seed, built by
``lcw.models.build_model``, its stored tensors copied in), sees its own data order and its own
seed's augmentation, and on CPU in fp32 an MLP member's metrics equal the trial run alone bit
for bit (``tests/lcw/test_pack_invariance.py``: every method, optimizer and schedule). Batch
norm runs torch's own kernel on a (B, K * F) view for that; conv packs (grouped convolutions)
are not asserted bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw import catalog
from lcw.config import TrialConfig
from lcw.layers import (
    Block,
    LCWConv2d,
    _CenteredWeightNorm,
    _ZeroSumMixin,
)
from lcw.models import MODEL_LAYOUTS, Net, build_model
from lcw.optim import PackedAdam, PackedSGD, build_packed_optimizer

__all__ = [
    "SHARED_FIELDS",
    "PackedAdam",
    "PackedBatchNorm",
    "PackedLayerNorm",
    "PackedLinear",
    "PackedNet",
    "PackedSGD",
    "build_packed_model",
    "build_packed_optimizer",
    "pack_key",
    "packed_linear",
]

# Fields a pack's members must share (everything that shapes the model or the update rule).
SHARED_FIELDS = (
    "dataset", "model", "method", "activation", "depth", "width", "epochs", "batch_size",
    "optimizer", "lr_schedule", "gain", "init_scale", "bias", "augment", "lcw_impl", "device",
    "precision", "channels_last", "compile", "threads", "diagnostics",
    "probe_size", "divergence_factor", "train_limit", "data_dir",
)  # fmt: skip


def pack_key(cfg: TrialConfig) -> tuple[Any, ...]:
    """Trials with equal keys can be trained as one pack."""
    return tuple(repr(getattr(cfg, f)) for f in SHARED_FIELDS)


class _PackedLinearFn(torch.autograd.Function):
    """y = x W_k^T + b_k per member, with the weight gradient computed in the weight's layout.

    Autograd of ``bmm(x, W.view(K, out, in).transpose(1, 2))`` produces the weight gradient as
    (K, in, out) and copies it back to (K * out, in) through the transpose and view; here it
    is ``bmm(g^T, x)``, written directly as (K, out, in). `weight` is the effective weight (a
    parametrization's output, when there is one), so gradients flow into it as usual.
    Under autocast the matmuls run in the autocast dtype; the backward casts alike and returns
    each gradient in its input's dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, packs: int) -> Tensor:
        w = weight.reshape(packs, -1, weight.shape[1])  # (K, out, in)
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        if bias is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(bias.view(packs, 1, -1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(g, w.to(g.dtype)).to(x_dtype)  # (K, B, in)
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(g.transpose(1, 2), x.to(g.dtype))  # (K, out, in)
            grad_w = gw.view(-1, gw.shape[2]).to(w_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dim=1).view(-1).to(b_dtype)
        return grad_x, grad_w, grad_b, None


def packed_linear(x: Tensor, weight: Tensor, bias: Tensor | None, packs: int) -> Tensor:
    """(K, B, in) x (K * out, in) weight [+ (K * out,) bias] -> (K, B, out), member by member."""
    out: Tensor = _PackedLinearFn.apply(x, weight, bias, packs)
    return out


class PackedLinear(nn.Module):
    """K independent linear maps on member-major inputs (K, B, in) -> (K, B, out).

    The weight is stored as (K * out, in): each member's rows are ordinary rows, so the LCW
    constraint, weight norm and init apply to it unchanged.
    """

    member_major = True  # activations are (K, B, features); diagnostics split along dim 0
    is_linear_map = True  # its weight decays like nn.Linear's (lcw.optim)

    def __init__(self, packs: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.packs, self.in_features, self.out_features = packs, in_features, out_features
        self.weight = nn.Parameter(torch.empty(packs * out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(packs * out_features)) if bias else None
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_features))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight  # the effective weight (parametrizations applied)
        assert isinstance(weight, Tensor)
        return packed_linear(x, weight, self.bias, self.packs)  # (K, B, out)


class PackedBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` for each member on (K, B, F) inputs: torch's own on (B, K * F).

    Each channel's statistics, update and gradient are computed as for the member's own
    (B, F) input, bit for bit; the two transposes cost a copy of the activations each way.
    """

    def __init__(self, packs: int, features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(packs * features, eps=eps, momentum=momentum)
        self.packs, self.features = packs, features

    def forward(self, x: Tensor) -> Tensor:
        k, b, f = x.shape
        out = super().forward(x.transpose(0, 1).reshape(b, k * f))
        return out.view(b, k, f).transpose(0, 1).contiguous()


class PackedLayerNorm(nn.Module):
    """``nn.LayerNorm(F)`` for each member on (K, B, F) inputs."""

    def __init__(self, packs: int, features: int, eps: float = 1e-5):
        super().__init__()
        self.packs, self.features, self.eps = packs, features, eps
        self.weight = nn.Parameter(torch.ones(packs * features))
        self.bias = nn.Parameter(torch.zeros(packs * features))

    def forward(self, x: Tensor) -> Tensor:
        shape = (self.packs, 1, self.features)
        x_hat = F.layer_norm(x, (self.features,), eps=self.eps)
        return torch.addcmul(self.bias.view(shape), x_hat, self.weight.view(shape))


class LCWPackedLinear(_ZeroSumMixin, PackedLinear):
    """``PackedLinear`` with every member's rows in the zero-sum subspace."""

    def __init__(
        self,
        packs: int,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        impl: str = "projection",
        activation: str = "sigmoid",
        gain: float | None = None,
    ) -> None:
        self.activation, self.gain = activation, gain
        PackedLinear.__init__(self, packs, in_features, out_features, bias)
        self._setup_constraint(impl)


def _packed_map(cfg: TrialConfig, packs: int, fan_in: int, out: int, *, conv: bool) -> nn.Module:
    # The init here is a placeholder: _copy_members puts in each member's own initial weights.
    bias = catalog.hidden_bias(cfg.method, cfg.bias)
    layer: nn.Module
    if cfg.method in ("lcw", "bn_lcw"):
        if conv:
            layer = LCWConv2d(
                packs * fan_in, packs * out, 3, padding=1, groups=packs, bias=bias,
                impl=cfg.lcw_impl, activation=cfg.activation, gain=cfg.gain,
            )  # fmt: skip
        else:
            layer = LCWPackedLinear(
                packs, fan_in, out, bias,
                impl=cfg.lcw_impl, activation=cfg.activation, gain=cfg.gain,
            )  # fmt: skip
    elif conv:
        layer = nn.Conv2d(packs * fan_in, packs * out, 3, padding=1, groups=packs, bias=bias)
    else:
        layer = PackedLinear(packs, fan_in, out, bias)
    if cfg.method == "wn":
        layer = nn.utils.parametrizations.weight_norm(layer, name="weight", dim=0)
    elif cfg.method == "cwn":
        parametrize.register_parametrization(layer, "weight", _CenteredWeightNorm())
    return layer


def _packed_norm(method: str, packs: int, features: int, *, conv: bool) -> nn.Module:
    norm = catalog.METHODS[method].norm
    if norm == "batch":
        return nn.BatchNorm2d(packs * features) if conv else PackedBatchNorm(packs, features)
    if norm == "layer":
        # Conv members use GroupNorm(1, C); K groups of C channels is the same per member.
        return nn.GroupNorm(packs, packs * features) if conv else PackedLayerNorm(packs, features)
    return nn.Identity()


class PackedNet(nn.Module):
    """K members of one ``Net`` layout; input (K, B, C, H, W), logits (K, B, classes).

    MLP activations are member-major (K, B, F); conv activations are (B, K * C, H, W) for the
    grouped convolutions.
    """

    def __init__(self, features: nn.Sequential, classifier: PackedLinear, *, flatten: bool):
        super().__init__()
        self.features, self.classifier, self.flatten = features, classifier, flatten
        self.packs = classifier.packs
        self.channels_last = False  # set by the trainer for conv packs (NHWC activations)

    @property
    def blocks(self) -> list[Block]:
        return [m for m in self.features if isinstance(m, Block)]

    def forward(self, x: Tensor) -> Tensor:
        k, n = x.shape[0], x.shape[1]
        if self.flatten:
            return self.classifier(self.features(x.reshape(k, n, -1)))  # (K, B, classes)
        h = x.transpose(0, 1).reshape(n, k * x.shape[2], *x.shape[3:])  # (B, K*C, H, W)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.features(h).reshape(n, k, -1).transpose(0, 1)  # (K, B, C * H * W)
        return self.classifier(h)


def build_packed_model(
    configs: list[TrialConfig], *, input_shape: tuple[int, ...], num_classes: int
) -> PackedNet:
    """Pack the members' models: each member's weights are exactly its unpacked init."""
    cfg, packs = configs[0], len(configs)
    members = [build_model(c, input_shape=input_shape, num_classes=num_classes) for c in configs]

    def make(fan_in: int, out: int, conv: bool) -> tuple[nn.Module, nn.Module]:
        return (
            _packed_map(cfg, packs, fan_in, out, conv=conv),
            _packed_norm(cfg.method, packs, out, conv=conv),
        )

    layers, fan_in = MODEL_LAYOUTS[cfg.model](cfg, input_shape, make)
    head = PackedLinear(packs, fan_in, num_classes)
    net = PackedNet(nn.Sequential(*layers), head, flatten=cfg.model == "mlp")
    _copy_members(net, members)
    return net


def _cat(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.detach() for t in tensors], dim=0)


def _stored_weight(module: nn.Module) -> dict[str, Tensor]:
    """The parameters a layer's weight is made of: its parametrization's originals, or itself."""
    if parametrize.is_parametrized(module, "weight"):
        plist: Any = getattr(module, "parametrizations")  # noqa: B009 (set by parametrize)
        return dict(plist["weight"].named_parameters())
    weight = module.weight
    assert isinstance(weight, Tensor)
    return {"weight": weight}


def _copy_members(net: PackedNet, members: list[Net]) -> None:
    """Stack each member's initial weights, biases, norm parameters and buffers into `net`."""
    pairs: list[tuple[nn.Module, list[nn.Module]]] = [
        (b.linear, [m.blocks[i].linear for m in members]) for i, b in enumerate(net.blocks)
    ]
    pairs.append((net.classifier, [m.classifier for m in members]))
    for packed, singles in pairs:
        # The stored tensors themselves (a parametrization's originals, not the weight they
        # make): recomputing them from the effective weight would round differently.
        for name, value in _stored_weight(packed).items():
            with torch.no_grad():
                value.copy_(_cat(_stored_weight(s)[name] for s in singles).view_as(value))
        if isinstance(packed.bias, Tensor):
            with torch.no_grad():
                packed.bias.copy_(_cat(s.bias for s in singles))  # type: ignore[misc]
    for i, b in enumerate(net.blocks):
        singles_norm = [m.blocks[i].norm for m in members]
        packed_state = b.norm.state_dict()
        for key in packed_state:
            if key == "num_batches_tracked":
                continue
            packed_state[key] = _cat(s.state_dict()[key] for s in singles_norm)
        b.norm.load_state_dict(packed_state)
