"""What the actors sent, turned into the store operations the write-behind queue holds.

From ``drain``: a run's start (its timeout counts from then), each epoch's metrics (queued
once per epoch, never for a trial that is no longer ours), the ASHA verdict at a rung (sent
back at once: the run waits for it) and a pack member that obeyed a stop request (its pack goes
on, so its actor is not killed). From ``run`` and ``run_pack`` (``workers.messages``): a
result completes the trial with its status, result and run info (what it takes to rerun it
and where and with what it ran; a pack's members share its compute time); an error is a failed
attempt (every member of a pack that raised); a run skipped, or stopped by us rather than by
ASHA, goes back to the queue unused; a trial that is no longer ours is only forgotten.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from workers import packing
from workers.messages import (
    EpochReport,
    Outcome,
    PackReply,
    Report,
    RunReply,
    Started,
    Stopped,
    TrialError,
    TrialResult,
    TrialSkipped,
)
from workers.placement import Placement
from workers.pool import Pool
from workers.resolve import Resolver
from workers.state import Held, Trial, Worker
from workers.writeback import Op, WriteBack


class Outcomes:
    """Reads the actors' reports and replies for one dispatcher (see the module docstring)."""

    def __init__(self, owner: str, pool: Pool, resolver: Resolver, placement: Placement) -> None:
        self.owner = owner
        self.pool = pool
        self.held: Held = pool.held
        self.writes: WriteBack = pool.writes
        self.prom = pool.prom
        self.resolver = resolver
        # Placement sizes packs by it: packing.config_key -> seconds per member.
        self.member_seconds = placement.member_seconds

    def on_drain(self, w: Worker, items: list[Report]) -> None:
        """`w`'s buffered reports; then the next long poll."""
        now = time.monotonic()
        for item in items:
            t = self.held.tokens.get(item.token)
            if isinstance(item, Started):
                if t is not None:
                    t.started = now
                continue
            if isinstance(item, Stopped):
                # A pack member obeyed a stop request; the pack goes on without it.
                if t is not None and t.worker is not None and len(t.worker.trials) > 1:
                    t.kill_at = None
                continue
            self._on_epoch(w, t, item)
        if w in self.pool.workers:
            self.pool.drain(w)

    def _on_epoch(self, w: Worker, t: Trial | None, item: EpochReport) -> None:
        metrics = item.metrics
        if t is None:
            if item.rung:  # a run we no longer track: let it stop
                w.handle.decide.remote(item.token, True)
            return
        epoch = metrics["epoch"]
        if t.stopping != "lost":
            self.writes.metrics(t, metrics)
        if item.rung:
            self.writes.flush(now=True)  # rung values first: ASHA judges on the stored ones
            stop = t.stopping is not None or self.resolver.asha_stops(
                t, epoch, metrics.get("val_acc")
            )
            t.asha_stopped = t.asha_stopped or (stop and t.stopping is None)
            w.handle.decide.remote(item.token, stop)

    def run_failed(self, pack: tuple[Trial, ...], error: str) -> None:
        """The call itself failed (e.g. a reply Ray could not unpickle): failed attempts."""
        self.pool.ended(pack)
        for t in pack:
            if t.stopping == "lost":
                self.held.forget(t)
            else:
                self.writes.fail(t, error)

    def on_run(self, pack: tuple[Trial, ...], reply: RunReply | PackReply) -> None:
        """A run came back: a single trial's outcome, a pack's members', or a pack's error."""
        self.pool.ended(pack)
        if not isinstance(reply, PackReply):  # one trial; or a pack that raised: all fail
            for t in pack:
                self._settle(t, reply, pack, pack_seconds=None)
            return
        ran = sum(m.outcome is Outcome.RESULT for m in reply.members.values())
        # The pack's compute, divided among the members that trained in it.
        share = reply.compute_seconds / max(ran, 1)
        for t in pack:
            member = reply.members[t.token]
            if isinstance(member, TrialResult):
                member = replace(member, compute_seconds=share, runner=reply.runner)
            self._settle(t, member, pack, pack_seconds=reply.compute_seconds)

    def _settle(
        self, t: Trial, reply: RunReply, pack: tuple[Trial, ...], *, pack_seconds: float | None
    ) -> None:
        """`t`'s outcome (`pack_seconds`: its pack's compute time) queued for the store."""
        if t.stopping == "lost":
            self.held.forget(t)
            return
        if isinstance(reply, TrialError):
            self.prom.duration.observe(reply.compute_seconds)
            self.writes.fail(t, reply.error, permanent=reply.permanent)
            return
        if isinstance(reply, TrialSkipped) or (
            reply.status == "stopped_early" and not t.asha_stopped
        ):  # stopped by us (shutdown), not a result
            self.writes.release(t)
            return
        seconds = reply.compute_seconds  # a pack member's: its share, filled in by on_run
        ran = pack_seconds if pack_seconds is not None else seconds
        if ran is not None:
            self.prom.duration.observe(ran)
        if t.config is not None and reply.status == "completed" and seconds is not None:
            self.member_seconds[packing.config_key(t.config)] = seconds
        for metrics in reply.epochs:
            self.writes.metrics(t, metrics)
        self.writes.finish(
            t,
            Op(
                "complete",
                (t.id,),
                {
                    "status": reply.status,
                    "result": reply.result,
                    "run_info": self._run_info(t, reply, pack, pack_seconds),
                },
            ),
        )

    def _run_info(
        self,
        t: Trial,
        reply: TrialResult,
        pack: tuple[Trial, ...],
        pack_seconds: float | None,
    ) -> dict[str, Any]:
        """What it takes to rerun the trial and to know where and with what it ran."""
        runner = reply.runner
        env = reply.result.get("env", {})
        c = t.claim
        packed: dict[str, Any] = {}
        if len(pack) > 1:  # trained as one fused model with these trials (lcw.train_pack)
            packed = {
                "pack_size": len(pack),
                "pack_trial_ids": [m.id for m in pack],
                "pack_compute_seconds": pack_seconds,
            }
        return {
            **packed,
            "config": t.config,
            "seed": c.seed,
            "attempt": c.attempt,
            "slot": c.slot,
            "lr": (t.config or {}).get("lr"),
            "versions": runner.versions if runner else {},
            "device": env.get("device"),
            "device_name": env.get("device_name"),
            "torch_threads": env.get("threads"),
            "node_id": runner.node_id if runner else None,
            "hostname": runner.hostname if runner else None,
            "pid": runner.pid if runner else None,
            "platform": runner.platform if runner else None,
            "resources": {"cpu": t.shape.cpu, "gpu": t.shape.gpu},
            "compute_seconds": reply.compute_seconds,
            "dispatcher": self.owner,
            # The checkpoint epoch this attempt resumed from (None: it started fresh), and why
            # a checkpoint it found was not used (lcw.checkpoint).
            "resumed_from_epoch": reply.result.get("resumed_from_epoch"),
            **({"resume_note": note} if (note := reply.result.get("resume_note")) else {}),
        }


__all__ = ["Outcomes"]
