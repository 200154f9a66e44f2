"""The dispatcher's parts without Ray or a database: typed runner replies, the write-behind
queue, and what the outcomes part makes of a pack's reply and an actor's reports.

The end-to-end behaviour (real Ray, real queue) is tested in test_dispatcher.py and
test_packing.py; these pin the contracts between the parts at the level of their inputs.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, cast

import cloudpickle
import pytest
from sqlalchemy.exc import OperationalError

from service.errors import StoreError
from service.store import ClaimedTrial, Store
from workers import packing
from workers.messages import (
    ActorInfo,
    EpochReport,
    Outcome,
    PackReply,
    RunnerInfo,
    Started,
    Stopped,
    TrialError,
    TrialResult,
    TrialSkipped,
)
from workers.metrics import DispatcherMetrics
from workers.outcomes import Outcomes
from workers.placement import QUEUE_MAX, QUEUE_S, Placement
from workers.pool import Pool
from workers.resolve import Resolver
from workers.state import Held, Trial, Worker
from workers.writeback import DB_BACKOFF_MAX_S, METRICS_EVERY_S, METRICS_MAX_ROWS, Op, WriteBack

RUNNER = RunnerInfo(versions={"ray": "x"}, hostname="h", node_id="n", pid=42, platform="p")
CONFIG = {"dataset": "digits", "model": "mlp", "depth": 3, "width": 8, "epochs": 1}


def _claim(tid: int, **changes: Any) -> ClaimedTrial:
    fields: dict[str, Any] = {
        "id": tid,
        "study_id": 1,
        "index": tid,
        "attempt": 1,
        "config": {**CONFIG, "lr": 0.1, "seed": tid},
        "cell_key": "plain|3|8|relu",
        "slot": None,
        "seed": tid,
        "max_retries": 0,
        "timeout_s": None,
        "resources": {"cpu": 1.0, "gpu": 0.0},
        "lr_search": None,
        "scheduler": None,
    }
    return ClaimedTrial(**{**fields, **changes})


class _Remote:
    def __init__(self, calls: list[tuple[Any, ...]], name: str) -> None:
        self.calls, self.name = calls, name

    def remote(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((self.name, *args, *kwargs.items()))
        return f"ref-{len(self.calls)}"


class _Handle:
    """An actor handle that records what it is sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(self.calls, name)


class _Store:
    """The store calls the write-behind queue makes; `down`: raise that on every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.down: Exception | None = None

    def _call(self, *what: Any) -> None:
        if self.down is not None:
            raise self.down
        self.calls.append(what)

    def write_metrics(self, owner: str, rows: list[tuple[int, dict[str, Any]]]) -> int:
        self._call("metrics", [(tid, m["epoch"]) for tid, m in rows])
        return len(rows)

    def complete_trial(self, owner: str, trial_id: int, **args: Any) -> bool:
        self._call("complete", trial_id, args["status"])
        return True

    def fail_trial_attempt(self, owner: str, trial_id: int, *, error: str) -> str:
        self._call("fail", trial_id, error)
        return "pending"

    def release_trials(self, owner: str, trial_ids: list[int]) -> int:
        self._call("release", trial_ids)
        return len(trial_ids)


def _parts(n: int) -> tuple[_Store, Held, WriteBack, Pool, Outcomes, list[Trial]]:
    store = _Store()
    held = Held()
    metrics = DispatcherMetrics()
    writes = WriteBack(cast(Store, store), "me", held, metrics)
    pool = Pool(held, writes, metrics, slots=2, stop_grace_s=3.0)
    resolver = Resolver(cast(Store, store), writes, pack_size=None)
    outcomes = Outcomes("me", pool, resolver, Placement(pool, pack_size=None))
    trials = [held.add(_claim(i)) for i in range(1, n + 1)]
    for t in trials:
        resolver.resolve(t)
    return store, held, writes, pool, outcomes, trials


def _on_actor(pool: Pool, held: Held, pack: tuple[Trial, ...]) -> Worker:
    """`pack` running on a (recording) actor, as ``Pool.send`` leaves it."""
    w = Worker(handle=_Handle(), shape=pack[0].shape, name="runner-1", trials=pack, ready=True)
    pool.workers.append(w)
    for t in pack:
        t.token, t.worker, t.phase = f"{t.id}.1.{t.id}", w, "running"
        held.tokens[t.token] = t
        held.backlog.remove(t)
    return w


def test_every_runner_reply_pickles_and_names_its_outcome() -> None:
    result = TrialResult("1.1.1", "completed", {"env": {}}, [{"epoch": 0}], 1.5, RUNNER)
    replies = [
        result,
        TrialSkipped("1.1.2", RUNNER),
        TrialError("ValueError: bad", 0.1, RUNNER, token="1.1.3"),
        PackReply({"a": TrialSkipped("a"), "b": result}, 3.0, RUNNER),
    ]
    reports = [Started("t"), EpochReport("t", {"epoch": 1}, rung=True), Stopped("t")]
    for message in [*replies, *reports, ActorInfo(RUNNER, None)]:
        assert pickle.loads(cloudpickle.dumps(message)) == message
    assert [r.outcome for r in replies] == [
        Outcome.RESULT,
        Outcome.SKIPPED,
        Outcome.ERROR,
        Outcome.PACK,
    ]
    assert [str(o) for o in Outcome] == ["result", "error", "skipped", "pack"]


def test_the_write_behind_queue_keeps_its_order_and_backs_off_while_the_database_is_down() -> None:
    store, held, writes, _, _, (a, b) = _parts(2)
    writes.metrics(a, {"epoch": 0})
    writes.metrics(a, {"epoch": 0})  # an epoch is queued once
    writes.fail(a, "ValueError: bad")
    writes.release_backlog()  # b, still waiting
    assert a.phase == b.phase == "finishing" and not held.backlog
    # SQLAlchemy's error, or the store's error raised from one: both are a database down.
    translated = StoreError("the database is unavailable (refused); retry shortly")
    translated.__cause__ = OperationalError("SELECT 1", {}, Exception("refused"))
    for error in (OperationalError("SELECT 1", {}, Exception("refused")), translated):
        store.down = error
        assert not writes.flush(now=True)
        assert writes.backoff == 0.5 and writes.rows and len(writes.ops) == 2
        store.down = None
        assert not writes.flush()  # backing off: not even tried
        assert store.calls == []
        writes.backoff = 0.0
    store.down = None
    assert writes.flush(now=True)
    assert store.calls == [
        ("metrics", [(a.id, 0)]),
        ("fail", a.id, "ValueError: bad"),
        ("release", [b.id]),
    ]
    assert not held.trials and not writes.rows and not writes.ops and writes.backoff == 0.0
    # Any other error is a bug: it is not retried as if the database were down.
    store.down = ValueError("a bug")
    writes.metrics(a, {"epoch": 1})
    with pytest.raises(ValueError):
        writes.flush(now=True)
    for _ in range(10):
        store.down = OperationalError("SELECT 1", {}, Exception("refused"))
        writes.flush(now=True)
    assert writes.backoff == DB_BACKOFF_MAX_S


def test_metrics_alone_are_written_once_a_second_and_at_once_before_an_outcome() -> None:
    store, _, writes, _, _, (a, b) = _parts(2)
    writes.metrics(a, {"epoch": 0})
    assert writes.flush()  # the first rows: at once
    started = time.monotonic()
    writes.metrics(a, {"epoch": 1})
    assert not writes.flush() and writes.rows  # within METRICS_EVERY_S of the last write
    assert writes.metrics_at >= started + METRICS_EVERY_S - 0.05
    writes.metrics_at = time.monotonic()  # ... and once it has passed
    assert writes.flush() and not writes.rows
    writes.metrics(a, {"epoch": 2})
    writes.metrics(b, {"epoch": 0})
    assert not writes.flush()
    writes.finish(b, Op("release", (b.id,)))  # an outcome takes its trial's rows with it
    assert writes.flush()
    writes.metrics(a, {"epoch": 3})
    writes.rows += [(a.id, {"epoch": 4 + i}) for i in range(METRICS_MAX_ROWS)]
    assert writes.flush()  # a long queue is written without waiting
    writes.metrics(a, {"epoch": 9999})
    assert writes.flush(now=True)
    assert [c[0] for c in store.calls] == ["metrics"] * 3 + ["release", "metrics", "metrics"]
    assert store.calls[2] == ("metrics", [(a.id, 2), (b.id, 0)])
    assert store.calls[-1] == ("metrics", [(a.id, 9999)])


def test_a_pack_reply_completes_its_members_with_their_share_of_the_compute() -> None:
    _, held, writes, pool, outcomes, trials = _parts(3)
    pack = tuple(trials)
    w = _on_actor(pool, held, pack)
    done, diverged, skipped = pack
    env = {"env": {"device": "cpu", "device_name": "x86", "threads": 1}}
    reply = PackReply(
        members={
            done.token: TrialResult(done.token, "completed", env, [{"epoch": 0}, {"epoch": 1}]),
            diverged.token: TrialResult(diverged.token, "diverged", env, [{"epoch": 0}]),
            skipped.token: TrialSkipped(skipped.token),
        },
        compute_seconds=6.0,
        runner=RUNNER,
    )
    outcomes.on_run(pack, reply)
    assert w.trials == () and not held.tokens and all(t.worker is None for t in pack)
    assert [(tid, m["epoch"]) for tid, m in writes.rows] == [
        (done.id, 0),
        (done.id, 1),
        (diverged.id, 0),
    ]
    ops = {op.trial_ids[0]: op for op in writes.ops}
    assert ops[skipped.id].kind == "release"
    assert ops[diverged.id].args["status"] == "diverged"
    info = ops[done.id].args["run_info"]
    assert ops[done.id].kind == "complete" and ops[done.id].args["status"] == "completed"
    assert info["compute_seconds"] == 3.0 and info["pack_compute_seconds"] == 6.0  # 2 trained
    assert info["pack_size"] == 3 and info["pack_trial_ids"] == [t.id for t in pack]
    assert (info["pid"], info["hostname"], info["versions"]) == (42, "h", {"ray": "x"})
    assert info["device_name"] == "x86" and info["dispatcher"] == "me"
    assert outcomes.member_seconds == {packing.config_key(done.config or {}): 3.0}


def test_a_pack_that_raised_fails_every_member() -> None:
    _, held, writes, pool, outcomes, trials = _parts(2)
    pack = tuple(trials)
    _on_actor(pool, held, pack)
    outcomes.on_run(pack, TrialError("RuntimeError: boom", 1.0, RUNNER))
    assert [(op.kind, op.trial_ids, op.args) for op in writes.ops] == [
        ("fail", (t.id,), {"error": "RuntimeError: boom"}) for t in pack
    ]


def test_an_actors_reports_start_runs_queue_epochs_and_answer_rungs() -> None:
    _, held, writes, pool, outcomes, trials = _parts(2)
    pack = tuple(trials)
    w = _on_actor(pool, held, pack)
    a, b = pack
    b.kill_at = 123.0
    outcomes.on_drain(
        w,
        [
            Started(a.token),
            EpochReport(a.token, {"epoch": 0}),
            EpochReport(a.token, {"epoch": 0}),
            Stopped(b.token),  # a pack member that obeyed: its actor is not killed
            EpochReport("gone.1.9", {"epoch": 2}, rung=True),  # a run no longer ours
        ],
    )
    assert a.started is not None and b.kill_at is None
    assert [(tid, m["epoch"]) for tid, m in writes.rows] == [(a.id, 0)]
    handle = cast(_Handle, w.handle)
    assert handle.calls[0] == ("decide", "gone.1.9", True)
    assert handle.calls[1][0] == "drain"  # the next long poll


@pytest.mark.parametrize(
    ("seconds", "depth"),
    [(QUEUE_S / 4, 4), (QUEUE_S / 1000, QUEUE_MAX), (QUEUE_S, 1), (QUEUE_S * 20, 1), (None, 1)],
)
def test_trials_shorter_than_a_tick_queue_deeper_behind_a_busy_actor(
    seconds: float | None, depth: int
) -> None:
    _, held, _, pool, _, trials = _parts(2 * QUEUE_MAX + 4)  # two left over at any depth
    pool.cluster = {"CPU": 2.0, "GPU": 0.0}  # two actors' worth: no room for a third
    placement = Placement(pool, pack_size=1)
    if seconds is not None:  # what the trials of this configuration measured
        assert trials[0].config is not None
        placement.member_seconds[packing.config_key(trials[0].config)] = seconds
    workers = [_on_actor(pool, held, (trials[0],)), _on_actor(pool, held, (trials[1],))]
    placement.place()
    assert [len(w.queued) for w in workers] == [depth, depth]
    assert placement.queue_hint == depth  # what the next claim takes per actor, less one
    assert len(held.backlog) == 2 * QUEUE_MAX + 2 - 2 * depth
    # Runs start in the order they were queued, each when the one before it ends.
    w = workers[0]
    order = [run[0].id for run in w.queued]
    for expected in order:
        pool.ended(w.trials)
        assert w.trials[0].id == expected
    pool.ended(w.trials)
    assert w.trials == () and w.queued == []
