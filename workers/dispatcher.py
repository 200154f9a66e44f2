"""The dispatcher: claims queued trials from the database and runs them on Ray actors.

One loop in one thread (``Dispatcher.step``), no busy waiting: it blocks in ``ray.wait`` on the
actors' outstanding calls for at most a tick. Each tick it

1. collects what the actors sent (finished runs, epoch metrics from the ``drain`` long polls)
   and hands the next claimed trial to every actor that became free (no database on this path,
   so an actor never waits for SQL);
2. writes the tick's metrics in one ``write_metrics`` call, then finishes trials
   (``complete_trial`` / ``fail_trial_attempt`` / ``release_trials``);
3. renews its leases (learning of cancelled or lost trials from the answer), returns expired
   leases of dead dispatchers to the queue, and claims trials ahead: one waiting per slot (a
   pack's worth when packing), and sends each busy actor its next run at once: the actor
   queues it and starts it the moment the current one ends, with no round trip through this
   loop or the database in between (a queued run that is cancelled is skipped by the actor;
   one whose actor dies is given back, not failed: it never started);
4. kills actors whose trial ran past its timeout or ignored a stop request.

Actors (``workers.runner.TrialRunner``) are warm, long-lived processes, one per concurrent
trial, sized by each trial's resources (``num_cpus``, fractional ``num_gpus``) within the
cluster's CPUs and GPUs. Trials never touch the database; their metrics travel over Ray.

Packing (``workers.packing``): waiting trials of one study whose resolved configs differ only in
``lr`` and ``seed`` start together as one pack on one actor (``run_pack``: ``lcw.train_pack``
trains them as one fused model). Each member stays an ordinary trial: its own lease, metrics
rows, outcome and run info (``pack_size``, ``pack_trial_ids``); a member stopped (cancelled)
leaves the pack going; an exception, a dead actor or a timeout (the members' timeout times the
pack size) fails every member's attempt, and each retries by its own ``max_retries`` (packed
again with whatever waits then). ASHA studies are never packed; lr_search trials only once
their slot's LR is assigned.

Failures: an exception in a trial, a dead actor (a SIGKILLed Ray worker) and a timeout are a
failed attempt (retried while ``max_retries`` allows); divergence is an outcome. The store fences
everything by owner, so a dispatcher that lost a lease can never overwrite the trial's new run,
and an unreachable database only delays the writes (the loop retries them with a backoff).

Entry points: ``run_embedded(settings)`` (the thread ``lcw-sweep serve`` starts) and
``run_worker`` (``lcw-sweep worker``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from service.errors import NotFoundError
from service.store import ClaimedTrial, Store
from workers import packing
from workers.asha import Asha
from workers.search import CellSearch

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger("lcw.workers")

TICK_S = 0.1  # longest wait in ray.wait; results wake the loop at once
IDLE_CLAIM_S = 0.2  # when the queue was empty: how soon to look again
RELEASE_EXPIRED_S = 2.0  # how often to requeue trials of dispatchers that died
RENEW_MAX_S = 2.0  # renew (and learn of cancellations) at least this often: cancel < 10 s
STOP_GRACE_S = 3.0  # a trial asked to stop gets this long to reach an epoch boundary
DRAIN_WAIT_S = 2.0  # long poll: an idle actor answers every 2 s (and so proves it is alive)
DRAIN_LINGER_S = 0.2  # batch an actor's epochs for up to 0.2 s (one DB write per tick)
CLUSTER_REFRESH_S = 10.0  # re-read the cluster's CPUs/GPUs (nodes join and leave)
FREE_REFRESH_S = 1.0  # how stale Ray's free-resource figures may be when sizing the pool
POOL_GROW_S = 1.0  # how often to top the pool up to `slots` actors
ACTOR_START_TIMEOUT_S = 120.0  # an actor still unscheduled after this: resources never came
DB_BACKOFF_MAX_S = 10.0
_EPS = 1e-9


def make_owner() -> str:
    """A lease owner id unique to this dispatcher: hostname:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Shape:
    """What one trial reserves on a Ray node; actors are made per shape."""

    cpu: float = 1.0
    gpu: float = 0.0

    @classmethod
    def of(cls, resources: dict[str, Any] | None) -> Shape:
        resources = resources or {}
        return cls(cpu=float(resources.get("cpu", 1.0)), gpu=float(resources.get("gpu", 0.0)))

    @property
    def device(self) -> str:
        # A GPU share means Ray set CUDA_VISIBLE_DEVICES for the actor: its GPU is cuda:0.
        return "cuda" if self.gpu > 0 else "cpu"

    @property
    def threads(self) -> int:
        # One torch thread per reserved CPU: more would oversubscribe the node.
        return max(1, int(self.cpu))


@dataclass(eq=False)
class _Worker:
    handle: Any
    shape: Shape
    name: str
    trials: tuple[_Trial, ...] = ()  # what it runs now: one trial, or the members of a pack
    # What it runs next, already sent: the actor starts it the moment `trials` ends (no round
    # trip through the dispatcher between two trials).
    next: tuple[_Trial, ...] = ()
    drain_ref: Any = None
    ready: bool = False  # its process is up (answered ``info``): only then does it get trials
    node: str | None = None  # Ray node id, from ``info``
    free_bytes: float | None = None  # its device's free memory when it started (``info``)
    born: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Trial:
    claim: ClaimedTrial
    shape: Shape
    config: dict[str, Any] | None = None  # resolved: LR assigned, device and threads set
    key: str | None = None  # packing.group_key of the resolved config; None: never packed
    rungs: list[int] = field(default_factory=list)  # ASHA rung epochs, [] without ASHA
    phase: str = "backlog"  # backlog -> running -> finishing (its outcome waits to be stored)
    token: str = ""
    worker: _Worker | None = None
    ref: Any = None
    started: float | None = None  # monotonic time the actor began training it
    written: set[int] = field(default_factory=set)  # epochs handed to write_metrics
    stopping: str | None = None  # why we stopped it: lost | timeout | shutdown
    kill_at: float | None = None
    asha_stopped: bool = False

    @property
    def id(self) -> int:
        return self.claim.id


@dataclass(frozen=True)
class _Op:
    kind: str  # complete | fail | release
    trial_ids: tuple[int, ...]
    args: dict[str, Any] = field(default_factory=dict)


class Dispatcher:
    """Runs the database's queued trials on the connected Ray cluster (see module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float,
        slots: int | None = None,
        owner: str | None = None,
        tick_s: float = TICK_S,
        stop_grace_s: float = STOP_GRACE_S,
        pack_size: int | None = None,
    ) -> None:
        self.store = store
        # Most members per pack (workers.packing): None picks it from the device, memory and
        # trial cost; 1 switches packing off.
        self.pack_size = pack_size
        self.owner = owner or make_owner()
        self.lease_seconds = lease_seconds
        self.tick_s = tick_s
        self.stop_grace_s = stop_grace_s
        self._slots_setting = slots
        self.slots = slots or 1
        self._trials: dict[int, _Trial] = {}
        self._backlog: deque[_Trial] = deque()
        self._workers: list[_Worker] = []
        # ObjectRef -> ("run", trial) | ("drain", worker) | ("ready", worker)
        self._refs: dict[Any, tuple[str, Any]] = {}
        self._tokens: dict[str, _Trial] = {}
        self._rows: list[tuple[int, dict[str, Any]]] = []
        self._ops: deque[_Op] = deque()
        self._searches: dict[tuple[int, str], CellSearch] = {}
        self._ashas: dict[tuple[int, str], Asha] = {}
        self._slot_settings: dict[tuple[int, str, int], tuple[float, float | None]] = {}
        self._member_s: dict[str, float] = {}  # packing.config_key -> seconds per member
        # Trials claimed ahead per actor: one running pack and the next (the latest limit).
        self._pack_hint = pack_size or packing.CPU_CAP
        self._queue_more = True  # the latest claim got all it asked for: more may be pending
        self._cluster: dict[str, float] = {}
        self._free_cache: tuple[float, dict[str, float]] = (-math.inf, {})  # (when, free)
        self._want = Shape()  # the shape the pool grows with: the latest claimed trial's
        self._next_grow = 0.0
        self._seq = 0
        self._started = False
        self._draining = False
        self._next_claim = 0.0
        self._next_renew = 0.0
        self._next_release = 0.0
        self._next_cluster = 0.0
        self._db_retry_at = 0.0
        self._db_backoff = 0.0
        self._wake = threading.Event()
        # Counters for logs and tests: trials completed, attempts failed, claims, actors that
        # died under a trial, actors we killed (timeouts, stop requests ignored, shutdown).
        self.stats = {"completed": 0, "failed_attempts": 0, "claimed": 0, "died": 0, "killed": 0}

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def renew_s(self) -> float:
        return min(self.lease_seconds / 3.0, RENEW_MAX_S)

    def start(self) -> None:
        """Size the pool from the cluster and start warm actors (Ray must be connected)."""
        if self._started:
            return
        self._refresh_cluster(time.monotonic())
        cpus = self._cluster.get("CPU", 0.0)
        self.slots = self._slots_setting or max(1, int(cpus))
        default = Shape()
        for _ in range(min(self.slots, int(cpus))):
            self._spawn(default)
        self._started = True
        log.info(
            "dispatcher %s: %d slots, %d warm actors, cluster %s",
            self.owner,
            self.slots,
            len(self._workers),
            self._cluster,
        )

    def run(self, stop: threading.Event, *, grace_s: float = 0.0) -> None:
        """Step until `stop` is set, then shut down (`grace_s` for running trials to finish)."""
        self.start()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    # A bug or a lost Ray connection must not end a long-running service's
                    # dispatcher silently: log it, pause, go on (leases keep everything safe).
                    log.exception("dispatcher step failed; retrying in 1 s")
                    stop.wait(1.0)
        finally:
            self.shutdown(grace_s=grace_s)

    def wake(self) -> None:
        """Cut the current idle wait short (shutdown, tests)."""
        self._wake.set()

    def step(self) -> None:
        """One tick: collect from actors, start trials, write, renew/claim, enforce limits."""
        self._collect(self.tick_s)
        self._place(time.monotonic(), eager=True)
        self._flush()
        self._housekeep(time.monotonic())
        self._place(time.monotonic())
        self._grow_pool(time.monotonic())
        self._enforce(time.monotonic())

    def shutdown(self, *, grace_s: float = 0.0) -> None:
        """Stop claiming; give back trials not started; let running ones finish for `grace_s`,
        then stop them and give them back; kill the actors. Safe to call twice."""
        self._draining = True
        self._release_backlog()
        deadline = time.monotonic() + grace_s
        while self._running() and time.monotonic() < deadline:
            self.step()
        for w in list(self._workers):
            for t in w.trials + w.next:
                if t.stopping is None:
                    t.stopping = "shutdown"
            self._kill(w, "dispatcher shutting down")
        self._release_backlog()
        for _ in range(3):  # a database that is down now: the leases lapse instead
            self._db_retry_at = 0.0
            if self._flush():
                break
            time.sleep(0.5)
        log.info("dispatcher %s stopped", self.owner)

    # -- what tests and the CLI look at -------------------------------------------------------

    def running_trial_ids(self) -> set[int]:
        """Trials on an actor right now (each member of a pack)."""
        return {t.id for w in self._workers for t in w.trials}

    def held_trial_ids(self) -> set[int]:
        """Every trial this dispatcher holds a lease on (waiting, running or finishing)."""
        return set(self._trials)

    @property
    def workers(self) -> int:
        return len(self._workers)

    def actor_pids(self, *, timeout: float = 10.0) -> dict[int, int]:
        """Running trial id -> pid of the actor process running it (asks the actors)."""
        import ray

        busy = [w for w in self._workers if w.trials]
        infos = ray.get([w.handle.info.remote() for w in busy], timeout=timeout)
        return {t.id: info["pid"] for w, info in zip(busy, infos, strict=True) for t in w.trials}

    # -- Ray side -----------------------------------------------------------------------------

    def _running(self) -> bool:
        return any(w.trials for w in self._workers)

    def _refresh_cluster(self, now: float) -> None:
        import ray

        self._cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        self._next_cluster = now + CLUSTER_REFRESH_S

    def _fits_cluster(self, shape: Shape) -> bool:
        return (
            shape.cpu <= self._cluster.get("CPU", 0.0) + _EPS
            and shape.gpu <= self._cluster.get("GPU", 0.0) + _EPS
        )

    def _free_resources(self) -> dict[str, float]:
        """Ray's free CPUs/GPUs (other dispatchers and users count), at most a second old."""
        import ray

        when, free = self._free_cache
        if time.monotonic() - when > FREE_REFRESH_S:
            free = {k: float(v) for k, v in ray.available_resources().items()}
            self._free_cache = (time.monotonic(), free)
        return free

    def _spawn(self, shape: Shape) -> _Worker | None:
        """A new actor of `shape` if the slots allow it and the cluster has room for it now.

        Room is what Ray reports free, less what our actors still starting will take: an actor
        Ray cannot schedule would hold its trials hostage, so we never ask for one.
        """
        from workers.runner import runner_class

        if len(self._workers) >= self.slots:
            return None
        free = self._free_resources()
        starting = [w.shape for w in self._workers if not w.ready]
        if free.get("CPU", 0.0) - sum(x.cpu for x in starting) < shape.cpu - _EPS or (
            free.get("GPU", 0.0) - sum(x.gpu for x in starting) < shape.gpu - _EPS
        ):
            return None
        self._seq += 1
        handle = runner_class().options(num_cpus=shape.cpu, num_gpus=shape.gpu).remote()
        w = _Worker(handle=handle, shape=shape, name=f"runner-{self._seq}")
        self._workers.append(w)
        self._refs[handle.info.remote()] = ("ready", w)
        self._drain(w)
        return w

    def _grow_pool(self, now: float) -> None:
        """Top the pool up to `slots` actors (after deaths and kills, or once Ray has room)."""
        if now < self._next_grow or self._draining:
            return
        self._next_grow = now + POOL_GROW_S
        waiting = next((t.shape for t in self._backlog if t.config is not None), None)
        while len(self._workers) < self.slots and self._spawn(waiting or self._want):
            pass

    def _drain(self, w: _Worker) -> None:
        w.drain_ref = w.handle.drain.remote(DRAIN_WAIT_S, DRAIN_LINGER_S)
        self._refs[w.drain_ref] = ("drain", w)

    def _kill(self, w: _Worker, why: str, *, died: bool = False) -> None:
        """Kill an actor (or make sure a dead one is gone: `died`) and settle its trial."""
        import ray

        if not died:
            self.stats["killed"] += 1
        try:
            ray.kill(w.handle, no_restart=True)
        except Exception as exc:  # already dead: nothing to kill
            log.debug("kill %s: %s", w.name, exc)
        self._worker_gone(w, why if died else f"killed by the dispatcher: {why}")

    def _worker_gone(self, w: _Worker, reason: str) -> None:
        """Forget a dead actor; its trials are lost, released or failed by why they stopped."""
        if w not in self._workers:
            return
        self._workers.remove(w)
        pack, queued = w.trials, w.next
        w.trials = w.next = ()
        runs = [x for x in (pack, queued) if x]
        for ref in [r for r, (_, obj) in self._refs.items() if obj is w or obj in runs]:
            del self._refs[ref]
        if any(t.stopping is None for t in pack):
            self.stats["died"] += 1
        where = f" (one of a pack of {len(pack)})" if len(pack) > 1 else ""
        for t in pack + queued:
            t.worker, t.ref = None, None
            self._tokens.pop(t.token, None)
            if t.stopping == "lost":
                self._forget(t)
            elif t.stopping == "shutdown" or t in queued:  # queued: it never started
                self._finish(t, _Op("release", (t.id,)))
            elif t.stopping == "timeout":
                pass  # its failure is queued already
            else:
                error = (
                    f"WorkerDiedError: the Ray worker process running this trial{where} died "
                    f"({reason})"
                )
                self._finish(t, _Op("fail", (t.id,), {"error": error}))

    def _submit(self, pack: tuple[_Trial, ...], w: _Worker, now: float) -> None:
        """Start `pack` (one trial: ``run``; more: ``run_pack``) on the free actor `w`."""
        for t in pack:
            assert t.config is not None  # placement only takes resolved trials
            self._seq += 1
            t.token = f"{t.id}.{t.claim.attempt}.{self._seq}"
        lead = pack[0]
        if len(pack) == 1:
            ref = w.handle.run.remote(lead.token, lead.config, rungs=lead.rungs)
        else:
            ref = w.handle.run_pack.remote(
                [t.token for t in pack], [t.config for t in pack], rungs=lead.rungs
            )
        self._refs[ref] = ("run", pack)
        if w.trials:
            w.next = pack
        else:
            w.trials = pack
        for t in pack:
            self._tokens[t.token] = t
            t.worker, t.ref = w, ref
            t.phase, t.started = "running", None
            self._backlog.remove(t)

    def _pack_for(self, t: _Trial, idle: list[_Worker], *, eager: bool) -> tuple[_Trial, ...]:
        """`t` and the waiting trials that train with it (workers.packing has the rule); ()
        when `eager` and the queue may hold more of them."""
        assert t.config is not None
        if t.key is None or self.pack_size == 1:
            return (t,)
        waiting = [o for o in self._backlog if o.config is not None and o.shape == t.shape]
        mates = [o for o in waiting if o.key == t.key]
        if eager and self._queue_more and len(mates) < self._pack_hint:
            return ()
        if len(mates) < 2:
            return (t,)
        w = idle[0]
        limit = packing.pack_limit(
            t.config,
            gpu=t.shape.gpu > 0,
            cap=self.pack_size,
            free_bytes=w.free_bytes,
            sharing=sum(x.node == w.node and x.shape == w.shape for x in self._workers),
            member_seconds=self._member_s.get(packing.config_key(t.config)),
        )
        self._pack_hint = limit
        size = min(limit, packing.fair_share(len(waiting), len(idle)))
        return tuple(mates[:size])

    def _place(self, now: float, *, eager: bool = False) -> None:
        """Give every free actor its next trial; make actors for shapes that have none.

        `eager` (before this tick's claim): a pack that more trials of the queue could join
        waits for the claim, a few milliseconds, rather than start short.
        """
        for t in list(self._backlog):
            if t.config is None or t.phase != "backlog":  # unresolved, or packed meanwhile
                continue
            idle = [w for w in self._workers if not w.trials and w.ready and w.shape == t.shape]
            if idle:
                pack = self._pack_for(t, idle, eager=eager)
                if pack:
                    self._submit(pack, idle[0], now)
                continue
            if any(w.shape == t.shape and not w.ready for w in self._workers):
                continue  # one of its shape is starting up
            if self._spawn(t.shape) is not None:
                continue
            # Every actor of its shape busy: queue it behind one that has nothing queued (after
            # this tick's claim, and only a full pack: queued packs cannot grow any more).
            busy = [w for w in self._workers if w.trials and not w.next and w.shape == t.shape]
            if busy:
                pack = () if eager else self._pack_for(t, busy, eager=True)
                if pack:
                    self._submit(pack, busy[0], now)
                continue
            if not self._fits_cluster(t.shape):
                self._finish(
                    t,
                    _Op(
                        "fail",
                        (t.id,),
                        {
                            "error": f"ResourceError: the trial needs {t.shape.cpu:g} CPU and "
                            f"{t.shape.gpu:g} GPU per trial; the Ray cluster has "
                            f"{self._cluster.get('CPU', 0):g} CPU and "
                            f"{self._cluster.get('GPU', 0):g} GPU"
                        },
                    ),
                )
                continue
            # Free the resources an idle actor of another shape holds; placed on a later tick.
            other = [w for w in self._workers if not w.trials and w.ready and w.shape != t.shape]
            if other:
                self._kill(min(other, key=lambda w: w.idle_since), "making room for another shape")

    def _collect(self, timeout: float) -> None:
        import ray
        from ray.exceptions import RayActorError, RayError

        if not self._refs:
            self._wake.wait(timeout)
            self._wake.clear()
            return
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            entry = self._refs.pop(ref, None)
            if entry is None:  # its actor was dropped earlier in this loop
                continue
            kind, obj = entry
            w: _Worker | None = obj[0].worker if kind == "run" else obj
            try:
                value = ray.get(ref)
            except RayActorError as exc:  # the actor process died (OOM, SIGKILL, node lost)
                if w is not None:
                    self._kill(w, f"{type(exc).__name__}: {_first_line(exc)}", died=True)
                continue
            except RayError as exc:  # the call itself failed (e.g. a result not unpicklable)
                if kind == "run":
                    self._run_failed(obj, f"{type(exc).__name__}: {exc}")
                elif kind == "drain" and w is not None:
                    self._drain(w)
                elif w is not None:  # its constructor raised: the actor is unusable
                    self._kill(w, f"{type(exc).__name__}: {_first_line(exc)}", died=True)
                continue
            if kind == "ready":
                obj.ready = True
                obj.node, obj.free_bytes = value.get("node_id"), value.get("free_bytes")
                self._free_cache = (-math.inf, {})  # its resources now show as taken
            elif kind == "drain":
                self._on_drain(obj, value)
            else:
                self._on_run(obj, value)

    def _on_drain(self, w: _Worker, items: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for item in items:
            t = self._tokens.get(item["token"])
            if item.get("started"):
                if t is not None:
                    t.started = now
                continue
            if item.get("stopped"):
                # A pack member obeyed a stop request; the pack goes on without it.
                if t is not None and t.worker is not None and len(t.worker.trials) > 1:
                    t.kill_at = None
                continue
            metrics = item["metrics"]
            if t is None:
                if item["rung"]:  # a run we no longer track: let it stop
                    w.handle.decide.remote(item["token"], True)
                continue
            epoch = metrics["epoch"]
            if t.stopping != "lost" and epoch not in t.written:
                t.written.add(epoch)
                self._rows.append((t.id, metrics))
            if item["rung"]:
                asha = self._ashas.get((t.claim.study_id, t.claim.cell_key))
                stop = t.stopping is not None or (
                    asha is not None
                    and asha.on_rung(
                        _slot_of(t),
                        t.claim.seed,
                        epoch,
                        metrics.get("val_acc"),
                        seeds=t.claim.seeds,
                    )
                )
                t.asha_stopped = t.asha_stopped or (stop and t.stopping is None)
                w.handle.decide.remote(item["token"], stop)
        if w in self._workers:
            self._drain(w)

    def _free(self, pack: tuple[_Trial, ...]) -> None:
        """`pack` ended on its actor: what was queued behind it runs now."""
        w = pack[0].worker
        if w is not None:
            if w.trials is pack:
                w.trials, w.next = w.next, ()
            elif w.next is pack:
                w.next = ()
            w.idle_since = time.monotonic()
            for t in w.trials:  # asked to stop while queued: kill it if it started anyway
                if t.stopping is not None and t.kill_at is None:
                    t.kill_at = time.monotonic() + self.stop_grace_s
        for t in pack:
            t.worker, t.ref = None, None
            self._tokens.pop(t.token, None)

    def _run_failed(self, pack: tuple[_Trial, ...], error: str) -> None:
        self._free(pack)
        for t in pack:
            if t.stopping == "lost":
                self._forget(t)
            else:
                self._finish(t, _Op("fail", (t.id,), {"error": error}))

    def _on_run(self, pack: tuple[_Trial, ...], value: dict[str, Any]) -> None:
        """A run came back: a single trial's outcome, a pack's members', or a pack's error."""
        self._free(pack)
        if value["outcome"] != "pack":  # one trial; or a pack that raised: every member fails
            for t in pack:
                self._on_member(t, value, pack)
            return
        members = value["members"]
        ran = sum(m["outcome"] == "result" for m in members.values())
        # The pack's compute, divided among the members that trained in it.
        share = value["compute_seconds"] / max(ran, 1)
        for t in pack:
            extra = {"compute_seconds": share, "pack_compute_seconds": value["compute_seconds"]}
            self._on_member(t, {**members[t.token], **extra, "runner": value["runner"]}, pack)

    def _on_member(self, t: _Trial, value: dict[str, Any], pack: tuple[_Trial, ...]) -> None:
        outcome = value["outcome"]
        if t.stopping == "lost":
            self._forget(t)
            return
        if outcome == "error":
            self._finish(t, _Op("fail", (t.id,), {"error": value["error"]}))
            return
        if outcome == "skipped" or (
            value["status"] == "stopped_early" and not t.asha_stopped
        ):  # stopped by us (shutdown), not a result
            self._finish(t, _Op("release", (t.id,)))
            return
        if t.config is not None and value["status"] == "completed":
            self._member_s[packing.config_key(t.config)] = value["compute_seconds"]
        for metrics in value["epochs"]:
            if metrics["epoch"] not in t.written:
                t.written.add(metrics["epoch"])
                self._rows.append((t.id, metrics))
        self._finish(
            t,
            _Op(
                "complete",
                (t.id,),
                {
                    "status": value["status"],
                    "result": value["result"],
                    "run_info": self._run_info(t, value, pack),
                },
            ),
        )

    def _run_info(
        self, t: _Trial, value: dict[str, Any], pack: tuple[_Trial, ...]
    ) -> dict[str, Any]:
        """What it takes to rerun the trial and to know where and with what it ran."""
        runner = value.get("runner", {})
        env = value["result"].get("env", {})
        c = t.claim
        packed: dict[str, Any] = {}
        if len(pack) > 1:  # trained as one fused model with these trials (lcw.train_pack)
            packed = {
                "pack_size": len(pack),
                "pack_trial_ids": [m.id for m in pack],
                "pack_compute_seconds": value.get("pack_compute_seconds"),
            }
        return {
            **packed,
            "config": t.config,
            "seed": c.seed,
            "attempt": c.attempt,
            "slot": c.slot,
            "lr": (t.config or {}).get("lr"),
            "versions": runner.get("versions", {}),
            "device": env.get("device"),
            "device_name": env.get("device_name"),
            "torch_threads": env.get("threads"),
            "node_id": runner.get("node_id"),
            "hostname": runner.get("hostname"),
            "pid": runner.get("pid"),
            "platform": runner.get("platform"),
            "resources": {"cpu": t.shape.cpu, "gpu": t.shape.gpu},
            "compute_seconds": value.get("compute_seconds"),
            "dispatcher": self.owner,
        }

    def _enforce(self, now: float) -> None:
        """Kill actors whose trial ignored a stop request or ran past its timeout."""
        for w in list(self._workers):
            if not w.ready and now - w.born > ACTOR_START_TIMEOUT_S:
                self._kill(w, f"not scheduled within {ACTOR_START_TIMEOUT_S:g} s")
                continue
            pack = w.trials
            late = next((t for t in pack if t.kill_at is not None and now >= t.kill_at), None)
            if late is not None:
                self._kill(w, f"trial {late.id} did not stop within {self.stop_grace_s:g} s")
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
                    self._finish(t, _Op("fail", (t.id,), {"error": error}))
            self._kill(w, f"trial {pack[0].id} timed out")

    def _stop(self, t: _Trial, why: str, now: float) -> None:
        """Ask a running trial to stop at its next epoch boundary; kill it if it does not."""
        if t.stopping is not None:
            return
        t.stopping = why
        if t.worker is not None:
            t.worker.handle.stop.remote(t.token)
            if t in t.worker.trials:  # a queued run stops before it starts: nothing to kill
                t.kill_at = now + self.stop_grace_s

    # -- bookkeeping --------------------------------------------------------------------------

    def _forget(self, t: _Trial) -> None:
        self._trials.pop(t.id, None)
        if t in self._backlog:
            self._backlog.remove(t)
        self._tokens.pop(t.token, None)

    def _finish(self, t: _Trial, op: _Op) -> None:
        """Queue `t`'s outcome for the database (after its metrics: rows flush first)."""
        if t in self._backlog:
            self._backlog.remove(t)
        t.phase = "finishing"
        self._ops.append(op)

    def _release_backlog(self) -> None:
        waiting = [t for t in self._backlog]
        for t in waiting:
            self._backlog.remove(t)
            t.phase = "finishing"
        if waiting:
            self._ops.append(_Op("release", tuple(t.id for t in waiting)))

    # -- database side ------------------------------------------------------------------------

    def _db(self, fn: Callable[[], None]) -> bool:
        """Run database work; on a database error back off (the work is retried later)."""
        if time.monotonic() < self._db_retry_at:
            return False
        try:
            fn()
        except SQLAlchemyError as exc:
            self._db_backoff = min(max(self._db_backoff * 2, 0.5), DB_BACKOFF_MAX_S)
            self._db_retry_at = time.monotonic() + self._db_backoff
            log.warning(
                "database unavailable (%s); retrying in %.1f s",
                _first_line(exc),
                self._db_backoff,
            )
            return False
        self._db_backoff = 0.0
        return True

    def _flush(self) -> bool:
        """Store the tick's metrics (one call), then the finished trials; True when all done."""
        if not self._rows and not self._ops:
            return True
        return self._db(self._flush_now)

    def _flush_now(self) -> None:
        if self._rows:
            self.store.write_metrics(self.owner, self._rows)
            self._rows = []
        while self._ops:
            self._apply(self._ops[0])
            self._ops.popleft()

    def _apply(self, op: _Op) -> None:
        trials = [self._trials.get(tid) for tid in op.trial_ids]
        final = False
        try:
            if op.kind == "complete":
                final = self.store.complete_trial(self.owner, op.trial_ids[0], **op.args)
                self.stats["completed"] += int(final)
            elif op.kind == "fail":
                status = self.store.fail_trial_attempt(self.owner, op.trial_ids[0], **op.args)
                self.stats["failed_attempts"] += 1
                final = status == "failed"
                log.info(
                    "trial %d attempt failed (%s): %s",
                    op.trial_ids[0],
                    status,
                    _first_line(op.args["error"]),
                )
            else:
                self.store.release_trials(self.owner, list(op.trial_ids))
        except NotFoundError:  # deleted meanwhile
            final = False
        for t in trials:
            if t is None:
                continue
            self._trials.pop(t.id, None)
            if final and t.claim.slot is not None and t.claim.lr_search:
                self._observe(t.claim)

    def _housekeep(self, now: float) -> None:
        if now >= self._next_cluster:
            self._refresh_cluster(now)
        self._db(lambda: self._housekeep_now(now))

    def _housekeep_now(self, now: float) -> None:
        if now >= self._next_renew:
            self._renew(now)
        if now >= self._next_release:
            self.store.release_expired()
            self._next_release = now + RELEASE_EXPIRED_S
        if not self._draining:
            self._claim(now)
        # An lr_search slot without an LR yet gets one proposed only for the trials about to
        # run (the searcher learns from each finished slot); seeds of assigned slots resolve
        # at once, and so can train in one pack.
        ready = sum(w.ready for w in self._workers)
        budget = 2 * ready - sum(t.config is not None for t in self._backlog)
        for t in list(self._backlog):
            if t.config is not None:
                continue
            c = t.claim
            unassigned = c.lr_search and c.slot is not None and c.config.get("lr") is None
            if unassigned and (c.study_id, c.cell_key, c.slot) not in self._slot_settings:
                if budget <= 0:
                    continue
                budget -= 1
            self._resolve(t)

    def _renew(self, now: float) -> None:
        ids = list(self._trials)
        held = self.store.renew_leases(self.owner, ids, lease_seconds=self.lease_seconds)
        self._next_renew = now + self.renew_s
        for tid in set(ids) - held:
            t = self._trials.get(tid)
            if t is None:
                continue
            # Cancelled, deleted, or our lease lapsed and someone else runs it now.
            if t.phase == "backlog":
                self._forget(t)
            elif t.phase == "running" and t.stopping is None:
                log.info("trial %d is no longer ours (cancelled or reclaimed): stopping it", tid)
                self._stop(t, "lost", now)

    def _claim(self, now: float) -> None:
        # One running and one waiting per actor that is up (packing: a pack's worth, the latest
        # pack limit), so a dispatcher whose actors Ray cannot place (another one holds the
        # cluster) claims nothing, and hoards no trials.
        per_actor = 2 if self.pack_size == 1 else 1 + self._pack_hint
        room = per_actor * sum(w.ready for w in self._workers) - len(self._trials)
        if room <= 0 or now < self._next_claim:
            return
        claimed = self.store.claim_trials(self.owner, limit=room, lease_seconds=self.lease_seconds)
        self.stats["claimed"] += len(claimed)
        for c in claimed:
            t = _Trial(claim=c, shape=Shape.of(c.resources))
            self._trials[c.id] = t
            self._want = t.shape
            self._backlog.append(t)
        self._queue_more = len(claimed) >= room
        if len(claimed) < room:
            self._next_claim = now + IDLE_CLAIM_S
        if claimed:
            self._next_renew = min(self._next_renew, now + self.renew_s)

    def _resolve(self, t: _Trial) -> None:
        """The config the actor runs: the slot's LR (searched), device, threads, ASHA rungs."""
        c = t.claim
        config = dict(c.config)
        try:
            if config.get("lr") is None and c.slot is not None and c.lr_search:
                config["lr"], scale = self._slot_setting(c)
                if scale is not None:
                    config["init_scale"] = scale
        except ValueError as exc:  # an LR the store refuses: fail, don't loop
            self._finish(t, _Op("fail", (t.id,), {"error": f"{type(exc).__name__}: {exc}"}))
            return
        config["device"] = t.shape.device
        config["threads"] = t.shape.threads
        if c.scheduler and c.scheduler.get("name") == "asha":
            key = (c.study_id, c.cell_key)
            asha = self._ashas.get(key)
            if asha is None:
                asha = self._ashas[key] = Asha.from_spec(
                    c.scheduler, max_epochs=int(config.get("epochs", 1))
                )
            t.rungs = asha.rungs
        t.config = config
        # ASHA's early stops save nothing inside a pack (a stopped member is only masked until
        # its pack-mates finish), so ASHA studies run their trials alone; so do studies that
        # switched packing off.
        if not t.rungs and self.pack_size != 1 and c.packing:
            t.key = packing.group_key(c.study_id, config)

    def _search(self, c: ClaimedTrial) -> CellSearch:
        key = (c.study_id, c.cell_key)
        search = self._searches.get(key)
        if search is None:
            assert c.lr_search is not None
            history = self.store.lr_history(c.study_id, c.cell_key)
            search = self._searches[key] = CellSearch(
                c.lr_search, cell_key=c.cell_key, history=history
            )
        return search

    def _slot_setting(self, c: ClaimedTrial) -> tuple[float, float | None]:
        """The slot's (lr, init_scale): already assigned (another seed, another dispatcher) or
        proposed now (the scale None when the study does not search it)."""
        assert c.slot is not None
        key = (c.study_id, c.cell_key, c.slot)
        setting = self._slot_settings.get(key)
        if setting is None:
            setting = self.store.slot_setting(c.study_id, c.cell_key, c.slot)
        if setting is None:
            search = self._search(c)
            proposed = search.suggest(c.slot)
            self.store.assign_lr(
                c.study_id, c.cell_key, c.slot, proposed[0], init_scale=proposed[1]
            )
            setting = self.store.slot_setting(c.study_id, c.cell_key, c.slot) or proposed
            search.assigned(c.slot, setting, proposed)
        if not (c.lr_search or {}).get("init_scale"):
            setting = (setting[0], None)  # the scale is fixed in the trial's config
        self._slot_settings[key] = setting
        return setting

    def _observe(self, c: ClaimedTrial) -> None:
        """Tell the cell's searcher about every slot whose seeds have all finished."""
        search = self._searches.get((c.study_id, c.cell_key))
        if search is not None:
            search.observe(self.store.lr_history(c.study_id, c.cell_key))


def _slot_of(t: _Trial) -> Any:
    """The setting a trial belongs to, as ASHA judges it: its lr_search slot, or its grid
    (lr, init_scale); every seed of it stops or goes on together."""
    if t.claim.slot is not None:
        return t.claim.slot
    config = t.config or t.claim.config
    return (config.get("lr"), config.get("init_scale"))


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else type(value).__name__


# -- connecting and running -----------------------------------------------------------------


_NO_FAILURE_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def _import_ray_for_a_process_that_owns_sigterm() -> None:
    """Import Ray so that this driver does not install abseil's failure-signal handler.

    Ray's driver installs it for SIGTERM too, over the handler uvicorn set in the main thread;
    after a SIGTERM went through it, the API process aborted at exit (status 134) instead of
    running atexit (the embedded dispatcher giving its trials back, Ray's shutdown). Ray reads
    the switch when it is imported; it is set for the import only, so the Ray processes that
    ``ray.init`` starts keep their crash handlers.
    """
    if "ray" in sys.modules:  # imported before us: nothing to choose any more
        return
    saved = os.environ.get(_NO_FAILURE_HANDLER)
    os.environ[_NO_FAILURE_HANDLER] = "1"
    try:
        import ray  # noqa: F401
    finally:
        if saved is None:
            del os.environ[_NO_FAILURE_HANDLER]
        else:
            os.environ[_NO_FAILURE_HANDLER] = saved


def connect_ray(
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    failure_signal_handler: bool = True,
) -> dict[str, Any]:
    """Join the Ray cluster at `address` (or $RAY_ADDRESS), else start a local one.

    `failure_signal_handler` False: for a process whose SIGTERM belongs to someone else (the
    API server). Returns what we connected to: address, nodes, CPUs, GPUs, and whether Ray was
    already connected in this process (then nothing is started and `num_cpus` is ignored).
    """
    if not failure_signal_handler:
        _import_ray_for_a_process_that_owns_sigterm()
    import ray

    already = ray.is_initialized()
    if not already:
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": ray.get_runtime_context().gcs_address,
        "local": not address and not already,
        "already_connected": already,
        "nodes": len(nodes),
        "cpus": float(resources.get("CPU", 0.0)),
        "gpus": float(resources.get("GPU", 0.0)),
    }


def dispatcher_from_settings(settings: Settings, *, slots: int | None = None) -> Dispatcher:
    """A Dispatcher on the settings' database (Ray connects separately: ``connect_ray``)."""
    from service.db import make_engine, upgrade_database

    engine = make_engine(
        settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    if settings.migrate_on_start:  # as the API does: a worker may be the first one up
        upgrade_database(engine)
    return Dispatcher(
        Store(engine),
        lease_seconds=settings.lease_seconds,
        slots=slots or settings.worker_slots,
        pack_size=settings.pack_size,
    )


def run_embedded(settings: Settings) -> None:
    """The dispatcher inside ``lcw-sweep serve`` (a daemon thread): runs until process exit.

    At exit (atexit runs before Ray's own shutdown, which registered earlier) it stops
    claiming, gives its trials back to the queue and kills its actors, so a later process
    starts them at once instead of waiting for the leases to lapse.
    """
    stop = threading.Event()
    done = threading.Event()
    try:
        info = connect_ray(
            address=settings.ray_address,
            num_cpus=settings.ray_num_cpus,
            failure_signal_handler=False,
        )
        dispatcher = dispatcher_from_settings(settings)
    except Exception:
        log.exception("the embedded dispatcher could not start; serving the API only")
        return

    def _at_exit() -> None:
        stop.set()
        dispatcher.wake()
        done.wait(15.0)

    atexit.register(_at_exit)
    log.info(
        "embedded dispatcher on Ray %s (%g CPUs, %g GPUs)",
        info["address"],
        info["cpus"],
        info["gpus"],
    )
    try:
        dispatcher.run(stop, grace_s=0.0)
    except Exception:
        log.exception("the embedded dispatcher stopped with an error")
    finally:
        done.set()


__all__ = [
    "Dispatcher",
    "Shape",
    "connect_ray",
    "dispatcher_from_settings",
    "make_owner",
    "run_embedded",
]
