"""The trainer's side of checkpoints: what its loop carries between epochs, saved and restored.

``Checkpointer`` holds references to the loop's live objects (model, optimizer adapter,
generators, per-member bookkeeping, results) and saves them at an epoch end when the plan says
so (``after_epoch``), or restores them before the first epoch (``resume``). Storage, naming and
the plan are ``lcw.checkpoint``'s; this module decides what a state is (the list is in that
module's docstring) and that a state only resumes the exact same member configs in the same
order.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor, nn

from lcw.checkpoint import FORMAT, CheckpointPlan, Files, file_name, from_bytes, to_bytes
from lcw.packed_layers import member_state

log = logging.getLogger("lcw.checkpoint")

# The result fields a checkpoint carries (the rest are fixed by the config and the device).
_RESULT_FIELDS = (
    "status", "epochs", "train_loss", "train_acc", "seconds", "diverged_epoch", "message",
)  # fmt: skip


class Checkpointer:
    """Saves and restores one run's loop state under a ``CheckpointPlan``."""

    def __init__(
        self,
        plan: CheckpointPlan,
        configs: list[dict[str, Any]],
        *,
        model: nn.Module,
        optimizer: Any,
        orders: list[torch.Generator],
        augmenters: list[torch.Generator] | None,
        results: list[Any],
        running: list[bool],
        stopped_lr: dict[int, float],
        frozen: dict[int, list[tuple[Tensor, Tensor]]],
        device: torch.device,
    ) -> None:
        self.plan, self.configs = plan, configs
        self.members = plan.names(configs)
        self.files = Files(plan.location)
        self.name = file_name(self.members)
        self.model, self.optimizer = model, optimizer
        self.orders, self.augmenters = orders, augmenters
        self.results, self.running = results, running
        self.stopped_lr, self.frozen = stopped_lr, frozen
        self.device = device
        self.since = time.perf_counter()  # start of the run, or the last save

    # -- saving -------------------------------------------------------------------------------

    def due(self, epoch: int) -> bool:
        if self.plan.every is not None:
            return epoch % self.plan.every == 0
        return time.perf_counter() - self.since >= self.plan.interval_s

    def after_epoch(self, epoch: int, step_no: int, *, last: bool) -> bool:
        """Save the state after `epoch` when it is due (never after the last epoch, nor when
        no member trains on); returns whether it saved."""
        if last or not any(self.running) or not self.due(epoch):
            return False
        self.files.write(self.name, to_bytes(self.state(epoch, step_no)))
        self.since = time.perf_counter()
        return True

    def state(self, epoch: int, step_no: int) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "format": FORMAT,
            "members": self.members,
            "configs": self.configs,
            "epoch": epoch,
            "step": step_no,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "orders": [g.get_state() for g in self.orders],
            "augmenters": [g.get_state() for g in self.augmenters or ()],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "running": list(self.running),
            "stopped_lr": dict(self.stopped_lr),
            "frozen": {k: [copy for _, copy in pairs] for k, pairs in self.frozen.items()},
            "results": [{f: getattr(r, f) for f in _RESULT_FIELDS} for r in self.results],
        }

    # -- resuming -----------------------------------------------------------------------------

    def resume(self) -> tuple[int, int] | None:
        """Restore the saved state: (epoch, global step), or None to start over (each result's
        ``resume_note`` says why when a checkpoint was there but could not be used)."""
        data = self.files.read(self.name)
        if data is None:
            self._other_member_sets()
            return None
        try:
            state = from_bytes(data)
        except Exception as exc:  # a damaged or foreign file: start over, never crash on it
            self._start_over(f"checkpoint {self.name} could not be loaded ({exc})")
            return None
        if state["members"] != self.members or state["configs"] != self.configs:
            self._start_over(f"checkpoint {self.name} holds other trial configs")
            return None
        self._restore(state)
        epoch = int(state["epoch"])
        for r in self.results:
            r.resumed_from_epoch = epoch
        log.info("resumed %s from epoch %d", self.name, epoch)
        return epoch, int(state["step"])

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, s in zip(self.orders, state["orders"], strict=True):
            g.set_state(s)
        for g, s in zip(self.augmenters or (), state["augmenters"], strict=True):
            g.set_state(s)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.running[:] = state["running"]
        self.stopped_lr.clear()
        self.stopped_lr.update({int(k): float(v) for k, v in state["stopped_lr"].items()})
        self.frozen.clear()
        for k, copies in state["frozen"].items():
            views = [live for live, _ in member_state(self.model, int(k), len(self.configs))]
            self.frozen[int(k)] = [
                (live, c.to(live.device)) for live, c in zip(views, copies, strict=True)
            ]
        for r, saved in zip(self.results, state["results"], strict=True):
            for f in _RESULT_FIELDS:
                setattr(r, f, saved[f])

    def _other_member_sets(self) -> None:
        """A checkpoint of another pack holding some of these members: this run does not
        resume it (its state is the whole pack's); it is removed and the run says so."""
        mine = set(self.members)
        for other in self.files.names():
            held = set(other[: -len(".pt")].split("+"))
            if held & mine and other != self.name:
                self.files.delete(other)
                self._start_over(
                    f"checkpoint {other} was saved by another member set; started over"
                )

    def _start_over(self, why: str) -> None:
        log.warning("%s", why)
        for r in self.results:
            r.resume_note = why


__all__ = ["Checkpointer"]
