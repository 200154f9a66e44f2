"""Placement: which waiting trial, alone or in a pack, goes to which actor, and when.

Every tick each resolved trial in the backlog, in claim order, goes to a free ready actor of
its shape; with none, the pool makes one if Ray has room; with none of those, it is queued
behind a busy actor of its shape that has nothing queued (the actor starts it the moment its
run ends). A trial whose shape the cluster can never hold fails; an idle actor of another shape
is killed to make room for one that can.

Trials shorter than a tick would leave an actor idle between the run it queued and the next
tick: a trial alone (not packed) is queued as deep as about ``QUEUE_S`` of its configuration's
measured run time fills, at most ``QUEUE_MAX`` runs per actor instead of one, and the claim
takes as many (``queue_hint``). A trial of ``QUEUE_S`` or more (or not measured yet) still
queues one deep, so a study submitted later, or a second dispatcher, never waits behind more
than about ``QUEUE_S`` of queued work per actor.

Packing (``workers.packing`` has the rule): waiting trials of one study whose resolved configs
differ only in ``lr`` and ``seed`` (equal ``Trial.key``) start together as one pack on one
actor, as many as ``packing.pack_limit`` allows for the actor's device, memory and the trials'
measured cost (``member_seconds``), and no more than a fair share of what waits for the idle
actors. Before the tick's claim (``eager``), a pack that more of the queue could join waits for
the claim, a few milliseconds, rather than start short. ASHA studies and studies that switched
packing off are never packed, lr_search trials only once their slot's LR is assigned
(``workers.resolve`` sets ``Trial.key``). Each member stays an ordinary trial: its own lease,
metrics rows, outcome and run info (``pack_size``, ``pack_trial_ids``); a member stopped
(cancelled) leaves the pack going; an exception, a dead actor or a timeout (the members' timeout
times the pack size) fails every member's attempt, and each retries by its own ``max_retries``
(packed again with whatever waits then).
"""

from __future__ import annotations

from workers import packing
from workers.pool import Pool
from workers.state import Held, Trial, Worker
from workers.writeback import WriteBack

QUEUE_S = 0.2  # seconds of measured work queued per actor behind its run (short trials)
QUEUE_MAX = 16  # runs queued per actor at most


class Placement:
    """Sends the backlog's resolved trials to actors (see the module docstring)."""

    def __init__(self, pool: Pool, *, pack_size: int | None) -> None:
        self.pool = pool
        self.held: Held = pool.held
        self.writes: WriteBack = pool.writes
        # Most members per pack: None picks it from the device, memory and trial cost; 1
        # switches packing off.
        self.pack_size = pack_size
        # Trials claimed ahead per actor: one running pack and the next (the latest limit).
        self.pack_hint = pack_size or packing.CPU_CAP
        self.queue_more = True  # the latest claim got all it asked for: more may be pending
        self.member_seconds: dict[str, float] = {}  # packing.config_key -> seconds per member
        # Runs queued per actor behind the running one, as the latest trial placed needed it.
        self.queue_hint = 1

    def place(self, *, eager: bool = False) -> None:
        """Give every free actor its next trial; make actors for shapes that have none.

        `eager` (before this tick's claim): a pack that more trials of the queue could join
        waits for the claim rather than start short.
        """
        pool = self.pool
        for t in list(self.held.backlog):
            if t.config is None or t.phase != "backlog":  # unresolved, or packed meanwhile
                continue
            idle = [w for w in pool.workers if not w.trials and w.ready and w.shape == t.shape]
            if idle:
                pack = self._pack_for(t, idle, eager=eager)
                if pack:
                    pool.send(pack, idle[0])
                continue
            if any(w.shape == t.shape and not w.ready for w in pool.workers):
                continue  # one of its shape is starting up
            if pool.spawn(t.shape) is not None:
                continue
            # Every actor of its shape busy: queue it behind one that has nothing queued (after
            # this tick's claim, and only a full pack: queued packs cannot grow any more).
            depth = self.queue_hint = self._queue_depth(t)
            busy = [
                w for w in pool.workers
                if w.trials and len(w.queued) < depth and w.shape == t.shape
            ]  # fmt: skip
            if busy:
                pack = () if eager else self._pack_for(t, busy, eager=True)
                if pack:
                    pool.send(pack, min(busy, key=lambda w: len(w.queued)))
                continue
            if not pool.fits_cluster(t.shape):
                self.writes.fail(
                    t,
                    f"ResourceError: the trial needs {t.shape.cpu:g} CPU and "
                    f"{t.shape.gpu:g} GPU per trial; the Ray cluster has "
                    f"{pool.cluster.get('CPU', 0):g} CPU and "
                    f"{pool.cluster.get('GPU', 0):g} GPU",
                )
                continue
            # Free the resources an idle actor of another shape holds; placed on a later tick.
            other = [w for w in pool.workers if not w.trials and w.ready and w.shape != t.shape]
            if other:
                pool.kill(min(other, key=lambda w: w.idle_since), "making room for another shape")

    def _queue_depth(self, t: Trial) -> int:
        """How many runs may wait behind an actor's running one for `t` (module docstring)."""
        assert t.config is not None
        alone = t.key is None or self.pack_size == 1
        seconds = self.member_seconds.get(packing.config_key(t.config))
        depth = 1
        if alone and seconds is not None:
            depth = max(1, min(QUEUE_MAX, int(QUEUE_S / max(seconds, 1e-6))))
        return depth

    def _pack_for(self, t: Trial, idle: list[Worker], *, eager: bool) -> tuple[Trial, ...]:
        """`t` and the waiting trials that train with it (workers.packing has the rule); ()
        when `eager` and the queue may hold more of them."""
        assert t.config is not None
        if t.key is None or self.pack_size == 1:
            return (t,)
        waiting = [o for o in self.held.backlog if o.config is not None and o.shape == t.shape]
        mates = [o for o in waiting if o.key == t.key]
        if eager and self.queue_more and len(mates) < self.pack_hint:
            return ()
        if len(mates) < 2:
            return (t,)
        w = idle[0]
        limit = packing.pack_limit(
            t.config,
            gpu=t.shape.gpu > 0,
            cap=self.pack_size,
            free_bytes=w.free_bytes,
            sharing=sum(x.node == w.node and x.shape == w.shape for x in self.pool.workers),
            member_seconds=self.member_seconds.get(packing.config_key(t.config)),
        )
        self.pack_hint = limit
        size = min(limit, packing.fair_share(len(waiting), len(idle)))
        return tuple(mates[:size])


__all__ = ["QUEUE_MAX", "QUEUE_S", "Placement"]
