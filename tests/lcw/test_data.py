"""Loaders parse the real file formats (tiny files written here), shipped sets load offline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lcw import catalog
from lcw.data import LOADERS, SPLITS, DatasetNotFoundError, load_dataset, read_idx, write_idx


def test_registry_matches_catalog() -> None:
    assert set(LOADERS) == set(catalog.DATASETS) == set(SPLITS)


def _write_mnist(folder: Path, n_train: int = 6000, n_test: int = 40) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    xte = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", xtr)
    write_idx(folder / "train-labels-idx1-ubyte.gz", ytr)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", xte)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", yte)
    return xtr, ytr, xte, yte


def test_idx_header_is_the_standard_one(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    import gzip

    with gzip.open(tmp_path / "x.gz") as f:
        raw = f.read()
    assert raw[:4] == bytes([0, 0, 0x08, 3])  # magic: 0, 0, unsigned byte, 3 dims
    assert raw[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert np.array_equal(read_idx(tmp_path / "x.gz"), arr)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_datasets_load_through_the_real_code(tmp_path: Path, name: str) -> None:
    _, ytr, xte, yte = _write_mnist(tmp_path / name)
    ds = load_dataset(name, root=tmp_path)
    assert ds.x_train.shape == (6000 - 5000, 1, 28, 28)
    assert ds.x_val.shape == (5000, 1, 28, 28)
    assert ds.x_test.shape == (40, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # Test split is the official one, in order, scaled to [0, 1].
    assert torch.equal(ds.y_test, torch.from_numpy(yte.astype(np.int64)))
    assert torch.allclose(ds.x_test[:, 0], torch.from_numpy(xte / 255.0).float())
    # Train + val is a partition of the official training set.
    all_labels = torch.cat([ds.y_train, ds.y_val]).sort().values
    assert torch.equal(all_labels, torch.from_numpy(ytr.astype(np.int64)).sort().values)


def _write_cifar(folder: Path, *, hundred: bool) -> None:
    rng = np.random.default_rng(1)

    def batch(n: int, key: str) -> dict[bytes, object]:
        return {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            key.encode(): rng.integers(0, 100 if hundred else 10, size=n).tolist(),
        }

    if hundred:
        base = folder / "cifar-100-python"
        base.mkdir(parents=True)
        for split, n in (("train", 5100), ("test", 30)):
            (base / split).write_bytes(pickle.dumps(batch(n, "fine_labels")))
    else:
        base = folder / "cifar-10-batches-py"
        base.mkdir(parents=True)
        for i in range(1, 6):
            (base / f"data_batch_{i}").write_bytes(pickle.dumps(batch(1020, "labels")))
        (base / "test_batch").write_bytes(pickle.dumps(batch(30, "labels")))


@pytest.mark.parametrize("name, hundred", [("cifar10", False), ("cifar100", True)])
def test_cifar_pickles_load_through_the_real_code(tmp_path: Path, name: str, hundred: bool) -> None:
    _write_cifar(tmp_path / name, hundred=hundred)
    ds = load_dataset(name, root=tmp_path)
    assert ds.x_train.shape[1:] == (3, 32, 32)
    assert len(ds.y_train) + len(ds.y_val) == 5100
    assert len(ds.y_test) == 30
    assert ds.num_classes == (100 if hundred else 10)
    # Standardized per channel with training statistics.
    means = ds.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-4)


def test_missing_files_name_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar10") in msg and "cifar-10-batches-py/test_batch" in msg


@pytest.mark.parametrize("name, n_train, shape", [
    ("digits", 1797 - 180 - 360, (1, 8, 8)),
    ("mnist5k", 3500, (1, 28, 28)),
    ("synthetic", 1000, (3, 32, 32)),
])  # fmt: skip
def test_shipped_sets_load_offline_with_fixed_splits(
    name: str, n_train: int, shape: tuple[int, ...]
) -> None:
    ds = load_dataset(name)
    assert len(ds.y_train) == n_train and ds.input_shape == shape
    again = load_dataset(name)
    assert torch.equal(ds.y_val, again.y_val)
    assert set(ds.y_test.tolist()) == set(range(10))  # every class in the test split
    assert float(ds.x_train.min()) >= 0.0 or name == "synthetic"
