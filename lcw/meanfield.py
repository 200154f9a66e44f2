"""Mean-field signal propagation at init, torch-free (NumPy quadrature): the numbers behind
``lcw.init``'s gains and the depth profile's expected ratios.

Sources: Poole et al., "Exponential expressivity in deep neural networks through transient
chaos" (NeurIPS 2016); Schoenholz et al., "Deep Information Propagation" (ICLR 2017); for batch
norm's backward factor Yang et al., "A Mean Field Theory of Batch Normalization" (ICLR 2019).

A hidden layer draws std = g / sqrt(fan_in) (zero-sum rows: g / sqrt(fan_in - 1), then
projected, so E|w|^2 = g^2 either way). With preactivations z ~ N(0, q) in a wide layer:

* forward factor, the next layer's q: unconstrained rows g^2 E[f(z)^2]; zero-sum rows
  g^2 Var f(z) (w . a = w . (a - mean a): the mean of f's output cancels);
* backward factor chi = g^2 E[f'(z)^2] for both: |dL/dz| shrinks (chi < 1) or grows (chi > 1)
  by sqrt(chi) per layer towards the input.

A normalization between the linear map and f replaces g by the normalizer's scale (both are
scale-invariant; the post-normalization input to f is ~ N(0, 1)): batch norm divides each
neuron by its batch std, g^2 times the per-unit batch variance of the layer's input, so
chi = E f'(y)^2 / Var f(y) (relu: pi / (pi - 1) = 1.47, Yang et al.'s gradient explosion);
layer norm divides each sample by its across-unit std, g^2 times the input's second moment, so
chi = E f'(y)^2 / E f(y)^2 (y ~ N(0, 1); sigmoid: 0.15, its mean is not removed).

Expectations are Gauss quadrature of the folded integrand E h(z) = int_0^inf (h(t) + h(-t))
phi(t) dt with Gauss-Legendre nodes on [0, 12 sd]: relu's kink sits at 0, where Gauss-Hermite
converges only as 1/n (E relu(z) off by 1.6e-3 with 201 nodes); folded, every activation here
is smooth on the interval and the rule is exact to rounding (tests check closed forms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

LEAKY_SLOPE = 0.01  # nn.LeakyReLU's slope, the one lcw.layers builds
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_NODES = 200  # Gauss-Legendre nodes on [0, 12 sd]; the tail beyond 12 sd is below 1e-32
_TAIL = 12.0
_Q_MIN, _Q_MAX = 1e-12, 1e12  # q below / above these counts as the limit 0 / infinity
_MARGINAL = 1e-13  # |map(q) - q| / q below this is a fixed point (the rule's rounding is ~1e-15)

Fn = Callable[[np.ndarray], np.ndarray]


def _erf(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.vectorize(math.erf, otypes=[float])(x)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)  # the identity sigmoid(x) = (1 + tanh(x/2)) / 2


def _gelu(x: np.ndarray) -> np.ndarray:
    return x * 0.5 * (1.0 + _erf(x * _SQRT1_2))


def _gelu_prime(x: np.ndarray) -> np.ndarray:
    cdf = 0.5 * (1.0 + _erf(x * _SQRT1_2))
    out: np.ndarray = cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return out


# activation -> (f - f(0), f(0), f'). Carrying f(0) apart keeps sigmoid's small variations
# exact at small q (0.5 + 1e-6 would round them to 1e-10 relative); f' of relu / leaky_relu at
# exactly 0 never enters (the rule has no node at 0).
ACTIVATION_FNS: dict[str, tuple[Fn, float, Fn]] = {
    "sigmoid": (lambda x: 0.5 * np.tanh(0.5 * x), 0.5, lambda x: _sigmoid(x) * _sigmoid(-x)),
    "tanh": (np.tanh, 0.0, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), 0.0, lambda x: (x > 0).astype(float)),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
        0.0,
        lambda x: np.where(x > 0, 1.0, LEAKY_SLOPE),
    ),
    "gelu": (_gelu, 0.0, _gelu_prime),
}


@lru_cache(maxsize=1)
def _rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes t in (0, 12) and weights w with sum w h(t) = int_0^12 h(t) phi(t) dt."""
    x, w = np.polynomial.legendre.leggauss(_NODES)
    t = 0.5 * _TAIL * (x + 1.0)
    return t, 0.5 * _TAIL * w * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def expect(h: Fn, q: float) -> float:
    """E h(z) for z ~ N(0, q)."""
    t, w = _rule()
    s = t * math.sqrt(q)
    return float(np.sum(w * (h(s) + h(-s))))


def _fns(activation: str) -> tuple[Fn, float, Fn]:
    if activation not in ACTIVATION_FNS:
        allowed = ", ".join(f"'{a}'" for a in ACTIVATION_FNS)
        raise ValueError(f"activation: {activation!r} is not one of {allowed}")
    return ACTIVATION_FNS[activation]


def moments(activation: str, q: float) -> dict[str, float]:
    """E f, E f^2, Var f and E f'^2 of `activation` at z ~ N(0, q)."""
    fc, f0, fp = _fns(activation)
    q = min(max(q, _Q_MIN), _Q_MAX)
    # Var f from f - f(0): sigmoid's E f^2 - (E f)^2 = (1/4 + q/16) - 1/4 would cancel.
    shifted, shifted2 = expect(fc, q), expect(lambda x: fc(x) ** 2, q)
    return {"mean": f0 + shifted, "second": shifted2 + 2 * f0 * shifted + f0**2,
            "var": shifted2 - shifted**2, "slope2": expect(lambda x: fp(x) ** 2, q)}  # fmt: skip


def forward_map(activation: str, gain: float, zero_sum: bool, q: float) -> float:
    """The next layer's preactivation variance: g^2 E f(z)^2, or g^2 Var f(z) for zero-sum rows."""
    m = moments(activation, q)
    return gain**2 * (m["var"] if zero_sum else m["second"])


def forward_fixed_point(activation: str, gain: float, zero_sum: bool, q0: float = 1.0) -> float:
    """The q that q_{l+1} = forward_map(q_l) settles into from q0 (0.0: decays; inf: grows).

    The map is increasing in q for these activations, so the sequence is monotone and stops at
    the first fixed point it meets: searched on a log grid from q0 and refined by bisection. A
    map that equals q to rounding at q0 (relu, leaky_relu at their gains: every q is fixed)
    returns q0.
    """
    h0 = forward_map(activation, gain, zero_sum, q0) - q0
    if abs(h0) <= _MARGINAL * q0:  # every q is a fixed point (relu at sqrt 2) or q0 is one
        return q0
    down = h0 < 0.0
    grid = q0 * 10.0 ** (np.arange(1, 241) * (-0.1 if down else 0.1))  # 24 decades
    prev = q0
    for q in grid:
        if not (_Q_MIN <= q <= _Q_MAX):
            break
        if (forward_map(activation, gain, zero_sum, q) - q < 0.0) != down:
            lo, hi = (q, prev) if down else (prev, q)
            for _ in range(200):
                mid = math.sqrt(lo * hi)
                if (forward_map(activation, gain, zero_sum, mid) - mid < 0.0) == down:
                    lo, hi = (lo, mid) if down else (mid, hi)
                else:
                    lo, hi = (mid, hi) if down else (lo, mid)
                if hi / lo < 1 + 1e-13:
                    break
            return math.sqrt(lo * hi)
        prev = q
    return 0.0 if down else math.inf


def backward_factor(activation: str, gain: float, zero_sum: bool, q: float | None = None) -> float:
    """chi = g^2 E f'(z)^2 at z ~ N(0, q); q None: at the forward fixed point reached from 1.

    A fixed point at 0 or infinity gives the limit (evaluated at q = 1e-12 or 1e12).
    """
    if q is None:
        q = forward_fixed_point(activation, gain, zero_sum)
    return gain**2 * moments(activation, q)["slope2"]


def normalized_factor(activation: str, norm: str) -> float:
    """chi per layer behind a normalization (y ~ N(0, 1) into f): see the module docstring."""
    m = moments(activation, 1.0)
    if norm == "batch":
        return m["slope2"] / m["var"]
    if norm == "layer":
        return m["slope2"] / m["second"]
    raise ValueError(f"norm: {norm!r} is not 'batch' or 'layer'")


def predicted_profile(
    activation: str,
    gain: float,
    *,
    zero_sum: bool,
    norm: str | None,
    depth: int,
    input_second: float = 1.0,
    input_var: float = 1.0,
) -> dict[str, list[float]]:
    """Mean-field profile of a `depth`-layer net of equal widths, per hidden layer:

    * ``q``: second moment of the linear output;
    * ``grad2``: |dL/dz|^2, relative to the last layer's;
    * ``grad_w2``: |dL/dW|^2 relative to the last layer's, as if the samples' outer products
      dL/dz a^T added incoherently: grad2 times the layer input's per-unit second moment
      (variance, for zero-sum rows). That holds where the inputs have zero mean (zero-sum
      rows, odd f); a shared non-zero mean adds a coherent part this does not model.

    `input_second` / `input_var`: the input's per-coordinate second moment and its variance
    (across units for zero-sum rows, across the batch for batch norm); standard-normal inputs
    have both 1. Layer 1 reads the input; deeper layers read f of the previous layer.
    """  # fmt: skip
    m1 = moments(activation, 1.0)
    key = "var" if zero_sum else "second"
    qs = [gain**2 * (input_var if zero_sum else input_second)]
    inputs = [input_var if zero_sum else input_second]  # per-unit moment of each layer's input
    chis: list[float] = []  # chis[i]: |dL/dz_{i+1}|^2 / |dL/dz_{i+2}|^2
    for layer in range(1, depth):
        if norm is None:
            m = moments(activation, qs[-1])
            inputs.append(m[key])
            qs.append(gain**2 * m[key])
            chis.append(gain**2 * m["slope2"])
            continue
        inputs.append(m1[key])
        qs.append(gain**2 * m1[key])
        # The normalizer's variance at layer l is g^2 times its input's (per-unit batch
        # variance for batch norm, second moment for layer norm): the input's for l = 1.
        if norm == "batch":
            denom = input_var if layer == 1 else m1["var"]
        else:
            denom = input_second if layer == 1 else m1["second"]
        chis.append(m1["slope2"] / denom)
    grad2 = [1.0]
    for chi in reversed(chis):
        grad2.insert(0, grad2[0] * chi)
    grad_w2 = [g * i / (grad2[-1] * inputs[-1]) for g, i in zip(grad2, inputs, strict=True)]
    return {"q": qs, "grad2": grad2, "grad_w2": grad_w2}
