"""Constraint and equivalence tests shared by every LCW implementation (Linear and Conv2d)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lcw import LCWConv2d, LCWLinear, catalog, zero_sum_basis
from lcw.init import default_gain
from lcw.layers import basis_apply, basis_apply_t, set_weight

IMPLS = catalog.LCW_IMPLEMENTATIONS

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


def _rows(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


@pytest.mark.parametrize("m", [2, 3, 10, 100, 785, 4608])
def test_closed_form_basis_is_orthonormal_and_zero_sum(m: int) -> None:
    b = zero_sum_basis(m)  # (m, m-1), float64
    assert b.shape == (m, m - 1)
    eye = torch.eye(m - 1, dtype=torch.float64)
    assert torch.allclose(b.T @ b, eye, atol=1e-12)
    assert torch.ones(m, dtype=torch.float64) @ b == pytest.approx(torch.zeros(m - 1), abs=1e-12)


def test_basis_apply_matches_the_materialized_basis() -> None:
    m = 37
    b = zero_sum_basis(m)
    v = torch.randn(5, m - 1, dtype=torch.float64)
    assert torch.allclose(basis_apply(v), v @ b.T, atol=1e-12)
    w = torch.randn(5, m, dtype=torch.float64)
    assert torch.allclose(basis_apply_t(w), w @ b, atol=1e-12)


def _make(kind: str, impl: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    if kind == "linear":
        return LCWLinear(20, 7, impl=impl).to(dtype)
    return LCWConv2d(3, 5, 3, padding=1, impl=impl).to(dtype)


def _input(kind: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    # Sigmoid-like inputs (mean 0.5): exactly the case where the constraint matters.
    shape = (16, 20) if kind == "linear" else (4, 3, 6, 6)
    return torch.rand(shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_rows_sum_to_zero_before_and_after_steps(kind: str, impl: str, opt: str) -> None:
    layer = _make(kind, impl)
    assert isinstance(layer, nn.Linear | nn.Conv2d)  # drop-in
    assert _rows(layer.weight).sum(dim=1).abs().max() < 1e-5
    optimizer = OPTIMIZERS[opt](layer.parameters())
    x = _input(kind)
    for _ in range(25):
        loss = (layer(x) ** 2).mean() + layer(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        w = _rows(layer.weight.detach())
        assert w.sum(dim=1).abs().max() < 1e-5 * max(1.0, float(w.abs().max()))
    # The weight moved: the test would fail if the layer were frozen.
    assert float(_rows(layer.weight.detach()).abs().sum()) > 0


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_channels_last_filters_stay_zero_sum_and_channels_last(opt: str) -> None:
    # A filter shape of its own (projected through a view of it) and two of one shape (moved
    # into one buffer): a channels_last filter's row is not a (out, fan_in) view of it.
    net = nn.Sequential(
        LCWConv2d(3, 5, 3, padding=1), LCWConv2d(5, 5, 3, padding=1), LCWConv2d(5, 5, 3, padding=1)
    ).to(memory_format=torch.channels_last)
    optimizer = OPTIMIZERS[opt](net.parameters())
    x = _input("conv").contiguous(memory_format=torch.channels_last)
    before = [_rows(c.weight.detach()).clone() for c in net]
    for _ in range(10):
        loss = (net(x) ** 2).mean() + net(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for conv in net:
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
            w = _rows(conv.weight.detach())
            assert w.sum(dim=1).abs().max() < 1e-5 * max(1.0, float(w.abs().max()))
    for conv, w0 in zip(net, before, strict=True):
        assert not torch.equal(_rows(conv.weight.detach()), w0)  # every filter trained


def _trajectory(impl: str, opt: str, kind: str, steps: int = 100) -> list[torch.Tensor]:
    torch.manual_seed(0)
    layer = _make(kind, impl, torch.float64)
    w0 = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(3)).double()
    w0 = w0 - _rows(w0).mean(dim=1).view(-1, *([1] * (w0.dim() - 1)))
    set_weight(layer, w0)
    if opt == "sgd":
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = _input(kind, torch.float64)
    out = []
    for _ in range(steps):
        loss = (torch.sigmoid(layer(x)) - 0.3).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(layer.weight.detach().clone())
    return out


def _max_rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).norm() / y.norm()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize(("opt", "basis_agrees"), [("sgd", True), ("adam", False)])
def test_which_implementations_share_a_trajectory(kind: str, opt: str, basis_agrees: bool) -> None:
    """projection = centering under SGD with momentum and under Adam; basis joins them under
    SGD and differs under Adam (its per-coordinate normalization is not rotation-invariant)."""
    projection, centering, basis = (
        _trajectory(impl, opt, kind) for impl in ("projection", "centering", "basis")
    )
    assert _max_rel(projection, centering) <= 1e-10
    if basis_agrees:
        assert _max_rel(projection, basis) <= 1e-10
        assert _max_rel(centering, basis) <= 1e-10
    else:
        assert _max_rel(basis, centering) > 1e-6
    assert float((basis[-1] - basis[0]).norm()) > 1e-3  # it actually trained


@pytest.mark.parametrize("activation", catalog.ACTIVATIONS)
def test_lcw_init_std_is_gain_over_sqrt_fan_in(activation: str) -> None:
    torch.manual_seed(0)
    layer = LCWLinear(400, 300, activation=activation)
    expected = default_gain(activation) / math.sqrt(400)
    assert float(layer.weight.detach().std()) == pytest.approx(expected, rel=0.02)
    assert float(layer.bias.detach().abs().max()) == 0.0


def test_bad_impl_is_rejected_with_allowed_values() -> None:
    with pytest.raises(ValueError, match="'projection', 'centering' or 'basis'"):
        LCWLinear(4, 2, impl="qr")


def test_consolidated_weights_stay_projected_across_moves_and_reloads() -> None:
    from lcw import TrialConfig
    from lcw.models import build_model

    model = build_model(TrialConfig(dataset="digits", method="lcw", depth=4, width=16))
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10

    def steps(opt: torch.optim.Optimizer, n: int = 5) -> None:
        for _ in range(n):
            loss = torch.nn.functional.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for block in model.blocks:
            w = block.linear.weight.detach()
            assert w.sum(dim=1).abs().max() < 1e-5

    steps(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    steps(torch.optim.SGD(model.parameters(), lr=0.5))
    model.double()  # new storage: the projection plan must be rebuilt
    steps(torch.optim.Adam(model.parameters(), lr=1e-2))


def test_reproject_restores_the_constraint_after_a_manual_edit() -> None:
    from lcw.layers import reproject_

    layer = LCWLinear(12, 5)
    with torch.no_grad():
        layer.weight.add_(1.0)  # a manual edit that breaks the constraint
    assert layer.weight.sum(dim=1).abs().max() > 1.0
    reproject_(layer)
    assert layer.weight.sum(dim=1).abs().max() < 1e-5


# projection vs centering on a small LCW MLP (float64, 100 full-batch steps): the same weights
# for every optimizer whose update commutes with the projection, apart for Adam with coupled
# weight decay (see the lcw.layers docstring).
MLP_OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov_wd": lambda p: torch.optim.SGD(
        p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2
    ),
    "adamw_wd": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam_wd": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
}


def _mlp_weights_after(impl: str, opt: str, steps: int = 100) -> list[torch.Tensor]:
    from lcw import TrialConfig
    from lcw.layers import reproject_
    from lcw.models import build_model

    cfg = TrialConfig(dataset="digits", method="lcw", depth=3, width=16, lcw_impl=impl)
    model = build_model(cfg).double()
    # The float32 init is zero-sum only to float32 rounding; centering's w = v - mean(v)
    # removes that residue, so projection starts from the same float64 weights only after this.
    reproject_(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    optimizer = MLP_OPTIMIZERS[opt](model.parameters())
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [b.linear.weight.detach().clone() for b in model.blocks] + [
        model.classifier.weight.detach().clone()
    ]


@pytest.mark.parametrize("opt", ["sgd_momentum_wd", "nesterov_wd", "adamw_wd", "adam"])
def test_projection_and_centering_train_an_mlp_identically(opt: str) -> None:
    projection = _mlp_weights_after("projection", opt)
    centering = _mlp_weights_after("centering", opt)
    assert _max_rel(projection, centering) <= 1e-12  # measured 8e-16 .. 1.1e-15
    start = _mlp_weights_after("projection", opt, steps=0)
    assert _max_rel(projection, start) > 1e-2  # it trained


def test_projection_and_centering_differ_under_adam_with_coupled_weight_decay() -> None:
    # The L2 term joins the gradient before Adam's normalization; for centering it is wd * v,
    # whose row-mean part is not in w. Measured 0.109 after 100 steps.
    gap = _max_rel(
        _mlp_weights_after("projection", "adam_wd"), _mlp_weights_after("centering", "adam_wd")
    )
    assert gap > 0.05
