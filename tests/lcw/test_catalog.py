"""The torch-free catalog agrees with the builders: names, layouts and parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lcw import TrialConfig, catalog
from lcw.activations import ACTIVATION_LAYERS, get_act_layer
from lcw.layers import Block
from lcw.methods import METHOD_LAYERS, NORM_LAYERS, make_linear_map, make_norm
from lcw.models import VGG_LAYOUTS, build_model


def test_registries_cover_the_catalog() -> None:
    assert set(METHOD_LAYERS) == set(catalog.METHODS)
    assert {m.norm for m in catalog.METHODS.values()} - {None} == set(NORM_LAYERS)
    assert set(ACTIVATION_LAYERS) == set(catalog.ACTIVATIONS)
    assert VGG_LAYOUTS is catalog.VGG_LAYOUTS  # lcw.models re-exports the catalog's


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_every_method_builds_alone_and_packed(method: str, conv: bool) -> None:
    info = catalog.METHODS[method]
    for packs in (None, 1, 3):
        k = 1 if packs is None else packs
        layer = make_linear_map(method, 4, 5, conv=conv, activation="relu", packs=packs)
        norm = make_norm(method, 5, conv=conv, packs=packs)
        assert (layer.bias is not None) == info.bias
        assert isinstance(norm, nn.Identity) == (info.norm is None)
        if conv:  # (B, K * C, H, W) for a pack's grouped convolutions
            y = norm(layer(torch.randn(2, k * 4, 6, 6)))
            assert y.shape == (2, k * 5, 6, 6)
        elif packs is None:
            assert norm(layer(torch.randn(3, 4))).shape == (3, 5)
        else:  # member-major (K, B, F)
            assert norm(layer(torch.randn(k, 3, 4))).shape == (k, 3, 5)
        if info.constrained and packs is None:  # a pack's init is a placeholder
            assert layer.weight.reshape(5, -1).sum(dim=1).abs().max() < 1e-5, method


@pytest.mark.parametrize("name", catalog.ACTIVATIONS)
def test_every_activation_builds(name: str) -> None:
    act = get_act_layer(name)
    x = torch.linspace(-3, 3, 100, requires_grad=True)
    y = act(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="activation: 'nope' is not one of"):
        get_act_layer("nope")


def _sizes(cfg: TrialConfig) -> tuple[int, int]:
    info = catalog.DATASETS[cfg.dataset]
    return catalog.model_size(
        cfg.model, input_shape=info.input_shape, num_classes=info.num_classes,
        method=cfg.method, depth=cfg.depth, width=cfg.width, bias=cfg.bias,
        lcw_impl=cfg.lcw_impl,
    )  # fmt: skip


def _built(cfg: TrialConfig) -> tuple[int, int]:
    """(parameters, hidden-layer outputs per sample) of the model `cfg` builds."""
    model = build_model(cfg)
    outputs: list[int] = []
    hooks = [
        b.linear.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].numel()))
        for b in model.blocks
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *catalog.DATASETS[cfg.dataset].input_shape))
    for h in hooks:
        h.remove()
    assert all(isinstance(b, Block) for b in model.blocks)
    return sum(p.numel() for p in model.parameters()), sum(outputs)


@pytest.mark.parametrize("impl", ["projection", "basis"])
@pytest.mark.parametrize("bias", catalog.BIAS_MODES)
@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_model_size_counts_what_the_mlp_builder_builds(method: str, bias: str, impl: str) -> None:
    for depth, width in ((1, 7), (3, 16)):
        cfg = TrialConfig(
            dataset="digits", method=method, depth=depth, width=width, bias=bias, lcw_impl=impl
        )
        assert _sizes(cfg) == _built(cfg), (depth, width)


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_model_size_counts_what_the_vgg11_builder_builds(method: str) -> None:
    cfg = TrialConfig(
        dataset="synthetic", model="vgg11", method=method, activation="relu",
        bias="none" if method == "wn" else "default",
        lcw_impl="basis" if method == "bn_lcw" else "projection",
    )  # fmt: skip
    assert _sizes(cfg) == _built(cfg)


def test_hidden_biases_follow_the_method_and_bias_mode() -> None:
    # lcw has no hidden bias: 5 fewer parameters than plain per hidden layer of width 5.
    sizes = {
        (m, b): catalog.model_size(
            "mlp", input_shape=(1, 2, 2), num_classes=3, method=m, depth=2, width=5, bias=b
        )[0]
        for m in ("plain", "lcw")
        for b in catalog.BIAS_MODES
    }
    assert sizes["plain", "default"] - sizes["lcw", "default"] == 2 * 5
    assert sizes["plain", "none"] == sizes["lcw", "none"] == sizes["lcw", "default"]


def test_moved_names_stay_importable_where_they_were() -> None:
    import lcw.activations
    import lcw.layers
    import lcw.norms
    import lcw.packed
    import lcw.packed_layers
    from lcw.config import pack_key

    # The same objects: benchmarks.activation_cost swaps an entry of the activation registry.
    assert lcw.layers.ACTIVATION_LAYERS is lcw.activations.ACTIVATION_LAYERS
    for name in ("ALIGN", "GELU", "Sigmoid", "Tanh", "get_act_layer"):
        assert getattr(lcw.layers, name) is getattr(lcw.activations, name)
    assert lcw.layers.LayerNorm is lcw.norms.LayerNorm
    for name in ("PackedLinear", "LCWPackedLinear", "packed_linear"):
        assert getattr(lcw.packed, name) is getattr(lcw.packed_layers, name)
    assert lcw.packed.PackedBatchNorm is lcw.norms.PackedBatchNorm
    assert lcw.packed.PackedLayerNorm is lcw.norms.PackedLayerNorm
    assert lcw.packed.pack_key is pack_key
