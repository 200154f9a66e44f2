"""LCW layers (drop-in ``nn.Linear`` / ``nn.Conv2d``), the hidden ``Block``, and weight helpers.

Where the rest lives: which method builds which layers, ``lcw.methods``; activations,
``lcw.activations``; normalizations, ``lcw.norms``; packed layers, ``lcw.packed_layers``; the
zero-sum math and the projection's optimizer hooks, ``lcw.zero_sum``. Their names used
elsewhere stay importable from here too.

Source: T. Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster Training
of Neural Networks", ECML PKDD 2019, LNCS 11906 (Springer, 2020), doi
10.1007/978-3-030-46147-8_16. Every output unit's weight row (for a convolution the flattened
in_channels x kh x kw filter) is kept in the zero-sum subspace {w : w . 1 = 0}
(``lcw.zero_sum``).

Three exact implementations, one switch (``impl=``):

* ``projection`` (default): the weight itself is the parameter. It is projected at init, each
  gradient row is projected to zero mean before the optimizer step (skipped for SGD, where it
  changes nothing), and the weight is projected again after every step (global optimizer
  hooks, installed when the first such layer is built). Nearly free: no reparameterization in
  the forward pass.
* ``centering``: w = v - mean(v) at forward time (a parametrization).
* ``basis``: the paper's w = B v with B an m x (m-1) orthonormal basis of the zero-sum subspace,
  in closed form B = [I - c 1 1^T ; -(1/sqrt m) 1^T], c = (1 - 1/sqrt m) / (m - 1). B is never
  materialized: B v and B^T g are O(m) per row.

Same trajectory of w or not (tested in ``tests/lcw/test_layers.py``):

* all three under SGD with momentum, nesterov and weight decay (the update is linear in the
  gradient and in the weight, and commutes with the projection P);
* ``projection`` = ``centering`` under AdamW and under Adam without weight decay; ``basis``
  differs under both (Adam's per-coordinate normalization is not rotation-invariant);
* ``projection`` != ``centering`` under Adam with (coupled) weight decay: the L2 term is added to
  the gradient before Adam's normalization, and for centering it is wd * v, where v's row-mean
  component, invisible in w = v - mean(v), grows under Adam's per-coordinate steps (which do
  not keep v zero-sum) and feeds m and v; projection decays w itself (max relative gap 0.109
  after 100 steps at wd 1e-2: tests/lcw/test_layers.py).

Initialization: std = gain / sqrt(fan_in), a standard normal draw scaled by it (the gain and its
reason per activation: ``lcw.init``, the same for every method), then projected for
constrained methods, which use fan_in - 1, the degrees of freedom of a zero-sum row
(``zero_sum_dof``). ``init_scale`` multiplies the std of every hidden layer. The LCW layers
draw their own init (``reset_lcw``); ``lcw.methods`` draws the other methods' alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw import catalog
from lcw.activations import ACTIVATION_LAYERS, ALIGN, GELU, Sigmoid, Tanh, get_act_layer
from lcw.init import LEAKY_SLOPE, init_gain
from lcw.norms import LayerNorm
from lcw.zero_sum import (
    _PROJECTED_ATTR,
    _Basis,
    _CenteredWeightNorm,
    _Centering,
    _rows,
    basis_apply,
    basis_apply_t,
    install_projection_hooks,
    project_all_,
    project_rows_,
    reproject_,
    zero_sum_basis,
    zero_sum_dof,
)

# ---------------------------------------------------------------- layers


class _ZeroSumMixin:
    """Shared by the LCW layers (LCWLinear, LCWConv2d; ``LCWPackedLinear`` uses the constraint
    alone): the constraint, its implementations and the init."""

    impl: str
    activation: str
    gain: float | None
    init_scale: float
    weight: Any
    bias: Any

    def _setup_constraint(self, impl: str) -> None:
        if impl not in catalog.LCW_IMPLEMENTATIONS:
            raise ValueError(
                f"impl: '{impl}' is not one of {catalog.choices(catalog.LCW_IMPLEMENTATIONS)}"
            )
        fan_in = _rows(self.weight).shape[1]
        if fan_in < 2:
            raise ValueError(f"fan_in: a zero-sum constraint needs fan_in >= 2, got {fan_in}")
        self.impl = impl
        module: Any = self
        if impl == "projection":
            setattr(self.weight, _PROJECTED_ATTR, True)
            install_projection_hooks()
        elif impl == "centering":
            parametrize.register_parametrization(module, "weight", _Centering())
        else:
            parametrize.register_parametrization(module, "weight", _Basis(self.weight.shape))

    def __setstate__(self, state: dict[str, Any]) -> None:  # unpickling skips _setup_constraint
        super().__setstate__(state)  # type: ignore[misc]
        if self.impl == "projection":
            install_projection_hooks()

    def _init_lcw(
        self,
        impl: str,
        activation: str,
        gain: float | None,
        init_scale: float,
        generator: torch.Generator | None,
    ) -> None:
        """The LCW layers' constructor, after their torch base's: options, init, constraint."""
        self.activation, self.gain, self.init_scale = activation, gain, init_scale
        self.reset_lcw(generator)
        self._setup_constraint(impl)

    def reset_parameters(self) -> None:  # called by the torch base's __init__; reset_lcw follows
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def reset_lcw(self, generator: torch.Generator | None = None) -> None:
        """Draw std * N(0, 1), std = gain x init_scale / sqrt(fan_in - 1), project, zero bias."""
        shape = self.weight.shape
        gain = init_gain("lcw", self.activation, self.gain, self.init_scale)
        std = gain / math.sqrt(zero_sum_dof(self.weight))
        w = torch.randn(shape, generator=generator, dtype=torch.float64) * std
        set_weight(self, project_rows_(w))  # type: ignore[arg-type]
        if self.bias is not None:
            with torch.no_grad():
                self.bias.zero_()


class LCWLinear(_ZeroSumMixin, nn.Linear):
    """``nn.Linear`` whose every output unit's weight row sums to zero (see module docstring).

    `activation` picks the default gain (``lcw.init``; sigmoid: std 4/sqrt(fan_in - 1)); `gain`
    replaces it and `init_scale` multiplies it. ``layer.weight`` is always the effective
    (out, in) weight.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        impl: str = "projection",
        activation: str = "sigmoid",
        gain: float | None = None,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._init_lcw(impl, activation, gain, init_scale, generator)


class LCWConv2d(_ZeroSumMixin, nn.Conv2d):
    """``nn.Conv2d`` whose every filter (in_channels/groups x kh x kw, flattened) sums to zero."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: Any = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        impl: str = "projection",
        activation: str = "relu",
        gain: float | None = None,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        nn.Conv2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self._init_lcw(impl, activation, gain, init_scale, generator)


def set_weight(module: nn.Module, w: Tensor) -> None:
    """Set a layer's effective weight to `w`, whatever its parametrization (exact inverse)."""
    with torch.no_grad():
        if parametrize.is_parametrized(module, "weight"):
            setattr(module, "weight", w.to(_weight_dtype(module)))  # noqa: B010 (right_inverse)
        else:
            weight = module.weight
            assert isinstance(weight, Tensor)
            weight.copy_(w)


def _weight_dtype(module: nn.Module) -> torch.dtype:
    plist: nn.ModuleDict = getattr(module, "parametrizations")  # noqa: B009 (set by parametrize)
    return next(iter(plist["weight"].parameters())).dtype


class Block(nn.Module):
    """One hidden block: linear map -> normalization (if any) -> activation."""

    def __init__(self, linear: nn.Module, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.linear, self.norm, self.act = linear, norm, act

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.norm(self.linear(x)))
        return out


def is_zero_sum(module: nn.Module) -> bool:
    """Whether `module`'s effective weight rows are kept summing to zero (lcw, bn_lcw, cwn)."""
    if isinstance(module, _ZeroSumMixin):
        return True
    if not parametrize.is_parametrized(module, "weight"):
        return False
    plist: Any = getattr(module, "parametrizations")  # noqa: B009 (set by parametrize)
    return any(isinstance(p, _CenteredWeightNorm) for p in plist["weight"])


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the forward pass uses (parametrizations applied)."""
    w = module.weight
    assert isinstance(w, Tensor)
    return w


__all__ = [
    "ACTIVATION_LAYERS",
    "ALIGN",
    "GELU",
    "LEAKY_SLOPE",
    "Block",
    "LCWConv2d",
    "LCWLinear",
    "LayerNorm",
    "Sigmoid",
    "Tanh",
    "basis_apply",
    "basis_apply_t",
    "effective_weight",
    "get_act_layer",
    "init_gain",
    "install_projection_hooks",
    "is_zero_sum",
    "project_all_",
    "project_rows_",
    "reproject_",
    "set_weight",
    "zero_sum_basis",
    "zero_sum_dof",
]
