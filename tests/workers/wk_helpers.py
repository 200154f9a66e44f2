"""Helpers for tests/workers (a plain module; conftest.py holds the fixtures).

Subprocesses (`lcw-sweep serve`, `lcw-sweep worker`, `ray start --head`) run with a private Ray
temp dir (``RAY_TMPDIR`` / ``--temp-dir``) so that cleanup can find exactly the processes these
tests started, by pid: other people run Ray on this machine at the same time, and `ray stop`
would kill theirs too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from testkit import PG_ADMIN_URL as PG_ADMIN_URL  # re-exported for this folder's tests
from testkit import free_port as free_port
from testkit import fresh_pg_database as fresh_pg_database
from testkit import kill_pids as kill_pids
from testkit import processes_under as processes_under
from testkit import stop_process as stop_process
from testkit import study_spec as study_spec
from testkit import wait_until

from service.spec import plan_study
from service.store import Store
from workers.dispatcher import Dispatcher

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FINISHED = ("completed", "failed", "cancelled")

T = TypeVar("T")

DIGITS = study_spec("small", epochs=2, diagnostics=False)
# Long trials (depth 50 on 4,000 MNIST images: about a second per epoch here).
LONG = study_spec("long", dataset="mnist5k", depths=[50], epochs=40, seeds=2)


def submit(store: Store, spec: dict[str, Any]) -> int:
    """Create a study from a spec (as the API would); returns its id."""
    planned, trials = plan_study(spec, max_trials=100_000)
    study, _ = store.create_study(planned, trials)
    return study.id


def wait_study(store: Store, study_id: int, *, timeout: float) -> Any:
    """The study once it is completed, failed or cancelled."""
    wait_until(
        lambda: store.get_study(study_id).status in FINISHED,
        timeout=timeout,
        what=f"study {study_id} to finish",
    )
    return store.get_study(study_id)


def trials_of(store: Store, study_id: int) -> list[Any]:
    """Every trial of a study with its metrics and run info (TrialDetailPublic)."""
    return [store.get_trial(t.id) for t in store.list_trials(study_id, limit=10_000).data]


def assert_one_row_per_epoch(trial: Any) -> None:
    """The trial has metrics for epochs 0..last, each exactly once."""
    epochs = [m.epoch for m in trial.metrics]
    assert epochs == list(range(len(epochs))), (trial.id, trial.status, epochs)


def ray_tmpdir() -> str:
    # Short and under /tmp: Ray's unix socket paths must stay under ~107 bytes.
    return tempfile.mkdtemp(prefix="lcwr", dir="/tmp")


_RAY_TOKEN = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(16)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCW_")}
    env.pop("RAY_ADDRESS", None)
    env.update(
        PYTHONUNBUFFERED="1",
        RAY_USAGE_STATS_ENABLED="0",
        # One setting on both sides: a driver joining a token-protected cluster needs it, and
        # one token for every process of this test session (none is on disk in a fresh home).
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=_RAY_TOKEN,
    )
    env.update(extra)
    return env


def start(args: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `lcw-sweep ARGS...` (or another venv binary) with stdout+stderr into `log`."""
    exe = args[0] if args[0].startswith("/") else str(BIN / args[0])
    handle = open(log, "ab")  # noqa: SIM115 - owned by the process for its lifetime
    return subprocess.Popen(
        [exe, *args[1:]], env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
    )


class Started:
    """A Dispatcher stepping in a background thread."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=dispatcher.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Shut down as at process exit (grace 0: running trials are given back)."""
        self._stop.set()
        self.dispatcher.wake()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the dispatcher did not stop"


@dataclass
class Shared:
    store: Store
    dispatcher: Dispatcher
    db_url: str

    def idle(self) -> bool:
        return not self.dispatcher.held_trial_ids()


@contextlib.contextmanager
def ray_head() -> Iterator[tuple[str, str]]:
    """A 2-CPU Ray head on loopback with a private temp dir; yields (address, temp dir)."""
    tmp = ray_tmpdir()
    port = free_port()
    flags = (
        "--dashboard-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    )
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--port",
        str(port),
        "--num-cpus",
        "2",
        "--node-ip-address",
        "127.0.0.1",
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        "--temp-dir",
        tmp,
        *[item for flag in flags for item in (flag, str(free_port()))],
    ]
    try:
        done = subprocess.run(
            command, env=subprocess_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield f"127.0.0.1:{port}", tmp
    finally:
        kill_pids(processes_under(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
