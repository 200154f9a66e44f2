"""Crop + flip augmentation: correct crops, paired across methods and packs, bitwise reruns."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

import lcw.trainer
from lcw import TrialConfig, train
from lcw.augment import PAD, augment_generator, crop_flip
from lcw.data import load_dataset
from lcw.trainer import train_pack


def _images(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(9))


def test_every_output_is_a_crop_of_the_padded_image_maybe_flipped() -> None:
    x = _images()
    out = crop_flip(x, augment_generator(0, "cpu"))
    assert out.shape == x.shape and out.is_contiguous()
    padded = torch.nn.functional.pad(x, (PAD,) * 4)
    seen: set[tuple[int, int, bool]] = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * PAD + 1)
            for dx in range(2 * PAD + 1)
            for flip in (False, True)
            if torch.equal(out[i], _crop(padded[i], dy, dx, flip))
        ]
        assert len(matches) == 1, i  # exactly one crop and flip explains each image
        seen.add(matches[0])
    assert len({m[2] for m in seen}) == 2  # both flips occur
    assert len({m[:2] for m in seen}) > 30  # offsets spread over the 81 positions


def _crop(img: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    c = img[:, dy : dy + 32, dx : dx + 32]
    return c.flip(-1) if flip else c


def test_the_generator_alone_decides() -> None:
    x = _images()
    a = crop_flip(x, augment_generator(3, "cpu"))
    assert torch.equal(a, crop_flip(x, augment_generator(3, "cpu")))
    assert not torch.equal(a, crop_flip(x, augment_generator(4, "cpu")))


def _augmented_batches(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record every augmented batch the trainer makes (in call order)."""
    record: list[torch.Tensor] = []

    def spy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = crop_flip(x, generator)
        record.append(out.clone())
        return out

    monkeypatch.setattr(lcw.trainer, "crop_flip", spy)
    return record


BASE: dict[str, Any] = dict(dataset="synthetic", depth=1, width=8, epochs=2, batch_size=25,
                            train_limit=50, diagnostics=False, augment=True)  # fmt: skip


def test_a_seed_gets_the_same_augmentation_for_every_method_and_rerun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = _augmented_batches(monkeypatch)
    runs = {}
    for method, seed in (("plain", 0), ("lcw", 0), ("bn", 1), ("plain", 0)):
        record.clear()
        result = train(TrialConfig(method=method, seed=seed, **BASE))
        runs.setdefault((method, seed), []).append((list(record), result.to_dict()))
    (plain, first), (_, rerun) = runs[("plain", 0)]
    assert len(plain) == 4  # 2 epochs x 2 batches, all augmented
    lcw_batches = runs[("lcw", 0)][0][0]
    assert all(torch.equal(a, b) for a, b in zip(plain, lcw_batches, strict=True))  # paired
    assert not torch.equal(plain[0], runs[("bn", 1)][0][0][0])  # another seed, another draw
    for key in ("seconds",):
        first.pop(key), rerun.pop(key)
    for e in (*first["epochs"], *rerun["epochs"]):
        e.pop("seconds"), e.pop("samples_per_s")
    assert first == rerun  # bitwise rerun
    assert all(torch.equal(a, b) for a, b in zip(plain, runs[("plain", 0)][1][0], strict=True))


def test_evaluation_and_unaugmented_trials_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _augmented_batches(monkeypatch)
    train(TrialConfig(**{**BASE, "augment": False}))
    assert record == []
    train(TrialConfig(**{**BASE, "epochs": 1}))
    assert len(record) == 2  # training batches only, not the evaluation of epochs 0 and 1


def test_each_pack_member_augments_as_its_trial_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _augmented_batches(monkeypatch)
    cfgs = [TrialConfig(method="lcw", lr=lr, seed=s, **BASE) for lr, s in ((0.1, 0), (0.05, 1))]
    alone = []
    for cfg in cfgs:
        record.clear()
        train(cfg)
        alone.append(list(record))
    record.clear()
    train_pack(cfgs)
    packed = [record[0::2], record[1::2]]  # members take turns, each step
    for k in range(2):
        assert all(torch.equal(a, b) for a, b in zip(alone[k], packed[k], strict=True))
    assert not torch.equal(alone[0][0], alone[1][0])


def test_a_small_vgg_trains_two_epochs_with_augmentation() -> None:
    full = load_dataset("synthetic")
    # Small evaluation splits keep the test quick; training sees 50 augmented images an epoch.
    data = dataclasses.replace(full, **{k: getattr(full, k)[:20] for k in
                                        ("x_val", "y_val", "x_test", "y_test")})  # fmt: skip
    base = dict(dataset="synthetic", model="vgg11", method="bn_lcw", activation="relu",
                epochs=2, batch_size=25, train_limit=50, lr=0.05, diagnostics=False)  # fmt: skip
    on = train(TrialConfig(augment=True, **base), dataset=data)  # type: ignore[arg-type]
    off = train(TrialConfig(augment=False, **base), dataset=data)  # type: ignore[arg-type]
    assert on.status == off.status == "completed"
    assert on.train_loss is not None and off.train_loss is not None
    assert on.train_loss != off.train_loss  # the batches were really augmented
    assert on.epochs[0]["val_loss"] == off.epochs[0]["val_loss"]  # same init, same evaluation
