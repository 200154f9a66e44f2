"""Where the datasets that do not ship come from, and what their published files are.

Checksums are the ones the standard loaders publish for these files: torchvision's MD5s
(``torchvision/datasets/mnist.py`` and ``cifar.py``) and the SHA-256 of torchvision's dataset
prototypes (``torchvision/prototype/datasets/_builtin``) where there is one. Sizes are the
published files' in bytes (none for the extracted CIFAR-100 files: their digests still hold).

``LCW_DATASET_CHECKSUMS`` names a JSON file that replaces catalogue entries (a private mirror
with repacked files, tests): ``{"mnist": {"train-images-idx3-ubyte.gz": {"md5": "...",
"sha256": "...", "size": 123}}}``; an entry replaces the whole published entry of that file
(fields it leaves out are unknown). Torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from lcw import catalog

Kind = Literal["idx", "pickle", "archive"]


@dataclass(frozen=True)
class FileSpec:
    """One file: its path under the dataset's folder and what the published one is."""

    path: str
    kind: Kind
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes; None: not published

    def digests(self) -> dict[str, str]:
        return {a: d for a, d in (("md5", self.md5), ("sha256", self.sha256)) if d}


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: `files` fetched one by one from `url` + name, or, with an
    `archive`, the archive at `url`, whose members are `files`."""

    name: str
    url: str
    files: tuple[FileSpec, ...]
    archive: FileSpec | None = None


def _idx(path: str, md5: str, sha256: str, size: int) -> FileSpec:
    return FileSpec(path, "idx", md5, sha256, size)


def _batch(path: str, md5: str, size: int | None = None) -> FileSpec:
    return FileSpec(path, "pickle", md5, None, size)


_SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "mnist",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            (
                _idx("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
                _idx("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
                _idx("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
                _idx("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
            ),
        ),
        Source(
            "fashion_mnist",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            (
                _idx("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
                _idx("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
                _idx("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
                _idx("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
            ),
        ),
        Source(
            "cifar10",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            (
                _batch("cifar-10-batches-py/data_batch_1", "c99cafc152244af753f735de768cd75f",
                       31035704),
                _batch("cifar-10-batches-py/data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec",
                       31035320),
                _batch("cifar-10-batches-py/data_batch_3", "54ebc095f3ab1f0389bbae665268c751",
                       31035999),
                _batch("cifar-10-batches-py/data_batch_4", "634d18415352ddfa80567beed471001a",
                       31035696),
                _batch("cifar-10-batches-py/data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb",
                       31035623),
                _batch("cifar-10-batches-py/test_batch", "40351d587109b95175f43aff81a1287e",
                       31035526),
            ),
            FileSpec("cifar-10-python.tar.gz", "archive", "c58f30108f718f92721af3b95e74349a",
                     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                     170498071),
        ),
        Source(
            "cifar100",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            (
                _batch("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d"),
                _batch("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
            ),
            FileSpec("cifar-100-python.tar.gz", "archive", "eb9058c3a382ffc7106e4002c42a8d85",
                     "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                     169001437),
        ),
    )
}  # fmt: skip


def downloadable() -> list[str]:
    """The datasets whose files are fetched (catalogue order)."""
    return [n for n in catalog.DATASETS if n in _SOURCES]


def _overrides() -> dict[str, dict[str, dict[str, Any]]]:
    path = os.environ.get("LCW_DATASET_CHECKSUMS")
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"LCW_DATASET_CHECKSUMS: cannot read {path} as JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"LCW_DATASET_CHECKSUMS: {path} must hold an object of datasets")
    for name, files in raw.items():
        if name not in _SOURCES:
            raise ValueError(
                f"LCW_DATASET_CHECKSUMS: '{name}' is not one of {catalog.choices(_SOURCES)}"
            )
        archive = _SOURCES[name].archive
        known = {f.path for f in _SOURCES[name].files} | ({archive.path} if archive else set())
        for key, entry in (files or {}).items():
            if key not in known:
                raise ValueError(
                    f"LCW_DATASET_CHECKSUMS: {name}: '{key}' is not one of its files "
                    f"({catalog.choices(sorted(known))})"
                )
            bad = set(entry) - {"md5", "sha256", "size"}
            if bad:
                raise ValueError(
                    f"LCW_DATASET_CHECKSUMS: {name}/{key}: unknown keys {sorted(bad)} "
                    "(allowed: md5, sha256, size)"
                )
    return raw


def source(name: str) -> Source:
    """`name`'s source with LCW_DATASET_CHECKSUMS applied; ValueError for a shipped or unknown
    dataset (naming the ones that are downloaded)."""
    if name not in _SOURCES:
        shipped = name in catalog.DATASETS
        why = "ships with lcw-sweep, nothing to fetch" if shipped else "is not a dataset"
        raise ValueError(
            f"dataset '{name}' {why}; datasets with files: {catalog.choices(_SOURCES)}"
        )
    src = _SOURCES[name]
    extra = _overrides().get(name) or {}

    def apply(spec: FileSpec) -> FileSpec:
        entry = extra.get(spec.path)
        if entry is None:
            return spec
        return replace(spec, md5=entry.get("md5"), sha256=entry.get("sha256"),
                       size=entry.get("size"))  # fmt: skip

    archive = apply(src.archive) if src.archive is not None else None
    return replace(src, files=tuple(apply(f) for f in src.files), archive=archive)


__all__ = ["FileSpec", "Kind", "Source", "downloadable", "source"]
