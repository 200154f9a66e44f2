"""Weight decay reaches linear-map weights only (unless asked), alone and in packs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lcw import OptimizerConfig, TrialConfig, catalog
from lcw.layers import reproject_
from lcw.models import build_model
from lcw.optim import build_optimizer, build_packed_optimizer
from lcw.packed import build_packed_model

WD = 0.25


def _decayed_names(model: nn.Module, opt: torch.optim.Optimizer, *, lr: float) -> set[str]:
    """Step with zero gradients: exactly the decayed parameters move (by lr * wd * p)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # no zeros (biases, shifts start at 0 and would not move)
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    reproject_(model)  # projected LCW weights must start zero-sum
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    moved = set()
    for n, p in model.named_parameters():
        if torch.equal(p.detach(), before[n]):
            continue
        moved.add(n)
        torch.testing.assert_close(p.detach(), before[n] * (1 - lr * WD), rtol=1e-6, atol=1e-7)
    return moved


def _expected(names: list[str], method: str) -> set[str]:
    """Linear-map weights: plain ones, centering/basis v, weight norm's v (original1)."""
    constrained = method in ("lcw", "bn_lcw")  # projection: the weight is the parameter
    return {
        n for n in names
        if n.endswith(("linear.weight", "classifier.weight", "weight.original1"))
        or (constrained and n.endswith("linear.parametrizations.weight.original"))
    }  # fmt: skip


CASES = [(m, "projection") for m in catalog.METHODS] + [
    (m, impl) for m in ("lcw", "bn_lcw") for impl in ("centering", "basis")
]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize(("method", "impl"), CASES)
def test_default_rule_decays_weights_not_norms_biases_or_scales(
    method: str, impl: str, optimizer: str
) -> None:
    for decay_all in (False, True):
        # AdamW with zero gradients takes only its decoupled decay step; SGD without momentum
        # takes lr * wd * p: either way exactly the decayed parameters move, by the same factor.
        cfg = TrialConfig(
            dataset="digits", method=method, depth=2, width=8, lr=1.0, lcw_impl=impl,
            optimizer=OptimizerConfig(name=optimizer, momentum=0.0, weight_decay=WD,
                                      decay_norm_and_bias=decay_all),
        )  # fmt: skip
        model = build_model(cfg)
        moved = _decayed_names(model, build_optimizer(cfg, model), lr=1.0)
        names = [n for n, _ in model.named_parameters()]
        assert moved == (set(names) if decay_all else _expected(names, method)), method
        if not decay_all:  # biases, norm scales and shifts, (c)wn scales g stay
            kept = set(names) - moved
            assert "classifier.bias" in kept
            assert {n for n in names if n.endswith(("bias", "norm.weight", "original0"))} <= kept


@pytest.mark.parametrize("method", ["bn", "wn", "cwn", "ln", "lcw"])
def test_a_pack_decays_the_same_parameters(method: str) -> None:
    cfgs = [
        TrialConfig(dataset="digits", method=method, depth=2, width=8, lr=1.0, seed=s,
                    optimizer=OptimizerConfig(momentum=0.0, weight_decay=WD))
        for s in (0, 1)
    ]  # fmt: skip
    single = build_model(cfgs[0])
    alone = _decayed_names(single, build_optimizer(cfgs[0], single), lr=1.0)
    packed = build_packed_model(cfgs, input_shape=(1, 8, 8), num_classes=10)
    moved = _decayed_names(
        packed, build_packed_optimizer(cfgs, packed, torch.device("cpu")), lr=1.0
    )
    # The packed model names its parameters as the single one does (features.i.linear...).
    assert [n for n, _ in packed.named_parameters()] == [n for n, _ in single.named_parameters()]
    assert moved == alone and len(moved) >= 3


def test_a_bare_parameter_list_cannot_apply_the_rule() -> None:
    cfgs = [TrialConfig(dataset="digits", depth=2, optimizer=OptimizerConfig(weight_decay=1e-3))]
    packed = build_packed_model(cfgs, input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match="model: pass the packed model"):
        build_packed_optimizer(cfgs, packed.parameters(), torch.device("cpu"))
    no_decay = [TrialConfig(dataset="digits", depth=2)]
    assert build_packed_optimizer(no_decay, packed.parameters(), torch.device("cpu"))
