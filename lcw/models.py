"""Model builders by registry name: ``mlp`` and VGG-11/16/19 for 32x32 inputs.

Every hidden layer (MLP: each Linear; VGG: each 3x3 conv) is a ``Block`` built by the method's
factories in ``lcw.methods`` (init: ``lcw.init``, scaled by ``init_scale``); the classifier is a
plain linear layer (std 1/sqrt(fan_in), zero bias, never scaled) for every method. VGG layouts
(``lcw.catalog.VGG_LAYOUTS``, re-exported here) follow Simonyan & Zisserman (2015) with the
CIFAR-style head (one linear layer on the 512 x 1 x 1 feature map) used by most 32x32
reproductions. The layouts (``MODEL_LAYOUTS``) are shared with packs (``lcw.packed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lcw import catalog
from lcw.activations import get_act_layer
from lcw.catalog import VGG_LAYOUTS
from lcw.config import TrialConfig
from lcw.layers import Block, set_weight
from lcw.methods import BlockFactory, block_factory


class Net(nn.Module):
    """Hidden blocks (in order, for diagnostics), then a linear classifier."""

    def __init__(self, features: nn.Sequential, classifier: nn.Linear, *, flatten_first: bool):
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.flatten_first = flatten_first

    @property
    def blocks(self) -> list[Block]:
        return [m for m in self.features if isinstance(m, Block)]

    def forward(self, x: Tensor) -> Tensor:
        if self.flatten_first:
            x = x.flatten(1)  # (B, C*H*W)
        x = self.features(x)
        logits: Tensor = self.classifier(x.flatten(1))
        return logits


def _classifier(in_features: int, num_classes: int, generator: torch.Generator) -> nn.Linear:
    head = nn.Linear(in_features, num_classes)
    w = torch.randn(head.weight.shape, generator=generator, dtype=torch.float64)
    set_weight(head, w / math.sqrt(in_features))
    with torch.no_grad():
        head.bias.zero_()
    return head


def mlp_layers(
    cfg: TrialConfig, input_shape: tuple[int, ...], make: BlockFactory
) -> tuple[list[nn.Module], int]:
    """`depth` blocks of `width` units on the flattened input; returns (layers, features)."""
    layers: list[nn.Module] = []
    fan_in = math.prod(input_shape)
    for _ in range(cfg.depth):
        layers.append(Block(*make(fan_in, cfg.width, False), get_act_layer(cfg.activation)))
        fan_in = cfg.width
    return layers, fan_in


def vgg_layers(
    cfg: TrialConfig, input_shape: tuple[int, ...], make: BlockFactory
) -> tuple[list[nn.Module], int]:
    """The VGG conv stack (the method applies to every conv) and its max pools."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for item in VGG_LAYOUTS[cfg.model]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = int(item)
        layers.append(Block(*make(channels, out, True), get_act_layer(cfg.activation)))
        channels = out
    return layers, channels


MODEL_LAYOUTS: dict[str, Callable[..., tuple[list[nn.Module], int]]] = {
    "mlp": mlp_layers,
    "vgg11": vgg_layers,
    "vgg16": vgg_layers,
    "vgg19": vgg_layers,
}


def build_model(
    cfg: TrialConfig,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> Net:
    """Build `cfg.model` for `cfg.dataset` (shapes from the catalog unless given).

    The init draws come from `generator` (default: a CPU generator seeded with `cfg.seed`), in
    layer order, so every method with the same seed starts from the same standard-normal draw.
    """
    info = catalog.DATASETS[cfg.dataset]
    gen = generator if generator is not None else init_generator(cfg.seed)
    make = block_factory(cfg, generator=gen)
    layers, features = MODEL_LAYOUTS[cfg.model](cfg, input_shape or info.input_shape, make)
    head = _classifier(features, num_classes or info.num_classes, gen)
    return Net(nn.Sequential(*layers), head, flatten_first=cfg.model == "mlp")


def init_generator(seed: int) -> torch.Generator:
    """The CPU generator of a trial's initial weights (draws are moved to the device after)."""
    return torch.Generator().manual_seed(seed)


__all__ = [
    "MODEL_LAYOUTS",
    "VGG_LAYOUTS",
    "BlockFactory",
    "Net",
    "build_model",
    "init_generator",
    "mlp_layers",
    "vgg_layers",
]
