"""LCW layers (drop-in ``nn.Linear`` / ``nn.Conv2d``), the baselines' layers, and their inits.

Source: Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster Training of
Neural Networks", ECCV 2018. Every output unit's weight row (for a convolution the flattened
in_channels x kh x kw filter) is kept in the zero-sum subspace {w : w . 1 = 0}.

Three exact implementations, one switch (``impl=``):

* ``projection`` (default): the weight itself is the parameter. It is projected at init, each
  gradient row is projected to zero mean before the optimizer step (skipped for SGD, where it
  changes nothing, see ``_linear_in_gradient``), and the weight is projected again after every
  step (global optimizer hooks). Same weight trajectory as ``centering`` for every optimizer,
  and nearly free: no reparameterization in the forward pass.
* ``centering``: w = v - mean(v) at forward time (a parametrization).
* ``basis``: the paper's w = B v with B an m x (m-1) orthonormal basis of the zero-sum subspace,
  in closed form B = [I - c 1 1^T ; -(1/sqrt m) 1^T], c = (1 - 1/sqrt m) / (m - 1). B is never
  materialized: B v and B^T g are O(m) per row. Same trajectory as the others under SGD (with
  momentum and weight decay); under Adam it differs, since Adam is not rotation-invariant.

Initialization (documented per method in ``init_gain``): std = gain / sqrt(fan_in), a standard
normal draw scaled by it, then projected for constrained methods (which use fan_in - 1, the
degrees of freedom of a zero-sum row, see ``zero_sum_dof``). LCW gains are variance
preserving *for zero-mean inputs*, which LCW guarantees: sigmoid 4 (1/sigmoid'(0)), tanh 1
(1/tanh'(0)), relu sqrt(2), leaky_relu sqrt(2/(1+0.01^2)), gelu 1/sqrt(E[gelu(x)^2]) = 1.534
(x ~ N(0,1), the same second-moment argument that gives relu sqrt(2)). Baselines get PyTorch's
``calculate_gain`` for the activation (gelu, which it lacks, uses relu's), never a weakened init.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from lcw import catalog

LEAKY_SLOPE = 0.01
GELU_GAIN = 1.0 / math.sqrt(0.4252215)  # 1/sqrt(E[gelu(x)^2]), x ~ N(0,1), by quadrature

# Variance-preserving gains for constrained (zero-mean-input) layers.
LCW_GAINS: dict[str, float] = {
    "sigmoid": 4.0,
    "tanh": 1.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2)),
    "gelu": GELU_GAIN,
}


def baseline_gain(activation: str) -> float:
    """PyTorch's standard gain for `activation` (gelu: relu's, which calculate_gain lacks)."""
    if activation == "gelu":
        return nn.init.calculate_gain("relu")
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    return nn.init.calculate_gain(activation)  # type: ignore[arg-type]


def init_gain(method: str, activation: str, override: float | None = None) -> float:
    """The init gain of `method`'s hidden layers: std(w) = gain / sqrt(fan_in).

    lcw, bn_lcw and cwn (zero-sum rows) use ``LCW_GAINS``; plain, bn, wn and ln use
    ``baseline_gain``. A spec's `gain` overrides either.
    """
    if override is not None:
        return float(override)
    if catalog.METHODS[method].constrained:
        return LCW_GAINS[activation]
    return baseline_gain(activation)


# ---------------------------------------------------------------- zero-sum subspace helpers


def _rows(t: Tensor) -> Tensor:
    """View a weight as (out, fan_in) rows."""
    return t.reshape(t.shape[0], -1)


def zero_sum_dof(w: Tensor) -> int:
    """Degrees of freedom of one zero-sum row: fan_in - 1.

    A projected N(0, std^2) row has E|w|^2 = (fan_in - 1) std^2, so constrained layers draw with
    std = gain / sqrt(fan_in - 1) to get E|w|^2 = gain^2, exactly what an unconstrained layer
    gets from std = gain / sqrt(fan_in). The difference compounds with depth (50 layers of width
    100 lose 40% of the signal variance without it).
    """
    return _rows(w).shape[1] - 1


def project_rows_(w: Tensor) -> Tensor:
    """Project every row of `w` (any shape, rows along dim 0) onto sum = 0, in place."""
    r = _rows(w)
    r.sub_(r.mean(dim=1, keepdim=True))
    return w


def zero_sum_basis(m: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The closed-form m x (m-1) orthonormal basis B of {w in R^m : w . 1 = 0} (materialized).

    For tests and inspection only; the layers apply B without building it.
    """
    if m < 2:
        raise ValueError(f"m: a zero-sum basis needs m >= 2, got {m}")
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    top = torch.eye(m - 1, dtype=dtype) - c
    bottom = torch.full((1, m - 1), -1.0 / math.sqrt(m), dtype=dtype)
    return torch.cat([top, bottom], dim=0)


def basis_apply(v: Tensor) -> Tensor:
    """B v for each row of v (out, m-1) -> (out, m), O(m) per row."""
    m = v.shape[1] + 1
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    s = v.sum(dim=1, keepdim=True)
    return torch.cat([v - c * s, -s / math.sqrt(m)], dim=1)


def basis_apply_t(w: Tensor) -> Tensor:
    """B^T w for each row of w (out, m) -> (out, m-1)."""
    m = w.shape[1]
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    head, last = w[:, :-1], w[:, -1:]
    return head - c * head.sum(dim=1, keepdim=True) - last / math.sqrt(m)


class _Centering(nn.Module):
    """Parametrization w = v - mean(v) per row."""

    def forward(self, v: Tensor) -> Tensor:
        r = _rows(v)
        return (r - r.mean(dim=1, keepdim=True)).view_as(v)

    def right_inverse(self, w: Tensor) -> Tensor:
        return w


class _Basis(nn.Module):
    """Parametrization w = B v with v of shape (out, fan_in - 1)."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, v: Tensor) -> Tensor:
        return basis_apply(v).view(self.shape)

    def right_inverse(self, w: Tensor) -> Tensor:
        return basis_apply_t(_rows(w))


class _CenteredWeightNorm(nn.Module):
    """Parametrization w = g (v - mean v) / |v - mean v| per row (Huang et al., 2017)."""

    def forward(self, g: Tensor, v: Tensor) -> Tensor:
        r = _rows(v)
        c = r - r.mean(dim=1, keepdim=True)
        return (g * c / c.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(v)

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        r = _rows(w)
        return r.norm(dim=1, keepdim=True), w


# Projected parameters are kept in the subspace by two global optimizer hooks, whatever the
# optimizer: gradient rows are projected before the step and the weight after it.
#
# For SGD (momentum, nesterov, weight decay) the first is skipped: its update is linear in the
# gradient and the weight is already zero-sum, so P(w - lr d) = w - lr P d, and projecting after
# the step gives exactly the projected-gradient trajectory (= centering = basis under SGD). For
# Adam-like optimizers, which are not linear in the gradient, the gradient must be projected
# first to match centering. Optimizers may declare ``linear_in_gradient = True`` to opt in.
# (Global hooks instead of per-parameter autograd hooks: one Python call a step, not one per
# layer, which is what keeps the constraint nearly free.)
_PROJECTED_ATTR = "_lcw_zero_sum"


def _projected_params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [
        p for group in optimizer.param_groups for p in group["params"]
        if getattr(p, _PROJECTED_ATTR, False)
    ]  # fmt: skip


def _linear_in_gradient(optimizer: torch.optim.Optimizer) -> bool:
    return isinstance(optimizer, torch.optim.SGD) or getattr(optimizer, "linear_in_gradient", False)


def _project_grads_before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    if _linear_in_gradient(optimizer):
        return
    with torch.no_grad():
        project_all_([p.grad for p in _projected_params(optimizer) if p.grad is not None])


def project_all_(tensors: list[Tensor]) -> None:
    """Project the rows of many tensors in place; same-shaped ones in one batched pass."""
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    for t in tensors:
        r = _rows(t.data)
        groups.setdefault((r.shape, r.dtype, r.device), []).append(r)
    for rows in groups.values():
        if len(rows) == 1:
            project_rows_(rows[0])
            continue
        means = torch.stack(rows).mean(dim=2, keepdim=True)  # (L, out, 1)
        torch._foreach_sub_(rows, list(means.unbind(0)))


class _ProjectionPlan:
    """An optimizer's projected weights, consolidated by shape into contiguous buffers.

    Same-shaped weights are moved (once) into one (L, out, fan_in) buffer and the parameters
    become views of it, so the projection after each step is two tensor ops per shape group
    instead of two per layer. The plan is rebuilt whenever the optimizer's parameter lists or
    any weight's storage change (``model.to(device)``, ``load_state_dict`` into new storage).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.signature = self._signature(optimizer)
        self.params = _projected_params(optimizer)
        self.buffers: list[Tensor] = []
        groups: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in self.params:
            groups.setdefault((_rows(p.data).shape, p.dtype, p.device), []).append(p)
        for members in groups.values():
            if len(members) == 1:
                self.buffers.append(_rows(members[0].data))
                continue
            buf = torch.stack([_rows(p.data) for p in members])  # (L, out, fan_in)
            for i, p in enumerate(members):
                p.data = buf[i].view(p.shape)
            self.buffers.append(buf)
        self.ptrs = [p.data_ptr() for p in self.params]

    @staticmethod
    def _signature(optimizer: torch.optim.Optimizer) -> tuple[tuple[int, int], ...]:
        return tuple((id(g["params"]), len(g["params"])) for g in optimizer.param_groups)

    def valid_for(self, optimizer: torch.optim.Optimizer) -> bool:
        return self.signature == self._signature(optimizer) and all(
            p.data_ptr() == ptr for p, ptr in zip(self.params, self.ptrs, strict=True)
        )

    def project(self) -> None:
        for buf in self.buffers:
            buf.sub_(buf.mean(dim=-1, keepdim=True))


_PLANS: weakref.WeakKeyDictionary[torch.optim.Optimizer, _ProjectionPlan] = (
    weakref.WeakKeyDictionary()
)


def _reproject_after_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    plan = _PLANS.get(optimizer)
    if plan is None or not plan.valid_for(optimizer):
        plan = _PLANS[optimizer] = _ProjectionPlan(optimizer)
    with torch.no_grad():
        plan.project()


_HOOK_HANDLES = (
    register_optimizer_step_pre_hook(_project_grads_before_step),
    register_optimizer_step_post_hook(_reproject_after_step),
)


def reproject_(module: nn.Module) -> None:
    """Project every projection-LCW weight in `module` again (after manual edits of weights)."""
    with torch.no_grad():
        project_all_([p for p in module.parameters() if getattr(p, _PROJECTED_ATTR, False)])


# ---------------------------------------------------------------- layers


class _ZeroSumMixin:
    """Shared by LCWLinear and LCWConv2d: the constraint, its implementations and the init."""

    impl: str
    activation: str
    gain: float | None
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
        """Draw std * N(0, 1), std = LCW gain / sqrt(fan_in - 1), project, zero the bias."""
        shape = self.weight.shape
        std = init_gain("lcw", self.activation, self.gain) / math.sqrt(zero_sum_dof(self.weight))
        w = torch.randn(shape, generator=generator, dtype=torch.float64) * std
        set_weight(self, project_rows_(w))  # type: ignore[arg-type]
        if self.bias is not None:
            with torch.no_grad():
                self.bias.zero_()


class LCWLinear(_ZeroSumMixin, nn.Linear):
    """``nn.Linear`` whose every output unit's weight row sums to zero (see module docstring).

    `activation` picks the variance-preserving init (sigmoid: std 4/sqrt(fan_in)); `gain`
    overrides it. ``layer.weight`` is always the effective (out, in) weight.
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
        generator: torch.Generator | None = None,
    ) -> None:
        self.activation, self.gain = activation, gain
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
        generator: torch.Generator | None = None,
    ) -> None:
        self.activation, self.gain = activation, gain
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
    impl: str = "projection",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """The linear part of one hidden block of `method`, initialized (paired draw via generator).

    Every method draws the same N(0, 1) tensor for a given generator state, so methods that
    share a seed start from the same draw, scaled by their own gain (and projected if
    constrained): plain/bn/ln std = baseline gain / sqrt(fan_in); lcw/bn_lcw projected with the
    LCW gain; wn starts at exactly the plain init (g = |v|); cwn at exactly the lcw init.
    """
    info = catalog.METHODS[method]
    bias = info.bias  # see MethodInfo.bias for why lcw and normalized methods have none
    std_gain = init_gain(method, activation, gain)
    layer: nn.Module
    kwargs: dict[str, Any] = {"bias": bias}
    if conv:
        kwargs.update(kernel_size=3, padding=1)
    if method in ("lcw", "bn_lcw"):
        cls_lcw: Any = LCWConv2d if conv else LCWLinear
        # The layer's own init is the paired draw: the same N(0, 1) tensor from `generator`,
        # scaled by the LCW gain over sqrt(fan_in - 1) and projected (reset_lcw).
        layer = cls_lcw(
            in_features, out_features, impl=impl, activation=activation, gain=gain,
            generator=generator, **kwargs,
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
        return nn.GroupNorm(1, features) if conv else nn.LayerNorm(features)
    return nn.Identity()


ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "gelu": nn.GELU,
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


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the forward pass uses (parametrizations applied)."""
    w = module.weight
    assert isinstance(w, Tensor)
    return w


__all__ = [
    "LCW_GAINS",
    "Block",
    "LCWConv2d",
    "LCWLinear",
    "baseline_gain",
    "effective_weight",
    "get_act_layer",
    "init_gain",
    "make_linear_map",
    "make_norm",
    "project_rows_",
    "reproject_",
    "set_weight",
    "zero_sum_basis",
]
