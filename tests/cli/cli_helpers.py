"""Process helpers for tests that run `lcw-sweep` servers, workers and Ray heads for real.

Every Ray these tests start gets a private temp dir (``RAY_TMPDIR`` / ``--temp-dir``), and
cleanup kills exactly the processes whose command line names it, or that descend from a process
we started, by pid: other people run Ray on this machine, and `ray stop` would kill theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from testkit import free_port as free_port  # re-exported for this folder's tests
from testkit import kill_pids as kill_pids
from testkit import processes_under as processes_under
from testkit import stop_process as stop_process
from testkit import study_spec as study_spec
from testkit import wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def ray_tmpdir() -> str:
    # Short and under /tmp: Ray's unix socket paths must stay under ~107 bytes.
    return tempfile.mkdtemp(prefix="lcwc", dir="/tmp")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any LCW_* / RAY_ADDRESS setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCW_")}
    env.pop("RAY_ADDRESS", None)
    env.update(PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0", COLUMNS="200")
    env.update(extra)
    return env


def lcw(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `lcw-sweep ARGS...` console script to completion."""
    return subprocess.run(
        [str(BIN / "lcw-sweep"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
        cwd=REPO,
    )


@dataclass
class Started:
    """Background processes of one test fixture, and the Ray temp dirs they use."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ray_dirs: list[str] = field(default_factory=list)

    def start(self, args: list[str], *, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        """Start a venv binary (`lcw-sweep`, `ray`) with its output in <tmp>/<name>.log."""
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> set[int]:
        """Stop what we started, newest first; returns the pids that had to be killed."""
        for proc in reversed(self.procs):
            stop_process(proc)
        leftovers: set[int] = set()
        for ray_dir in self.ray_dirs:
            leftovers |= processes_under(ray_dir)
        kill_pids(leftovers)
        return leftovers


def wait_healthy(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 60) -> None:
    """Wait for GET /healthz to answer 200 (fail early when the server exits)."""

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with code {proc.returncode}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=timeout, interval=0.25, what=f"{url}/healthz")


@contextlib.contextmanager
def serve(
    tmp: Path, *, extra_args: tuple[str, ...] = (), **env_extra: str
) -> Iterator[tuple[str, Started]]:
    """`lcw-sweep serve` on a free port with a temporary SQLite database (<tmp>/lcw.db), its
    output in <tmp>/serve.log; `env_extra` adds to or overrides its environment. Yields its URL;
    on exit, fails the test if a process had to be killed."""
    started = Started(tmp)
    ray_dir = ray_tmpdir()
    started.ray_dirs.append(ray_dir)
    port = free_port()
    env = clean_env(
        **{
            "LCW_DATABASE_URL": f"sqlite:///{tmp / 'lcw.db'}",
            "LCW_RAY_NUM_CPUS": "2",
            "LCW_LEASE_SECONDS": "15",
            "RAY_TMPDIR": ray_dir,
            **env_extra,
        }
    )
    proc = started.start(
        ["lcw-sweep", "serve", "--port", str(port), *extra_args], env=env, name="serve"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{started.log('serve')}") from None
        yield url, started
    finally:
        leftovers = started.stop()
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert not leftovers, f"processes left behind: {leftovers}"
