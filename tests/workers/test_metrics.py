"""The dispatcher's Prometheus metrics (``workers.metrics``): their names and values after a
study on a real local Ray, the server behind ``lcw-sweep worker --metrics-port``, and the API's
``/metrics`` with an embedded dispatcher's metrics in it.

Kept in a module of its own: its dispatcher needs the local Ray to itself (see
test_own_dispatcher.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from wk_helpers import Started, free_port, study_spec, submit, trials_of, wait_study, wait_until

from service.config import Settings
from service.main import create_app
from service.store import Store
from workers.dispatcher import Dispatcher
from workers.metrics import OUTCOMES, WRITES, DispatcherMetrics, embed, serve_metrics

# 2 methods x 2 LRs x 2 seeds on digits: packs of the trials that differ only in LR and seed.
SPEC = study_spec("metrics", learning_rates=[0.03, 0.1], seeds=2, epochs=2, diagnostics=False)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_names_and_values_after_a_study(store: Store, dispatch: Callable[..., Started]) -> None:
    started = dispatch()
    d = started.dispatcher
    begin = time.monotonic()
    study = wait_study(store, submit(store, SPEC), timeout=180)
    wall = time.monotonic() - begin
    assert study.status == "completed"
    wait_until(lambda: not d.held_trial_ids(), timeout=10, what="every outcome stored")
    text = generate_latest(d.metrics.registry).decode()
    print(text)  # the names and values after the study (pytest -s)
    got = _samples(text)

    def value(name: str, **labels: str) -> float:
        return got[("lcw_dispatcher_" + name, tuple(sorted(labels.items())))]

    trials = trials_of(store, study.id)
    n = len(trials)
    assert n == 8
    statuses = [t.status for t in trials]
    for outcome in OUTCOMES:
        assert value("trials_total", outcome=outcome) == statuses.count(outcome), outcome
    assert statuses.count("completed") + statuses.count("diverged") == n
    assert value("attempts_total") == n and value("retries_total") == 0
    assert value("lease_expiries_total") == 0 and value("leases_lost_total") == 0
    assert value("actor_deaths_total") == 0
    # Every trial waited in the queue once (first claims), for less than the study took.
    assert value("queue_wait_seconds_count") == n
    assert 0 <= value("queue_wait_seconds_sum") <= n * wall
    assert value("queue_wait_seconds_bucket", le="+Inf") == n
    # One run duration per trial (a pack member: its pack's run), each within the study's.
    assert value("trial_duration_seconds_count") == n
    assert 0 < value("trial_duration_seconds_sum") <= n * wall
    # The runs sent, as the trials' run info records them: one per pack, one per lone trial.
    runs = {tuple(t.run_info.get("pack_trial_ids", [t.id])) for t in trials}
    assert value("pack_size_count") == len(runs) and value("pack_size_sum") == n
    assert len(runs) < n  # packs formed
    for le in (1, 2, 4, 8):
        assert value("pack_size_bucket", le=f"{le:.1f}") == sum(len(r) <= le for r in runs)
    # Metric rows: exactly the stored ones (epoch 0 and every epoch after it, per trial).
    assert value("metric_rows_written_total") == sum(len(t.metrics) for t in trials) == n * 3
    # Database writes: completions batched (one complete_trials per tick that finished some:
    # at least one, at most one per trial), and the claims, renewals, metric batches.
    assert 1 <= value("db_write_seconds_count", operation="complete_trials") <= n
    for op in ("write_metrics", "claim_trials", "renew_leases", "release_expired"):
        assert value("db_write_seconds_count", operation=op) >= 1, op
        assert value("db_write_seconds_sum", operation=op) < wall, op
    assert value("trials_running") == 0 and value("trials_held") == 0
    assert value("actors") == len(d._workers) >= 1
    # The dispatcher's stats are read from the same counters.
    assert d.stats["completed"] == n and d.stats["claimed"] == n
    assert d.stats["failed_attempts"] == 0 and d.stats["died"] == 0

    # Prometheus conventions: one prefix, counters end in _total, durations in base units.
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("lcw_dispatcher_"), family.name
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {
                family.name + "_total",
                family.name + "_created",
            }
        if family.type == "histogram" and family.name != "lcw_dispatcher_pack_size":
            assert family.name.endswith("_seconds"), family.name
        for s in family.samples:
            assert set(s.labels) <= {"outcome", "operation", "le"}, s  # no trial or study ids


def test_several_dispatchers_in_one_process_keep_their_own_metrics(store: Store) -> None:
    first, second = Dispatcher(store, lease_seconds=10), Dispatcher(store, lease_seconds=10)
    first.metrics.trials["completed"].inc()
    assert first.stats["completed"] == 1 and second.stats["completed"] == 0


def test_the_metrics_port_serves_the_dispatcher_metrics() -> None:
    metrics = DispatcherMetrics()
    metrics.trials["completed"].inc(3)
    metrics.pack_size.observe(4)
    with metrics.timed("write_metrics"):
        pass
    port = free_port()
    server = serve_metrics(port, metrics.registry, addr="127.0.0.1")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = _samples(response.text)
    assert got[("lcw_dispatcher_trials_total", (("outcome", "completed"),))] == 3
    assert got[("lcw_dispatcher_pack_size_sum", ())] == 4
    key = ("lcw_dispatcher_db_write_seconds_count", (("operation", "write_metrics"),))
    assert got[key] == 1
    # Every outcome and store operation is there from the start, at 0 until it happens.
    for outcome in OUTCOMES:
        assert ("lcw_dispatcher_trials_total", (("outcome", outcome),)) in got
    for op in WRITES:
        assert ("lcw_dispatcher_db_write_seconds_count", (("operation", op),)) in got


def test_the_api_metrics_include_the_embedded_dispatcher(store: Store, tmp_path: Path) -> None:
    dispatcher = Dispatcher(store, lease_seconds=10)
    dispatcher.metrics.trials["diverged"].inc(2)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", api_tokens=[])
    with TestClient(create_app(settings)) as client:
        assert "lcw_dispatcher_" not in client.get("/metrics").text  # serve --no-worker
        embed(dispatcher.metrics)  # what run_embedded does in `lcw-sweep serve`
        try:
            text = client.get("/metrics").text
        finally:
            embed(None)
    got = _samples(text)
    assert got[("lcw_dispatcher_trials_total", (("outcome", "diverged"),))] == 2
    assert ("lcw_trials", (("status", "pending"),)) in got  # the API's own metrics stay
    assert ("lcw_dispatcher_trials_held", ()) in got
