"""Download a dataset's published files into the data directory, verified, resumable.

Each file is fetched into ``<file>.part`` and moved into place only once its size and every
known digest (``lcw.dataset_sources``) match; a mismatch deletes the ``.part`` and raises
``DatasetCorruptError`` naming the file, the expected and the found digest. A transfer that
breaks off keeps its ``.part``; the next attempt (``retries`` within one call, or a later call)
asks for the rest with an HTTP ``Range`` request and appends it (a server that ignores the
range, answering 200, is read from the start). CIFAR's archive is extracted into a temporary
folder next to the dataset's, each member verified, then moved into place; the archive is
deleted.

Where from: the standard locations, or ``$LCW_DATASET_MIRROR`` (or `mirror`): a base URL
laid out as ``<mirror>/<dataset>/<file name>``, e.g. ``<mirror>/mnist/train-images-idx3-ubyte.gz``
and ``<mirror>/cifar10/cifar-10-python.tar.gz``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lcw.dataset_files import (
    DatasetCorruptError,
    DatasetFetchError,
    DatasetStatus,
    compute_digests,
    data_dir,
    folder_status,
    mismatch,
    remember,
)
from lcw.dataset_sources import FileSpec, Source, source

# (file name, bytes so far, total bytes or None when the server does not say)
Progress = Callable[[str, int, int | None], None]

_CHUNK = 1 << 16
DEFAULT_RETRIES = 3  # broken transfers resumed within one call before giving up
DEFAULT_TIMEOUT_S = 60.0  # per connection and per read


def _quiet(_name: str, _done: int, _total: int | None) -> None:
    return None


def url_of(src: Source, spec: FileSpec, mirror: str | None) -> str:
    """Where `spec` (a file, or the archive) is downloaded from."""
    base = mirror if mirror is not None else os.environ.get("LCW_DATASET_MIRROR")
    if base:
        return f"{base.rstrip('/')}/{src.name}/{spec.path.rsplit('/', 1)[-1]}"
    if src.archive is not None:
        return src.url
    return src.url.rstrip("/") + "/" + spec.path


def _content_start(resp: http.client.HTTPResponse) -> int:
    """The first byte a 206 answer carries (its Content-Range: 'bytes START-END/TOTAL')."""
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _transfer(url: str, part: Path, *, name: str, progress: Progress, timeout: float) -> None:
    """One attempt: resume `part` from its length (Range) or start it over; raises OSError or
    http.client errors when the transfer breaks off before the announced length."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we hold: the .part is whole
            return
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        if have and resp.status == 206 and _content_start(resp) == have:
            mode = "ab"
        else:  # a fresh start, or a server that ignored the range: from byte 0
            mode, have = "wb", 0
        total = have + int(length) if length is not None else None
        done = have
        progress(name, done, total)
        with open(part, mode) as out:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress(name, done, total)
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)


def download(
    url: str,
    dest: Path,
    spec: FileSpec,
    *,
    progress: Progress = _quiet,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Fetch `url` to `dest` through ``dest.part`` (resumed), verified against `spec`."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(retries + 1):
        try:
            _transfer(url, part, name=spec.path, progress=progress, timeout=timeout)
            last = None
            break
        except urllib.error.HTTPError as exc:
            raise DatasetFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            last = exc
    if last is not None:
        held = part.stat().st_size if part.exists() else 0
        raise DatasetFetchError(
            f"{url}: the download broke off {retries + 1} times ({type(last).__name__}: "
            f"{last}); {part} keeps the {held} bytes received: fetch again to resume"
        )
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        part.unlink()
        raise DatasetCorruptError(
            f"{dest.name} from {url}: size mismatch: expected {spec.size} bytes, found {size}; "
            "the file was not kept"
        )
    digests = compute_digests(part)
    wrong = mismatch(spec, digests)
    if wrong:
        part.unlink()
        raise DatasetCorruptError(f"{dest.name} from {url}: {wrong}; the file was not kept")
    part.replace(dest)
    remember(dest, digests)


def _extract(archive: Path, folder: Path, src: Source) -> None:
    """Extract `archive` next to `folder`, verify its members, move them into place."""
    tmp = folder.with_name(f".{folder.name}.extract-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        for spec in src.files:
            member = tmp / spec.path
            if not member.is_file():
                raise DatasetCorruptError(f"{archive}: has no member {spec.path}")
            digests = compute_digests(member)
            wrong = mismatch(spec, digests)
            if wrong:
                raise DatasetCorruptError(f"{spec.path} in {archive}: {wrong}; not kept")
        for top in {spec.path.split("/", 1)[0] for spec in src.files}:
            target = folder / top
            shutil.rmtree(target, ignore_errors=True)
            (tmp / top).replace(target)
        for spec in src.files:
            remember(folder / spec.path, compute_digests(folder / spec.path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    progress: Progress = _quiet,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> DatasetStatus:
    """Fetch `name`'s files into ``<root>/<name>/`` (default root: ``data_dir()``) unless they
    are there and verified; returns the dataset's verified state."""
    src = source(name)  # ValueError for a shipped or unknown name
    folder = data_dir(root) / name
    before = folder_status(name, folder, level="full")
    if before.state == "present":
        return before
    folder.mkdir(parents=True, exist_ok=True)
    if src.archive is None:
        ok = {f.path for f in before.files if f.state == "ok"}
        for spec in src.files:
            if spec.path not in ok:
                download(url_of(src, spec, mirror), folder / spec.path, spec,
                         progress=progress, retries=retries, timeout=timeout)  # fmt: skip
    else:
        archive = folder / src.archive.path
        download(url_of(src, src.archive, mirror), archive, src.archive,
                 progress=progress, retries=retries, timeout=timeout)  # fmt: skip
        try:
            _extract(archive, folder, src)
        finally:
            archive.unlink(missing_ok=True)
    after = folder_status(name, folder, level="full")
    error = after.error()
    if error is not None:
        raise error
    return after


__all__ = ["DEFAULT_RETRIES", "Progress", "download", "fetch_dataset", "url_of"]
