"""Training-batch augmentation: the standard CIFAR recipe on the trial's device.

Each image of a training batch is cropped back to its size at a random offset of the image
zero-padded by ``PAD`` pixels on every side, then flipped horizontally with probability 1/2
(Krizhevsky et al. 2012; He et al. 2016's CIFAR setting). It runs on the batch tensors, which
are already normalized (``lcw.data``), so the padding is 0 in normalized units: the training
split's mean colour per channel (torchvision pads the raw image with black instead).

The draws come from a generator of the trial's own (seeded with ``seed + AUGMENT_SEED_OFFSET``
on the trial's device), never from the method or the model: a seed gets the same crops and
flips for every method (pairing), for every pack it may be trained in, and on every rerun.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD = 4  # pixels of zero padding on each side: offsets 0..2 * PAD
AUGMENT_SEED_OFFSET = 2_000_029  # the generator's seed = seed + this (data order: lcw.trainer)


def augment_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A trial's augmentation generator (independent of its init and data-order generators)."""
    return torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED_OFFSET)


def crop_flip(x: Tensor, generator: torch.Generator, pad: int = PAD) -> Tensor:
    """Random crop of the `pad`-zero-padded images and random horizontal flip: (B, C, H, W).

    Draws, in this order: (B, 2) offsets (row, column) in [0, 2 pad], then (B,) flip bits.
    """
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=x.device)
    flip = torch.randint(0, 2, (n, 1), generator=generator, device=x.device).bool()
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = offsets[:, :1] + ar_h  # (B, H)
    # A flipped crop reads the crop's columns right to left.
    cols = offsets[:, 1:] + torch.where(flip, w - 1 - ar_w, ar_w)  # (B, W)
    b = torch.arange(n, device=x.device)[:, None, None]
    out = padded[b, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
