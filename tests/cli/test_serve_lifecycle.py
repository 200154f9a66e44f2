"""`lcw-sweep serve` starts and stops cleanly: its first line names the database, the page URL
and Ray's address; SIGTERM and SIGINT end it with exit code 0 and leave no process of the local
Ray it started (GCS, raylet, dashboard and runtime-env agents, workers) behind.

A real `lcw-sweep serve` subprocess per case, on a free port with a temporary SQLite database
and a local Ray whose temp dir is private to the test, so that every process of that Ray is
found by its command line or as a descendant of the server.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import BIN, REPO, clean_env, free_port, ray_tmpdir, wait_healthy
from testkit import _alive, _cmdline, kill_pids, processes_under

pytestmark = pytest.mark.slow

# What a local Ray runs besides the driver (the agents' command lines are their titles).
RAY_PARTS = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _ray_processes(ray_dir: str, server_pid: int) -> dict[int, str]:
    """Every live process of the server's Ray: {pid: command line}."""
    pids = processes_under(ray_dir, roots=(server_pid,)) - {server_pid}
    return {pid: _cmdline(pid) for pid in pids}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_with_exit_0_and_takes_its_ray_along(
    tmp_path: Path, signum: signal.Signals
) -> None:
    ray_dir = ray_tmpdir()
    port = free_port()
    database = tmp_path / "lcw.db"
    env = clean_env(
        LCW_DATABASE_URL=f"sqlite:///{database}",
        LCW_RAY_NUM_CPUS="1",
        RAY_TMPDIR=ray_dir,
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "lcw-sweep"), "serve", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    before: dict[int, str] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout=120)
        before = _ray_processes(ray_dir, proc.pid)
        for part in RAY_PARTS:  # the test sees the whole local Ray, agents included
            assert any(part in cmd for cmd in before.values()), (part, before)

        proc.send_signal(signum)
        code = proc.wait(timeout=45)
        stopped_at = time.monotonic()
        left = {pid: cmd for pid, cmd in before.items() if _alive(pid)}
        left |= _ray_processes(ray_dir, proc.pid)
        while left and time.monotonic() - stopped_at < 15:
            time.sleep(0.5)
            left = {pid: cmd for pid, cmd in left.items() if _alive(pid)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        leftovers = processes_under(ray_dir) | {pid for pid in before if _alive(pid)}
        kill_pids(leftovers)
        shutil.rmtree(ray_dir, ignore_errors=True)
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-3000:]
    assert not left, f"Ray processes 15 s after the server stopped: {left}"

    start_line = next(line for line in log_text.splitlines() if "lcw-sweep serve:" in line)
    assert f"pages at {url}/" in start_line
    assert f"database sqlite:///{database}" in start_line
    assert "Ray: local Ray at " in start_line and "(1 CPU, 0 GPU)" in start_line
    assert "SIGTERM handler is not set" not in log_text
    assert "Traceback" not in log_text and "Aborted" not in log_text
