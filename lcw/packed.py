"""Packed trials: K models of one architecture trained as one fused model (HFTA-style).

Here: the packed model (``PackedNet``) and its builder, which copies in each member's own
initial weights. Its layers come from the method registry (``lcw.methods``, with ``packs=K``):
packed linear maps in ``lcw.packed_layers``, packed norms in ``lcw.norms``; which configs may
pack together is ``lcw.config.pack_key``. Those names are re-exported here.

Trials that share everything but the learning rate and the seed are stacked along the channel
axis, activations laid out as (B, K * features):

* a hidden linear layer is ``PackedLinear``: one (K * out, in) weight applied with a batched
  matmul, so the rows (and therefore the LCW constraint, weight norm, init) are each member's
  own rows; a conv layer is a grouped ``nn.Conv2d`` with ``groups=K`` (the same row layout);
* batch norm over K * out channels is per-member batch norm; layer norm is ``GroupNorm(K, .)``
  (each member's units form one group);
* ``PackedSGD`` / ``PackedAdam`` (``lcw.optim``, re-exported here) follow ``torch.optim.SGD`` /
  ``Adam`` / ``AdamW`` exactly, with a per-member learning rate, a per-member active mask (a
  diverged or stopped member is frozen without disturbing the others) and the same
  weight-decay groups as a single trial.

Each member starts from exactly the weights its unpacked trial would draw (its own seed, built by
``lcw.models.build_model``, its stored tensors copied in), sees its own data order and its own
seed's augmentation, and on CPU in fp32 an MLP member's metrics equal the trial run alone bit
for bit (``tests/lcw/test_pack_invariance.py``: every method, optimizer and schedule). Batch
norm runs torch's own kernel on a (B, K * F) view for that; conv packs (grouped convolutions)
are not asserted bitwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw.config import TrialConfig, pack_key
from lcw.layers import Block
from lcw.methods import block_factory
from lcw.models import MODEL_LAYOUTS, Net, build_model
from lcw.norms import PackedBatchNorm, PackedLayerNorm
from lcw.optim import PackedAdam, PackedSGD, build_packed_optimizer
from lcw.packed_layers import LCWPackedLinear, PackedLinear, packed_linear

__all__ = [
    "LCWPackedLinear",
    "PackedAdam",
    "PackedBatchNorm",
    "PackedLayerNorm",
    "PackedLinear",
    "PackedNet",
    "PackedSGD",
    "build_packed_model",
    "build_packed_optimizer",
    "pack_key",
    "packed_linear",
]


class PackedNet(nn.Module):
    """K members of one ``Net`` layout; input (K, B, C, H, W), logits (K, B, classes).

    MLP activations are member-major (K, B, F); conv activations are (B, K * C, H, W) for the
    grouped convolutions.
    """

    def __init__(self, features: nn.Sequential, classifier: PackedLinear, *, flatten: bool):
        super().__init__()
        self.features, self.classifier, self.flatten = features, classifier, flatten
        self.packs = classifier.packs
        self.channels_last = False  # set by the trainer for conv packs (NHWC activations)

    @property
    def blocks(self) -> list[Block]:
        return [m for m in self.features if isinstance(m, Block)]

    def forward(self, x: Tensor) -> Tensor:
        k, n = x.shape[0], x.shape[1]
        if self.flatten:
            h = self.features(x.reshape(k, n, -1))
        else:
            h = x.transpose(0, 1).reshape(n, k * x.shape[2], *x.shape[3:])  # (B, K*C, H, W)
            if self.channels_last:
                h = h.contiguous(memory_format=torch.channels_last)
            h = self.features(h).reshape(n, k, -1).transpose(0, 1)  # (K, B, C * H * W)
        logits: Tensor = self.classifier(h)
        return logits  # (K, B, classes)


def build_packed_model(
    configs: list[TrialConfig], *, input_shape: tuple[int, ...], num_classes: int
) -> PackedNet:
    """Pack the members' models: each member's weights are exactly its unpacked init."""
    cfg, packs = configs[0], len(configs)
    members = [build_model(c, input_shape=input_shape, num_classes=num_classes) for c in configs]
    make = block_factory(cfg, packs=packs)  # placeholder inits, overwritten by _copy_members
    layers, fan_in = MODEL_LAYOUTS[cfg.model](cfg, input_shape, make)
    head = PackedLinear(packs, fan_in, num_classes)
    net = PackedNet(nn.Sequential(*layers), head, flatten=cfg.model == "mlp")
    _copy_members(net, members)
    return net


def _cat(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.detach() for t in tensors], dim=0)


def _stored_weight(module: nn.Module) -> dict[str, Tensor]:
    """The parameters a layer's weight is made of: its parametrization's originals, or itself."""
    if parametrize.is_parametrized(module, "weight"):
        plist: Any = getattr(module, "parametrizations")  # noqa: B009 (set by parametrize)
        return dict(plist["weight"].named_parameters())
    weight = module.weight
    assert isinstance(weight, Tensor)
    return {"weight": weight}


def _copy_members(net: PackedNet, members: list[Net]) -> None:
    """Stack each member's initial weights, biases, norm parameters and buffers into `net`."""
    pairs: list[tuple[nn.Module, list[nn.Module]]] = [
        (b.linear, [m.blocks[i].linear for m in members]) for i, b in enumerate(net.blocks)
    ]
    pairs.append((net.classifier, [m.classifier for m in members]))
    for packed, singles in pairs:
        # The stored tensors themselves (a parametrization's originals, not the weight they
        # make): recomputing them from the effective weight would round differently.
        for name, value in _stored_weight(packed).items():
            with torch.no_grad():
                value.copy_(_cat(_stored_weight(s)[name] for s in singles).view_as(value))
        if isinstance(packed.bias, Tensor):
            with torch.no_grad():
                packed.bias.copy_(_cat(s.bias for s in singles))  # type: ignore[misc]
    for i, b in enumerate(net.blocks):
        singles_norm = [m.blocks[i].norm for m in members]
        packed_state = b.norm.state_dict()
        for key in packed_state:
            if key == "num_batches_tracked":
                continue
            packed_state[key] = _cat(s.state_dict()[key] for s in singles_norm)
        b.norm.load_state_dict(packed_state)
