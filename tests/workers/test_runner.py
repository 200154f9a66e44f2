"""The trial runner (workers.runner.TrialRunner) on its own, in this process: what it answers
to run, run_pack, stop and drain (the typed messages of workers.messages). The dispatcher tests
drive the same class as a real Ray actor."""

from __future__ import annotations

from typing import Any

import pytest

from workers.messages import (
    EpochReport,
    Outcome,
    PackReply,
    Started,
    TrialError,
    TrialResult,
    TrialSkipped,
)
from workers.runner import TrialRunner

CONFIG = {"dataset": "digits", "method": "lcw", "depth": 2, "width": 16, "epochs": 2,
          "lr": 0.1, "seed": 0, "diagnostics": False}  # fmt: skip


@pytest.fixture
def runner(ray_local: None) -> TrialRunner:
    return TrialRunner()


def _metrics(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    timing = ("seconds", "samples_per_s")
    return [{k: v for k, v in e.items() if k not in timing} for e in epochs]


def test_a_run_reports_its_start_and_every_epoch_then_its_result(runner: TrialRunner) -> None:
    reply = runner.run("t1", CONFIG)
    assert isinstance(reply, TrialResult) and reply.outcome is Outcome.RESULT
    assert reply.status == "completed" and reply.token == "t1"
    assert [e["epoch"] for e in reply.epochs] == [0, 1, 2]
    assert reply.compute_seconds is not None and reply.compute_seconds > 0
    assert reply.runner is not None and reply.runner.versions
    # The results carry every epoch: the run's buffered reports are dropped when it ends.
    assert runner.drain(max_wait=0.1) == []


def test_reports_stream_while_a_run_trains(runner: TrialRunner) -> None:
    seen: list[Any] = []
    original = runner._on_epoch

    def spy(token: str, rungs: set[int]) -> Any:
        callback = original(token, rungs)

        def on_epoch(metrics: dict[str, Any]) -> bool:
            out = callback(metrics)
            seen.extend(runner.drain(max_wait=0.0, linger=0.0))
            return out

        return on_epoch

    runner._on_epoch = spy  # type: ignore[method-assign]
    runner.run("t2", CONFIG)
    assert isinstance(seen[0], Started) and seen[0].token == "t2"
    assert [r.metrics["epoch"] for r in seen if isinstance(r, EpochReport)] == [0, 1, 2]


def test_a_run_stopped_before_it_starts_is_skipped(runner: TrialRunner) -> None:
    runner.stop("t3")
    reply = runner.run("t3", CONFIG)
    assert isinstance(reply, TrialSkipped) and reply.outcome is Outcome.SKIPPED
    assert isinstance(runner.run("t3", CONFIG), TrialResult)  # the stop was used up


def test_an_error_comes_back_typed_and_the_runner_survives(runner: TrialRunner) -> None:
    reply = runner.run("t4", {**CONFIG, "dataset": "mnist", "data_dir": "/nonexistent"})
    assert isinstance(reply, TrialError) and reply.outcome is Outcome.ERROR
    assert reply.token == "t4" and "DatasetNotFoundError" in reply.error
    assert isinstance(runner.run("t5", CONFIG), TrialResult)


def test_a_pack_answers_each_member_as_it_would_run_alone(runner: TrialRunner) -> None:
    configs = [{**CONFIG, "lr": 0.05, "seed": 1}, {**CONFIG, "lr": 0.2, "seed": 2},
               {**CONFIG, "lr": 0.1, "seed": 3}]  # fmt: skip
    runner.stop("p2")  # cancelled while queued: the others train without it
    reply = runner.run_pack(["p1", "p2", "p3"], configs)
    assert isinstance(reply, PackReply) and reply.outcome is Outcome.PACK
    assert isinstance(reply.members["p2"], TrialSkipped)
    for token, config in (("p1", configs[0]), ("p3", configs[2])):
        member, alone = reply.members[token], runner.run("alone", config)
        assert isinstance(member, TrialResult) and isinstance(alone, TrialResult)
        assert member.compute_seconds is None and member.runner is None  # the pack's are
        assert _metrics(member.epochs) == _metrics(alone.epochs)  # bit for bit
