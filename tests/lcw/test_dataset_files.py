"""Integrity of the dataset files: a truncated IDX or CIFAR file is a DatasetCorruptError that
names it (never a crash inside parsing), a damaged copy of a published file is refused at load,
digests are remembered by size and mtime, and the catalogue holds the published checksums."""

from __future__ import annotations

import json
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from dataset_mirror import IDX_FILES, cifar_tarball, write_mnist

from lcw import catalog, dataset_files
from lcw.data import load_dataset
from lcw.dataset_files import DatasetCorruptError, DatasetNotFoundError, compute_digests, inspect
from lcw.dataset_sources import downloadable, source


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LCW_DATASET_CHECKSUMS", raising=False)


def _truncate(path: Path, keep: float = 0.6) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def test_the_catalogue_holds_the_published_digests_of_every_file_loading_reads() -> None:
    assert downloadable() == [n for n, d in catalog.DATASETS.items() if not d.shipped]
    for name in downloadable():
        src = source(name)
        paths = {f.path for f in src.files}
        assert set(catalog.DATASETS[name].files) <= paths, name
        for spec in (*src.files, *([src.archive] if src.archive else [])):
            assert re.fullmatch(r"[0-9a-f]{32}", spec.md5 or ""), spec
            assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256), spec
    assert source("mnist").files[0].size == 9912422  # train-images-idx3-ubyte.gz, published


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_a_truncated_idx_file_is_a_corrupt_error_naming_it(tmp_path: Path, name: str) -> None:
    write_mnist(tmp_path / name)
    assert inspect(name, tmp_path, level="cheap").state == "present"
    bad = tmp_path / name / "train-images-idx3-ubyte.gz"
    _truncate(bad)
    status = inspect(name, tmp_path, level="cheap")
    assert status.state == "corrupt"
    assert [f.path for f in status.files if f.state == "corrupt"] == [bad.name]
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset(name, root=tmp_path)
    assert str(bad) in str(err.value) and "truncated or damaged" in str(err.value)
    assert f"lcw-sweep data fetch {name}" in str(err.value)


def test_an_idx_header_that_disagrees_with_the_data_is_corrupt(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    dataset_files.write_idx(labels, np.zeros(49, dtype=np.uint8))  # whole, but not 50 labels
    write_idx_with_wrong_header = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    import gzip

    with gzip.open(write_idx_with_wrong_header, "wb") as f:  # header: 50 images; data: 10
        f.write(bytes([0, 0, 8, 3]) + (50).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        f.write(bytes(10 * 28 * 28))
    with pytest.raises(DatasetCorruptError, match=r"t10k-images-idx3-ubyte\.gz: truncated"):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_a_truncated_cifar_file_is_a_corrupt_error_naming_it(tmp_path: Path, name: str) -> None:
    archive = tmp_path / f"{name}.tar.gz"
    cifar_tarball(archive, hundred=name == "cifar100")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / name, filter="data")
    assert len(load_dataset(name, root=tmp_path).y_test) == 30
    bad = tmp_path / name / source(name).files[0].path
    _truncate(bad, keep=0.5)
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset(name, root=tmp_path)
    assert str(bad) in str(err.value)


def test_a_pickle_that_ends_in_stop_but_lacks_the_data_is_still_named(tmp_path: Path) -> None:
    archive = tmp_path / "c.tar.gz"
    cifar_tarball(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cifar10", filter="data")
    bad = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"labels": [1, 2]}, protocol=2))  # structure fine, no data
    with pytest.raises(DatasetCorruptError, match=f"{re.escape(str(bad))}: not a whole CIFAR"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_files_are_not_found_and_say_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "fashion_mnist") in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "lcw-sweep data fetch fashion_mnist" in msg
    status = inspect("fashion_mnist", tmp_path, level="cheap")
    assert status.state == "missing" and status.size == 0
    assert inspect("digits", tmp_path, level="cheap").state == "shipped"


def _override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: object) -> None:
    path = tmp_path / "checksums.json"
    path.write_text(json.dumps(entries))
    monkeypatch.setenv("LCW_DATASET_CHECKSUMS", str(path))


def test_a_damaged_copy_of_the_published_size_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    found = compute_digests(labels)["md5"]
    # The "published" file has this file's size but another digest: a same-size damaged copy.
    _override(tmp_path, monkeypatch, {"mnist": {labels.name: {"md5": "f" * 32,
              "size": labels.stat().st_size}}})  # fmt: skip
    assert inspect("mnist", tmp_path, level="cheap").state == "present"  # structure is whole
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("mnist", root=tmp_path)
    assert f"expected md5 {'f' * 32}, found {found}" in str(err.value)
    assert str(labels) in str(err.value)


def test_a_file_of_another_size_is_used_at_load_and_reported_by_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "mnist")  # not the published files: other sizes, other digests
    assert inspect("mnist", tmp_path, level="load").state == "present"
    full = inspect("mnist", tmp_path, level="full")
    assert full.state == "corrupt"
    assert {f.path for f in full.files if f.state == "corrupt"} == set(IDX_FILES)
    assert "expected md5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in full.files[0].detail


def test_digests_are_computed_once_per_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "mnist")
    calls: list[Path] = []
    real = dataset_files.compute_digests

    def counting(path: Path) -> dict[str, str]:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(dataset_files, "compute_digests", counting)
    inspect("mnist", tmp_path, level="full")
    assert len(calls) == 4
    inspect("mnist", tmp_path, level="full")
    assert len(calls) == 4  # remembered
    cache = json.loads((tmp_path / "cache" / "digests.json").read_text())
    entry = cache[str((tmp_path / "mnist" / IDX_FILES[0]).resolve())]
    assert entry["size"] == (tmp_path / "mnist" / IDX_FILES[0]).stat().st_size
    touched = tmp_path / "mnist" / IDX_FILES[1]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    inspect("mnist", tmp_path, level="full")
    assert calls[4:] == [touched]  # only the file whose mtime moved


@pytest.mark.parametrize("entries, message", [
    ({"imagenet": {}}, "'imagenet' is not one of"),
    ({"mnist": {"train.gz": {"md5": "x"}}}, "mnist: 'train.gz' is not one of its files"),
    ({"mnist": {"train-labels-idx1-ubyte.gz": {"crc": "x"}}}, r"unknown keys \['crc'\]"),
])  # fmt: skip
def test_bad_checksum_overrides_say_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: object, message: str
) -> None:
    _override(tmp_path, monkeypatch, entries)
    with pytest.raises(ValueError, match=message):
        source("mnist")
