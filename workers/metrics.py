"""The dispatcher's Prometheus metrics, each defined once (``DispatcherMetrics``).

Every ``Dispatcher`` owns one ``DispatcherMetrics`` on a registry of its own, so several
dispatchers in one process (tests, a restarted embedded one) never collide, and each one's
figures are its own. Its parts record each event where it happens: ``workers.leases``
(claims, retries, queue wait, expired and lost leases), ``workers.pool`` (pack sizes sent,
actors killed or dead), ``workers.outcomes`` (run durations), ``workers.writeback`` (trials by
outcome, metric rows, database latency). ``Dispatcher.stats`` is read from here too.

Served two ways: ``lcw-sweep worker --metrics-port N`` serves its registry at
``http://0.0.0.0:N/metrics`` (``serve_metrics``), and ``lcw-sweep serve`` adds its embedded
dispatcher's (``embed``) to the API's ``/metrics`` through ``EMBEDDED``, a collector the app
registers. Recording costs a lock and an addition per event; the gauges are computed when
scraped, never on the dispatcher's path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import Collector

PREFIX = "lcw_dispatcher_"
# How a trial's attempt ended, as the store recorded it (one sample per finished attempt).
RESULTS = ("completed", "diverged", "stopped_early")
OUTCOMES = (*RESULTS, "failed_attempt", "failed", "released")
# The store calls timed by lcw_dispatcher_db_write_seconds (named as the Store's methods).
WRITES = (
    "write_metrics",
    "complete_trials",
    "fail_trial_attempt",
    "release_trials",
    "fail_pending",
    "renew_leases",
    "claim_trials",
    "release_expired",
)

Gauged = Callable[[], float]  # a gauge's value, computed when scraped

_WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 24 * 3600)
_PACK_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DispatcherMetrics:
    """One dispatcher's metrics on `registry` (default: a new one of its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        trials = Counter(
            PREFIX + "trials",
            "Finished trial attempts by outcome, as stored: completed, diverged, stopped_early "
            "(results), failed_attempt (retried), failed (no attempt left, or an error no "
            "retry fixes), released (given back unused)",
            ["outcome"],
            registry=r,
        )
        self.trials = {outcome: trials.labels(outcome) for outcome in OUTCOMES}
        self.attempts = Counter(
            PREFIX + "attempts", "Trial attempts claimed from the queue", registry=r
        )
        self.retries = Counter(
            PREFIX + "retries",
            "Claims of a trial's second or later attempt (after a failed attempt or an "
            "expired lease)",
            registry=r,
        )
        self.queue_wait = Histogram(
            PREFIX + "queue_wait_seconds",
            "From a trial's creation (submission or extend) to its first claim",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            PREFIX + "trial_duration_seconds",
            "A run's time on its actor, from its start to its result or error (a pack "
            "member: its pack's run)",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.lease_expiries = Counter(
            PREFIX + "lease_expiries",
            "Expired leases (of dispatchers that stopped renewing) this dispatcher returned "
            "to the queue or failed",
            registry=r,
        )
        self.leases_lost = Counter(
            PREFIX + "leases_lost",
            "Trials a renewal found no longer held (cancelled, deleted or reclaimed)",
            registry=r,
        )
        self.pack_size = Histogram(
            PREFIX + "pack_size",
            "Trials per run sent to an actor (1: a trial alone)",
            buckets=_PACK_BUCKETS,
            registry=r,
        )
        self.rows_written = Counter(
            PREFIX + "metric_rows_written",
            "Epoch metric rows stored (rows the store ignored, already written, not counted)",
            registry=r,
        )
        db = Histogram(
            PREFIX + "db_write_seconds",
            "Latency of the dispatcher's store writes, by store operation",
            ["operation"],
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self.db = {op: db.labels(op) for op in WRITES}
        self.kills = Counter(
            PREFIX + "actor_kills",
            "Actors this dispatcher killed (timeout, ignored stop, shutdown, making room)",
            registry=r,
        )
        self.deaths = Counter(
            PREFIX + "actor_deaths",
            "Actors that died under a running trial (OOM, SIGKILL, node lost)",
            registry=r,
        )
        self._running = Gauge(
            PREFIX + "trials_running", "Trials training on an actor now", registry=r
        )
        self._held = Gauge(
            PREFIX + "trials_held",
            "Trials leased to this dispatcher: waiting for an actor, running, or with an "
            "outcome not yet stored",
            registry=r,
        )
        self._actors = Gauge(
            PREFIX + "actors", "Actors in the pool (ready or starting)", registry=r
        )

    def watch(self, *, running: Gauged, held: Gauged, actors: Gauged) -> None:
        """Compute the gauges at scrape time from the dispatcher's state."""
        self._running.set_function(running)
        self._held.set_function(held)
        self._actors.set_function(actors)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Observe the store write `operation`'s latency (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.db[operation].observe(time.perf_counter() - start)

    def claimed(self, attempts: list[int]) -> None:
        """Claims of these attempt numbers (1: a trial's first)."""
        self.attempts.inc(len(attempts))
        self.retries.inc(sum(a > 1 for a in attempts))

    def waited(self, created: list[datetime], claimed_at: datetime) -> None:
        """First claims of trials created at `created`, made at `claimed_at`."""
        for when in created:
            self.queue_wait.observe(max(0.0, (claimed_at - when).total_seconds()))

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent): e.g. ``value("trials_total",
        outcome="completed")``."""
        return self.registry.get_sample_value(PREFIX + name, labels) or 0.0

    def stats(self) -> dict[str, int]:
        """The dispatcher's counters for logs and tests (``Dispatcher.stats``)."""
        outcome = {o: int(self.value("trials_total", outcome=o)) for o in OUTCOMES}
        return {
            "completed": sum(outcome[o] for o in RESULTS),
            "failed_attempts": outcome["failed_attempt"] + outcome["failed"],
            "claimed": int(self.value("attempts_total")),
            "died": int(self.value("actor_deaths_total")),
            "killed": int(self.value("actor_kills_total")),
        }


class Embedded(Collector):
    """The metrics of the dispatcher embedded in this process (``lcw-sweep serve``'s), if any."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry | None = None

    def collect(self) -> Iterator[Any]:
        registry = self.registry
        if registry is not None:
            yield from registry.collect()


EMBEDDED = Embedded()


def embed(metrics: DispatcherMetrics | None) -> None:
    """Add a dispatcher's metrics to this process's API ``/metrics`` (``service.main``), in
    place of an earlier one's; None: no longer any."""
    EMBEDDED.registry = metrics.registry if metrics is not None else None


def serve_metrics(port: int, registry: CollectorRegistry, *, addr: str = "0.0.0.0") -> Any:
    """Serve `registry` at ``http://ADDR:PORT/metrics`` from a daemon thread; returns the
    server (``shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


__all__ = [
    "EMBEDDED",
    "OUTCOMES",
    "WRITES",
    "DispatcherMetrics",
    "Embedded",
    "embed",
    "serve_metrics",
]
