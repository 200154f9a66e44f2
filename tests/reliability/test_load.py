"""Load: 50 concurrent submitters and 200 concurrent pollers for 60 s against `lcw-sweep serve`.

Two configurations, each a real server on loopback driven by ``loadgen.py`` in its own process:

- SQLite, the embedded default: API and dispatcher in one process (``LCW_RAY_NUM_CPUS=1``: one
  trial trains at a time, so the API keeps a core), the dispatcher running the submitted studies
  and writing their metrics while the API takes submissions: two writers on one SQLite file;
- PostgreSQL, the cluster configuration: ``serve --no-worker`` (the API alone).

Each must answer every request (zero transport errors, zero non-2xx) and its log must never say
"database is locked". The figures (p50/p90/p99 per kind, requests, errors) go to
``tests/artifacts/load/<config>.json`` (git-ignored) and are printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import serve
from rel_helpers import api
from svc_helpers import fresh_pg_database

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent / "artifacts" / "load"
SECONDS = 60


def _load(url: str, name: str) -> dict[str, Any]:
    out = ARTIFACTS / f"{name}.json"
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            url,
            "--out",
            str(out),
            "--submitters",
            "50",
            "--pollers",
            "200",
            "--seconds",
            str(SECONDS),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    result["config"] = name
    out.write_text(json.dumps(result, indent=2) + "\n")
    line = {k: result[k] for k in ("config", "requests", "requests_per_s", "errors")}
    print(f"\nload {line} submit {result['submit']} poll {result['poll']}")
    return result


def _check(result: dict[str, Any], log: str) -> None:
    assert result["errors"] == 0, result["error_samples"]
    assert result["submit"]["count"] > 0 and result["poll"]["count"] > 0
    assert result["seconds"] < SECONDS + 30
    assert "database is locked" not in log.lower()
    assert "Traceback" not in log, log[-3000:]


def test_sqlite_api_and_dispatcher_under_load(tmp_path: Path) -> None:
    with serve(tmp_path, LCW_RAY_NUM_CPUS="1", LCW_LEASE_SECONDS="10") as (url, _started):
        result = _load(url, "sqlite-with-dispatcher")
        # The dispatcher ran studies (and wrote their metrics) all along.
        finished = httpx.get(f"{url}/api/studies", params={"status": "completed"}, timeout=30)
        result["studies_completed_meanwhile"] = finished.json()["count"]
    _check(result, (tmp_path / "serve.log").read_text(errors="replace"))
    assert result["studies_completed_meanwhile"] > 0


@pytest.mark.postgres
def test_postgresql_api_under_load(tmp_path: Path) -> None:
    with fresh_pg_database() as db:
        server, url = api(db, tmp_path / "serve.log")
        server.start(ready="Uvicorn running on")
        try:
            result = _load(url, "postgresql-api")
        finally:
            server.stop()
    _check(result, server.text())
