"""The activation registry (``ACTIVATION_LAYERS``, ``get_act_layer``) and its SIMD-exact layers.

Every name in ``lcw.catalog.ACTIVATIONS`` builds here. sigmoid, tanh and gelu are ``Sigmoid``,
``Tanh`` and ``GELU``: torch's ops, computed so that every element of a result takes the CPU's
SIMD code path (``ALIGN``, below), which is what lets a packed trial equal its trial alone bit
for bit (``lcw.packed``); relu and leaky_relu are exact either way and are torch's modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcw import catalog
from lcw.init import LEAKY_SLOPE

# CPU kernels compute an elementwise op with SIMD code over all but the tensor's last
# (numel mod vector-block) elements, and those with scalar code, whose exp / tanh / erf round
# differently (seen here: 1-2 of the last 16 of 10,000 sigmoid outputs differ in the last bit;
# tests/lcw/test_pack_invariance.py checks that the plain op's tail differs on this CPU).
# A trial alone and the same trial packed with others hold its activations at different places
# of tensors of other sizes, so without care its last few elements are computed by the other
# code path, and a deep net amplifies that bit into another model. So the last ALIGN elements
# (a multiple of every SIMD block) of each result, forward and backward, are computed again by
# a call of exactly ALIGN elements, which is all SIMD: every element then takes the SIMD path,
# alone and packed alike (lanes compute independently of their position). relu and leaky_relu
# are exact either way. Cost against nn.Sigmoid, side by side on 16 depth-20 width-100 sigmoid
# LCW MLPs, alone and as one pack (the extra autograd node per layer weighs on a small trial's
# step): `benchmarks/activation_cost.py`, a row of `make bench`'s table (README, Benchmarks).
ALIGN = 64


def _simd_tail(out: Tensor, fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """`out` = fn(*inputs) (flat, contiguous) with its last ALIGN elements recomputed on SIMD."""
    n = out.numel()
    if out.device.type != "cpu" or n % ALIGN == 0:
        return out
    flat = out.view(-1)
    if n < ALIGN:  # the whole tensor is a tail: compute it padded
        padded = [F.pad(t.reshape(-1), (0, ALIGN - n)) for t in inputs]
        flat.copy_(fn(*padded)[:n])
    else:
        flat[-ALIGN:] = fn(*(t.reshape(-1)[-ALIGN:] for t in inputs))
    return out


def _gelu_backward(g: Tensor, x: Tensor) -> Tensor:
    grad: Tensor = torch.ops.aten.gelu_backward(g, x)
    return grad


# name -> (forward f(x), backward b(grad, saved), saves the output (True) or the input)
_KERNELS: dict[str, tuple[Callable[..., Tensor], Callable[..., Tensor], bool]] = {
    "sigmoid": (torch.sigmoid, torch.ops.aten.sigmoid_backward, True),
    "tanh": (torch.tanh, torch.ops.aten.tanh_backward, True),
    "gelu": (F.gelu, _gelu_backward, False),
}


class _SimdExact(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, name: str) -> Tensor:
        f, _, saves_output = _KERNELS[name]
        x = x.contiguous()
        y = _simd_tail(f(x), f, x)
        ctx.save_for_backward(y if saves_output else x)
        ctx.name = name
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
        (saved,) = ctx.saved_tensors
        _, b, _ = _KERNELS[ctx.name]
        g = g.contiguous()
        return _simd_tail(b(g, saved), b, g, saved), None


def _simd_exact(x: Tensor, name: str) -> Tensor:
    out: Tensor = _SimdExact.apply(x, name)  # type: ignore[no-untyped-call]
    return out


class Sigmoid(nn.Sigmoid):
    def forward(self, x: Tensor) -> Tensor:
        return _simd_exact(x, "sigmoid")


class Tanh(nn.Tanh):
    def forward(self, x: Tensor) -> Tensor:
        return _simd_exact(x, "tanh")


class GELU(nn.GELU):
    def forward(self, x: Tensor) -> Tensor:
        return _simd_exact(x, "gelu")


ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "gelu": GELU,
}


def get_act_layer(name: str) -> nn.Module:
    """An activation module by registry name."""
    if name not in ACTIVATION_LAYERS:
        raise ValueError(f"activation: '{name}' is not one of {catalog.choices(ACTIVATION_LAYERS)}")
    return ACTIVATION_LAYERS[name]()


__all__ = ["ACTIVATION_LAYERS", "ALIGN", "GELU", "Sigmoid", "Tanh", "get_act_layer"]
