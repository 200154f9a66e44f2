"""A real local HTTP mirror of the downloadable datasets, serving small files in their real
formats (gzipped IDX for MNIST and Fashion-MNIST, the CIFAR python tar.gz) that the tests write,
and the LCW_DATASET_CHECKSUMS file that names their digests in place of the published ones.

The server honours ``Range: bytes=N-`` (206 with Content-Range), and can break off a transfer:
``drop_first[path] = n`` sends the full Content-Length, then only n bytes, then closes.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from lcw.dataset_files import compute_digests, write_idx
from lcw.dataset_sources import source

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def write_mnist(folder: Path, *, n_train: int = 5200, n_test: int = 50, seed: int = 0) -> None:
    """A small MNIST-format set (random pixels) as the four gzipped IDX files in `folder`."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, np.uint8))


def cifar_tarball(path: Path, *, hundred: bool = False, per_batch: int = 1020) -> None:
    """A small CIFAR python archive (cifar-10-python.tar.gz layout, or CIFAR-100's)."""
    rng = np.random.default_rng(1)
    key = b"fine_labels" if hundred else b"labels"

    def batch(n: int) -> bytes:
        labels = rng.integers(0, 100 if hundred else 10, size=n).tolist()
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return pickle.dumps({b"data": data, key: labels}, protocol=2)

    name = "cifar100" if hundred else "cifar10"
    members = {spec.path: batch(per_batch * (5 if hundred else 1)) for spec in source(name).files}
    last = next(p for p in members if p.endswith("test") or p.endswith("test_batch"))
    members[last] = batch(30)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:  # random pixels do not compress
        for member, raw in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def checksums_for(files: dict[str, dict[str, Path]], path: Path) -> Path:
    """Write an LCW_DATASET_CHECKSUMS file: dataset -> catalogue path -> the file's digests."""
    entries: dict[str, dict[str, Any]] = {}
    for name, by_path in files.items():
        entries[name] = {
            key: {**compute_digests(f), "size": f.stat().st_size} for key, f in by_path.items()
        }
    path.write_text(json.dumps(entries))
    return path


@dataclass
class Mirror:
    """What the server serves (URL path -> bytes) and what it was asked (path, Range header)."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_first: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def add(self, url_path: str, local: Path) -> None:
        self.files[url_path] = local.read_bytes()


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            mirror.requests.append((self.path, wanted))
            body = mirror.files.get(self.path)
            if body is None:
                self.send_error(404, "not on this mirror")
                return
            start = 0
            if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[6:-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            rest = body[start:]
            self.send_header("Content-Length", str(len(rest)))
            self.end_headers()
            cut = mirror.drop_first.pop(self.path, None) if start == 0 else None
            if cut is not None:  # break off mid-transfer: the client sees a short body
                self.wfile.write(rest[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(rest)

    return Handler


@contextmanager
def serving(mirror: Mirror) -> Iterator[Mirror]:
    """Serve `mirror` on a free local port (a real HTTP server in a thread)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(mirror))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mirror.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Published:
    """Small files in the real formats and the checksums file naming their digests."""

    checksums: Path
    originals: dict[str, dict[str, Path]]  # dataset -> catalogue path -> the file
    mirror: Mirror = field(default_factory=Mirror)

    def on_mirror(self, checksums: Path) -> Published:
        """A copy with its own checksums file (a test may change it) and a fresh mirror that
        holds what a mirror serves (the IDX files, the archives)."""
        checksums.write_text(self.checksums.read_text())
        copy = Published(checksums, self.originals)
        for name, files in self.originals.items():
            for key, local in files.items():
                if "/" not in key:
                    copy.mirror.add(f"/{name}/{key}", local)
        return copy


def publish(tmp: Path, names: tuple[str, ...] = ("mnist", "cifar10")) -> Published:
    """Write `names`' small files under `tmp` and the checksums file that names their digests."""
    originals: dict[str, dict[str, Path]] = {}
    for name in names:
        folder = tmp / "src" / name
        if name in ("mnist", "fashion_mnist"):
            write_mnist(folder, seed=len(name))
            originals[name] = {f: folder / f for f in IDX_FILES}
        else:
            archive_spec = source(name).archive
            assert archive_spec is not None
            archive = folder / archive_spec.path
            cifar_tarball(archive, hundred=name == "cifar100")
            extracted = folder / "x"
            with tarfile.open(archive) as tar:
                tar.extractall(extracted, filter="data")
            originals[name] = {archive_spec.path: archive} | {
                s.path: extracted / s.path for s in source(name).files
            }
    return Published(checksums_for(originals, tmp / "checksums.json"), originals)
