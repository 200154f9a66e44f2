"""The queue side of the dispatcher: its leases kept, lost trials let go, trials claimed ahead.

Every trial this dispatcher holds is leased to it for ``lease_seconds``. ``tend`` (database
work: the loop runs it under the write-behind queue's backoff) renews the leases at least every
``renew_s`` (a third of the lease, at most ``RENEW_MAX_S``, so a cancellation stops a trial
within seconds); the answer names the trials that are no longer ours (cancelled, deleted, or
reclaimed after our lease lapsed): one still waiting is forgotten, one running is asked to stop.
It returns the expired leases of dispatchers that died to the queue, and claims trials ahead:
one running and one waiting per actor that is up (packing: a pack's worth, the latest pack
limit), so a dispatcher whose actors Ray cannot place (another one holds the cluster) claims
nothing and hoards no trials.
"""

from __future__ import annotations

import logging
from datetime import datetime

from service.models import utcnow
from service.store import ClaimedTrial, Store
from workers.metrics import DispatcherMetrics
from workers.placement import Placement
from workers.pool import Pool

log = logging.getLogger("lcw.workers")

IDLE_CLAIM_S = 0.2  # when the queue was empty: how soon to look again
RELEASE_EXPIRED_S = 2.0  # how often to requeue trials of dispatchers that died
RENEW_MAX_S = 2.0  # renew (and learn of cancellations) at least this often: cancel < 10 s


class Leases:
    """Renews, releases and claims for one dispatcher (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        pool: Pool,
        placement: Placement,
        metrics: DispatcherMetrics,
        *,
        lease_seconds: float,
    ) -> None:
        self.store = store
        self.owner = owner
        self.pool = pool
        self.held = pool.held
        self.placement = placement
        self.prom = metrics
        self.lease_seconds = lease_seconds
        self._next_claim = 0.0
        self._next_renew = 0.0
        self._next_release = 0.0

    @property
    def renew_s(self) -> float:
        return min(self.lease_seconds / 3.0, RENEW_MAX_S)

    def tend(self, now: float, *, claim: bool) -> None:
        """Renew and requeue when due; claim trials ahead when `claim` (not shutting down)."""
        if now >= self._next_renew:
            self._renew(now)
        if now >= self._next_release:
            with self.prom.timed("release_expired"):
                expired = self.store.release_expired()
            self.prom.lease_expiries.inc(expired)
            self._next_release = now + RELEASE_EXPIRED_S
        if claim:
            self._claim(now)

    def _renew(self, now: float) -> None:
        ids = list(self.held.trials)
        if ids:  # the store answers an empty renewal without a query: nothing to time
            with self.prom.timed("renew_leases"):
                held = self.store.renew_leases(self.owner, ids, lease_seconds=self.lease_seconds)
        else:
            held = set()
        self._next_renew = now + self.renew_s
        for tid in set(ids) - held:
            t = self.held.trials.get(tid)
            if t is None:
                continue
            # Cancelled, deleted, or our lease lapsed and someone else runs it now.
            if t.phase == "backlog":
                self.prom.leases_lost.inc()
                self.held.forget(t)
            elif t.phase == "running" and t.stopping is None:
                self.prom.leases_lost.inc()
                log.info("trial %d is no longer ours (cancelled or reclaimed): stopping it", tid)
                self.pool.stop(t, "lost", now)

    def _claim(self, now: float) -> None:
        placement = self.placement
        # One running and one waiting per actor: a trial each, or a pack each when packing;
        # short trials alone wait a few deep (workers.placement).
        per_actor = 2 if placement.pack_size == 1 else 2 * placement.pack_hint
        per_actor = max(per_actor, 1 + placement.queue_hint)
        room = per_actor * sum(w.ready for w in self.pool.workers) - len(self.held.trials)
        if room <= 0 or now < self._next_claim:
            return
        # Metrics of earlier attempts stay: an attempt that resumes from a checkpoint re-runs
        # only the epochs after it, and its first row replaces the rest (workers.checkpoints).
        claimed_at = utcnow()
        with self.prom.timed("claim_trials"):
            claimed = self.store.claim_trials(
                self.owner, limit=room, lease_seconds=self.lease_seconds, keep_metrics=True
            )
        self.prom.claimed([c.attempt for c in claimed])
        for c in claimed:
            self.pool.want = self.held.add(c).shape  # the pool grows with the latest shape
        placement.queue_more = len(claimed) >= room
        if len(claimed) < room:
            self._next_claim = now + IDLE_CLAIM_S
        if claimed:
            self._next_renew = min(self._next_renew, now + self.renew_s)
            self._waited([c for c in claimed if c.attempt == 1], claimed_at)

    def _waited(self, first: list[ClaimedTrial], claimed_at: datetime) -> None:
        """Queue wait of first claims: from each trial's creation (the queue keeps no time of
        a requeue, so later attempts are not measured); the claim returns the creation time."""
        created = [c.created_at for c in first if c.created_at is not None]
        if created:
            self.prom.waited(created, claimed_at)


__all__ = ["IDLE_CLAIM_S", "RELEASE_EXPIRED_S", "RENEW_MAX_S", "Leases"]
