"""The dispatcher checks a study's dataset once, on the Ray nodes, before its trials run: a
missing or damaged dataset fails the whole study at once with the fix, no trial ever reaches an
actor; a study whose files are there is checked once however many trials it has; a retry after
the files were fetched is checked again and runs. Real local Ray, real SQLite store."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dataset_mirror import write_mnist
from wk_helpers import Started, study_spec, trials_of, wait_study

from service.failures import describe
from service.spec import plan_study
from service.store import Store
from workers.dataset_check import check_nodes, failure
from workers.state import Shape

MNIST = study_spec(
    "on mnist", dataset="mnist", depths=[1], widths=[8], seeds=3, epochs=1, train_limit=200,
    diagnostics=False, max_retries=2,
)  # fmt: skip


def _submit(store: Store, spec: dict[str, Any], data_dir: Path) -> int:
    """A study whose trials look for their files in `data_dir` (TrialConfig.data_dir)."""
    planned, trials = plan_study(spec, max_trials=1000)
    for t in trials:
        t.config["data_dir"] = str(data_dir)
    study, _ = store.create_study(planned, trials)
    return study.id


def test_the_node_check_reports_what_loading_would_hit(ray_local: None, tmp_path: Path) -> None:
    (answer,) = check_nodes("mnist", str(tmp_path), Shape(), timeout_s=60) or [None]
    assert answer is not None and answer["state"] == "missing"
    assert answer["host"] == socket.gethostname()
    message = failure("mnist", [answer])
    assert message is not None
    assert message.startswith("DatasetNotFoundError: dataset 'mnist': missing train-images")
    assert f"on node {socket.gethostname()}" in message
    assert "fetch them with `lcw-sweep data fetch mnist`" in message
    write_mnist(tmp_path / "mnist")
    (answer,) = check_nodes("mnist", str(tmp_path), Shape(), timeout_s=60) or [None]
    assert answer is not None and answer["state"] == "present" and answer["error"] is None
    assert failure("mnist", [answer]) is None
    # No node has 64 GPUs: nothing can answer, the trials would run unchecked.
    assert check_nodes("mnist", str(tmp_path), Shape(gpu=64), timeout_s=60) is None


def test_a_missing_dataset_fails_the_study_once_before_any_trial_runs_then_retry_runs_it(
    dispatch: Callable[..., Started], store: Store, tmp_path: Path
) -> None:
    started = dispatch()
    check = started.dispatcher._datasets
    data = tmp_path / "data"
    data.mkdir()
    sid = _submit(store, MNIST, data)
    study = wait_study(store, sid, timeout=120)
    assert study.status == "failed"
    trials = trials_of(store, sid)
    assert len(trials) == 6 and {t.status for t in trials} == {"failed"}
    assert all(t.run_info is None and not t.metrics for t in trials)  # none reached an actor
    assert max(t.attempt for t in trials) <= 1  # no retry, though max_retries is 2
    first = describe(trials[0].error)
    assert first.type == "DatasetNotFoundError"
    assert "checked by the dispatcher before the study's trials ran" in first.message
    assert f"under {data / 'mnist'}" in first.message
    assert "lcw-sweep data fetch" in first.fix
    assert {t.error for t in trials} == {trials[0].error}  # one message for the whole study
    assert study.last_error == trials[0].error  # the study record says why it failed
    assert check.checks == 1
    assert started.dispatcher.stats.get("completed", 0) == 0

    write_mnist(data / "mnist")
    store.retry_study(sid)
    done = wait_study(store, sid, timeout=120)
    assert done.status == "completed", [t.error for t in trials_of(store, sid)]
    assert done.last_error is None  # no trial failed any more
    assert check.checks == 2  # checked again after the retry, once for its six trials
    assert sid in check.passed


def test_a_truncated_file_fails_the_study_with_a_corrupt_error(
    dispatch: Callable[..., Started], store: Store, tmp_path: Path
) -> None:
    dispatch()
    write_mnist(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-9])
    sid = _submit(store, {**MNIST, "name": "truncated"}, tmp_path)
    assert wait_study(store, sid, timeout=120).status == "failed"
    trials = trials_of(store, sid)
    assert all(t.run_info is None for t in trials)
    first = describe(trials[0].error)
    assert first.type == "DatasetCorruptError"
    assert str(labels) in first.message and "truncated or damaged" in first.message
    assert "fetch it again" in first.fix


def test_shipped_datasets_are_not_checked_on_the_nodes(
    dispatch: Callable[..., Started], store: Store, tmp_path: Path
) -> None:
    started = dispatch()
    sid = _submit(store, study_spec("digits", epochs=1, seeds=1, diagnostics=False), tmp_path)
    assert wait_study(store, sid, timeout=120).status == "completed"
    assert started.dispatcher._datasets.checks == 0


@pytest.mark.parametrize("resources", [{"cpu": 1.0, "gpu": 0.0}])
def test_check_runs_on_nodes_that_fit_the_trial(
    ray_local: None, resources: dict[str, float]
) -> None:
    answers = check_nodes("cifar10", "/nonexistent", Shape.of(resources), timeout_s=60)
    assert answers is not None and len(answers) == 1  # the one local node
    assert answers[0]["folder"] == "/nonexistent/cifar10"
