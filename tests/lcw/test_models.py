"""Every registered method x activation (and model) builds, trains a step, and gets gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lcw import TrialConfig, catalog
from lcw.activations import ACTIVATION_LAYERS, Sigmoid
from lcw.layers import Block
from lcw.models import MODEL_LAYOUTS, VGG_LAYOUTS, build_model
from lcw.norms import LayerNorm


def test_registries_agree_with_the_catalog() -> None:
    assert set(MODEL_LAYOUTS) == set(catalog.MODELS)
    assert set(ACTIVATION_LAYERS) == set(catalog.ACTIVATIONS)
    assert set(VGG_LAYOUTS) == {m for m in catalog.MODELS if m.startswith("vgg")}


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    opt.step()
    assert torch.isfinite(F.cross_entropy(model(x), y))


@pytest.mark.parametrize("activation", catalog.ACTIVATIONS)
@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_mlp_every_method_and_activation(method: str, activation: str) -> None:
    cfg = TrialConfig(dataset="digits", method=method, activation=activation, depth=3, width=16)
    model = build_model(cfg)
    assert len(model.blocks) == 3
    x = torch.rand(8, 1, 8, 8)
    _step(model, x, torch.arange(8) % 10)


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_vgg11_every_method(method: str) -> None:
    cfg = TrialConfig(dataset="synthetic", model="vgg11", method=method, activation="relu")
    model = build_model(cfg)
    assert len(model.blocks) == 8  # the method applies to every conv layer
    _step(model, torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))


@pytest.mark.parametrize("model_name, convs", [("vgg16", 13), ("vgg19", 16)])
def test_deeper_vggs_build(model_name: str, convs: int) -> None:
    model = build_model(TrialConfig(dataset="cifar10", model=model_name, method="bn_lcw"))
    assert len(model.blocks) == convs
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _block_parts(method: str) -> list[type]:
    model = build_model(TrialConfig(dataset="digits", method=method, depth=1, width=8))
    block = model.blocks[0]
    assert isinstance(block, Block)
    return [type(block.norm), type(block.act)]


def test_normalization_sits_before_the_activation() -> None:
    # lcw.activations.Sigmoid: nn.Sigmoid on SIMD-aligned tensors (lcw.activations.ALIGN)
    assert _block_parts("bn") == [nn.BatchNorm1d, Sigmoid]
    assert _block_parts("bn_lcw") == [nn.BatchNorm1d, Sigmoid]
    # lcw.norms.LayerNorm: nn.LayerNorm with its affine part as its own op (pack invariance)
    assert _block_parts("ln") == [LayerNorm, Sigmoid]
    assert _block_parts("plain") == [nn.Identity, Sigmoid]
    assert issubclass(Sigmoid, nn.Sigmoid) and issubclass(LayerNorm, nn.LayerNorm)


def _first_weight(method: str, seed: int = 3) -> torch.Tensor:
    cfg = TrialConfig(dataset="digits", method=method, depth=2, width=32, seed=seed)
    return build_model(cfg).blocks[0].linear.weight.detach()


def test_paired_seed_gives_the_same_draw_scaled_by_each_method() -> None:
    plain, lcw_w, wn, cwn = (_first_weight(m) for m in ("plain", "lcw", "wn", "cwn"))
    # The same gain (sigmoid: 4) for both: lcw = projection of the same draw at
    # 4 / sqrt(fan_in - 1), plain at 4 / sqrt(fan_in).
    centered = plain - plain.mean(dim=1, keepdim=True)
    fan_in = plain.shape[1]
    assert torch.allclose(lcw_w, (fan_in / (fan_in - 1)) ** 0.5 * centered, atol=1e-5)
    assert float(plain.std()) == pytest.approx(4.0 / fan_in**0.5, rel=0.05)
    assert torch.allclose(wn, plain, atol=1e-5)  # wn starts at exactly the plain init
    assert torch.allclose(cwn, lcw_w, atol=1e-5)  # cwn starts at exactly the lcw init
    assert not torch.allclose(_first_weight("plain", seed=4), plain)


def test_constrained_methods_have_zero_sum_rows() -> None:
    for method in ("lcw", "bn_lcw", "cwn"):
        cfg = TrialConfig(dataset="digits", method=method, depth=4, width=16)
        for block in build_model(cfg).blocks:
            assert block.linear.weight.sum(dim=1).abs().max() < 1e-5


def _hidden_and_head(cfg: TrialConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
    model = build_model(cfg)
    return [b.linear.weight.detach() for b in model.blocks], model.classifier.weight.detach()


@pytest.mark.parametrize("model_name", ["mlp", "vgg11"])
@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_init_scale_multiplies_every_hidden_std_exactly(method: str, model_name: str) -> None:
    dataset = "digits" if model_name == "mlp" else "synthetic"
    base = dict(dataset=dataset, model=model_name, method=method, activation="relu", depth=3,
                width=16, seed=2)  # fmt: skip
    one, head_one = _hidden_and_head(TrialConfig(**base))  # type: ignore[arg-type]
    two, head_two = _hidden_and_head(TrialConfig(init_scale=2.0, **base))  # type: ignore[arg-type]
    # Scaling by 2 is exact in floating point: bitwise twice the weights, same draw.
    assert all(torch.equal(b, 2 * a) for a, b in zip(one, two, strict=True))
    assert torch.equal(head_one, head_two)  # the classifier is not scaled
    if model_name != "mlp":
        return
    half, _ = _hidden_and_head(TrialConfig(gain=3.0, init_scale=0.5, **base))  # type: ignore[arg-type]
    three, _ = _hidden_and_head(TrialConfig(gain=3.0, **base))  # type: ignore[arg-type]
    assert all(torch.equal(2 * a, b) for a, b in zip(half, three, strict=True))


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_bias_none_removes_every_hidden_bias(method: str) -> None:
    for bias, model_name, dataset in (("default", "mlp", "digits"), ("none", "mlp", "digits"),
                                      ("none", "vgg11", "synthetic")):  # fmt: skip
        cfg = TrialConfig(dataset=dataset, model=model_name, method=method, bias=bias, depth=2)
        model = build_model(cfg)
        has = [b.linear.bias is not None for b in model.blocks]
        expected = catalog.METHODS[method].bias and bias == "default"
        assert has == [expected] * len(has), (bias, model_name)
        assert model.classifier.bias is not None  # the head keeps its bias
        names = [n for n, _ in model.named_parameters() if n.endswith("bias")]
        assert any(n.startswith("classifier") for n in names)
        _step(model, torch.rand(2, *catalog.DATASETS[dataset].input_shape), torch.tensor([1, 2]))


def test_layer_norm_is_torchs_up_to_rounding() -> None:
    torch.manual_seed(0)
    ours, theirs = LayerNorm(50), nn.LayerNorm(50)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        theirs.load_state_dict(ours.state_dict())
    x = torch.randn(32, 50) * 3 + 1
    g = torch.randn(32, 50)
    outs = []
    for norm in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        y = norm(xi)
        y.backward(g)
        outs.append((y.detach(), xi.grad, norm.weight.grad, norm.bias.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
