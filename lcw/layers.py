"""LCW layers (drop-in ``nn.Linear`` / ``nn.Conv2d``), the baselines' layers, and their inits.

Source: T. Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster Training
of Neural Networks", ECML PKDD 2019, LNCS 11906 (Springer, 2020), doi
10.1007/978-3-030-46147-8_16. Every output unit's weight row (for a convolution the flattened
in_channels x kh x kw filter) is kept in the zero-sum subspace {w : w . 1 = 0}
(``lcw.zero_sum``).

Three exact implementations, one switch (``impl=``):

* ``projection`` (default): the weight itself is the parameter. It is projected at init, each
  gradient row is projected to zero mean before the optimizer step (skipped for SGD, where it
  changes nothing), and the weight is projected again after every step (global optimizer
  hooks). Nearly free: no reparameterization in the forward pass.
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
(``zero_sum_dof``). ``init_scale`` multiplies the std of every hidden layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw import catalog
from lcw.init import LEAKY_SLOPE, init_gain
from lcw.zero_sum import (
    _PROJECTED_ATTR,
    _Basis,
    _CenteredWeightNorm,
    _Centering,
    _rows,
    basis_apply,
    basis_apply_t,
    project_all_,
    project_rows_,
    reproject_,
    zero_sum_basis,
    zero_sum_dof,
)

# ---------------------------------------------------------------- layers


class _ZeroSumMixin:
    """Shared by LCWLinear and LCWConv2d: the constraint, its implementations and the init."""

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
        elif impl == "centering":
            parametrize.register_parametrization(module, "weight", _Centering())
        else:
            parametrize.register_parametrization(module, "weight", _Basis(self.weight.shape))

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
        self.activation, self.gain, self.init_scale = activation, gain, init_scale
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self.reset_lcw(generator)
        self._setup_constraint(impl)

    def reset_parameters(self) -> None:  # called by nn.Linear.__init__; reset_lcw follows
        if self.bias is not None:
            nn.init.zeros_(self.bias)


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
        self.activation, self.gain, self.init_scale = activation, gain, init_scale
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
        self.reset_lcw(generator)
        self._setup_constraint(impl)

    def reset_parameters(self) -> None:
        if self.bias is not None:
            nn.init.zeros_(self.bias)


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
    plist: Any = getattr(module, "parametrizations")  # noqa: B009 (set by parametrize)
    return next(iter(plist["weight"].parameters())).dtype


# ---------------------------------------------------------------- method registry


def _standard_draw(
    module: nn.Module, std: float, generator: torch.Generator | None, *, project: bool
) -> None:
    weight = module.weight
    assert isinstance(weight, Tensor)
    w = torch.randn(weight.shape, generator=generator, dtype=torch.float64) * std
    if project:
        project_rows_(w)
    set_weight(module, w)
    bias = module.bias
    if isinstance(bias, Tensor):
        with torch.no_grad():
            bias.zero_()


def make_linear_map(
    method: str,
    in_features: int,
    out_features: int,
    *,
    conv: bool,
    activation: str,
    gain: float | None = None,
    init_scale: float = 1.0,
    bias: str = "default",
    impl: str = "projection",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """The linear part of one hidden block of `method`, initialized (paired draw via generator).

    Every method draws the same N(0, 1) tensor for a given generator state, so methods that
    share a seed start from the same draw, scaled by the same gain x `init_scale` (``lcw.init``)
    over sqrt(fan_in), or over sqrt(fan_in - 1) and projected for constrained methods: wn starts
    at exactly the plain init (g = |v|), cwn at exactly the lcw init. `bias` "none" drops the
    hidden bias of the methods that have one (``catalog.hidden_bias``).
    """
    info = catalog.METHODS[method]
    std_gain = init_gain(method, activation, gain, init_scale)
    layer: nn.Module
    kwargs: dict[str, Any] = {"bias": catalog.hidden_bias(method, bias)}
    if conv:
        kwargs.update(kernel_size=3, padding=1)
    if method in ("lcw", "bn_lcw"):
        cls_lcw: Any = LCWConv2d if conv else LCWLinear
        # The layer's own init is the paired draw: the same N(0, 1) tensor from `generator`,
        # scaled by the gain over sqrt(fan_in - 1) and projected (reset_lcw).
        layer = cls_lcw(
            in_features, out_features, impl=impl, activation=activation, gain=gain,
            init_scale=init_scale, generator=generator, **kwargs,
        )  # fmt: skip
    else:
        cls: Any = nn.Conv2d if conv else nn.Linear
        layer = cls(in_features, out_features, **kwargs)
        weight = effective_weight(layer)
        fan_in = _rows(weight).shape[1]
        dof = zero_sum_dof(weight) if info.constrained else fan_in
        _standard_draw(layer, std_gain / math.sqrt(dof), generator, project=info.constrained)
    if method == "wn":
        layer = nn.utils.parametrizations.weight_norm(layer, name="weight", dim=0)
    elif method == "cwn":
        parametrize.register_parametrization(layer, "weight", _CenteredWeightNorm())
    return layer


def make_norm(method: str, features: int, *, conv: bool) -> nn.Module:
    """The normalization of `method` that sits between the linear map and the activation."""
    norm = catalog.METHODS[method].norm
    if norm == "batch":
        return nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)
    if norm == "layer":
        # Layer norm over (C, H, W) for a conv block is GroupNorm with one group.
        return nn.GroupNorm(1, features) if conv else LayerNorm(features)
    return nn.Identity()


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim, its affine part applied after the normalization.

    The same two ops as ``lcw.packed.PackedLayerNorm`` (normalize, then scale and shift), so a
    trial alone and packed compute the same bits; the fused affine of ``nn.LayerNorm`` sums its
    scale's gradient in another order.
    """

    def forward(self, x: Tensor) -> Tensor:
        x_hat = F.layer_norm(x, self.normalized_shape, eps=self.eps)
        return torch.addcmul(self.bias, x_hat, self.weight)


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
# are exact either way. Cost against nn.Sigmoid, measured side by side on 16 depth-20 width-100
# sigmoid LCW MLPs, mnist5k, 1 thread (`python -m benchmarks.activation_cost`, 2026-12-02, AMD
# EPYC): 1.21x the training time of a trial alone (the extra autograd node per layer weighs on
# so small a step), 1.00x for a pack of 16; an earlier run of the same logic gave 1.27x / 1.08x.
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
    return torch.ops.aten.gelu_backward(g, x)


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
    out: Tensor = _SimdExact.apply(x, name)
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


class Block(nn.Module):
    """One hidden block: linear map -> normalization (if any) -> activation."""

    def __init__(self, linear: nn.Module, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.linear, self.norm, self.act = linear, norm, act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


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
    "LEAKY_SLOPE",
    "Block",
    "LCWConv2d",
    "LCWLinear",
    "basis_apply",
    "basis_apply_t",
    "effective_weight",
    "get_act_layer",
    "init_gain",
    "is_zero_sum",
    "make_linear_map",
    "make_norm",
    "project_all_",
    "project_rows_",
    "reproject_",
    "set_weight",
    "zero_sum_basis",
    "zero_sum_dof",
]
