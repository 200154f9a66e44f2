"""Faults injected into real processes on real PostgreSQL: the study finishes and loses nothing.

One Ray head (2 CPUs, loopback) serves the module, one PostgreSQL database holds its queue, and
one `lcw-sweep worker` (lease 3 s) runs the trials. A fault-free run of ``FAULT_SPEC`` is the
reference: after every fault the study is completed, every trial has exactly one metrics row per
epoch, and the summary equals the reference to 1e-12 (training is bitwise deterministic per seed
on CPU, so a trial that ran again gives the same numbers).

- a Ray worker process SIGKILLed under a running trial: that attempt fails and reruns;
- the API server SIGKILLed while clients poll and submit, then restarted: every submission that
  got a 201 exists once, and a retry with the same Idempotency-Key returns the same study;
- a trial that runs past ``trial_timeout_s`` is killed and failed, the rest of the study runs;
- the dispatcher SIGKILLed mid-study and started again (tests/workers does this on SQLite;
  here on PostgreSQL and against the reference summary);
- PostgreSQL stopped for longer than a lease mid-study and started again (a private server:
  the shared one serves other people's tests): the worker and the API reconnect on their own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from loadgen import TINY
from rel_helpers import (
    FAULT_SPEC,
    PrivatePostgres,
    Proc,
    api,
    assert_same_summary,
    busiest,
    final_results,
    private_postgres,
    ray_head,
    runner_pids,
    summary_numbers,
    worker,
)
from svc_helpers import fresh_pg_database
from wk_helpers import (
    assert_one_row_per_epoch,
    submit,
    trials_of,
    wait_study,
    wait_until,
)

from service.db import make_engine, upgrade_database
from service.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READY_WORKER = "lcw-sweep worker "
READY_API = "Uvicorn running on"


@dataclass
class Fleet:
    """The module's Ray head, database and (restartable) worker."""

    address: str
    ray_dir: str
    url: str
    store: Store
    tmp: Path
    worker: Proc
    reference: dict[str, Any] = field(default_factory=dict)
    reference_results: dict[Any, Any] = field(default_factory=dict)

    def ensure_worker(self) -> None:
        if self.worker.proc is None or self.worker.proc.poll() is not None:
            self.worker.start(ready=READY_WORKER)

    def stop_worker(self) -> None:
        assert self.worker.stop() in (0, -9), self.worker.tail()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("faults")
    with ray_head() as (address, ray_dir), fresh_pg_database() as url:
        engine = make_engine(url)
        upgrade_database(engine)
        store = Store(engine)
        fleet = Fleet(address, ray_dir, url, store, tmp, worker(address, url, tmp / "worker.log"))
        try:
            fleet.ensure_worker()
            # The fault-free reference run of the same spec and seeds.
            sid = submit(store, {**FAULT_SPEC, "name": "reference"})
            study = wait_study(store, sid, timeout=180)
            assert study.status == "completed", fleet.worker.tail()
            # Packs formed (run_info records each trial's pack), so the faulted runs below,
            # whose packs differ, check that a trial's numbers do not depend on its pack.
            packs = [(t.run_info or {}).get("pack_size", 1) for t in trials_of(store, sid)]
            assert max(packs) > 1, packs
            fleet.reference = summary_numbers(store, sid)
            fleet.reference_results = final_results(store, sid)
            yield fleet
        finally:
            fleet.worker.stop()
            engine.dispose()


def _mid_study(store: Store, sid: int, *, completed: int = 1, running: int = 1) -> bool:
    trials = trials_of(store, sid)
    done = sum(t.status == "completed" for t in trials)
    busy = sum(t.status == "running" and bool(t.metrics) for t in trials)
    return done >= completed and busy >= running


def _assert_complete_and_equal(fleet: Fleet, store: Store, sid: int) -> list[Any]:
    study = store.get_study(sid)
    assert study.status == "completed", study.progress
    trials = trials_of(store, sid)
    assert [t.status for t in trials] == ["completed"] * len(trials)
    for t in trials:
        assert_one_row_per_epoch(t)
        assert len(t.metrics) == FAULT_SPEC["epochs"] + 1, (t.id, t.attempt)
    assert final_results(store, sid) == fleet.reference_results  # bitwise, trial by trial
    assert_same_summary(store, sid, fleet.reference)
    return trials


def test_a_sigkilled_ray_worker_process_reruns_its_trial(fleet: Fleet) -> None:
    fleet.ensure_worker()
    store = fleet.store
    sid = submit(store, {**FAULT_SPEC, "name": "ray worker killed"})
    # Both actors busy with a trial that has reported an epoch: either process runs a trial.
    wait_until(lambda: _mid_study(store, sid, completed=0, running=2), timeout=90, what="2 busy")
    pids = runner_pids(fleet.ray_dir)
    assert len(pids) == 2, pids  # one TrialRunner actor per CPU of the head
    victim = busiest(list(pids))  # the one training (it may train a pack of trials at once)
    running = {t.id for t in trials_of(store, sid) if t.status == "running"}
    os.kill(victim, signal.SIGKILL)
    assert wait_study(store, sid, timeout=180).status == "completed", fleet.worker.tail()
    trials = _assert_complete_and_equal(fleet, store, sid)
    rerun = {t.id for t in trials if t.attempt == 2}
    # Exactly the trial(s) the killed process was training ran again; every other ran once.
    assert rerun and rerun <= running, (rerun, running)
    assert all(t.attempt == 1 for t in trials if t.id not in rerun)
    assert all(t.run_info["pid"] != victim for t in trials if t.id in rerun)
    assert victim not in runner_pids(fleet.ray_dir)


@dataclass
class _Clients:
    """Submitters and pollers hammering the API through a kill and a restart."""

    base: str
    created: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> study id
    replayed: set[str] = field(default_factory=set)
    transport_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    polls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def _count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def submitter(self, n: int, per: int, deadline: float) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            for j in range(per):
                key = f"kill-{n}-{j}"
                spec = {**TINY, "name": key}
                while time.monotonic() < deadline:
                    try:
                        r = client.post("/api/studies", json=spec, headers={"Idempotency-Key": key})
                    except httpx.TransportError:
                        with self.lock:
                            self.transport_errors += 1
                        time.sleep(0.2)  # the server is down: retry with the same key
                        continue
                    self._count(r.status_code)
                    if r.status_code == 201:
                        with self.lock:
                            self.created[key] = r.json()["id"]
                            if r.headers.get("Idempotent-Replayed") == "true":
                                self.replayed.add(key)
                    break
                time.sleep(0.15)

    def poller(self, study_id: int) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                for path in (f"/api/studies/{study_id}", "/api/studies?limit=5"):
                    try:
                        r = client.get(path)
                    except httpx.TransportError:
                        with self.lock:
                            self.transport_errors += 1
                        time.sleep(0.2)
                        continue
                    self._count(r.status_code)
                    with self.lock:
                        self.polls += 1
                time.sleep(0.05)


def test_the_api_server_sigkilled_under_load_restarts_without_loss(fleet: Fleet) -> None:
    fleet.ensure_worker()
    store = fleet.store
    server, base = api(fleet.url, fleet.tmp / "api.log")
    server.start(ready=READY_API)
    try:
        r = httpx.post(
            f"{base}/api/studies",
            json={**FAULT_SPEC, "name": "api killed"},
            headers={"Idempotency-Key": "main-study"},
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        clients = _Clients(base)
        submitters, per = 4, 8
        deadline = time.monotonic() + 60
        threads = [
            threading.Thread(target=clients.submitter, args=(n, per, deadline))
            for n in range(submitters)
        ] + [threading.Thread(target=clients.poller, args=(sid,)) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(clients.created) >= 4, timeout=30, what="first submissions")
        server.sigkill()  # mid-stream: requests in flight are cut
        time.sleep(1.5)
        server.start(ready=READY_API)  # same port, same database
        for t in threads[:submitters]:
            t.join(90)
        clients.stop.set()
        for t in threads[submitters:]:
            t.join(30)

        assert clients.transport_errors > 0  # the clients did see the server go away
        assert all(status < 500 for status in clients.statuses), clients.statuses
        assert set(clients.statuses) == {200, 201}, clients.statuses
        keys = {f"kill-{n}-{j}" for n in range(submitters) for j in range(per)}
        assert set(clients.created) == keys  # every submission got its 201 in the end
        # Every 201 is a stored study, exactly once (the name is the key).
        names: dict[str, list[int]] = {}
        for s in store.list_studies(limit=500).data:
            names.setdefault(s.name, []).append(s.id)
        for key, study_id in clients.created.items():
            assert names[key] == [study_id], (key, names.get(key))
        # Retrying any of them now (a client that never saw its answer) returns the same study.
        with httpx.Client(base_url=base, timeout=10) as client:
            for key, study_id in sorted(clients.created.items()):
                again = client.post(
                    "/api/studies", json={**TINY, "name": key}, headers={"Idempotency-Key": key}
                )
                assert again.status_code == 201 and again.json()["id"] == study_id
                assert again.headers["Idempotent-Replayed"] == "true"
            main = client.post(
                "/api/studies",
                json={**FAULT_SPEC, "name": "api killed"},
                headers={"Idempotency-Key": "main-study"},
            )
            assert main.json()["id"] == sid
        assert len([s for s in store.list_studies(limit=500).data if s.name == "api killed"]) == 1
    finally:
        server.stop()
    assert wait_study(store, sid, timeout=180).status == "completed", fleet.worker.tail()
    _assert_complete_and_equal(fleet, store, sid)
    for study_id in clients.created.values():
        assert wait_study(store, study_id, timeout=60).status == "completed"


def test_a_trial_past_its_timeout_is_stopped_and_failed_and_the_study_goes_on(
    fleet: Fleet,
) -> None:
    fleet.ensure_worker()
    store = fleet.store
    timeout_s = 15.0
    # Depth 100 at batch 1: ~16 s an epoch here, 3 epochs (plain sigmoid: the gradients vanish,
    # it never diverges, it just runs); depth 2 (the reference's) takes ~1 s an epoch, ~5.5 s in
    # all with the data's first load: a 15 s limit leaves it a margin on a loaded machine.
    spec = {
        **FAULT_SPEC,
        "name": "hangs",
        "methods": ["plain"],
        "depths": [2, 100],
        "seeds": 1,
        "trial_timeout_s": timeout_s,
        "max_retries": 0,
    }
    started = time.monotonic()
    sid = submit(store, spec)
    study = wait_study(store, sid, timeout=120)
    assert time.monotonic() - started < 60
    trials = trials_of(store, sid)
    # Finished, nothing left waiting; "completed" because one of its trials has a result.
    errors = {t.depth: (t.status, (t.error or "")[:300]) for t in trials}
    assert study.status == "completed" and study.progress.failed == 1, (study.progress, errors)
    for t in trials:
        if t.depth == 100:
            assert t.status == "failed" and t.attempt == 1
            assert "TrialTimeoutError" in (t.error or "") and "15 s" in (t.error or "")
            ran = (t.finished_at - t.started_at).total_seconds()
            assert timeout_s <= ran < timeout_s + 8, ran  # + a wait in the backlog
        else:
            assert t.status == "completed"
            assert len(t.metrics) == spec["epochs"] + 1
            # The same trial as the reference's (method, depth 2, seed 0): the same numbers.
            assert t.test_acc == fleet.reference_results[(t.method, 2, 0)]
        assert_one_row_per_epoch(t)
    # The actors it killed were replaced: the next study runs at once.
    after = submit(store, {**TINY, "name": "after the timeout"})
    assert wait_study(store, after, timeout=60).status == "completed"


def test_a_sigkilled_dispatcher_restarted_finishes_the_study_unchanged(fleet: Fleet) -> None:
    fleet.ensure_worker()
    store = fleet.store
    sid = submit(store, {**FAULT_SPEC, "name": "dispatcher killed"})
    wait_until(lambda: _mid_study(store, sid), timeout=90, what="trials done and mid-run")
    fleet.worker.sigkill()
    before = {t.id: t for t in trials_of(store, sid)}
    interrupted = {tid for tid, t in before.items() if t.status == "running"}
    done = {tid: t.finished_at for tid, t in before.items() if t.status == "completed"}
    assert interrupted and done
    fleet.ensure_worker()  # a new dispatcher: the dead one's leases lapse after 3 s
    assert wait_study(store, sid, timeout=180).status == "completed", fleet.worker.tail()
    for t in _assert_complete_and_equal(fleet, store, sid):
        if t.id in done:  # completed before the kill: never ran again
            assert t.attempt == 1 and t.finished_at == done[t.id]
        if t.id in interrupted:
            assert t.attempt == 2


def _healthz(base: str, probe: str = "/healthz") -> int:
    try:
        return httpx.get(f"{base}{probe}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_postgresql_restarted_mid_study_the_worker_and_api_carry_on(fleet: Fleet) -> None:
    fleet.stop_worker()  # its actors hold the head's CPUs; this test brings its own worker
    with private_postgres() as pg:
        _restart_scenario(fleet, pg)


def _restart_scenario(fleet: Fleet, pg: PrivatePostgres) -> None:
    engine = make_engine(pg.url)
    upgrade_database(engine)
    store = Store(engine)
    own = worker(fleet.address, pg.url, fleet.tmp / "pg-worker.log")
    server, base = api(pg.url, fleet.tmp / "pg-api.log")
    own.start(ready=READY_WORKER)
    server.start(ready=READY_API)
    try:
        sid = submit(store, {**FAULT_SPEC, "name": "postgres restarted"})
        wait_until(lambda: _mid_study(store, sid), timeout=90, what="trials done and mid-run")
        pg.stop()
        down = time.monotonic()
        assert _healthz(base) == 503  # the API says so instead of hanging or crashing
        assert _healthz(base, "/readyz") == 503  # no traffic to this pod...
        assert _healthz(base, "/livez") == 200  # ...but no restart: the process is fine
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down)))  # longer than a lease (3 s)
        pg.start()
        wait_until(lambda: _healthz(base) == 200, timeout=30, what="the API to reconnect")
        assert _healthz(base, "/readyz") == 200
        assert httpx.get(f"{base}/api/studies/{sid}").status_code == 200
        assert wait_study(store, sid, timeout=180).status == "completed", own.tail()
        _assert_complete_and_equal(fleet, store, sid)
        assert "database unavailable" in own.text()  # it noticed, waited, and went on
        assert own.proc is not None and own.proc.poll() is None
    finally:
        own.stop()
        server.stop()
        engine.dispose()
