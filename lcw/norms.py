"""The normalization layers that are not torch's own, alone and packed.

``LayerNorm`` (one model) and ``PackedLayerNorm`` (K members on (K, B, F) inputs) compute the
same two ops, normalize then scale and shift, and ``PackedBatchNorm`` runs torch's batch norm
on a (B, K * F) view, so a member of a pack computes the bits of its model alone
(``tests/lcw/test_pack_invariance.py``). Which method gets which norm: ``lcw.methods``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim, its affine part applied after the normalization.

    The same two ops as ``PackedLayerNorm`` (normalize, then scale and shift), so a trial alone
    and packed compute the same bits; the fused affine of ``nn.LayerNorm`` sums its scale's
    gradient in another order.
    """

    def forward(self, x: Tensor) -> Tensor:
        x_hat = F.layer_norm(x, self.normalized_shape, eps=self.eps)
        return torch.addcmul(self.bias, x_hat, self.weight)


class PackedBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` for each member on (K, B, F) inputs: torch's own on (B, K * F).

    Each channel's statistics, update and gradient are computed as for the member's own
    (B, F) input, bit for bit; the two transposes cost a copy of the activations each way.
    """

    def __init__(self, packs: int, features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(packs * features, eps=eps, momentum=momentum)
        self.packs, self.features = packs, features

    def forward(self, x: Tensor) -> Tensor:
        k, b, f = x.shape
        out = super().forward(x.transpose(0, 1).reshape(b, k * f))
        return out.view(b, k, f).transpose(0, 1).contiguous()


class PackedLayerNorm(nn.Module):
    """``nn.LayerNorm(F)`` for each member on (K, B, F) inputs (the ops of ``LayerNorm``)."""

    def __init__(self, packs: int, features: int, eps: float = 1e-5):
        super().__init__()
        self.packs, self.features, self.eps = packs, features, eps
        self.weight = nn.Parameter(torch.ones(packs * features))
        self.bias = nn.Parameter(torch.zeros(packs * features))

    def forward(self, x: Tensor) -> Tensor:
        shape = (self.packs, 1, self.features)
        x_hat = F.layer_norm(x, (self.features,), eps=self.eps)
        return torch.addcmul(self.bias.view(shape), x_hat, self.weight.view(shape))


__all__ = ["LayerNorm", "PackedBatchNorm", "PackedLayerNorm"]
