"""The compose topology for real, without containers: PostgreSQL + `ray start --head` +
`lcw-sweep db upgrade` + `lcw-sweep worker --ray-address ...` + `lcw-sweep serve --no-worker`,
each its own process as in docker-compose.yml, then a study submitted with the CLI runs to the
end through them.

A fresh database ``lcw_t_<random>`` on the local PostgreSQL is created and dropped; the Ray
head gets a private ``--temp-dir`` and its own auth token, and cleanup kills the processes
under that dir by pid (never `ray stop`, which would stop other people's Ray too).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cli_helpers import (
    Started,
    clean_env,
    free_port,
    lcw,
    processes_under,
    ray_tmpdir,
    study_spec,
    wait_healthy,
    wait_until,
)
from svc_helpers import fresh_pg_database, libpq_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "topology-token"

SPEC = study_spec("topology", widths=[16], seeds=2, epochs=2, diagnostics=False)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database, as the plain ``postgresql://`` URL docker-compose.yml passes."""
    with fresh_pg_database() as url:
        yield libpq_url(url)


@pytest.fixture
def cluster(database: str, tmp_path: Path) -> Iterator[tuple[str, Started, int]]:
    """The processes of docker-compose.yml, started in its order; yields the API URL."""
    started = Started(tmp_path)
    ray_dir = ray_tmpdir()
    started.ray_dirs.append(ray_dir)
    ray_port = free_port()
    ray_env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    db_env = {**ray_env, "LCW_DATABASE_URL": database}
    try:
        # ray-head (returns once the head's daemons run)
        head = started.start(
            ["ray", "start", "--head", "--port", str(ray_port), "--num-cpus", "2",
             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
             "--disable-usage-stats", "--temp-dir", ray_dir],
            env=ray_env, name="ray-head",
        )  # fmt: skip
        assert head.wait(90) == 0, started.log("ray-head")
        # migrate (one shot), then the dispatcher and the API
        migrate = lcw("db", "upgrade", env=db_env)
        assert migrate.returncode == 0, migrate.stderr
        worker = started.start(
            ["lcw-sweep", "worker", "--ray-address", f"127.0.0.1:{ray_port}"],
            env=db_env, name="dispatcher",
        )  # fmt: skip
        api_port = free_port()
        api = started.start(
            ["lcw-sweep", "serve", "--no-worker", "--port", str(api_port)],
            env={**db_env, "LCW_API_TOKENS": TOKEN, "LCW_MIGRATE_ON_START": "false"},
            name="api",
        )
        url = f"http://127.0.0.1:{api_port}"
        wait_healthy(url, api)
        wait_until(
            lambda: worker.poll() is not None or "lcw-sweep worker" in started.log("dispatcher"),
            timeout=90,
            what="the dispatcher to join the Ray cluster",
        )
        assert worker.poll() is None, started.log("dispatcher")
        yield url, started, ray_port
    finally:
        # SIGTERM to the API and the dispatcher, then the Ray head's daemons by pid.
        started.stop()
        remaining = processes_under(ray_dir)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert not remaining, f"processes left behind: {remaining}"


def test_a_study_runs_through_the_cluster_topology(
    cluster: tuple[str, Started, int], tmp_path: Path
) -> None:
    url, started, ray_port = cluster
    # Ray reports the head by the node's address: the port is the one we started it on.
    assert re.search(rf"Ray cluster at \S+:{ray_port} \(1 node", started.log("dispatcher"))
    # The database is named without credentials (no user, no password).
    assert "database postgresql+psycopg://127.0.0.1:5432/lcw_t_" in started.log("dispatcher")
    spec = tmp_path / "topology.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    proc = lcw(
        "submit", str(spec), "--wait", "--poll", "0.5", "--url", url, "--token", TOKEN,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr + started.log("dispatcher")
    assert "completed" in proc.stdout and "lcw - plain" in proc.stdout
    study_id = int(proc.stdout.split()[2])

    trials = httpx.get(f"{url}/api/studies/{study_id}/trials").json()["data"]
    assert len(trials) == 4
    for trial in trials:
        assert trial["status"] in ("completed", "diverged")
        detail = httpx.get(f"{url}/api/trials/{trial['id']}").json()
        # One metrics row per epoch, epoch 0 being the evaluation at init.
        assert [m["epoch"] for m in detail["metrics"]] == [0, 1, 2]
        assert detail["lease_owner"] is None
