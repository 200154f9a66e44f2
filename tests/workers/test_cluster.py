"""`lcw-sweep worker` against a Ray cluster started apart (`ray start --head` on loopback).

The cluster topology of a real deployment, on one machine: a Ray head with 2 CPUs, and the
dispatcher as its own process that joins it by address (and serves its Prometheus metrics on
``--metrics-port``). The same cluster serves the recovery test: the dispatcher is SIGKILLed
mid-study and started again, and the study still completes with exactly one metrics row per
epoch of every trial.

The head runs with a private ``--temp-dir`` and its own ports; teardown ends exactly the
processes under that temp dir (by pid), never someone else's Ray (`ray stop` would).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wk_helpers import (
    assert_one_row_per_epoch,
    free_port,
    start,
    stop_process,
    study_spec,
    submit,
    subprocess_env,
    trials_of,
    wait_study,
    wait_until,
)
from wk_helpers import (
    ray_head as start_ray_head,
)

from service.db import make_engine, upgrade_database
from service.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A 2-CPU Ray head on loopback; yields its address."""
    with start_ray_head() as (address, _):
        yield address


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    url = f"sqlite:///{tmp_path / 'lcw.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    yield url, Store(engine)
    engine.dispose()


def _worker(
    address: str,
    url: str,
    log: Path,
    *,
    lease_seconds: float = 10.0,
    args: tuple[str, ...] = (),
    **extra: str,
) -> subprocess.Popen[bytes]:
    env = subprocess_env(LCW_DATABASE_URL=url, LCW_LEASE_SECONDS=str(lease_seconds), **extra)
    proc = start(["lcw-sweep", "worker", "--ray-address", address, *args], env=env, log=log)

    def connected() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
        return "lcw-sweep worker" in log.read_text()

    wait_until(connected, timeout=60, interval=0.2, what="the worker to connect")
    return proc


SMALL = study_spec("through a cluster", seeds=2, epochs=2)


def test_worker_joins_a_cluster_by_address_and_runs_a_study(
    ray_head: str, db: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = db
    log = tmp_path / "worker.log"
    port = free_port()
    proc = _worker(ray_head, url, log, args=("--metrics-port", str(port)))
    try:
        banner = log.read_text()
        assert "Ray cluster at" in banner and f":{ray_head.rsplit(':', 1)[1]}" in banner
        assert "1 node(s), 2 CPU, 0 GPU" in banner and "2 slot(s)" in banner
        assert f"metrics on :{port}/metrics" in banner
        study = wait_study(store, submit(store, SMALL), timeout=120)
        assert study.status == "completed"
        trials = trials_of(store, study.id)
        assert [t.status for t in trials] == ["completed"] * 4
        assert len({t.run_info["node_id"] for t in trials}) == 1  # the head node
        assert all(t.run_info["dispatcher"].split(":")[1] == str(proc.pid) for t in trials)

        # Its Prometheus metrics (--metrics-port): the study's trials, each claimed once.
        def scraped() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            return text if 'lcw_dispatcher_trials_total{outcome="completed"} 4.0' in text else None

        text = wait_until(scraped, timeout=10, what="the metrics to count the study's trials")
        assert "lcw_dispatcher_attempts_total 4.0" in text
        assert "lcw_dispatcher_metric_rows_written_total 12.0" in text  # epochs 0-2 each
    finally:
        code = stop_process(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text().splitlines()[-1]


def test_a_sigkilled_dispatcher_restarted_finishes_the_study(
    ray_head: str, db: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = db
    spec = study_spec(
        "recovery",
        dataset="mnist5k",
        depths=[10],
        learning_rates=[0.03, 0.1, 0.3],
        seeds=2,
        epochs=3,
    )
    sid = submit(store, spec)
    # Unpacked (LCW_PACK_SIZE=1): trials finish one by one, so the kill lands mid-study with
    # some trials done, some running and some still pending (test_packing.py kills a pack).
    # 12 trials: with 2 slots each holding one running and one queued-ahead trial, at most 4 are
    # claimed when the kill lands, so some are always still pending.
    first = _worker(ray_head, url, tmp_path / "first.log", lease_seconds=3, LCW_PACK_SIZE="1")

    def mid_study() -> bool:
        progress = store.get_study(sid).progress
        running = [t for t in trials_of(store, sid) if t.status == "running" and t.metrics]
        return progress.completed >= 2 and bool(running)

    try:
        wait_until(mid_study, timeout=120, what="some trials done and others mid-run")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    interrupted = {t.id for t in trials_of(store, sid) if t.status == "running"}
    assert interrupted and store.get_study(sid).progress.pending > 0

    second = _worker(ray_head, url, tmp_path / "second.log", lease_seconds=3, LCW_PACK_SIZE="1")
    try:
        study = wait_study(store, sid, timeout=180)
    finally:
        assert stop_process(second) == 0
    assert study.status == "completed"
    trials = trials_of(store, sid)
    assert [t.status for t in trials] == ["completed"] * 12
    for t in trials:
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == spec["epochs"] + 1
        # Trials the kill interrupted ran again from the start; no completed one ran twice.
        assert t.attempt == (2 if t.id in interrupted else 1), (t.id, t.attempt)
