"""The method registry: per method, a hidden block's linear map and normalization.

One place for one model and for a pack of K members (``packs``): ``make_linear_map`` and
``make_norm`` build what ``lcw.catalog.METHODS`` describes, and ``block_factory`` hands them to
the layouts in ``lcw.models``, which ``build_model`` and ``lcw.packed.build_packed_model`` share.

* ``METHOD_LAYERS``: the method's map (an LCW layer or torch's, ``MethodLayers.lcw``) and the
  reparametrization of its weight applied after the init (weight norm, centered weight norm);
* ``NORM_LAYERS``: ``MethodInfo.norm`` -> the normalization, alone or packed.

One model (``packs=None``): ``nn.Linear`` / ``nn.Conv2d`` or ``LCWLinear`` / ``LCWConv2d``,
initialized from `generator` (the paired draw: the same N(0, 1) tensor for every method),
batch norm ``nn.BatchNorm1d`` / ``2d``, layer norm ``lcw.norms.LayerNorm`` /
``nn.GroupNorm(1, C)``. A pack (``packs=K``, also K = 1): ``PackedLinear`` / ``LCWPackedLinear``
or grouped convolutions, ``PackedBatchNorm`` / ``nn.BatchNorm2d(K C)``, ``PackedLayerNorm`` /
``nn.GroupNorm(K, K C)``; their init is a placeholder (drawn from torch's global generator) that
``lcw.packed`` overwrites with each member's own initial weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw import catalog
from lcw.config import TrialConfig
from lcw.init import init_gain
from lcw.layers import LCWConv2d, LCWLinear, effective_weight, set_weight
from lcw.norms import LayerNorm, PackedBatchNorm, PackedLayerNorm
from lcw.packed_layers import LCWPackedLinear, PackedLinear
from lcw.zero_sum import _CenteredWeightNorm, _rows, project_rows_, zero_sum_dof


def _weight_norm(layer: nn.Module) -> nn.Module:
    normed: nn.Module = nn.utils.parametrizations.weight_norm(layer, name="weight", dim=0)
    return normed


def _centered_weight_norm(layer: nn.Module) -> nn.Module:
    parametrize.register_parametrization(layer, "weight", _CenteredWeightNorm())
    return layer


@dataclass(frozen=True)
class MethodLayers:
    """How a method's hidden linear map is built (its static facts: ``catalog.METHODS``)."""

    lcw: bool = False  # an LCW layer, whose constraint lives in the layer (``impl``)
    reparametrize: Callable[[nn.Module], nn.Module] | None = None  # after the init


METHOD_LAYERS: dict[str, MethodLayers] = {
    "plain": MethodLayers(),
    "bn": MethodLayers(),
    "lcw": MethodLayers(lcw=True),
    "bn_lcw": MethodLayers(lcw=True),
    "wn": MethodLayers(reparametrize=_weight_norm),  # starts at exactly the plain init
    "cwn": MethodLayers(reparametrize=_centered_weight_norm),  # at exactly the lcw init
    "ln": MethodLayers(),
}


def _batch_norm(features: int, conv: bool, packs: int | None) -> nn.Module:
    if packs is None:
        return nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)
    return nn.BatchNorm2d(packs * features) if conv else PackedBatchNorm(packs, features)


def _layer_norm(features: int, conv: bool, packs: int | None) -> nn.Module:
    # Layer norm over (C, H, W) for a conv block is GroupNorm with one group; K groups of C
    # channels is the same for each member of a pack.
    if packs is None:
        return nn.GroupNorm(1, features) if conv else LayerNorm(features)
    return nn.GroupNorm(packs, packs * features) if conv else PackedLayerNorm(packs, features)


# MethodInfo.norm -> (features, conv, packs) -> the normalization; no norm: nn.Identity.
NORM_LAYERS: dict[str, Callable[[int, bool, int | None], nn.Module]] = {
    "batch": _batch_norm,
    "layer": _layer_norm,
}


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
    packs: int | None = None,
) -> nn.Module:
    """The linear part of one hidden block of `method`, initialized (paired draw via generator).

    Every method draws the same N(0, 1) tensor for a given generator state, so methods that
    share a seed start from the same draw, scaled by the same gain x `init_scale` (``lcw.init``)
    over sqrt(fan_in), or over sqrt(fan_in - 1) and projected for constrained methods: wn starts
    at exactly the plain init (g = |v|), cwn at exactly the lcw init. `bias` "none" drops the
    hidden bias of the methods that have one (``catalog.hidden_bias``). `packs` K: the map of K
    members (module docstring), its init a placeholder; `init_scale` and `generator` unused.
    """
    spec = METHOD_LAYERS[method]
    has_bias = catalog.hidden_bias(method, bias)
    lcw_kwargs: dict[str, Any] = {"impl": impl, "activation": activation, "gain": gain}
    layer: nn.Module
    if packs is not None:
        layer = _packed_map(spec, packs, in_features, out_features, conv, has_bias, lcw_kwargs)
    elif spec.lcw:
        cls_lcw: Any = LCWConv2d if conv else LCWLinear
        # The layer's own init is the paired draw: the same N(0, 1) tensor from `generator`,
        # scaled by the gain over sqrt(fan_in - 1) and projected (reset_lcw).
        layer = cls_lcw(
            in_features, out_features, bias=has_bias, **_conv_kwargs(conv), **lcw_kwargs,
            init_scale=init_scale, generator=generator,
        )  # fmt: skip
    else:
        constrained = catalog.METHODS[method].constrained
        std_gain = init_gain(method, activation, gain, init_scale)
        cls: Any = nn.Conv2d if conv else nn.Linear
        layer = cls(in_features, out_features, bias=has_bias, **_conv_kwargs(conv))
        weight = effective_weight(layer)
        dof = zero_sum_dof(weight) if constrained else _rows(weight).shape[1]
        _standard_draw(layer, std_gain / math.sqrt(dof), generator, project=constrained)
    if spec.reparametrize is not None:
        layer = spec.reparametrize(layer)
    return layer


def _conv_kwargs(conv: bool) -> dict[str, Any]:
    return {"kernel_size": 3, "padding": 1} if conv else {}


def _packed_map(
    spec: MethodLayers,
    packs: int,
    fan_in: int,
    out: int,
    conv: bool,
    bias: bool,
    lcw_kwargs: dict[str, Any],
) -> nn.Module:
    if conv:  # K groups: member k's filters see only its own input channels
        sizes = (packs * fan_in, packs * out, 3)
        if spec.lcw:
            return LCWConv2d(*sizes, padding=1, groups=packs, bias=bias, **lcw_kwargs)
        return nn.Conv2d(*sizes, padding=1, groups=packs, bias=bias)
    if spec.lcw:
        return LCWPackedLinear(packs, fan_in, out, bias, **lcw_kwargs)
    return PackedLinear(packs, fan_in, out, bias)


def make_norm(method: str, features: int, *, conv: bool, packs: int | None = None) -> nn.Module:
    """The normalization of `method` that sits between the linear map and the activation."""
    norm = catalog.METHODS[method].norm
    if norm is None:
        return nn.Identity()
    return NORM_LAYERS[norm](features, conv, packs)


# A block factory gets (fan_in, out, conv) and returns the block's (linear map, normalization);
# the layouts of ``lcw.models`` call it once per hidden layer, in order.
BlockFactory = Callable[[int, int, bool], tuple[nn.Module, nn.Module]]


def block_factory(
    cfg: TrialConfig, *, generator: torch.Generator | None = None, packs: int | None = None
) -> BlockFactory:
    """The blocks of `cfg`'s method: one model's, drawn from `generator`, or `packs` members'."""

    def make(fan_in: int, out: int, conv: bool) -> tuple[nn.Module, nn.Module]:
        linear = make_linear_map(
            cfg.method, fan_in, out, conv=conv, activation=cfg.activation, gain=cfg.gain,
            init_scale=cfg.init_scale, bias=cfg.bias, impl=cfg.lcw_impl, generator=generator,
            packs=packs,
        )  # fmt: skip
        return linear, make_norm(cfg.method, out, conv=conv, packs=packs)

    return make


__all__ = [
    "METHOD_LAYERS",
    "NORM_LAYERS",
    "BlockFactory",
    "MethodLayers",
    "block_factory",
    "make_linear_map",
    "make_norm",
]
