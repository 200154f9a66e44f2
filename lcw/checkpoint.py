"""Checkpoints: a trial's (or a pack's) full training state, saved at epoch ends, resumed later.

``lcw.train(config, checkpoint=CheckpointPlan(location))`` (and ``lcw.train_pack``) save the
state every ``every`` epochs, or with ``every`` None (automatic) once at least ``interval_s``
seconds (``AUTO_INTERVAL_S``, 5 minutes) of training have passed since the start or the last
save; a run that finishes sooner never writes one, and none is written after the last epoch or
once every member has stopped. A later call with the same plan resumes from the saved epoch E:
the epoch callback sees only epochs after E, the result's ``epochs`` holds them all, and on CPU
the result equals an uninterrupted run's bit for bit. The plan is not part of the trial's
config: checkpointing changes neither a trial's numbers nor its pack key.

What is saved (``lcw.resume`` builds and restores it): the model's state dict (batch-norm
running statistics and weight-norm parametrizations included), the optimizer's state (torch's,
or a pack's ``PackedSGD`` / ``PackedAdam`` with its per-member learning rates and active mask),
the schedule position (the global step), every generator the loop draws from (each member's
data order and augmentation, torch's global CPU generator, and CUDA's on a GPU), the per-member
bookkeeping (running / stopped / diverged, a diverged member's frozen weights and last LR, the
results so far with their epochs and seconds), the epoch, and the members' configs.

Where: ``location`` is a directory, a local path or any URL fsspec knows (``file://``,
``s3://bucket/prefix``, ``memory://`` in tests). A checkpoint is one file named after its
members (``CheckpointPlan.members``: the runner names them after the study and trial ids; by
default each member's config digest) joined by ``+``. Writes are atomic: the bytes go to a
temporary name first, then a rename (``os.replace`` locally; fsspec's ``mv`` elsewhere, which
object stores implement as a whole-object copy), so a half-written file is never read and the
previous checkpoint stays usable until the new one is complete. A file that cannot be loaded,
or that holds other configs or another member set, is not resumed: the run starts over and
says why in each result's ``resume_note``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTO_INTERVAL_S = 300.0  # automatic checkpoints: at most one per this many seconds of training
INTERVAL_ENV = "LCW_CHECKPOINT_INTERVAL_S"  # overrides AUTO_INTERVAL_S (tests)
DIR_ENV = "LCW_CHECKPOINT_DIR"
FORMAT = 1  # the layout of the saved dict (``lcw.resume``)
SUFFIX = ".pt"
_TMP = ".tmp-"
_MAX_NAME = 200  # longer member lists are shortened with a digest


def default_location() -> str:
    """``LCW_CHECKPOINT_DIR``, else ``<LCW_DATA_HOME or ./data>/checkpoints``."""
    return os.environ.get(DIR_ENV) or str(
        Path(os.environ.get("LCW_DATA_HOME", "data")) / "checkpoints"
    )


def auto_interval() -> float:
    """The automatic interval: ``LCW_CHECKPOINT_INTERVAL_S`` when set, else 300 s."""
    value = os.environ.get(INTERVAL_ENV)
    return float(value) if value else AUTO_INTERVAL_S


def allowed_schemes() -> list[str]:
    """URL schemes a checkpoint location may have (besides a plain path): fsspec's protocols."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        return ["file"]
    return sorted(set(fsspec.available_protocols()) | {"file"})


def check_location(location: str) -> str | None:
    """Why `location` cannot hold checkpoints (None: it can): an unknown URL scheme, or one
    whose fsspec filesystem needs a package that is not installed."""
    if "://" not in location:
        return None
    scheme = location.split("://", 1)[0].lower()
    allowed = allowed_schemes()
    if scheme not in allowed:
        return (
            f"'{location}' has the unsupported scheme '{scheme}'; allowed: a local path, or a URL "
            f"with one of the schemes {', '.join(allowed)}"
        )
    if scheme == "file":
        return None
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        return f"'{location}': the '{scheme}' filesystem needs a package: {exc}"
    return None


def config_digest(config: dict[str, Any]) -> str:
    """A short stable name for a trial config (the default member name)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return "cfg-" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often to checkpoint one trial or pack (see the module docstring).

    `members`: one name per trial, in the pack's order (empty: each config's digest).
    `every`: save after every `every`-th epoch; None: automatic, every `interval_s` seconds.
    """

    location: str
    members: tuple[str, ...] = ()
    every: int | None = None
    interval_s: float = AUTO_INTERVAL_S

    def __post_init__(self) -> None:
        if self.every is not None and (isinstance(self.every, bool) or self.every < 1):
            raise ValueError(f"checkpoint every: {self.every!r} is not an integer >= 1")
        problem = check_location(self.location)
        if problem is not None:
            raise ValueError(f"checkpoint location: {problem}")

    def names(self, configs: Sequence[dict[str, Any]]) -> list[str]:
        if self.members:
            if len(self.members) != len(configs):
                raise ValueError(
                    f"checkpoint members: {len(self.members)} names for {len(configs)} trials"
                )
            return list(self.members)
        return [config_digest(c) for c in configs]


def file_name(members: Sequence[str]) -> str:
    """The checkpoint file of a member set: the names joined by '+' (long: lead + digest)."""
    joined = "+".join(members)
    if len(joined) > _MAX_NAME:
        joined = f"{members[0]}+{hashlib.sha256(joined.encode()).hexdigest()[:16]}"
    return joined + SUFFIX


class Files:
    """A checkpoint directory: a local one (pathlib, os.replace) or an fsspec filesystem."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._fs: Any = None
        if location.startswith("file://"):
            location = location[len("file://") :]
        if "://" in location:
            import fsspec

            self._fs, root = fsspec.core.url_to_fs(location)
            self.root = str(root).rstrip("/")
        else:
            self.root = location

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def read(self, name: str) -> bytes | None:
        """The bytes of `name`, None when there is no such checkpoint."""
        try:
            if self._fs is None:
                return Path(self._path(name)).read_bytes()
            with self._fs.open(self._path(name), "rb") as f:
                data: bytes = f.read()
                return data
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """Write `name` atomically: a temporary file first, renamed over the old one."""
        tmp = self._path(f"{name}{_TMP}{uuid.uuid4().hex[:12]}")
        if self._fs is None:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path(name))
            finally:
                Path(tmp).unlink(missing_ok=True)
            return
        self._fs.makedirs(self.root, exist_ok=True)
        try:
            with self._fs.open(tmp, "wb") as f:
                f.write(data)
            self._fs.mv(tmp, self._path(name))
        finally:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)

    def names(self) -> list[str]:
        """The checkpoint files in the directory (temporary files left out)."""
        try:
            if self._fs is None:
                entries = [p.name for p in Path(self.root).iterdir()]
            else:
                entries = [str(p).rsplit("/", 1)[-1] for p in self._fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        return [e for e in entries if e.endswith(SUFFIX) and _TMP not in e]

    def delete(self, name: str) -> None:
        """Remove `name` and any temporary file a crashed write of it left."""
        if self._fs is None:
            for p in Path(self.root).glob(f"{name}*"):
                if p.name == name or p.name.startswith(name + _TMP):
                    p.unlink(missing_ok=True)
            return
        for p in self._fs.glob(self._path(name) + "*"):
            base = str(p).rsplit("/", 1)[-1]
            if base == name or base.startswith(name + _TMP):
                self._fs.rm(p)


def to_bytes(state: dict[str, Any]) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> dict[str, Any]:
    """A saved state (tensors on the CPU; ``weights_only``: no code runs while loading)."""
    import torch

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a checkpoint of this version")
    return state


def delete_checkpoint(plan: CheckpointPlan, configs: Sequence[dict[str, Any]]) -> None:
    """Remove the checkpoint of `configs` under `plan` (its trials reached a final state)."""
    Files(plan.location).delete(file_name(plan.names(configs)))


__all__ = [
    "AUTO_INTERVAL_S",
    "DIR_ENV",
    "INTERVAL_ENV",
    "CheckpointPlan",
    "Files",
    "allowed_schemes",
    "auto_interval",
    "check_location",
    "config_digest",
    "default_location",
    "delete_checkpoint",
    "file_name",
]
