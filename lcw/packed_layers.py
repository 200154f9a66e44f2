"""Packed linear maps: K members' ``nn.Linear`` (and LCW) layers as one batched matmul.

Activations are member-major, (K, B, features), and a layer's weight is stored as
(K * out, in): each member's rows are ordinary rows, so the LCW constraint (``LCWPackedLinear``),
weight norm and the init apply to it unchanged. Packed convolutions need no class of their own:
they are grouped ``nn.Conv2d`` / ``LCWConv2d`` with ``groups=K`` (``lcw.methods``); packed
normalizations are in ``lcw.norms``, the packed model in ``lcw.packed``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lcw.layers import _ZeroSumMixin


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
    out: Tensor = _PackedLinearFn.apply(x, weight, bias, packs)  # type: ignore[no-untyped-call]
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


def member_view(t: Tensor, packs: int) -> Tensor:
    """A member-major tensor (dim 0: K blocks, one per member) as (K, rows, ...): a view in
    any memory layout (only dim 0 is split, so a channels_last filter works too)."""
    return t.view(packs, t.shape[0] // packs, *t.shape[1:])


@torch.no_grad()
def member_state(model: nn.Module, k: int, packs: int) -> list[tuple[Tensor, Tensor]]:
    """(live view, copy) of member `k`'s slice of every member-major parameter and buffer."""
    out = []
    for t in [*model.parameters(), *model.buffers()]:
        if t.dim() and t.shape[0] % packs == 0:
            live = member_view(t.data, packs)[k]
            out.append((live, live.clone()))
    return out


__all__ = ["LCWPackedLinear", "PackedLinear", "member_state", "member_view", "packed_linear"]
