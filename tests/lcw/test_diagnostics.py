"""Activation shift at init, measured as ``lcw.diagnostics`` defines it, and the probe's side
effects."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lcw import TrialConfig, catalog
from lcw.data import load_dataset
from lcw.diagnostics import measure_layers
from lcw.models import build_model


def _shift(method: str) -> list[float]:
    data = load_dataset("mnist5k")
    cfg = TrialConfig(dataset="mnist5k", method=method, depth=10, width=100, seed=0)
    model = build_model(cfg)
    rows = measure_layers(model, data.x_train[:500], data.y_train[:500], activation="sigmoid")
    return [r["shift"] for r in rows]


def test_activation_shift_lcw_stays_small_plain_grows_with_depth() -> None:
    lcw_shift, plain_shift = _shift("lcw"), _shift("plain")
    assert len(lcw_shift) == len(plain_shift) == 10
    assert max(lcw_shift) < 1.0, lcw_shift
    assert plain_shift[-1] >= 50 * lcw_shift[-1], (plain_shift, lcw_shift)
    # Grows with depth: every later layer shifts more than the first.
    assert all(s > plain_shift[0] for s in plain_shift[1:]), plain_shift


def test_iid_sigmoid_inputs_to_a_random_layer() -> None:
    # The mechanism of ``lcw.diagnostics``' docstring: i.i.d. sigmoid inputs to a random
    # 100x100 layer: the spread of per-neuron means is about 0.5 unconstrained and about 0.002
    # with LCW (0.42 and 0.0019 for this seed).
    g = torch.Generator().manual_seed(0)
    a = torch.sigmoid(torch.randn(10000, 100, generator=g))
    w = torch.randn(100, 100, generator=g) / 10
    lcw_w = w - w.mean(dim=1, keepdim=True)
    plain_spread = float((a @ w.T).mean(dim=0).std())
    lcw_spread = float((a @ lcw_w.T).mean(dim=0).std())
    assert 0.3 < plain_spread < 0.7
    assert lcw_spread < 0.01


def test_probe_leaves_gradients_and_batch_norm_statistics_alone() -> None:
    cfg = TrialConfig(dataset="digits", method="bn_lcw", depth=3, width=16)
    model = build_model(cfg)
    bn = model.blocks[0].norm
    before = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
    rows = measure_layers(model, x, y, activation="sigmoid")
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == int(before[2])
    assert all(r["grad_norm"] is not None and r["grad_norm"] > 0 for r in rows)
    assert all(0.0 <= r["saturated"] <= 1.0 for r in rows)


def _raw_and_reported(method: str, impl: str) -> tuple[list[torch.Tensor], list[float], Any]:
    """Raw effective-weight gradients of the probe loss, the reported norms, and the model."""
    import torch.nn.functional as F
    from torch.nn.utils import parametrize

    cfg = TrialConfig(dataset="digits", method=method, depth=3, width=16, lcw_impl=impl)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(0)
    # Sigmoid-like inputs (mean 0.5): the raw gradient's row means are large there.
    x, y = torch.rand(64, 1, 8, 8, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    rows = measure_layers(model, x, y, activation="sigmoid")
    with parametrize.cached():
        weights = [b.linear.weight for b in model.blocks]
        raw = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    return list(raw), [r["grad_norm"] for r in rows], (model, x, y)


@pytest.mark.parametrize("impl", ["projection", "centering", "basis"])
@pytest.mark.parametrize("method", ["lcw", "bn_lcw", "cwn"])
def test_grad_norm_of_zero_sum_layers_is_the_row_centered_gradient(method: str, impl: str) -> None:
    import torch.nn.functional as F

    raw, reported, (model, x, y) = _raw_and_reported(method, impl)
    for g, norm in zip(raw, reported, strict=True):
        centered = g - g.mean(dim=1, keepdim=True)
        assert norm == pytest.approx(float(centered.norm()), rel=1e-6)
        assert norm < float(g.norm())
        if method != "bn_lcw":  # (batch norm's backward already sums dL/dz to 0 over the batch)
            assert norm < 0.9 * float(g.norm())  # the row means are a real part of the raw norm
    if method == "cwn" or impl == "projection":
        return
    # It is the norm of what reaches the parameters: v's gradient (centering: P g; basis:
    # B^T g, the same norm since B's columns are orthonormal).
    F.cross_entropy(model(x), y).backward()
    for b, norm in zip(model.blocks, reported, strict=True):
        v = b.linear.parametrizations.weight.original
        assert float(v.grad.norm()) == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize("method", [m for m, i in catalog.METHODS.items() if not i.constrained])
def test_grad_norm_of_unconstrained_layers_is_the_raw_gradient(method: str) -> None:
    raw, reported, _ = _raw_and_reported(method, "projection")
    for g, norm in zip(raw, reported, strict=True):
        assert norm == pytest.approx(float(g.norm()), rel=1e-6)
