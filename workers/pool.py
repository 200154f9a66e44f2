"""The actor pool: TrialRunner actors started, sent runs, stopped, killed, and replaced.

Actors (``workers.runner.TrialRunner``) are warm, long-lived processes, one per concurrent
trial or pack, sized by each trial's resources (``num_cpus``, fractional ``num_gpus``) within
the cluster's CPUs and GPUs. The pool makes them only where Ray has room now (an actor Ray
cannot schedule would hold its trials hostage), tops itself up to ``slots`` actors, sends each
actor its runs (``send``: the one it runs and those queued behind it), keeps one ``drain``
long poll outstanding per actor, and tracks every outstanding call in ``refs`` for the
dispatcher's ``ray.wait``.

Limits: a trial asked to stop (``stop``) gets ``stop_grace_s`` to reach an epoch boundary; an
actor is killed when a trial of it ignores that, when its run passes the trial's timeout (a
pack's members' timeout times the pack size), or when it was never scheduled (``enforce``). A
killed or dead actor's trials are released, forgotten or failed by why they stopped.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from workers import checkpoints
from workers.messages import ActorInfo
from workers.metrics import DispatcherMetrics
from workers.state import EPS, Held, Shape, Trial, Worker
from workers.writeback import WriteBack

log = logging.getLogger("lcw.workers")

DRAIN_WAIT_S = 2.0  # long poll: an idle actor answers every 2 s (and so proves it is alive)
DRAIN_LINGER_S = 0.2  # batch an actor's epochs for up to 0.2 s (one DB write per tick)
CLUSTER_REFRESH_S = 10.0  # re-read the cluster's CPUs/GPUs (nodes join and leave)
FREE_REFRESH_S = 1.0  # how stale Ray's free-resource figures may be when sizing the pool
POOL_GROW_S = 1.0  # how often to top the pool up to `slots` actors
ACTOR_START_TIMEOUT_S = 120.0  # an actor still unscheduled after this: resources never came


class Pool:
    """One dispatcher's actors and their outstanding Ray calls (see the module docstring)."""

    def __init__(
        self,
        held: Held,
        writes: WriteBack,
        metrics: DispatcherMetrics,
        *,
        slots: int,
        stop_grace_s: float,
        checkpoint_dir: str | None = None,
        runner: Any = None,
    ) -> None:
        self.held = held
        # The Ray actor class of the runners (None: workers.runner's TrialRunner); benchmarks
        # swap in one that trains nothing to measure the control plane alone.
        self.runner = runner
        self.checkpoint_dir = checkpoint_dir  # None: each actor's default (workers.checkpoints)
        self.writes = writes
        self.prom = metrics
        self.slots = slots
        self.stop_grace_s = stop_grace_s
        self.workers: list[Worker] = []
        # ObjectRef -> ("run", pack) | ("drain", worker) | ("ready", worker)
        self.refs: dict[Any, tuple[str, Any]] = {}
        self.cluster: dict[str, float] = {}
        self.want = Shape()  # the shape the pool grows with: the latest claimed trial's
        self._free_cache: tuple[float, dict[str, float]] = (-math.inf, {})  # (when, free)
        self._next_cluster = 0.0
        self._next_grow = 0.0
        self._seq = 0  # numbers actors' names and runs' tokens

    # -- the cluster --------------------------------------------------------------------------

    def refresh_cluster(self, now: float, *, due: bool = False) -> None:
        """Re-read the cluster's resources (`due`: only when the last read is old enough)."""
        import ray

        if due and now < self._next_cluster:
            return
        self.cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        self._next_cluster = now + CLUSTER_REFRESH_S

    def fits_cluster(self, shape: Shape) -> bool:
        return (
            shape.cpu <= self.cluster.get("CPU", 0.0) + EPS
            and shape.gpu <= self.cluster.get("GPU", 0.0) + EPS
        )

    def _free_resources(self) -> dict[str, float]:
        """Ray's free CPUs/GPUs (other dispatchers and users count), at most a second old."""
        import ray

        when, free = self._free_cache
        if time.monotonic() - when > FREE_REFRESH_S:
            free = {k: float(v) for k, v in ray.available_resources().items()}
            self._free_cache = (time.monotonic(), free)
        return free

    # -- actors -------------------------------------------------------------------------------

    def busy(self) -> bool:
        """Some actor runs a trial."""
        return any(w.trials for w in self.workers)

    def spawn(self, shape: Shape) -> Worker | None:
        """A new actor of `shape` if the slots allow it and the cluster has room for it now.

        Room is what Ray reports free, less what our actors still starting will take: an actor
        Ray cannot schedule would hold its trials hostage, so we never ask for one.
        """
        from workers.runner import runner_class

        if len(self.workers) >= self.slots:
            return None
        free = self._free_resources()
        starting = [w.shape for w in self.workers if not w.ready]
        if free.get("CPU", 0.0) - sum(x.cpu for x in starting) < shape.cpu - EPS or (
            free.get("GPU", 0.0) - sum(x.gpu for x in starting) < shape.gpu - EPS
        ):
            return None
        self._seq += 1
        actor = self.runner or runner_class()
        handle = actor.options(num_cpus=shape.cpu, num_gpus=shape.gpu).remote()
        w = Worker(handle=handle, shape=shape, name=f"runner-{self._seq}")
        self.workers.append(w)
        self.refs[handle.info.remote()] = ("ready", w)
        self.drain(w)
        return w

    def grow(self, now: float) -> None:
        """Top the pool up to `slots` actors (after deaths and kills, or once Ray has room)."""
        if now < self._next_grow:
            return
        self._next_grow = now + POOL_GROW_S
        waiting = next((t.shape for t in self.held.backlog if t.config is not None), None)
        while len(self.workers) < self.slots and self.spawn(waiting or self.want):
            pass

    def ready(self, w: Worker, info: ActorInfo) -> None:
        """`w`'s process is up (it answered ``info``): it may get trials now."""
        w.ready = True
        w.node, w.free_bytes = info.runner.node_id, info.free_bytes
        self._free_cache = (-math.inf, {})  # its resources now show as taken

    def drain(self, w: Worker) -> None:
        """Ask `w` for its buffered reports (a long poll; renewed after every answer)."""
        w.drain_ref = w.handle.drain.remote(DRAIN_WAIT_S, DRAIN_LINGER_S)
        self.refs[w.drain_ref] = ("drain", w)

    def kill(self, w: Worker, why: str, *, died: bool = False) -> None:
        """Kill an actor (or make sure a dead one is gone: `died`) and settle its trial."""
        import ray

        if not died:
            self.prom.kills.inc()
        try:
            ray.kill(w.handle, no_restart=True)
        except Exception as exc:  # already dead: nothing to kill
            log.debug("kill %s: %s", w.name, exc)
        self._gone(w, why if died else f"killed by the dispatcher: {why}")

    def kill_all(self, why: str) -> None:
        """Kill every actor; what they run or have queued is given back (shutdown)."""
        for w in list(self.workers):
            for t in w.trials + tuple(x for run in w.queued for x in run):
                if t.stopping is None:
                    t.stopping = "shutdown"
            self.kill(w, why)

    def _gone(self, w: Worker, reason: str) -> None:
        """Forget a dead actor; its trials are lost, released or failed by why they stopped."""
        if w not in self.workers:
            return
        self.workers.remove(w)
        pack = w.trials
        queued = tuple(x for run in w.queued for x in run)
        runs = [x for x in (pack, *w.queued) if x]
        w.trials, w.queued = (), []
        for ref in [r for r, (_, obj) in self.refs.items() if obj is w or obj in runs]:
            del self.refs[ref]
        if any(t.stopping is None for t in pack):
            self.prom.deaths.inc()
        where = f" (one of a pack of {len(pack)})" if len(pack) > 1 else ""
        for t in pack + queued:
            t.worker, t.ref = None, None
            self.held.tokens.pop(t.token, None)
            if t.stopping == "lost":
                self.held.forget(t)
            elif t.stopping == "shutdown" or t in queued:  # queued: it never started
                self.writes.release(t)
            elif t.stopping == "timeout":
                pass  # its failure is queued already
            else:
                self.writes.fail(
                    t,
                    f"WorkerDiedError: the Ray worker process running this trial{where} died "
                    f"({reason})",
                )

    # -- runs ---------------------------------------------------------------------------------

    def send(self, pack: tuple[Trial, ...], w: Worker) -> None:
        """Start `pack` (one trial: ``run``; more: ``run_pack``) on `w`: at once when `w` is
        free, else queued behind its current run (the actor starts it when that one ends)."""
        for t in pack:
            assert t.config is not None  # placement only takes resolved trials
            self._seq += 1
            t.token = f"{t.id}.{t.claim.attempt}.{self._seq}"
        lead = pack[0]
        checkpoint = checkpoints.spec(
            self.checkpoint_dir,
            [checkpoints.member_name(t.claim.study_id, t.id) for t in pack],
            lead.claim.checkpoint_every,
            final=all(t.claim.attempt > t.claim.max_retries for t in pack),
        )
        if len(pack) == 1:
            ref = w.handle.run.remote(
                lead.token, lead.config, rungs=lead.rungs, checkpoint=checkpoint
            )
        else:
            ref = w.handle.run_pack.remote(
                [t.token for t in pack],
                [t.config for t in pack],
                rungs=lead.rungs,
                checkpoint=checkpoint,
            )
        self.refs[ref] = ("run", pack)
        self.prom.pack_size.observe(len(pack))
        if w.trials:
            w.queued.append(pack)
        else:
            w.trials = pack
        for t in pack:
            self.held.tokens[t.token] = t
            t.worker, t.ref = w, ref
            t.phase, t.started = "running", None
            self.held.backlog.remove(t)

    def ended(self, pack: tuple[Trial, ...]) -> None:
        """`pack` ended on its actor: what was queued behind it runs now."""
        w = pack[0].worker
        if w is not None:
            if w.trials is pack:
                w.trials = w.queued.pop(0) if w.queued else ()
            elif any(run is pack for run in w.queued):
                w.queued = [run for run in w.queued if run is not pack]
            w.idle_since = time.monotonic()
            for t in w.trials:  # asked to stop while queued: kill it if it started anyway
                if t.stopping is not None and t.kill_at is None:
                    t.kill_at = time.monotonic() + self.stop_grace_s
        for t in pack:
            t.worker, t.ref = None, None
            self.held.tokens.pop(t.token, None)

    def stop(self, t: Trial, why: str, now: float) -> None:
        """Ask a running trial to stop at its next epoch boundary; kill it if it does not."""
        if t.stopping is not None:
            return
        t.stopping = why
        if t.worker is not None:
            t.worker.handle.stop.remote(t.token)
            if t in t.worker.trials:  # a queued run stops before it starts: nothing to kill
                t.kill_at = now + self.stop_grace_s

    def enforce(self, now: float) -> None:
        """Kill actors whose trial ignored a stop request or ran past its timeout."""
        for w in list(self.workers):
            if not w.ready and now - w.born > ACTOR_START_TIMEOUT_S:
                self.kill(w, f"not scheduled within {ACTOR_START_TIMEOUT_S:g} s")
                continue
            pack = w.trials
            late = next((t for t in pack if t.kill_at is not None and now >= t.kill_at), None)
            if late is not None:
                self.kill(w, f"trial {late.id} did not stop within {self.stop_grace_s:g} s")
                continue
            limits = [t.claim.timeout_s for t in pack if t.claim.timeout_s]
            started = [t.started for t in pack if t.started is not None]
            if not limits or not started:
                continue
            # The members of a pack share one device: the pack gets their time added up.
            limit = max(limits) * len(pack)
            if now - min(started) <= limit or all(t.stopping is not None for t in pack):
                continue
            what = f"{max(limits):g} s" + (f" x {len(pack)} members" if len(pack) > 1 else "")
            error = (
                f"TrialTimeoutError: the trial ran longer than its timeout of {what} and was killed"
            )
            for t in pack:
                if t.stopping is None:
                    t.stopping = "timeout"
                    self.writes.fail(t, error)
            self.kill(w, f"trial {pack[0].id} timed out")


__all__ = [
    "ACTOR_START_TIMEOUT_S",
    "CLUSTER_REFRESH_S",
    "DRAIN_LINGER_S",
    "DRAIN_WAIT_S",
    "FREE_REFRESH_S",
    "POOL_GROW_S",
    "Pool",
]
