"""The first study after ``lcw-sweep serve`` starts, against the same study on a warm server.

Each round starts a real ``lcw-sweep serve`` (a fresh SQLite database and data home, a local
Ray with 2 CPUs), waits for ``/readyz``, submits the 64-trial grid (``benchmarks.grid``) over
the REST API at once and times it as the server records it (creation to the last trial's
completion); then submits it again, on the now warm server, and times that. The figure is
first / warm, the median over rounds: what a user who submits right after starting the server
pays for its start-up (Ray's worker processes, torch, the dataset) beyond a warm server.

    python -m benchmarks.first_study [--repeats 3] [--epochs 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.grid import SLOTS, grid_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


def _ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lcw-sweep serve exited with {proc.returncode}")
        try:
            _call(f"{base}/readyz")
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("lcw-sweep serve did not become ready")


def timed_study(base: str, spec: dict[str, Any], timeout_s: float = 900.0) -> float:
    """Submit `spec` over the API and wait for its end (polling every 0.25 s, as a client
    would); its wall seconds as the server records them (``finished_at - created_at``)."""
    study = _call(f"{base}/api/studies", spec)
    deadline = time.monotonic() + timeout_s
    while True:
        study = _call(f"{base}/api/studies/{study['id']}")
        if study["status"] in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study['id']} did not end within {timeout_s:g} s")
        time.sleep(0.25)
    if study["status"] != "completed":
        raise RuntimeError(f"study {study['id']} ended {study['status']}")
    created, finished = (dt.datetime.fromisoformat(study[k]) for k in ("created_at", "finished_at"))
    return (finished - created).total_seconds()


def one_round(epochs: int) -> dict[str, float]:
    """Start a server, time the first study and then the same study warm; stop the server."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="lcw-first-") as home:
        env = {
            **os.environ,
            "LCW_DATA_HOME": home,
            "LCW_DATABASE_URL": f"sqlite:///{Path(home) / 'lcw.db'}",
            "LCW_RAY_NUM_CPUS": str(SLOTS),
            "LCW_API_TOKENS": "",
        }
        cmd = [str(Path(sys.executable).parent / "lcw-sweep"), "serve", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _ready(base, proc)
            ready_s = time.perf_counter() - started
            first = timed_study(base, grid_spec(epochs=epochs, name="first"))
            warm = timed_study(base, grid_spec(epochs=epochs, name="warm"))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"ready_s": ready_s, "first_s": first, "warm_s": warm, "ratio": first / warm}


def run(*, repeats: int = 3, epochs: int = 20) -> dict[str, Any]:
    rounds = [one_round(epochs) for _ in range(repeats)]
    return {
        "what": "first study after serve starts / the same study on the warm server",
        "epochs": epochs,
        "repeats": repeats,
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "ready_s_median": statistics.median(r["ready_s"] for r in rounds),
        "runs": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(repeats=args.repeats, epochs=args.epochs), indent=2))


if __name__ == "__main__":
    main()
