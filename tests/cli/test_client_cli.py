"""`lcw-sweep submit/status/results/cancel` and ``service.client`` against real servers.

Two servers, each a real `lcw-sweep serve` subprocess with a temporary SQLite database:
- with the embedded dispatcher on a local Ray (2 CPUs; marked slow): a tiny `digits` study runs
  to completion through ``submit --wait``, then status, results in every format, the Python
  client and its DataFrame;
- ``--no-worker`` with ``LCW_API_TOKENS`` set (no Ray, starts in a second): tokens, cancel,
  a 422 rendered as one line, a server that is not there.
The CLI runs as the installed console script, so exit codes and stderr are the real ones.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cli_helpers import clean_env, free_port, lcw, serve, study_spec

from service.client import APIError, Client, ServerUnreachableError

TOKEN = "test-token-123"

# 2 methods x 1 depth x 1 LR x 2 seeds = 4 trials of a 2-layer, 16-unit MLP: seconds each.
TINY = study_spec("cli-tiny", depths=[2], widths=[16], seeds=2, epochs=2, diagnostics=False)


def _write(tmp: Path, name: str, spec: dict[str, object]) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -- with the embedded dispatcher --------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("serve-ray")) as (url, _started):
        yield url


@pytest.fixture(scope="module")
def finished_study(ray_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """The tiny study submitted with --wait: (id, the command's stdout)."""
    spec = _write(tmp_path_factory.mktemp("spec"), "tiny.yaml", TINY)
    proc = lcw("submit", str(spec), "--wait", "--poll", "0.3", "--url", ray_server, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("submitted study "), proc.stdout
    return int(first.split()[2]), proc.stdout


@pytest.mark.slow
def test_submit_wait_shows_progress_then_the_summary_table(
    finished_study: tuple[int, str],
) -> None:
    study_id, out = finished_study
    assert "4 trials" in out.splitlines()[0]
    # The live view's last frame: every trial finished, counted by state.
    assert "finished" in out and "4/4" in out
    assert f"study {study_id} completed" in out
    summary = out[out.index("test accuracy at the best setting") :]
    for needle in ("plain", "lcw", "2x16", "best lr", "init scale", "95% CI", "lcw - plain"):
        assert needle in summary, needle
    # 2 seeds: the comparison has no p-value, and the summary says why.
    assert "p_adj: none (a comparison needs >= 6 paired seeds to be tested)" in summary
    assert "n<6" in summary and "not testable (n < 6)" in summary


@pytest.mark.slow
def test_status_lists_and_shows_one_study(ray_server: str, finished_study: tuple[int, str]) -> None:
    study_id, _ = finished_study
    listing = lcw("status", "--url", ray_server)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "cli-tiny" in line)
    assert str(study_id) in row and "completed" in row and "4/4" in row

    one = lcw("status", str(study_id), "--url", ray_server)
    assert one.returncode == 0, one.stderr
    assert "completed" in one.stdout and "digits / mlp" in one.stdout

    data = json.loads(lcw("status", str(study_id), "-f", "json", "--url", ray_server).stdout)
    assert data["id"] == study_id
    assert data["progress"]["total"] == 4
    assert data["progress"]["completed"] + data["progress"]["diverged"] == 4


@pytest.mark.slow
def test_results_in_table_csv_and_json(ray_server: str, finished_study: tuple[int, str]) -> None:
    study_id, _ = finished_study
    sid = str(study_id)

    table = lcw("results", sid, "--url", ray_server)
    assert table.returncode == 0, table.stderr
    assert "test accuracy at the best setting" in table.stdout and "lcw - plain" in table.stdout

    as_csv = lcw("results", sid, "--what", "cells", "--format", "csv", "--url", ray_server)
    assert as_csv.returncode == 0, as_csv.stderr
    cells = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sorted(c["method"] for c in cells) == ["lcw", "plain"]
    assert all(c["best_lr"] == "0.1" and c["n"] == "2" for c in cells)
    assert all(0 <= float(c["test_acc_mean"]) <= 1 for c in cells)
    comparisons_csv = lcw("results", sid, "-w", "comparisons", "-f", "csv", "--url", ray_server)
    comparisons = list(csv.DictReader(io.StringIO(comparisons_csv.stdout)))
    assert [(c["method"], c["baseline"]) for c in comparisons] == [("lcw", "plain")]

    summary = json.loads(lcw("results", sid, "-f", "json", "--url", ray_server).stdout)
    assert summary["study_id"] == study_id
    by_method = {c["method"]: c for c in summary["cells"]}
    assert by_method.keys() == {"plain", "lcw"}
    assert {float(r["test_acc_mean"]) for r in cells} == {
        c["test_acc_mean"] for c in summary["cells"]
    }

    trials = list(
        csv.DictReader(
            io.StringIO(
                lcw("results", sid, "--what", "trials", "-f", "csv", "--url", ray_server).stdout
            )
        )
    )
    assert len(trials) == 4 and {t["seed"] for t in trials} == {"0", "1"}

    epochs = json.loads(
        lcw("results", sid, "--what", "epochs", "-f", "json", "--url", ray_server).stdout
    )
    # Epoch 0 is the evaluation at init: 4 trials x (2 + 1) rows.
    assert len(epochs) == 12
    assert sorted({row["epoch"] for row in epochs}) == [0, 1, 2]

    per_trial_table = lcw("results", sid, "--what", "trials", "--url", ray_server)
    assert per_trial_table.returncode == 0 and "4 trial rows" in per_trial_table.stdout


@pytest.mark.slow
def test_python_client_returns_typed_objects_and_dataframes(
    ray_server: str, finished_study: tuple[int, str]
) -> None:
    pd = pytest.importorskip("pandas")
    study_id, _ = finished_study
    with Client(ray_server) as api:
        study = api.study(study_id)
        assert study.status == "completed" and study.progress.total == 4
        summary = api.summary(study_id)
        assert {c.method for c in summary.cells} == {"plain", "lcw"}

        cells = api.results(study_id, as_dataframe=True)
        assert isinstance(cells, pd.DataFrame)
        assert len(cells) == 2
        assert {"method", "best_lr", "test_acc_mean", "test_acc_ci95_low"} <= set(cells.columns)
        assert cells.set_index("method")["n"].to_dict() == {"plain": 2, "lcw": 2}

        trials = api.results(study_id, per="trial", as_dataframe=True)
        assert len(trials) == 4 and trials["test_acc"].between(0, 1).all()
        epochs = api.results(study_id, per="epoch")
        assert isinstance(epochs, list) and len(epochs) == 12

        # wait() on a finished study returns at once with the study
        assert api.wait(study_id, poll_s=0.1, timeout_s=5).status == "completed"
        with pytest.raises(APIError) as info:
            api.study(999_999)
        assert info.value.status_code == 404 and str(info.value).startswith("404 ")


# -- an API-only server with tokens -----------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(
        tmp_path_factory.mktemp("serve-api"), extra_args=("--no-worker",), LCW_API_TOKENS=TOKEN
    ) as (url, _started):
        yield url


def test_writes_without_a_token_fail_with_one_line(api_server: str, tmp_path: Path) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    proc = lcw("submit", str(spec), "--url", api_server)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: 401 this write needs 'Authorization: Bearer <token>' "
        "(pass --token or set LCW_TOKEN)"
    ]
    wrong = lcw("submit", str(spec), "--url", api_server, "--token", "nope")
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: 401 ")
    # Reads need no token.
    assert lcw("status", "--url", api_server).returncode == 0


def test_submit_then_cancel(api_server: str, tmp_path: Path) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    # LCW_URL and LCW_TOKEN stand in for --url and --token.
    env = clean_env(LCW_URL=api_server, LCW_TOKEN=TOKEN)
    submitted = lcw("submit", str(spec), env=env)
    assert submitted.returncode == 0, submitted.stderr
    study_id = submitted.stdout.split()[2]
    assert "queued" in submitted.stdout and f"lcw-sweep status {study_id}" in submitted.stdout
    assert f"page: {api_server}/studies/{study_id}" in submitted.stdout

    cancelled = lcw("cancel", study_id, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"study {study_id} cancelled: 4 trials cancelled" in cancelled.stdout
    status = json.loads(lcw("status", study_id, "--json", env=env).stdout)
    assert status["status"] == "cancelled" and status["progress"]["cancelled"] == 4

    again = lcw("cancel", study_id, env=env)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [f"error: 409 study {study_id} is already cancelled"]


def test_invalid_spec_is_one_line_naming_the_field(api_server: str, tmp_path: Path) -> None:
    spec = _write(tmp_path, "bad.yaml", {**TINY, "methods": ["plain", "lcw", "foo"]})
    proc = lcw("submit", str(spec), "--url", api_server, "--token", TOKEN)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: 422 methods[2]: 'foo' is not one of 'plain', 'bn', 'lcw'")

    several = _write(tmp_path, "bad2.yaml", {**TINY, "epochs": 0, "colour": "red"})
    proc = lcw("submit", str(several), "--url", api_server, "--token", TOKEN)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: 422 ") and "epochs: " in line and "colour: unknown field" in line


def test_unknown_study_is_a_404_line(api_server: str) -> None:
    proc = lcw("results", "424242", "--url", api_server)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["error: 404 study 424242 does not exist"]


def test_no_server_says_where_it_looked_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = lcw("status", "--url", url)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the lcw-sweep server at {url}")
    assert "connection refused" in line and "lcw-sweep serve" in line
    with pytest.raises(ServerUnreachableError), Client(url) as api:
        api.studies()


def test_every_client_command_has_help_with_an_example() -> None:
    for command in ("submit", "status", "results", "cancel", "delete"):
        proc = lcw(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "Example: lcw-sweep " + command in proc.stdout
        assert "--url" in proc.stdout and "LCW_URL" in proc.stdout


def test_wait_timeout_is_one_line_and_leaves_the_study_queued(
    api_server: str, tmp_path: Path
) -> None:
    # No dispatcher behind this server: the study stays queued until the wait gives up.
    spec = _write(tmp_path, "tiny.yaml", TINY)
    proc = lcw(
        "submit", str(spec), "--wait", "--timeout", "1", "--poll", "0.2",
        "--url", api_server, "--token", TOKEN,
    )  # fmt: skip
    assert proc.returncode == 1
    study_id = proc.stdout.split()[2]
    assert proc.stderr.splitlines() == [
        f"error: study {study_id} did not finish within 1 s "
        f"(it keeps running: lcw-sweep status {study_id} --wait)"
    ]
    status = json.loads(lcw("status", study_id, "--json", "--url", api_server).stdout)
    assert status["status"] == "queued"
