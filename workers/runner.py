"""The Ray actor that runs trials: a warm process that calls ``lcw.train`` and streams metrics.

One actor per concurrent trial (or pack of trials: ``run_pack`` trains several configs as one
fused model with ``lcw.train_pack``), alive as long as its dispatcher: torch, lcw and the
datasets (``lcw.data`` caches them per process) load once per actor, not once per trial (a
fresh process per trial cost Ray Tune 1.7 s per trivial trial on this 2-core machine). The
trial never opens the database: each epoch's metrics wait in the actor until the dispatcher
collects them over Ray.

Two concurrency groups make that possible while a trial trains: ``train`` (one thread) runs
``run`` and ``run_pack``; ``io`` answers ``drain`` (a long poll for buffered metrics), ``stop``
(finish at the next epoch boundary; a pack member stops alone) and ``decide`` (the ASHA verdict
at a rung) from other threads. Each run (each pack member) is named by a token the dispatcher
makes up, so messages about an earlier run of the same trial can never be mistaken for the
current one. What it sends back is typed (``workers.messages``).

Each run gets a checkpoint spec (``workers.checkpoints``): lcw saves the run's state to it and a
later attempt of the same trial (or the same pack) resumes from it; the runner flags the first
epoch each run reports (``attempt_start``) and deletes the checkpoint once the trials are final.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import ray

from workers import checkpoints
from workers.checkpoints import CheckpointSpec
from workers.messages import (
    ActorInfo,
    EpochReport,
    PackReply,
    PackRunReply,
    Report,
    RunnerInfo,
    RunReply,
    Started,
    Stopped,
    TrialError,
    TrialResult,
    TrialSkipped,
    permanence,
)

TRAIN_GROUP = "train"
IO_GROUP = "io"
CONCURRENCY_GROUPS = {TRAIN_GROUP: 1, IO_GROUP: 4}

# How long a trial waits at an ASHA rung for the dispatcher's verdict before it goes on (a
# dispatcher that died cannot answer; training on is the safe default).
RUNG_WAIT_S = 30.0


def versions() -> dict[str, str]:
    """Versions of what decides a trial's outcome (recorded in every run_info)."""
    out = {"python": platform.python_version()}
    for dist, key in (
        ("torch", "torch"),
        ("ray", "ray"),
        ("optuna", "optuna"),
        ("lcw-sweep", "lcw_sweep"),
        ("numpy", "numpy"),
    ):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "unknown"
    return out


def free_memory_bytes() -> int | None:
    """Free memory of this actor's device: its GPU's (``torch.cuda.mem_get_info``) when Ray
    gave it one, else the host's available memory (psutil, else /proc/meminfo)."""
    try:
        if ray.get_gpu_ids():
            import torch

            return int(torch.cuda.mem_get_info()[0])
        try:
            import psutil
        except ImportError:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
            return None
        return int(psutil.virtual_memory().available)
    except Exception:  # no figure is better than a dead actor: pack sizes fall back to caps
        return None


def _ends_trials(checkpoint: CheckpointSpec | None, exc: Exception) -> bool:
    """An error that leaves no attempt to resume: the trial's last, or one no retry fixes."""
    return checkpoint is not None and (bool(checkpoint.get("final")) or permanence(exc) is not None)


@dataclass
class _Rung:
    """A trial waiting at an ASHA rung for the dispatcher's verdict."""

    event: threading.Event = field(default_factory=threading.Event)
    stop: bool = False


class TrialRunner:
    """Runs one trial at a time (``run``) and hands out its epoch metrics (``drain``)."""

    def __init__(self) -> None:
        # Imported here, once, and eagerly (lcw.train alone would load the trainer and torch
        # lazily, in the first trial): the actor answers its first call warm, and the first
        # trial pays only for its dataset.
        import lcw
        import lcw.trainer

        self._train = lcw.train
        self._train_pack = lcw.train_pack

        self._cond = threading.Condition()
        # An EpochReport per epoch, Started when a run begins, Stopped when a member obeys.
        self._buffer: list[Report] = []
        self._stops: set[str] = set()  # tokens asked to stop (may arrive before their run)
        self._rungs: dict[str, _Rung] = {}
        self._static = RunnerInfo(
            versions=versions(),
            hostname=socket.gethostname(),
            node_id=ray.get_runtime_context().get_node_id(),
            pid=os.getpid(),
            platform=platform.platform(),
        )

    @ray.method(concurrency_group=TRAIN_GROUP)
    def warm_up(self) -> float:
        """Train a tiny trial and a tiny pack once (one epoch of width-8 MLPs on 64 samples of
        the shipped digits): what a process's first trial pays besides its own work (torch's
        lazily imported modules, the shipped dataset loaded and cached) is paid here, before
        any study. Returns the seconds it took. ``serve`` calls it on its actors at start."""
        start = time.perf_counter()
        tiny = {"dataset": "digits", "model": "mlp", "depth": 1, "width": 8, "epochs": 1,
                "train_limit": 64, "probe_size": 16}  # fmt: skip
        self._train(tiny)
        self._train_pack([{**tiny, "seed": 0}, {**tiny, "seed": 1}])
        return time.perf_counter() - start

    @ray.method(concurrency_group=IO_GROUP)
    def info(self) -> ActorInfo:
        """Where this actor runs: versions, host, node, pid (also answers "are you alive"),
        and the free memory of its device now (``free_bytes``, None when unknown)."""
        return ActorInfo(runner=self._static, free_bytes=free_memory_bytes())

    def _on_epoch(self, token: str, rungs: set[int]) -> Callable[[dict[str, Any]], bool]:
        """The epoch callback of run `token`: buffer its metrics, wait at rungs, obey stops.
        The first epoch it reports is flagged ``attempt_start`` (``workers.checkpoints``)."""
        first = [True]

        def on_epoch(metrics: dict[str, Any]) -> bool:
            rung = metrics["epoch"] in rungs
            wait = _Rung() if rung else None
            report = {**metrics, checkpoints.ATTEMPT_START: True} if first[0] else metrics
            first[0] = False
            with self._cond:
                if wait is not None:
                    self._rungs[token] = wait
                self._buffer.append(EpochReport(token, report, rung))
                # Wake a drain only when it has something to do: its first item, or a rung
                # (it batches the rest for its linger without being woken every epoch).
                if rung or len(self._buffer) == 1:
                    self._cond.notify_all()
            if wait is not None:
                wait.event.wait(RUNG_WAIT_S)
                with self._cond:
                    self._rungs.pop(token, None)
                if wait.stop:
                    return True
            with self._cond:
                stop = token in self._stops
                if stop:
                    # A pack goes on without this member: tell the dispatcher it obeyed, so
                    # it does not kill the actor (and the pack-mates) after the grace period.
                    self._buffer.append(Stopped(token))
                    self._cond.notify_all()
                return stop

        return on_epoch

    def _begin(self, tokens: Sequence[str]) -> list[str]:
        """Tokens not stopped before they started; tells the dispatcher that they started."""
        with self._cond:
            live = [t for t in tokens if t not in self._stops]
            self._stops.difference_update(tokens)
            # The dispatcher counts timeouts from here, not from a cold actor's start.
            self._buffer += [Started(t) for t in live]
            self._cond.notify_all()
        return live

    def _asked_to_stop(self, tokens: Sequence[str]) -> bool:
        """Some run of `tokens` was asked to stop (a shutdown, a cancel, a lost lease): its
        result is not final, so its checkpoint stays."""
        with self._cond:
            return any(t in self._stops for t in tokens)

    def _end(self, tokens: Sequence[str]) -> None:
        with self._cond:
            self._stops.difference_update(tokens)
            # The results carry every epoch: drop these runs' undelivered copies.
            done = set(tokens)
            self._buffer = [item for item in self._buffer if item.token not in done]

    def _error(self, exc: Exception, start: float, token: str | None = None) -> TrialError:
        return TrialError(
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
            compute_seconds=time.perf_counter() - start,
            runner=self._static,
            token=token,
            permanent=permanence(exc),
        )

    @staticmethod
    def _member(
        token: str,
        result: Any,
        compute_seconds: float | None = None,
        runner: RunnerInfo | None = None,
    ) -> TrialResult:
        """lcw's result of run `token` (a pack member's: without compute seconds and runner)."""
        out = result.to_dict()
        epochs = checkpoints.mark_start(out.pop("epochs"), result.resumed_from_epoch)
        return TrialResult(token, result.status, out, epochs, compute_seconds, runner)

    @ray.method(concurrency_group=TRAIN_GROUP)
    def run(
        self,
        token: str,
        config: dict[str, Any],
        *,
        rungs: Sequence[int] = (),
        checkpoint: CheckpointSpec | None = None,
    ) -> RunReply:
        """Train `config`; returns a TrialResult, a TrialSkipped or a TrialError.

        An exception from lcw (a missing dataset, a bad config) comes back as a TrialError
        with its type, message and traceback: the actor survives it. `checkpoint`: where and
        how often to save its state, and resume from (``workers.checkpoints``).
        """
        if not self._begin([token]):  # stopped before it started (cancelled while queued)
            return TrialSkipped(token=token, runner=self._static)
        start = time.perf_counter()
        plan = None
        try:
            plan = checkpoints.plan(checkpoint)
            result = self._train(
                config, on_epoch=self._on_epoch(token, set(rungs)), checkpoint=plan
            )
            final = not self._asked_to_stop([token])
        except Exception as exc:
            if _ends_trials(checkpoint, exc):
                checkpoints.discard(plan, [config])
            return self._error(exc, start, token)
        finally:
            self._end([token])
        if final:
            checkpoints.discard(plan, [config])
        return self._member(
            token, result, compute_seconds=time.perf_counter() - start, runner=self._static
        )

    @ray.method(concurrency_group=TRAIN_GROUP)
    def run_pack(
        self,
        tokens: Sequence[str],
        configs: Sequence[dict[str, Any]],
        *,
        rungs: Sequence[int] = (),
        checkpoint: CheckpointSpec | None = None,
    ) -> PackRunReply:
        """Train `configs` as one pack (``lcw.train_pack``), each member named by its token.

        Returns a PackReply: each member's TrialResult (without compute seconds and runner:
        the reply's are the pack's) or TrialSkipped (stopped before the start); an exception
        fails the whole pack (a TrialError, as ``run``'s). `checkpoint`: as ``run``'s, its
        ``members`` in the order of `tokens` (the members that start form the checkpoint's set).
        """
        live = self._begin(tokens)
        members: dict[str, TrialResult | TrialSkipped] = {t: TrialSkipped(t) for t in tokens}
        start = time.perf_counter()
        if live:
            by_token = dict(zip(tokens, configs, strict=True))
            live_configs = [by_token[t] for t in live]
            callbacks = [self._on_epoch(t, set(rungs)) for t in live]
            plan = None
            try:
                if checkpoint is not None:
                    names = dict(zip(tokens, checkpoint["members"], strict=True))
                    plan = checkpoints.plan(checkpoint, [names[t] for t in live])
                results = self._train_pack(
                    live_configs, on_epoch=lambda k, m: callbacks[k](m), checkpoint=plan
                )
                final = not self._asked_to_stop(live)
            except Exception as exc:
                if _ends_trials(checkpoint, exc):
                    checkpoints.discard(plan, live_configs)
                return self._error(exc, start)
            finally:
                self._end(tokens)
            if final:
                checkpoints.discard(plan, live_configs)
            members.update({t: self._member(t, r) for t, r in zip(live, results, strict=True)})
        return PackReply(
            members=members, compute_seconds=time.perf_counter() - start, runner=self._static
        )

    @ray.method(concurrency_group=IO_GROUP)
    def drain(self, max_wait: float = 2.0, linger: float = 0.2) -> list[Report]:
        """Buffered reports (epoch metrics, starts, obeyed stops): waits up to `max_wait` for
        the first, then up to `linger` for more to batch them (not when a trial waits at a
        rung: it needs an answer now)."""
        now = time.monotonic()
        deadline = now + max_wait
        with self._cond:
            while not self._buffer and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._buffer:
                batch_until = min(deadline, time.monotonic() + linger)
                while not any(isinstance(i, EpochReport) and i.rung for i in self._buffer) and (
                    (left := batch_until - time.monotonic()) > 0
                ):
                    self._cond.wait(left)
            out, self._buffer = self._buffer, []
        return out

    @ray.method(concurrency_group=IO_GROUP)
    def stop(self, token: str) -> None:
        """Ask run `token` to stop at its next epoch boundary (or not to start at all)."""
        with self._cond:
            self._stops.add(token)
            waiting = self._rungs.get(token)
        if waiting is not None:
            waiting.stop = True
            waiting.event.set()

    @ray.method(concurrency_group=IO_GROUP)
    def decide(self, token: str, stop: bool) -> None:
        """The ASHA verdict for run `token` waiting at a rung."""
        with self._cond:
            waiting = self._rungs.get(token)
        if waiting is not None:
            waiting.stop = stop
            waiting.event.set()


@functools.cache
def runner_class() -> Any:
    """The Ray actor class of TrialRunner (made on first use: nothing Ray happens at import)."""
    # max_restarts=0: a dead actor's trial is failed and retried by the dispatcher, which also
    # replaces the actor; a silent restart would hide the death from the queue.
    options: dict[str, Any] = {"concurrency_groups": CONCURRENCY_GROUPS, "max_restarts": 0}
    return ray.remote(**options)(TrialRunner)


__all__ = ["CONCURRENCY_GROUPS", "TrialRunner", "runner_class", "versions"]
