"""End to end through HTTP: `lcw-sweep serve` (API + embedded dispatcher + local Ray) runs studies.

One server for the module, started as a subprocess on a free port with a temporary SQLite
database and an empty ``LCW_DATA_DIR`` (the shipped datasets need none; ``mnist`` then raises
``DatasetNotFoundError``, which is the failing trial).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from wk_helpers import (
    FINISHED,
    free_port,
    kill_pids,
    processes_under,
    ray_tmpdir,
    start,
    stop_process,
    study_spec,
    subprocess_env,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "empty-data").mkdir()
    ray_dir = ray_tmpdir()
    port = free_port()
    env = subprocess_env(
        LCW_DATABASE_URL=f"sqlite:///{tmp / 'lcw.db'}",
        LCW_DATA_DIR=str(tmp / "empty-data"),
        LCW_RAY_NUM_CPUS="2",
        LCW_LEASE_SECONDS="10",
        RAY_TMPDIR=ray_dir,
    )
    log = tmp / "serve.log"
    proc = start(["lcw-sweep", "serve", "--port", str(port)], env=env, log=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=60, interval=0.25, what="lcw-sweep serve to answer")
        yield client, log
    finally:
        client.close()
        code = stop_process(proc)
        leftovers = processes_under(ray_dir)
        kill_pids(leftovers)
        shutil.rmtree(ray_dir, ignore_errors=True)
    # Checked after cleanup: SIGTERM shuts the API, the dispatcher and its local Ray down
    # (exit status 0: the exit went through atexit, not a signal death).
    assert code == 0, log.read_text()[-3000:]
    assert not leftovers, f"processes left behind: {leftovers}"


def _submit(client: httpx.Client, spec: dict[str, Any]) -> int:
    response = client.post("/api/studies", json=spec)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _finished(client: httpx.Client, study_id: int, *, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        study = client.get(f"/api/studies/{study_id}").json()
        return study if study["status"] in FINISHED else None

    return wait_until(done, timeout=timeout, interval=0.5, what=f"study {study_id}")


def _trials(client: httpx.Client, study_id: int) -> list[dict[str, Any]]:
    page = client.get(f"/api/studies/{study_id}/trials", params={"limit": 1000}).json()
    return [client.get(f"/api/trials/{t['id']}").json() for t in page["data"]]


def test_lcw_trains_a_depth_50_sigmoid_mlp_that_plain_cannot(
    server: tuple[httpx.Client, Path],
) -> None:
    client, _ = server
    spec = study_spec(
        "depth-50 sigmoid",
        dataset="mnist5k",
        activations=["sigmoid"],
        depths=[50],
        widths=[100],
        # 8 epochs: at 5 this one seed's LCW run sits at 0.46-0.51 test accuracy and where in
        # that range depends on the CPU's matmul kernels (rounding, amplified by depth 50).
        epochs=8,
        seeds=1,
        batch_size=100,
    )
    study = _finished(client, _submit(client, spec), timeout=300)
    assert study["status"] == "completed"
    assert study["progress"]["completed"] == 2
    summary = client.get(f"/api/studies/{study['id']}/summary").json()
    acc = {cell["method"]: cell["test_acc_mean"] for cell in summary["cells"]}
    assert acc["lcw"] - acc["plain"] >= 0.4, acc
    for trial in _trials(client, study["id"]):
        assert [m["epoch"] for m in trial["metrics"]] == list(range(9))
        info = trial["run_info"]
        assert info["config"]["depth"] == 50 and info["seed"] == 0 and info["attempt"] == 1
        assert info["versions"]["torch"].startswith("2.")
        assert info["hostname"] and info["node_id"] and info["device"] == "cpu"


def test_a_missing_dataset_fails_without_retries_and_a_huge_lr_diverges(
    server: tuple[httpx.Client, Path],
) -> None:
    client, _ = server
    base = {"methods": ["lcw"], "depths": [3], "epochs": 2, "diagnostics": False}
    missing = _submit(
        client,
        {**base, "name": "no data", "dataset": "mnist", "learning_rates": [0.1], "max_retries": 1},
    )
    diverging = _submit(
        client, {**base, "name": "lr 1e3", "dataset": "digits", "learning_rates": [1e3]}
    )
    failed = _finished(client, missing, timeout=120)
    assert failed["status"] == "failed"
    (trial,) = _trials(client, missing)
    assert trial["status"] == "failed"
    assert trial["attempt"] == 1  # no retry can bring the files: max_retries is not used
    assert "DatasetNotFoundError" in trial["error"]
    assert "mnist" in trial["error"]

    done = _finished(client, diverging, timeout=120)
    assert done["status"] == "completed" and done["progress"]["diverged"] == 1
    (trial,) = _trials(client, diverging)
    assert trial["status"] == "diverged"
    assert trial["attempt"] == 1  # an outcome, not retried
    assert trial["result"]["diverged_epoch"] == 1


def test_the_api_metrics_carry_the_embedded_dispatcher(server: tuple[httpx.Client, Path]) -> None:
    """`/metrics` has the embedded dispatcher's lcw_dispatcher_* next to the API's own: its
    trials by outcome are the stored trials by status (it ran every trial of this database)."""
    client, _ = server
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    for status in ("completed", "diverged", "failed"):
        stored = samples[("lcw_trials", (("status", status),))]
        ran = samples[("lcw_dispatcher_trials_total", (("outcome", status),))]
        assert ran == stored, (status, ran, stored)
    assert ("lcw_dispatcher_trials_running", ()) in samples
    assert any(name == "lcw_http_request_duration_seconds_count" for name, _ in samples)


def test_serve_listens_once_its_actors_are_warm(server: tuple[httpx.Client, Path]) -> None:
    """The actors start with the server: its start-up line, printed before it listens, counts
    them warm (up, with torch and the trainer loaded), so the first study pays no start-up
    (``benchmarks.first_study`` measures it)."""
    _, log = server
    text = log.read_text()
    warm = re.search(r"lcw-sweep serve: pages at .*, (\d+) of (\d+) actors warm\n", text)
    assert warm is not None, text[-3000:]
    assert warm.group(1) == warm.group(2) == "2"  # LCW_RAY_NUM_CPUS=2: two actors, both up
    assert warm.end() < text.index("Uvicorn running on")
