"""The dispatcher: claims queued trials from the database and runs them on Ray actors.

One loop in one thread (``Dispatcher.step``), no busy waiting: it blocks in ``ray.wait`` on the
actors' outstanding calls for at most a tick. Each tick it

1. collects what the actors sent (finished runs, epoch metrics from the ``drain`` long polls)
   and hands the next claimed trial to every actor that became free (no database on this path,
   so an actor never waits for SQL);
2. writes the queued metrics in one ``write_metrics`` call, then finishes trials
   (``complete_trial`` / ``fail_trial_attempt`` / ``release_trials``); metrics with no outcome
   behind them wait for a write until a second has passed since the last;
3. renews its leases (learning of cancelled or lost trials from the answer), returns expired
   leases of dead dispatchers to the queue, and claims trials ahead: one waiting per slot (a
   pack's worth when packing), and sends each busy actor its next run at once: the actor
   queues it and starts it the moment the current one ends, with no round trip through this
   loop or the database in between (a queued run that is cancelled is skipped by the actor;
   one whose actor dies is given back, not failed: it never started);
4. kills actors whose trial ran past its timeout or ignored a stop request.

The loop is this module; each of its jobs is a part of its own, all sharing one
``workers.state.Held`` (the trials this dispatcher holds a lease on):

* ``workers.leases``: renewing the leases (learning of cancelled or lost trials), requeueing
  expired ones, claiming trials ahead;
* ``workers.pool``: the actors (warm ``workers.runner.TrialRunner`` processes, one per
  concurrent trial or pack, sized by the trials' resources): made, sent runs, stopped, killed;
  timeouts and ignored stop requests;
* ``workers.placement``: which waiting trial or pack goes to which actor (``workers.packing``);
* ``workers.outcomes``: what the actors sent (typed: ``workers.messages``) turned into store
  operations and run info;
* ``workers.writeback``: those operations and the epoch metrics, written each tick, retried
  with a backoff while the database is down;
* ``workers.resolve``: each claimed trial's setting (its lr_search slot's LR, device, threads,
  ASHA rungs) and the ASHA verdicts;
* ``workers.ray_connect``: joining a Ray cluster or starting a local one;
* ``workers.metrics``: its Prometheus metrics (``Dispatcher.metrics``), recorded by the parts
  above where each event happens.

Trials never touch the database; their metrics travel over Ray. Failures: an exception in a
trial, a dead actor (a SIGKILLed Ray worker) and a timeout are a failed attempt (retried while
``max_retries`` allows); divergence is an outcome. The store fences everything by owner, so a
dispatcher that lost a lease can never overwrite the trial's new run, and an unreachable
database only delays the writes (the loop retries them with a backoff).

Entry points (``workers.entry``): ``run_embedded(settings)`` (the thread ``lcw-sweep serve``
starts), and ``connect_ray``, ``dispatcher_from_settings`` and ``Dispatcher.run`` (what
``lcw-sweep worker``, ``service.cli.worker``, runs).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from service.store import Store
from workers.dataset_check import DatasetCheck
from workers.leases import Leases
from workers.metrics import DispatcherMetrics
from workers.outcomes import Outcomes
from workers.placement import Placement
from workers.pool import Pool
from workers.ray_connect import connect_ray
from workers.resolve import Resolver
from workers.state import Held, Shape, Worker, first_line
from workers.writeback import WriteBack

log = logging.getLogger("lcw.workers")

TICK_S = 0.1  # longest wait in ray.wait; results wake the loop at once
STOP_GRACE_S = 3.0  # a trial asked to stop gets this long to reach an epoch boundary


def make_owner() -> str:
    """A lease owner id unique to this dispatcher: hostname:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _setting(part: str, name: str, doc: str) -> Any:
    """A dispatcher setting that lives on one of its parts (read and written through)."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
        doc=doc,
    )


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
        checkpoint_dir: str | None = None,
        runner: Any = None,
    ) -> None:
        self.store = store
        self.owner = owner or make_owner()
        self.tick_s = tick_s
        self._slots_setting = slots
        # Its Prometheus metrics (workers.metrics), on a registry of its own; the parts
        # record what happens as it happens.
        self.metrics = DispatcherMetrics()
        self._held = Held()
        self._writes = WriteBack(store, self.owner, self._held, self.metrics)
        self._resolver = Resolver(store, self._writes, pack_size=pack_size)
        self._writes.on_final = self._resolver.observe  # a searcher learns from its slots
        # checkpoint_dir: where trials save and resume their state (LCW_CHECKPOINT_DIR); None:
        # each actor's own default (workers.checkpoints).
        self._pool = Pool(
            self._held, self._writes, self.metrics, slots=slots or 1, stop_grace_s=stop_grace_s,
            checkpoint_dir=checkpoint_dir, runner=runner,
        )  # fmt: skip
        self._placement = Placement(self._pool, pack_size=pack_size)
        self._outcomes = Outcomes(self.owner, self._pool, self._resolver, self._placement)
        # A study's dataset, checked on the nodes once before its first trials run.
        self._datasets = DatasetCheck(self._writes)
        self._leases = Leases(
            store,
            self.owner,
            self._pool,
            self._placement,
            self.metrics,
            lease_seconds=lease_seconds,
        )
        self.metrics.watch(
            running=lambda: len(self.running_trial_ids()),
            held=lambda: len(self._held.trials),
            actors=lambda: len(self._pool.workers),
        )
        self._started = False
        self._draining = False
        self._wake = threading.Event()

    # -- settings its parts share -------------------------------------------------------------

    slots = _setting("_pool", "slots", "Most actors (and so packs or trials) at once.")
    stop_grace_s = _setting(
        "_pool", "stop_grace_s",
        "How long a trial asked to stop gets to reach an epoch boundary before its actor dies.",
    )  # fmt: skip
    lease_seconds = _setting(
        "_leases",
        "lease_seconds",
        "How long a claim or a renewal leases a trial to this dispatcher.",
    )

    @property
    def pack_size(self) -> int | None:
        """Most members per pack: None picks it (workers.packing); 1 switches packing off."""
        return self._placement.pack_size

    @pack_size.setter
    def pack_size(self, value: int | None) -> None:
        self._placement.pack_size = self._resolver.pack_size = value

    @property
    def renew_s(self) -> float:
        return self._leases.renew_s

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Size the pool from the cluster and start warm actors (Ray must be connected)."""
        if self._started:
            return
        self._pool.refresh_cluster(time.monotonic())
        cpus = self._pool.cluster.get("CPU", 0.0)
        self.slots = self._slots_setting or max(1, int(cpus))
        default = Shape()
        for _ in range(min(self.slots, int(cpus))):
            self._pool.spawn(default)
        self._started = True
        log.info(
            "dispatcher %s: %d slots, %d warm actors, cluster %s",
            self.owner,
            self.slots,
            len(self._pool.workers),
            self._pool.cluster,
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
        self._placement.place(eager=True)
        self._writes.flush()
        self._housekeep(time.monotonic())
        self._placement.place()
        if not self._draining:
            self._pool.grow(time.monotonic())
        self._pool.enforce(time.monotonic())

    def shutdown(self, *, grace_s: float = 0.0) -> None:
        """Stop claiming; give back trials not started; let running ones finish for `grace_s`,
        then stop them and give them back; kill the actors. Safe to call twice."""
        self._draining = True
        self._writes.release_backlog()
        deadline = time.monotonic() + grace_s
        while self._pool.busy() and time.monotonic() < deadline:
            self.step()
        self._pool.kill_all("dispatcher shutting down")
        self._writes.release_backlog()
        for _ in range(3):  # a database that is down now: the leases lapse instead
            if self._writes.flush(now=True):
                break
            time.sleep(0.5)
        log.info("dispatcher %s stopped", self.owner)

    # -- what tests and the CLI look at -------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counts for logs and tests, read from its metrics: trials completed (with a result),
        attempts failed, claims, actors that died under a trial, actors it killed."""
        return self.metrics.stats()

    def running_trial_ids(self) -> set[int]:
        """Trials on an actor right now (each member of a pack)."""
        return {t.id for w in self._pool.workers for t in w.trials}

    def epochs_received(self, trial_id: int) -> set[int]:
        """Epochs of `trial_id` its actor has reported here: stored, or queued for the next
        metrics write (``workers.writeback`` writes metrics alone at most once a second)."""
        t = self._held.trials.get(trial_id)
        return set() if t is None else set(t.written)

    def held_trial_ids(self) -> set[int]:
        """Every trial this dispatcher holds a lease on (waiting, running or finishing)."""
        return set(self._held.trials)

    @property
    def workers(self) -> int:
        return len(self._pool.workers)

    @property
    def _workers(self) -> list[Worker]:
        """The actors (``workers.state.Worker``: what each runs in ``trials``)."""
        return self._pool.workers

    def wait_warm(self, timeout: float) -> int:
        """Start the actors (``start``) and wait up to `timeout` for each to warm up
        (``TrialRunner.warm_up``: up, torch's lazy modules imported, a tiny trial and pack
        trained), so the first study runs as fast as later ones. Returns how many did."""
        import ray

        self.start()
        pending = [w.handle.warm_up.remote() for w in self._pool.workers]
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        return len(ready)

    def actor_pids(self, *, timeout: float = 10.0) -> dict[int, int]:
        """Running trial id -> pid of the actor process running it (asks the actors)."""
        import ray

        busy = [w for w in self._pool.workers if w.trials]
        infos = ray.get([w.handle.info.remote() for w in busy], timeout=timeout)
        return {
            t.id: info.runner.pid for w, info in zip(busy, infos, strict=True) for t in w.trials
        }

    # -- the tick's parts ---------------------------------------------------------------------

    def _collect(self, timeout: float) -> None:
        """Wait up to `timeout` for the actors' calls; hand each answer to the part it is for."""
        import ray
        from ray.exceptions import RayActorError, RayError

        pool = self._pool
        if not pool.refs:
            self._wake.wait(timeout)
            self._wake.clear()
            return
        refs = list(pool.refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            entry = pool.refs.pop(ref, None)
            if entry is None:  # its actor was dropped earlier in this loop
                continue
            kind, obj = entry
            w: Worker | None = obj[0].worker if kind == "run" else obj
            try:
                value = ray.get(ref)
            except RayActorError as exc:  # the actor process died (OOM, SIGKILL, node lost)
                if w is not None:
                    pool.kill(w, f"{type(exc).__name__}: {first_line(exc)}", died=True)
                continue
            except RayError as exc:  # the call itself failed (e.g. a result not unpicklable)
                if kind == "run":
                    self._outcomes.run_failed(obj, f"{type(exc).__name__}: {exc}")
                elif kind == "drain" and w is not None:
                    pool.drain(w)
                elif w is not None:  # its constructor raised: the actor is unusable
                    pool.kill(w, f"{type(exc).__name__}: {first_line(exc)}", died=True)
                continue
            if kind == "ready":
                pool.ready(obj, value)
            elif kind == "drain":
                self._outcomes.on_drain(obj, value)
            else:
                self._outcomes.on_run(obj, value)

    def _housekeep(self, now: float) -> None:
        """The database side: leases and claims, then the settings of the waiting trials."""
        self._pool.refresh_cluster(now, due=True)
        self._writes.db(lambda: self._housekeep_now(now))

    def _housekeep_now(self, now: float) -> None:
        self._leases.tend(now, claim=not self._draining)
        self._datasets.check(self._held.backlog)  # before any claimed trial is placed
        ready = sum(w.ready for w in self._pool.workers)
        self._resolver.resolve_waiting(self._held.backlog, ready)


__all__ = ["Dispatcher", "Shape", "connect_ray", "make_owner"]
