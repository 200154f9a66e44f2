"""Downloads from a real local HTTP mirror of small files in the real formats (gzipped IDX, the
CIFAR python tar.gz), their digests substituted through LCW_DATASET_CHECKSUMS: verified, with
progress, resumed after a broken transfer, refused on a checksum mismatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from dataset_mirror import IDX_FILES, Published, publish, serving

from lcw.data import load_dataset
from lcw.dataset_files import DatasetCorruptError, DatasetFetchError, inspect
from lcw.fetch import fetch_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Published:
    return publish(tmp_path_factory.mktemp("published"))


@pytest.fixture
def published(
    files: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Published]:
    """The files on a fresh mirror, named by a checksums file this test may change."""
    pub = files.on_mirror(tmp_path / "checksums.json")
    with serving(pub.mirror) as mirror:
        monkeypatch.setenv("LCW_DATASET_CHECKSUMS", str(pub.checksums))
        monkeypatch.setenv("LCW_DATASET_MIRROR", mirror.url)
        monkeypatch.setenv("LCW_CACHE_DIR", str(tmp_path / "cache"))
        yield pub


def test_fetch_writes_verified_files_with_progress_and_they_load(
    published: Published, tmp_path: Path
) -> None:
    seen: dict[str, list[tuple[int, int | None]]] = {}
    status = fetch_dataset(
        "mnist",
        root=tmp_path / "data",
        progress=lambda f, d, t: seen.setdefault(f, []).append((d, t)),
    )
    assert status.state == "present"
    assert all(f.state == "ok" and f.verified for f in status.files)
    folder = tmp_path / "data" / "mnist"
    for name in IDX_FILES:
        assert (folder / name).read_bytes() == published.originals["mnist"][name].read_bytes()
        size = (folder / name).stat().st_size
        assert seen[name][-1] == (size, size)  # progress reached the whole file
        assert seen[name][0][0] == 0
    assert not list(folder.glob("*.part"))
    ds = load_dataset("mnist", root=tmp_path / "data")
    assert len(ds.y_test) == 50 and len(ds.y_train) + len(ds.y_val) == 5200
    # A second fetch finds the files verified and downloads nothing.
    asked = len(published.mirror.requests)
    fetch_dataset("mnist", root=tmp_path / "data")
    assert len(published.mirror.requests) == asked


def test_a_broken_transfer_is_resumed_with_a_range_request(
    published: Published, tmp_path: Path
) -> None:
    name = "train-images-idx3-ubyte.gz"
    whole = published.mirror.files[f"/mnist/{name}"]
    half = len(whole) // 2
    published.mirror.drop_first[f"/mnist/{name}"] = half
    fetch_dataset("mnist", root=tmp_path / "data")
    asked = [r for r in published.mirror.requests if r[0] == f"/mnist/{name}"]
    assert asked == [(f"/mnist/{name}", None), (f"/mnist/{name}", f"bytes={half}-")]
    assert (tmp_path / "data" / "mnist" / name).read_bytes() == whole


def test_an_interrupted_fetch_keeps_its_part_and_the_next_fetch_completes_it(
    published: Published, tmp_path: Path
) -> None:
    name = "t10k-images-idx3-ubyte.gz"
    whole = published.mirror.files[f"/mnist/{name}"]
    published.mirror.drop_first[f"/mnist/{name}"] = 1000
    with pytest.raises(DatasetFetchError) as err:
        fetch_dataset("mnist", root=tmp_path / "data", retries=0)
    part = tmp_path / "data" / "mnist" / f"{name}.part"
    assert "fetch again to resume" in str(err.value) and str(part) in str(err.value)
    assert part.read_bytes() == whole[:1000]
    assert not (tmp_path / "data" / "mnist" / name).exists()  # never moved into place
    fetch_dataset("mnist", root=tmp_path / "data")
    assert (f"/mnist/{name}", "bytes=1000-") in published.mirror.requests
    assert (tmp_path / "data" / "mnist" / name).read_bytes() == whole
    assert not part.exists()


def test_a_checksum_mismatch_is_refused_and_the_file_not_kept(
    published: Published, tmp_path: Path
) -> None:
    entries = json.loads(published.checksums.read_text())
    name = "train-labels-idx1-ubyte.gz"
    found = entries["mnist"][name]["md5"]
    entries["mnist"][name]["md5"] = "0" * 32
    published.checksums.write_text(json.dumps(entries))
    with pytest.raises(DatasetCorruptError) as err:
        fetch_dataset("mnist", root=tmp_path / "data")
    msg = str(err.value)
    assert name in msg and f"expected md5 {'0' * 32}, found {found}" in msg
    assert "not kept" in msg
    folder = tmp_path / "data" / "mnist"
    assert not (folder / name).exists() and not (folder / f"{name}.part").exists()


def test_cifar_archive_is_verified_extracted_and_removed(
    published: Published, tmp_path: Path
) -> None:
    status = fetch_dataset("cifar10", root=tmp_path / "data")
    assert status.state == "present" and len(status.files) == 6
    folder = tmp_path / "data" / "cifar10"
    assert not (folder / "cifar-10-python.tar.gz").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-10-batches-py"]
    ds = load_dataset("cifar10", root=tmp_path / "data")
    assert ds.x_train.shape[1:] == (3, 32, 32) and len(ds.y_test) == 30
    assert torch.isfinite(ds.x_train).all()


def test_a_dataset_the_mirror_lacks_is_a_clear_error(published: Published, tmp_path: Path) -> None:
    with pytest.raises(DatasetFetchError) as err:
        fetch_dataset("fashion_mnist", root=tmp_path / "data")
    assert "HTTP 404" in str(err.value)
    assert f"{published.mirror.url}/fashion_mnist/train-images-idx3-ubyte.gz" in str(err.value)
    assert inspect("fashion_mnist", tmp_path / "data", level="cheap").state == "missing"


def test_shipped_and_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'digits' ships with lcw-sweep, nothing to fetch"):
        fetch_dataset("digits", root=tmp_path)
    with pytest.raises(ValueError, match="'imagenet' is not a dataset"):
        fetch_dataset("imagenet", root=tmp_path)
