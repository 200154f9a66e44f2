"""The init principle: one gain per activation for every method, and the factors behind it."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from lcw import TrialConfig, catalog, train
from lcw.init import INIT_DEFAULTS, default_chi, default_gain, init_gain
from lcw.meanfield import (
    backward_factor,
    forward_fixed_point,
    forward_map,
    moments,
    normalized_factor,
)

LEAKY = 0.01


def test_the_table_covers_every_activation_with_a_reason() -> None:
    assert list(INIT_DEFAULTS) == list(catalog.ACTIVATIONS)
    assert all(d.reason for d in INIT_DEFAULTS.values())
    gains = {a: d.gain for a, d in INIT_DEFAULTS.items()}
    assert gains == pytest.approx({"sigmoid": 4.0, "tanh": 1.0, "relu": math.sqrt(2),
                                   "leaky_relu": math.sqrt(2 / (1 + LEAKY**2)),
                                   "gelu": math.sqrt(2)}, rel=1e-15)  # fmt: skip


@pytest.mark.parametrize("activation", catalog.ACTIVATIONS)
def test_every_method_gets_the_same_gain(activation: str) -> None:
    gain = default_gain(activation)
    for method in catalog.METHODS:
        assert init_gain(method, activation) == gain
        assert init_gain(method, activation, scale=2.0) == 2.0 * gain
        assert init_gain(method, activation, override=2.5, scale=0.5) == 1.25


def test_bad_names_and_scales_are_rejected_by_field() -> None:
    with pytest.raises(ValueError, match="method: 'nope' is not one of 'plain'"):
        init_gain("nope", "relu")
    with pytest.raises(ValueError, match="activation: 'swish' is not one of 'sigmoid'"):
        init_gain("lcw", "swish")
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="init_scale"):
            init_gain("lcw", "relu", scale=bad)


# ---------------------------------------------------------------- the quadrature itself


@pytest.mark.parametrize("q", [1e-4, 1.0, 30.0])
def test_quadrature_matches_closed_forms(q: float) -> None:
    relu = moments("relu", q)
    assert relu["mean"] == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-12)
    assert relu["second"] == pytest.approx(q / 2, rel=1e-12)
    assert relu["slope2"] == pytest.approx(0.5, rel=1e-12)
    leaky = moments("leaky_relu", q)
    assert leaky["mean"] == pytest.approx((1 - LEAKY) * math.sqrt(q / (2 * math.pi)), rel=1e-12)
    assert leaky["second"] == pytest.approx(q * (1 + LEAKY**2) / 2, rel=1e-12)
    # Stein's lemma: E[z Phi(z)] = q E[phi(z)] = q / sqrt(2 pi (1 + q)).
    gelu_mean = q / math.sqrt(2 * math.pi * (1 + q))
    assert moments("gelu", q)["mean"] == pytest.approx(gelu_mean, rel=1e-10)
    assert moments("tanh", q)["mean"] == pytest.approx(0.0, abs=1e-15)
    # sigmoid(z) = 1/2 + tanh(z/2)/2: Var sigmoid(z) = Var tanh(z/2) / 4.
    assert moments("sigmoid", q)["var"] == pytest.approx(moments("tanh", q / 4)["var"] / 4,
                                                         rel=1e-12)  # fmt: skip


# ---------------------------------------------------------------- the documented chi values


def test_tanh_gain_1_is_critical_and_5_3_is_chaotic() -> None:
    for zero_sum in (False, True):
        assert forward_fixed_point("tanh", 1.0, zero_sum) == 0.0
        assert backward_factor("tanh", 1.0, zero_sum) == pytest.approx(1.0, abs=1e-9)
        q_star = forward_fixed_point("tanh", 5 / 3, zero_sum)
        assert q_star == pytest.approx(1.178, abs=1e-3)
        assert backward_factor("tanh", 5 / 3, zero_sum) == pytest.approx(1.210, abs=1e-3)


@pytest.mark.parametrize("q", [1e-3, 0.3, 5.0])
@pytest.mark.parametrize("g", [0.5, 4.0, 6.0])
def test_zero_sum_sigmoid_is_exactly_tanh_at_a_quarter_of_the_gain(g: float, q: float) -> None:
    # Preactivations of the sigmoid net are twice the tanh net's: q_sigmoid = 4 q_tanh.
    assert forward_map("sigmoid", g, True, 4 * q) == pytest.approx(
        4 * forward_map("tanh", g / 4, True, q), rel=1e-12
    )
    assert backward_factor("sigmoid", g, True, 4 * q) == pytest.approx(
        backward_factor("tanh", g / 4, True, q), rel=1e-12
    )


def test_unconstrained_sigmoid_reaches_no_chi_1_at_moderate_gains() -> None:
    # chi at the forward fixed point: 0.06 at g = 1, 0.40 at 4, 0.79 at 8 (lcw.init quotes them).
    chi = {g: backward_factor("sigmoid", g, False) for g in (1.0, 4.0, 8.0)}
    assert chi == pytest.approx({1.0: 0.056, 4.0: 0.399, 8.0: 0.795}, abs=1e-3)
    grid = [backward_factor("sigmoid", 1 + 0.5 * i, False) for i in range(15)]  # g = 1 .. 8
    assert all(a < b < 1 for a, b in itertools.pairwise(grid))
    assert backward_factor("sigmoid", 4.0, True) == pytest.approx(1.0, abs=1e-9)  # LCW: 1


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_homogeneous_activations_have_chi_1_at_every_scale(activation: str) -> None:
    g = default_gain(activation)
    a = 0.0 if activation == "relu" else LEAKY
    for q in (1e-6, 1.0, 1e6):
        assert backward_factor(activation, g, True, q) == pytest.approx(1.0, rel=1e-12)
    # Unconstrained rows keep the forward signal (every q is a fixed point); zero-sum rows
    # shrink it by Var f / E f^2 = 1 - (1 - a)^2 / (pi (1 + a^2)) a layer (relu: 0.68).
    assert forward_map(activation, g, False, 3.0) == pytest.approx(3.0, rel=1e-12)
    shrink = 1 - (1 - a) ** 2 / (math.pi * (1 + a**2))
    assert forward_map(activation, g, True, 3.0) == pytest.approx(3.0 * shrink, rel=1e-12)
    assert forward_fixed_point(activation, g, True) == 0.0
    if activation == "relu":  # 7e-4 after 20 layers (examples/results/depth_profile.json)
        assert shrink**19 == pytest.approx(6.9e-4, rel=0.01)


def test_gelu_is_relu_like_at_large_signal_and_half_critical_at_small() -> None:
    g = default_gain("gelu")
    assert backward_factor("gelu", g, False, 1e4) == pytest.approx(1.0, abs=1e-2)
    assert backward_factor("gelu", g, False, 1e-8) == pytest.approx(g**2 / 4, rel=1e-6)
    assert backward_factor("gelu", g, False, 1.0) == pytest.approx(0.912, abs=1e-3)
    for zero_sum in (False, True):
        assert forward_fixed_point("gelu", g, zero_sum) == 0.0  # decays: chi -> 0.5
        assert forward_fixed_point("gelu", 2.0, zero_sum) == math.inf  # g = 2 grows instead


def test_chi_at_the_defaults() -> None:
    for activation in catalog.ACTIVATIONS:
        expected = 0.5 if activation == "gelu" else 1.0
        assert default_chi(activation, zero_sum=True) == pytest.approx(expected, abs=1e-9)
    unconstrained = {a: default_chi(a, zero_sum=False) for a in catalog.ACTIVATIONS}
    assert unconstrained == pytest.approx(
        {"sigmoid": 0.399, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "gelu": 0.5}, abs=1e-3
    )


def test_the_reasons_quote_the_computed_figures() -> None:
    """The one-line reasons (rendered into README.md) carry numbers: they are these."""
    reason = {a: d.reason for a, d in INIT_DEFAULTS.items()}
    sigmoid = [f"chi {backward_factor('sigmoid', 1.0, False):.2f} at g = 1"] + [
        f"{backward_factor('sigmoid', g, False):.2f} at {g:g}" for g in (4.0, 8.0)
    ]
    assert all(s in reason["sigmoid"] for s in sigmoid), sigmoid
    q_star = forward_fixed_point("tanh", 5 / 3, False)
    tanh = f"q* = {q_star:.2f} with chi = {backward_factor('tanh', 5 / 3, False):.2f}"
    assert tanh in reason["tanh"], tanh
    for activation in ("relu", "leaky_relu"):
        shrink = forward_map(activation, default_gain(activation), True, 1.0)
        assert f"{shrink:.2f} a layer" in reason[activation]
    at_1 = f"{default_chi('gelu', zero_sum=False, q=1.0):.2f} at q = 1"
    assert at_1 in reason["gelu"], at_1


def test_normalized_factors() -> None:
    # Batch norm, relu: pi / (pi - 1), Yang et al.'s gradient explosion rate.
    assert normalized_factor("relu", "batch") == pytest.approx(math.pi / (math.pi - 1), rel=1e-12)
    assert normalized_factor("relu", "layer") == pytest.approx(1.0, rel=1e-12)
    assert normalized_factor("tanh", "batch") == normalized_factor("tanh", "layer")  # odd f
    with pytest.raises(ValueError, match="norm: 'group'"):
        normalized_factor("relu", "group")


# ---------------------------------------------------------------- what the defaults do


def test_plain_tanh_at_depth_50_trains_at_the_default_gain() -> None:
    # README.md, "The library (`lcw/`)": at PyTorch's 5/3 this net stays at chance (0.10 and
    # 0.09 measured for seeds 0 and 1); at gain 1 it learns (0.68 and 0.83). ~5 s.
    accs = [
        train(TrialConfig(dataset="mnist5k", method="plain", activation="tanh", depth=50,
                          width=100, lr=0.01, epochs=5, seed=seed, diagnostics=False)).test_acc
        for seed in (0, 1)
    ]  # fmt: skip
    assert statistics.mean(a for a in accs if a is not None) >= 0.5, accs
