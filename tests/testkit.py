"""Helpers every test folder shares: study specs, ports, polling, scratch PostgreSQL databases,
processes.

Per-folder helper modules (``cli_helpers``, ``wk_helpers``, ``svc_helpers``, ...) re-export
these, so a test imports from its own folder's module as before. pytest puts ``tests/`` on the
import path (``pythonpath`` in pyproject.toml) after the project root, so the packages always
win over test folders of the same name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "LCW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def study_spec(name: str, **fields: Any) -> dict[str, Any]:
    """A study spec named `name`: plain vs LCW on digits at depth 3 and learning rate 0.1, unless
    `fields` say otherwise; a field given as None is left out (the server's default applies)."""
    spec = {
        "name": name,
        "dataset": "digits",
        "methods": ["plain", "lcw"],
        "depths": [3],
        "learning_rates": [0.1],
        **fields,
    }
    return {key: value for key, value in spec.items() if value is not None}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as the plain libpq URL psycopg connects with."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_pg_database(prefix: str = "lcw_t") -> Iterator[str]:
    """A new, empty, uniquely named database on the local PostgreSQL; dropped on exit.

    Other people's tests share the server, so every test session works in its own database.
    An unreachable server fails the test (CI starts it) instead of skipping it.
    """
    import psycopg
    import pytest
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable (CI starts it): {exc}")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def processes_under(marker: str | None, *, roots: tuple[int, ...] = ()) -> set[int]:
    """Pids whose command line names `marker` (a private Ray temp dir), or that descend from
    one of them or from `roots`: exactly the processes our subprocesses started."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    found = set(roots) | ({pid for pid in pids if marker in _cmdline(pid)} if marker else set())
    parents = {pid: _ppid(pid) for pid in pids}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid for pid in found if pid != os.getpid() and _alive(pid)}


def kill_pids(pids: set[int], *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 20.0) -> int:
    """SIGTERM a subprocess and wait for it (SIGKILL after `timeout`)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)
