"""Helpers for tests/reliability: a Ray head, a private PostgreSQL server, processes to kill.

Process plumbing (free ports, private Ray temp dirs, killing exactly our own pids) comes from
``tests/workers/wk_helpers.py``; this module adds what fault injection needs on top: a Ray head
shared by a module, a PostgreSQL server of our own (restarting the shared one would break the
other people's tests running against it), and the fault-free reference a faulty run must equal.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wk_helpers import (
    free_port,
    processes_under,
    start,
    stop_process,
    study_spec,
    subprocess_env,
    wait_until,
)
from wk_helpers import ray_head as ray_head  # re-exported for this folder's tests

from service.store import Store

# 8 trials of a few seconds each (batch 1: ~1,400 steps per epoch on digits), so that a kill
# lands mid-trial; seconds per trial, not minutes, so that every scenario stays short.
FAULT_SPEC = study_spec(
    "faults",
    depths=[2, 3],
    learning_rates=[0.03],  # at batch 1, 0.1 makes some of them diverge
    seeds=2,
    epochs=3,
    batch_size=1,
    diagnostics=False,
    max_retries=3,
)
LEASE_S = "3"


@dataclass
class Proc:
    """An `lcw-sweep ...` subprocess with its log; restartable with the same arguments."""

    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    def start(self, *, ready: str, timeout: float = 90) -> Proc:
        """Start it and wait until its log shows `ready`."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = start(self.args, env=self.env, log=self.log)
        self.pids.append(self.proc.pid)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.args[:2]} exited {self.proc.returncode}:\n{self.tail()}"
                )
            return ready in self.log.read_text(errors="replace")[offset:]

        wait_until(up, timeout=timeout, interval=0.1, what=f"{self.args[:2]} to be ready")
        return self

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        return stop_process(self.proc) if self.proc is not None else 0

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 4000) -> str:
        return self.text()[-n:]


def worker(address: str, url: str, log: Path) -> Proc:
    """`lcw-sweep worker` joining the Ray head at `address`, queue at `url`, lease 3 s.

    Packed, as in production: these tests compare a faulted run's results with a reference run
    bit for bit, which holds per trial and seed on the CPU whatever pack a trial lands in (a
    packed member is bitwise its trial alone, tests/lcw/test_pack_invariance.py), although
    which trials share a pack depends on what is waiting when a dispatcher (re)starts.
    """
    env = subprocess_env(LCW_DATABASE_URL=url, LCW_LEASE_SECONDS=LEASE_S)
    return Proc(["lcw-sweep", "worker", "--ray-address", address, "--grace", "0"], env, log)


def api(url: str, log: Path, *, port: int | None = None, **env: str) -> tuple[Proc, str]:
    """`lcw-sweep serve --no-worker` on `url` (a free port unless given); returns (proc, base)."""
    port = port or free_port()
    proc = Proc(
        ["lcw-sweep", "serve", "--no-worker", "--port", str(port)],
        subprocess_env(LCW_DATABASE_URL=url, **env),
        log,
    )
    return proc, f"http://127.0.0.1:{port}"


def runner_pids(ray_dir: str) -> dict[int, str]:
    """Ray worker processes hosting a TrialRunner actor under `ray_dir`: pid -> process title."""
    out = {}
    for pid in processes_under(ray_dir):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith("ray::TrialRunner"):
            out[pid] = title.strip()
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def busiest(pids: list[int], *, window: float = 0.5) -> int:
    """The pid that used the most CPU over the next `window` seconds (the one training)."""
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(window)
    return max(pids, key=lambda pid: _cpu_ticks(pid) - before[pid])


# -- the reference a faulty run must equal ---------------------------------------------------


def _close(a: Any, b: Any, path: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a, b)
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        # Training is bitwise deterministic per seed on CPU; the summary's sums run in SQL, so
        # allow the last bits of a different summation order.
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def summary_numbers(store: Store, study_id: int) -> dict[str, Any]:
    """The study's summary without its id (cells, comparisons)."""
    data = store.summary(study_id).model_dump(mode="json")
    data.pop("study_id")
    return data


def assert_same_summary(store: Store, study_id: int, reference: dict[str, Any]) -> None:
    _close(summary_numbers(store, study_id), reference, "summary")


def final_results(store: Store, study_id: int) -> dict[tuple[str, int | None, int], Any]:
    """(method, depth, seed) -> final test accuracy of every trial of a study."""
    return {
        (t.method, t.depth, t.seed): t.test_acc
        for t in store.list_trials(study_id, limit=10_000).data
    }


# -- a PostgreSQL server of our own ----------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port (trust auth, user postgres)."""

    bindir: Path
    data: Path
    port: int
    user: str | None  # run the server binaries as this user (root may not run postgres)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        # fast: every client connection is cut at once, as when the server crashes or restarts.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    assert bindirs, "PostgreSQL server binaries not found under /usr/lib/postgresql"
    data = Path(tempfile.mkdtemp(prefix="lcwpg", dir="/tmp"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    server = PrivatePostgres(Path(bindirs[-1]), data, free_port(), user)
    server._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            server._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


def elapsed(since: float) -> float:
    return time.monotonic() - since
