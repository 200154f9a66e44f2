"""The checks that tell a dataset's complete files from missing, truncated or damaged ones;
the IDX format; digests computed once per file version. Torch-free. What the published files
are (checksums, sizes) is ``lcw.dataset_sources``; downloading them is ``lcw.fetch``.

Three levels of checking (``inspect``):

* ``cheap`` (``lcw-sweep data list``, ``GET /api/datasets``): every file exists and its
  structure is whole: an IDX file's header dims agree with its length (for a gzipped one, with
  the uncompressed length the gzip trailer records), a pickle starts with a pickle opcode and
  ends with STOP.
* ``load`` (every ``load_dataset``, the dispatcher's check): ``cheap``, and a file of the
  published size must have the published digest (else it is a damaged copy). The digest is
  computed once per file version and remembered by path, size and mtime
  (``$LCW_CACHE_DIR/digests.json``), so only the first load pays for it. A file of another
  size is not the published one (a subset, a file a test wrote): it is used as it is, its
  structure checked.
* ``full`` (``lcw-sweep data verify``, and every file ``lcw-sweep data fetch`` writes): every
  digest that is known must match.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lcw import catalog
from lcw.dataset_sources import FileSpec, downloadable, source

Level = Literal["cheap", "load", "full"]
_CHUNK = 1 << 20


class DatasetError(Exception):
    """A dataset's files cannot be used: missing, damaged, or not downloadable."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset's files are missing from the data directory."""


class DatasetCorruptError(DatasetError, ValueError):
    """A dataset file is truncated, damaged, or not the file its checksum names."""


class DatasetFetchError(DatasetError, OSError):
    """A download failed (the server, the network); what was received is kept to resume."""


# ---------------------------------------------------------------- where files live


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding downloadable datasets: explicit, else $LCW_DATA_DIR, else ./data."""
    return Path(explicit or os.environ.get("LCW_DATA_DIR") or "data")


def cache_dir() -> Path:
    """Where prepared data and remembered digests go: $LCW_CACHE_DIR, else ~/.cache/lcw-sweep."""
    return Path(os.environ.get("LCW_CACHE_DIR") or Path.home() / ".cache" / "lcw-sweep")


# ---------------------------------------------------------------- digests, remembered


def compute_digests(path: Path) -> dict[str, str]:
    """MD5 and SHA-256 of a file, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _digest_cache() -> Path:
    return cache_dir() / "digests.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_digest_cache().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(path: Path, digests: dict[str, str]) -> None:
    """Remember `path`'s digests for its current size and mtime (best effort)."""
    st = path.stat()
    cache = _read_cache()
    cache[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **digests}
    target = _digest_cache()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"digests.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(target)
    except OSError:
        pass  # a read-only cache only costs the checksum next time


def file_digests(path: Path) -> dict[str, str]:
    """`path`'s digests: remembered when its size and mtime are unchanged, else computed."""
    st = path.stat()
    entry = _read_cache().get(str(path.resolve()))
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return {k: entry[k] for k in ("md5", "sha256")}
    digests = compute_digests(path)
    remember(path, digests)
    return digests


def mismatch(spec: FileSpec, found: dict[str, str]) -> str | None:
    """'expected md5 X, found Y' for the first published digest that differs; None: all match."""
    for algo, expected in spec.digests().items():
        if found[algo] != expected:
            return f"checksum mismatch: expected {algo} {expected}, found {found[algo]}"
    return None


# ---------------------------------------------------------------- structure (cheap)


def idx_dims(head: bytes, path: Path) -> tuple[int, ...]:
    """The dims an IDX header declares (magic 0x0000, type 0x08 unsigned byte, ndim)."""
    if len(head) < 4:
        raise DatasetCorruptError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or dtype_code != 0x08 or len(head) < 4 + 4 * ndim:
        raise DatasetCorruptError(f"{path}: not an unsigned-byte IDX file (magic {head[:4].hex()})")
    return tuple(struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim]))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 dtype ndim, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DatasetCorruptError(f"{path}: truncated or damaged ({exc})") from None
    dims = idx_dims(raw[:64], path)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims))
    if data.size != int(np.prod(dims)):
        raise DatasetCorruptError(f"{path}: header says {dims}, file holds {data.size} bytes")
    return data.reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the format ``read_idx`` reads)."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def _check_idx(path: Path, size: int) -> None:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic != b"\x1f\x8b":  # a plain IDX file: its length follows from its header
        with open(path, "rb") as f:
            dims = idx_dims(f.read(64), path)
        want = 4 + 4 * len(dims) + int(np.prod(dims))
        if size != want:
            raise DatasetCorruptError(f"{path}: header says {dims} ({want} bytes), file has {size}")
        return
    try:
        with gzip.open(path, "rb") as g:
            dims = idx_dims(g.read(64), path)
    except (EOFError, OSError, zlib.error) as exc:
        raise DatasetCorruptError(f"{path}: truncated or damaged gzip ({exc})") from None
    want = 4 + 4 * len(dims) + int(np.prod(dims))
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")  # uncompressed length mod 2^32 (RFC 1952)
    if size < 22 or isize != want % (1 << 32):
        raise DatasetCorruptError(
            f"{path}: truncated or damaged: its IDX header says {dims} ({want} bytes "
            f"uncompressed) but its gzip trailer records {isize}"
        )


def _check_pickle(path: Path, size: int) -> None:
    with open(path, "rb") as f:
        first = f.read(2)
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
    starts = first[:1] in (b"(", b"}", b"]") or (first[:1] == b"\x80" and 2 <= first[1] <= 5)
    if not starts:
        raise DatasetCorruptError(f"{path}: not a pickle (starts with {first.hex()})")
    if last != b".":
        raise DatasetCorruptError(
            f"{path}: truncated or damaged: a pickle ends with STOP ('.'), this one with "
            f"{last.hex()} after {size} bytes"
        )


def check_structure(path: Path, spec: FileSpec) -> None:
    """DatasetCorruptError (naming the file) unless `path` is whole for its kind."""
    size = path.stat().st_size
    if size < 2:
        raise DatasetCorruptError(f"{path}: empty or truncated ({size} bytes)")
    if spec.kind == "idx":
        _check_idx(path, size)
    elif spec.kind == "pickle":
        _check_pickle(path, size)


# ---------------------------------------------------------------- a dataset's state


@dataclass(frozen=True)
class FileState:
    path: str  # under the dataset's folder
    state: Literal["ok", "missing", "corrupt"]
    size: int | None  # bytes on disk
    detail: str = ""  # what is wrong
    verified: bool = False  # its digests were compared with the published ones and match


@dataclass(frozen=True)
class DatasetStatus:
    """What one dataset looks like where it is looked for."""

    name: str
    shipped: bool
    folder: str | None  # None: shipped, no folder
    state: Literal["shipped", "present", "missing", "corrupt"]
    files: tuple[FileState, ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def error(self) -> DatasetError | None:
        """The error loading it would raise (None: usable)."""
        if self.state == "missing":
            missing = [f.path for f in self.files if f.state == "missing"]
            return DatasetNotFoundError(
                f"dataset '{self.name}': missing {', '.join(missing)} under {self.folder} "
                f"(expected files: {', '.join(f.path for f in self.files)}; fetch them with "
                f"`lcw-sweep data fetch {self.name}`, or set LCW_DATA_DIR to where they are)"
            )
        if self.state == "corrupt":
            bad = next(f for f in self.files if f.state == "corrupt")
            return DatasetCorruptError(
                f"dataset '{self.name}': {bad.detail}; the file is not used (fetch it again "
                f"with `lcw-sweep data fetch {self.name}`)"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shipped": self.shipped,
            "folder": self.folder,
            "state": self.state,
            "size": self.size,
            "files": [vars(f) for f in self.files],
        }


def check_file(path: Path, spec: FileSpec, level: Level) -> FileState:
    """One file's state at `level` (see the module docstring)."""
    if not path.is_file():
        return FileState(spec.path, "missing", None)
    size = path.stat().st_size
    try:
        check_structure(path, spec)
    except DatasetCorruptError as exc:
        return FileState(spec.path, "corrupt", size, str(exc))
    published = spec.size is not None and size == spec.size
    if spec.digests() and (level == "full" or (level == "load" and published)):
        wrong = mismatch(spec, file_digests(path))
        if wrong:
            return FileState(spec.path, "corrupt", size, f"{path}: {wrong}")
        return FileState(spec.path, "ok", size, verified=True)
    return FileState(spec.path, "ok", size)


def folder_status(name: str, folder: Path, *, level: Level) -> DatasetStatus:
    """The state of `name`'s files in `folder` (a dataset with files)."""
    files = tuple(check_file(folder / spec.path, spec, level) for spec in source(name).files)
    states = {f.state for f in files}
    state: Literal["present", "missing", "corrupt"] = (
        "corrupt" if "corrupt" in states else "missing" if "missing" in states else "present"
    )
    return DatasetStatus(name, False, str(folder), state, files)


def inspect(
    name: str, root: str | os.PathLike[str] | None = None, *, level: Level
) -> DatasetStatus:
    """`name`'s state under `root` (default: ``data_dir()``); a shipped set is 'shipped'."""
    if name not in catalog.DATASETS:
        raise ValueError(f"dataset: '{name}' is not one of {catalog.choices(catalog.DATASETS)}")
    if name not in downloadable():
        return DatasetStatus(name, True, None, "shipped")
    return folder_status(name, data_dir(root) / name, level=level)


def require(name: str, folder: Path) -> None:
    """Raise DatasetNotFoundError or DatasetCorruptError unless `name`'s files in `folder` can be
    loaded (level ``load``)."""
    error = folder_status(name, folder, level="load").error()
    if error is not None:
        raise error


def file_versions(name: str, folder: Path) -> tuple[tuple[int, int], ...]:
    """(size, mtime_ns) of each of `name`'s files in `folder`: what a cache of it is keyed by."""
    stats = [(folder / spec.path).stat() for spec in source(name).files]
    return tuple((st.st_size, st.st_mtime_ns) for st in stats)


def statuses(root: str | os.PathLike[str] | None = None, *, level: Level = "cheap",
             names: Iterable[str] | None = None) -> list[DatasetStatus]:  # fmt: skip
    """Every dataset's (or `names`') state, in catalogue order."""
    return [inspect(n, root, level=level) for n in (names or catalog.DATASETS)]


__all__ = [
    "DatasetCorruptError",
    "DatasetError",
    "DatasetFetchError",
    "DatasetNotFoundError",
    "DatasetStatus",
    "FileState",
    "cache_dir",
    "check_file",
    "check_structure",
    "compute_digests",
    "data_dir",
    "file_digests",
    "file_versions",
    "folder_status",
    "inspect",
    "mismatch",
    "read_idx",
    "remember",
    "require",
    "statuses",
    "write_idx",
]
