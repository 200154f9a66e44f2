"""The init gain of every method's hidden layers, from one principle; torch-free.

Principle: backward criticality (mean-field theory: Poole et al. 2016, Schoenholz et al. 2017;
the factors are in ``lcw.meanfield``). Choose the gain g of std = g / sqrt(fan_in) so that the
per-layer backward factor chi = g^2 E[f'(z)^2] is 1 in the regime the forward pass settles
into: gradients then neither vanish nor explode with depth. The forward factor, which sets
that regime, is g^2 E[f(z)^2] for unconstrained rows and g^2 Var f(z) for zero-sum rows (the
mean of f's output cancels on them); the backward factor is the same for both.

The gain depends on the activation only and is the same for every method, so a comparison at
the defaults differs in the method alone. Constrained methods (lcw, bn_lcw, cwn) draw with
std = g / sqrt(fan_in - 1), the degrees of freedom of a zero-sum row (``lcw.layers``), which
gives their rows the same E|w|^2 = g^2. Normalized methods (bn, bn_lcw, ln) are scale-invariant
in the hidden stack, so their gain sets only the effective learning rate of the weights.

No single default is fair everywhere (README.md, "Initialization: one principle for every
method"): studies tune a multiplier of these defaults (``TrialConfig.init_scale``, a spec's
``init_scales``) with the same budget as the learning rate, and ``TrialConfig.gain`` replaces
the default outright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lcw import catalog
from lcw.meanfield import LEAKY_SLOPE, backward_factor

__all__ = ["INIT_DEFAULTS", "LEAKY_SLOPE", "InitDefault", "default_gain", "init_gain"]


@dataclass(frozen=True)
class InitDefault:
    activation: str
    gain: float
    reason: str  # one line: why this gain meets the principle (or how close it gets)


INIT_DEFAULTS: dict[str, InitDefault] = {
    d.activation: d
    for d in (
        InitDefault(
            "sigmoid",
            4.0,
            "zero-sum rows: exactly tanh at g/4 (sigmoid(z) = 1/2 + tanh(z/2)/2, the 1/2 "
            "cancels), so chi -> 1 as for tanh; unconstrained rows reach no chi = 1 at a "
            "moderate g (the output's mean of 1/2 inflates the forward signal: chi 0.06 at "
            "g = 1, 0.40 at 4, 0.79 at 8), so they take the same g, leaving the constraint "
            "as the only difference",
        ),
        InitDefault(
            "tanh",
            1.0,
            "the forward signal decays to q* = 0, where chi = g^2 tanh'(0)^2 = 1; PyTorch's "
            "5/3 settles at q* = 1.18 with chi = 1.21 a layer (chaotic: gradients explode "
            "with depth)",
        ),
        InitDefault(
            "relu",
            math.sqrt(2.0),
            "homogeneous: chi = g^2 / 2 = 1 at every signal size (He et al. 2015); zero-sum "
            "rows keep chi = 1 but their forward signal shrinks by Var relu / E relu^2 = 0.68 "
            "a layer, the known bias that tuning init_scale addresses",
        ),
        InitDefault(
            "leaky_relu",
            math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2)),
            "homogeneous: chi = g^2 (1 + 0.01^2) / 2 = 1 at every signal size; zero-sum rows "
            "shrink the forward signal by 0.69 a layer, as for relu",
        ),
        InitDefault(
            "gelu",
            math.sqrt(2.0),
            "relu-like at large signal (chi -> g^2 / 2 = 1); no gain is critical: below 2 the "
            "forward signal decays to 0 where chi = g^2 gelu'(0)^2 = g^2 / 4 (0.5 here; "
            "0.91 at q = 1), from g = 2 on it grows without bound",
        ),
    )
}


def default_gain(activation: str) -> float:
    """The documented default gain for `activation` (the same for every method)."""
    if activation not in INIT_DEFAULTS:
        raise ValueError(
            f"activation: {activation!r} is not one of {catalog.choices(INIT_DEFAULTS)}"
        )
    return INIT_DEFAULTS[activation].gain


def init_gain(
    method: str, activation: str, override: float | None = None, scale: float = 1.0
) -> float:
    """The gain of `method`'s hidden layers: (`override` or the default) x `scale`.

    std(w) = gain / sqrt(fan_in) (zero-sum rows: fan_in - 1). `scale` is the trial's
    ``init_scale``; the classifier head does not use it.
    """
    if method not in catalog.METHODS:
        raise ValueError(f"method: {method!r} is not one of {catalog.choices(catalog.METHODS)}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"init_scale: {scale!r} must be a finite number > 0")
    gain = default_gain(activation) if override is None else float(override)
    return gain * scale


def default_chi(activation: str, *, zero_sum: bool, q: float | None = None) -> float:
    """chi at the default gain: at the forward fixed point (q None) or at preactivation q."""
    return backward_factor(activation, default_gain(activation), zero_sum, q)
