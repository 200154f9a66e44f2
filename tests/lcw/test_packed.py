"""Packed trials equal the same trials run alone, member by member, for every method."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from step_curves import curves_alone, curves_packed, max_rel

from lcw import OptimizerConfig, TrialConfig, catalog
from lcw.data import load_dataset
from lcw.trainer import train, train_pack

# 1,000 training images in batches of 100: 10 steps an epoch, 10 epochs = 100 steps.
BASE = dict(dataset="digits", depth=3, width=32, epochs=10, batch_size=100, train_limit=1000)


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_each_member_matches_its_trial_run_alone(method: str) -> None:
    # Weight decay on, with the default rule: the pack's optimizer must leave the same
    # parameters undecayed (norm scales and shifts, biases, weight-norm scales) as the trial's.
    opt = OptimizerConfig(weight_decay=1e-2)
    cfgs = [
        TrialConfig(method=method, lr=lr, seed=seed, diagnostics=False, optimizer=opt, **BASE)
        for lr, seed in ((0.1, 0), (0.05, 1), (0.2, 2))
    ]
    alone = curves_alone(cfgs)
    packed, results = curves_packed(cfgs)
    for k in range(len(cfgs)):
        assert len(packed[k]) == len(alone[k]) == 100
        assert max_rel(packed[k], alone[k]) <= 1e-4, (method, k)
    assert all(r.env["pack_size"] == 3 for r in results)
    # Members really differ (different seeds and LRs), so the comparison is not trivial.
    assert packed[0] != packed[1]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_members_match(optimizer: str) -> None:
    cfgs = [
        TrialConfig.from_dict(
            {
                **BASE,
                "method": "lcw",
                "lr": lr,
                "seed": s,
                "diagnostics": False,
                "optimizer": {"name": optimizer, "weight_decay": 1e-3},
                "lr_schedule": "cosine",
            }
        )
        for lr, s in ((1e-3, 0), (3e-3, 1))
    ]
    alone, (packed, _) = curves_alone(cfgs), curves_packed(cfgs)
    for k in range(2):
        assert max_rel(packed[k], alone[k]) <= 1e-4


def test_epoch_metrics_and_diagnostics_match() -> None:
    cfgs = [TrialConfig(method="bn_lcw", lr=0.1, seed=s, **{**BASE, "epochs": 2}) for s in (3, 4)]
    packed = train_pack(cfgs)
    for cfg, res in zip(cfgs, packed, strict=True):
        alone = train(cfg)
        assert res.status == alone.status == "completed"
        assert res.test_acc == pytest.approx(alone.test_acc, abs=2e-3)
        a, b = res.epochs[-1]["diagnostics"]["layers"], alone.epochs[-1]["diagnostics"]["layers"]
        for ra, rb in zip(a, b, strict=True):
            assert ra["shift"] == pytest.approx(rb["shift"], rel=1e-3)
            assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-3)


def test_a_diverged_member_is_frozen_without_disturbing_the_others() -> None:
    good = TrialConfig(method="plain", activation="relu", lr=0.05, seed=0, **BASE)
    bad = TrialConfig(method="plain", activation="relu", lr=1e3, seed=1, **BASE)
    alone = curves_alone([good])[0]
    packed, results = curves_packed([good, bad])
    assert results[1].status == "diverged" and results[1].diverged_epoch == 1
    assert results[0].status == "completed"
    assert max_rel(packed[0], alone) <= 1e-4
    assert [m["epoch"] for m in results[1].epochs] == [0, 1]
    assert len(results[0].epochs) == 11


def test_members_may_stop_early_individually() -> None:
    cfgs = [TrialConfig(method="lcw", lr=0.1, seed=s, diagnostics=False, **BASE) for s in (0, 1)]
    results = train_pack(cfgs, on_epoch=lambda k, m: k == 0 and m["epoch"] == 2)
    assert results[0].status == "stopped_early" and len(results[0].epochs) == 3
    assert results[1].status == "completed" and len(results[1].epochs) == 11


@pytest.mark.slow
@pytest.mark.parametrize(
    ("channels_last", "optimizer"), [(False, "sgd"), (True, "sgd"), (True, "adam")]
)
def test_vgg_pack_uses_grouped_convolutions_and_matches(
    channels_last: bool, optimizer: str
) -> None:
    # Sigmoid: a grouped convolution rounds differently from K separate ones (~1e-7), and a
    # ReLU VGG at batch 20 amplifies that several times a step (1e-7 -> 1e-3 in 4 steps on
    # some CPUs, in plain and bn as much as in bn_lcw); a smooth activation keeps the two runs
    # within rounding, so the comparison checks the packing and not the net's chaos.
    full = load_dataset("synthetic")
    # The comparison is of step losses: small evaluation splits keep the test quick.
    few = {k: getattr(full, k)[:20] for k in ("x_val", "y_val", "x_test", "y_test")}
    data = dataclasses.replace(full, **few)
    # channels_last: the pack's grouped filters are NHWC too, which its optimizer and the LCW
    # projection must update in place (neither can flatten such a filter without a copy).
    base = dict(dataset="synthetic", model="vgg11", method="bn_lcw", activation="sigmoid",
                epochs=2, batch_size=20, train_limit=100, diagnostics=False,
                optimizer=OptimizerConfig(name=optimizer))  # fmt: skip
    lr = 0.005 if optimizer == "sgd" else 1e-4
    cfgs = [TrialConfig(lr=lr, seed=s, channels_last=channels_last, **base) for s in (0, 1)]
    alone = curves_alone(cfgs, data)
    packed, _ = curves_packed(cfgs, data)
    nchw = (
        alone
        if not channels_last
        else curves_alone([dataclasses.replace(c, channels_last=False) for c in cfgs], data)
    )
    # The memory layout changes the kernels' rounding only, never what is trained. Adam divides
    # by each gradient's running scale, which lifts rounding in small gradients (2.2e-4 measured).
    layout_bound = 1e-4 if optimizer == "sgd" else 1e-3
    for k in range(2):
        assert max_rel(packed[k], alone[k]) <= 1e-4
        assert max_rel(alone[k], nchw[k]) <= layout_bound


def test_trials_that_differ_in_architecture_cannot_be_packed() -> None:
    with pytest.raises(ValueError, match="differ only in 'lr' and 'seed'"):
        train_pack([TrialConfig(depth=2), TrialConfig(depth=3)])


@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_gradient_matches_autograd_of_the_plain_formulation(bias: bool) -> None:
    from lcw.packed import packed_linear

    k, b, n_in, n_out = 3, 5, 4, 2
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(k, b, n_in, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(k * n_out, n_in, dtype=torch.float64, generator=gen, requires_grad=True)
    bb = torch.randn(k * n_out, dtype=torch.float64, generator=gen, requires_grad=True)
    inputs = (x, w, bb if bias else None)

    def fn(x: torch.Tensor, w: torch.Tensor, bb: torch.Tensor | None) -> torch.Tensor:
        return packed_linear(x, w, bb, k)

    assert torch.autograd.gradcheck(fn, inputs)

    def plain(x: torch.Tensor, w: torch.Tensor, bb: torch.Tensor | None) -> torch.Tensor:
        y = torch.bmm(x, w.view(k, n_out, n_in).transpose(1, 2))
        return y if bb is None else y + bb.view(k, 1, n_out)

    g = torch.randn(k, b, n_out, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad(fn(*inputs), [t for t in inputs if t is not None], g)
    ref = torch.autograd.grad(plain(*inputs), [t for t in inputs if t is not None], g)
    torch.testing.assert_close(fn(*inputs), plain(*inputs))
    for a, r in zip(ours, ref, strict=True):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r)


def test_packed_linear_flows_into_a_parametrized_weight() -> None:
    from torch.nn.utils import parametrize

    from lcw.packed import PackedLinear
    from lcw.zero_sum import _CenteredWeightNorm

    torch.manual_seed(0)
    layer = PackedLinear(2, 5, 3, bias=False).double()
    parametrize.register_parametrization(layer, "weight", _CenteredWeightNorm())
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    params = list(layer.parameters())
    ours = torch.autograd.grad(layer(x).square().sum(), params)
    w = layer.weight
    ref_out = torch.bmm(x, w.view(2, 3, 5).transpose(1, 2))
    ref = torch.autograd.grad(ref_out.square().sum(), params)
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, r)


def _packed_and_singles() -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Packed params (K = 3) and each member's own copies of them."""
    gen = torch.Generator().manual_seed(0)
    packed = [torch.randn(3 * 4, 5, generator=gen), torch.randn(3 * 4, generator=gen)]
    singles = [[p.view(3, -1)[k].clone().view(-1) for p in packed] for k in range(3)]
    return [p.requires_grad_() for p in packed], [[s.requires_grad_() for s in m] for m in singles]


def _assert_frozen_member_stays(
    opt: torch.optim.Optimizer, packed: list[torch.Tensor], bad: float
) -> None:
    """After one step for all, member 1 is frozen and gets `bad` (non-finite) gradients, as a
    diverged member's backward gives: its weights stay bitwise as they were, the others move."""
    gen = torch.Generator().manual_seed(1)
    for p in packed:
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()  # optimizer state exists for every member
    opt.active[1] = False  # type: ignore[attr-defined]
    before = [p.detach().view(3, -1)[1].clone() for p in packed]
    others = [p.detach().view(3, -1)[[0, 2]].clone() for p in packed]
    for _ in range(3):
        for p in packed:
            g = torch.randn(p.shape, generator=gen)
            g.view(3, -1)[1] = bad
            p.grad = g
        opt.step()
    for p, b, o in zip(packed, before, others, strict=True):
        assert torch.equal(p.detach().view(3, -1)[1], b)
        assert torch.isfinite(p.detach()).all()
        assert not torch.equal(p.detach().view(3, -1)[[0, 2]], o)


def _assert_steps_match(
    opt: torch.optim.Optimizer,
    refs: list[torch.optim.Optimizer],
    packed: list[torch.Tensor],
    singles: list[list[torch.Tensor]],
) -> None:
    """5 steps of random gradients: each member of `packed` (3 members) moves as its own
    torch optimizer in `refs` moves its `singles`."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen) for p in packed]
        for p, g in zip(packed, grads, strict=True):
            p.grad = g.clone()
        for k, (s, ref) in enumerate(zip(singles, refs, strict=True)):
            for q, g in zip(s, grads, strict=True):
                q.grad = g.view(3, -1)[k].clone()
            ref.step()
        opt.step()
        for k, s in enumerate(singles):
            for p, q in zip(packed, s, strict=True):
                torch.testing.assert_close(
                    p.detach().view(3, -1)[k], q.detach(), rtol=1e-6, atol=1e-7
                )


@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay"),
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2), (0.5, False, 1e-2)],
)
def test_packed_sgd_equals_torch_sgd_per_member(
    momentum: float, nesterov: bool, weight_decay: float
) -> None:
    from lcw.packed import PackedSGD

    lrs = [0.1, 0.03, 0.2]
    packed, singles = _packed_and_singles()
    opt = PackedSGD(packed, lr=torch.tensor(lrs, dtype=torch.float64), momentum=momentum,
                    nesterov=nesterov, weight_decay=weight_decay)  # fmt: skip
    refs = [
        torch.optim.SGD(s, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        for s, lr in zip(singles, lrs, strict=True)
    ]
    _assert_steps_match(opt, refs, packed, singles)


@pytest.mark.parametrize("nesterov", [False, True])
def test_packed_sgd_leaves_a_frozen_member_exactly_as_it_was(nesterov: bool) -> None:
    from lcw.packed import PackedSGD

    packed, _ = _packed_and_singles()
    opt = PackedSGD(packed, lr=torch.tensor([0.1, 0.1, 0.1], dtype=torch.float64), momentum=0.9,
                    nesterov=nesterov, weight_decay=1e-2)  # fmt: skip
    _assert_frozen_member_stays(opt, packed, float("nan"))


@pytest.mark.parametrize(("decoupled", "weight_decay"), [(False, 0.0), (False, 1e-2), (True, 1e-2)])
def test_packed_adam_equals_torch_adam_per_member(decoupled: bool, weight_decay: float) -> None:
    from lcw.packed import PackedAdam

    lrs = [1e-2, 3e-3, 2e-2]
    packed, singles = _packed_and_singles()
    opt = PackedAdam(packed, lr=torch.tensor(lrs, dtype=torch.float64),
                     weight_decay=weight_decay, decoupled=decoupled)  # fmt: skip
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    refs = [cls(s, lr=lr, weight_decay=weight_decay) for s, lr in zip(singles, lrs, strict=True)]
    _assert_steps_match(opt, refs, packed, singles)


@pytest.mark.parametrize("decoupled", [False, True])
def test_packed_adam_leaves_a_frozen_member_exactly_as_it_was(decoupled: bool) -> None:
    from lcw.packed import PackedAdam

    packed, _ = _packed_and_singles()
    opt = PackedAdam(packed, lr=torch.tensor([1e-2] * 3, dtype=torch.float64), weight_decay=1e-2,
                     decoupled=decoupled)  # fmt: skip
    _assert_frozen_member_stays(opt, packed, float("inf"))
