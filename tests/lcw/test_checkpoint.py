"""Checkpoints: a run interrupted after epoch k and resumed equals an uninterrupted run bit for bit.

The interruption is an exception raised from the epoch callback of epoch k + 1 (the state of
epoch k was saved, with ``every=1``; k + 1's is saved after its callback returns, so it never
was); the resumed run's callback sees only the epochs after k,
and its result (every final metric and each epoch's metrics) equals the reference's, for SGD
and Adam, constant and cosine schedules, plain / lcw / bn, a pack with a member that diverges,
and through fsspec's memory filesystem. Writes are atomic: a crash mid-write leaves the
previous checkpoint usable, and a damaged file makes the run start over instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lcw import checkpoint as ckpt
from lcw.checkpoint import CheckpointPlan, Files, check_location, file_name
from lcw.config import OptimizerConfig, TrialConfig
from lcw.data import load_dataset
from lcw.trainer import TrialResult, train, train_pack

TIMING = ("seconds", "samples_per_s")
RESULT_KEYS = ("status", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
               "test_acc", "diverged_epoch", "message")  # fmt: skip


class Interrupt(Exception):
    pass


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _epochs(result: TrialResult) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in result.epochs]


def _same(resumed: TrialResult, reference: TrialResult) -> None:
    assert _epochs(resumed) == _epochs(reference)
    for key in RESULT_KEYS:
        assert getattr(resumed, key) == getattr(reference, key), key


def _cfg(method: str, optimizer: str, schedule: str) -> TrialConfig:
    opt = (
        OptimizerConfig(name="sgd", momentum=0.9, weight_decay=1e-3)
        if optimizer == "sgd"
        else OptimizerConfig(name="adam", weight_decay=1e-3)
    )
    return TrialConfig(dataset="digits", method=method, depth=3, width=32, epochs=4, seed=1,
                       lr=0.1 if optimizer == "sgd" else 3e-3, optimizer=opt,
                       lr_schedule=schedule, diagnostics=True, batch_size=64)  # fmt: skip


def _stop_after(k: int, seen: list[int]) -> Any:
    def on_epoch(*args: Any) -> None:
        metrics = args[-1]
        seen.append(metrics["epoch"])
        if metrics["epoch"] == k:
            raise Interrupt

    return on_epoch


@pytest.mark.parametrize("method", ["plain", "lcw", "bn"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_resumed_trial_equals_the_uninterrupted_run(
    tmp_path: Path, method: str, optimizer: str, schedule: str
) -> None:
    data = load_dataset("digits")
    cfg = _cfg(method, optimizer, schedule)
    reference = train(cfg, dataset=data)
    plan = CheckpointPlan(str(tmp_path), every=1)
    first: list[int] = []
    with pytest.raises(Interrupt):
        train(cfg, dataset=data, checkpoint=plan, on_epoch=_stop_after(3, first))
    assert first == [0, 1, 2, 3]
    second: list[int] = []
    resumed = train(
        cfg, dataset=data, checkpoint=plan, on_epoch=lambda m: second.append(m["epoch"])
    )
    assert second == [3, 4]  # epochs already saved are not reported again
    assert resumed.resumed_from_epoch == 2 and resumed.resume_note is None
    _same(resumed, reference)
    assert reference.resumed_from_epoch is None


def test_a_resumed_pack_with_a_diverged_member_equals_the_uninterrupted_pack(
    tmp_path: Path,
) -> None:
    data = load_dataset("digits")
    base = dict(dataset="digits", method="lcw", depth=4, width=32, epochs=4, batch_size=64,
                diagnostics=False, lr_schedule="cosine")  # fmt: skip
    cfgs = [TrialConfig(lr=lr, seed=s, **base) for lr, s in ((0.1, 0), (50.0, 1), (0.05, 2))]  # type: ignore[arg-type]
    reference = train_pack(cfgs, dataset=data)
    assert [r.status for r in reference] == ["completed", "diverged", "completed"]
    plan = CheckpointPlan(str(tmp_path), members=("t1", "t2", "t3"), every=1)
    with pytest.raises(Interrupt):
        train_pack(cfgs, dataset=data, checkpoint=plan, on_epoch=_stop_after(3, []))
    assert [p.name for p in tmp_path.iterdir()] == [file_name(["t1", "t2", "t3"])]
    seen: list[tuple[int, int]] = []
    resumed = train_pack(
        cfgs, dataset=data, checkpoint=plan, on_epoch=lambda k, m: seen.append((k, m["epoch"]))
    )
    assert {e for _, e in seen} == {3, 4}
    for r, ref in zip(resumed, reference, strict=True):
        assert r.resumed_from_epoch == 2
        _same(r, ref)


def test_another_member_set_starts_over_and_says_so(tmp_path: Path) -> None:
    data = load_dataset("digits")
    base = dict(dataset="digits", method="plain", depth=2, width=16, epochs=3, batch_size=128,
                diagnostics=False)  # fmt: skip
    cfgs = [TrialConfig(lr=0.1, seed=s, **base) for s in (0, 1)]  # type: ignore[arg-type]
    pack = CheckpointPlan(str(tmp_path), members=("a", "b"), every=1)
    with pytest.raises(Interrupt):
        train_pack(cfgs, dataset=data, checkpoint=pack, on_epoch=_stop_after(2, []))
    alone = train(cfgs[0], dataset=data, checkpoint=CheckpointPlan(str(tmp_path), ("a",), 1))
    assert alone.resumed_from_epoch is None
    assert alone.resume_note is not None and "another member set" in alone.resume_note
    _same(alone, train(cfgs[0], dataset=data))


def test_automatic_checkpoints_only_for_runs_longer_than_the_interval(tmp_path: Path) -> None:
    data = load_dataset("digits")
    cfg = _cfg("plain", "sgd", "constant")
    auto = CheckpointPlan(str(tmp_path / "auto"))  # every None: 300 s of training
    train(cfg, dataset=data, checkpoint=auto)
    assert not (tmp_path / "auto").exists()  # finished sooner: never wrote one
    eager = CheckpointPlan(str(tmp_path / "eager"), interval_s=0.0)
    with pytest.raises(Interrupt):
        train(cfg, dataset=data, checkpoint=eager, on_epoch=_stop_after(2, []))
    assert len(list((tmp_path / "eager").glob("*.pt"))) == 1


def test_a_crash_mid_write_leaves_the_previous_checkpoint_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_dataset("digits")
    cfg = _cfg("lcw", "sgd", "constant")
    reference = train(cfg, dataset=data)
    plan = CheckpointPlan(str(tmp_path), every=1)
    real = ckpt.to_bytes
    saves: list[int] = []

    def half_written(state: dict[str, Any]) -> bytes:
        saves.append(state["epoch"])
        data = real(state)
        if state["epoch"] == 2:  # the process dies halfway through writing epoch 2's state
            monkeypatch.setattr(ckpt.os, "replace", _die)
            return data[: len(data) // 2]
        return data

    monkeypatch.setattr("lcw.resume.to_bytes", half_written)
    with pytest.raises(Interrupt):
        train(cfg, dataset=data, checkpoint=plan)
    monkeypatch.undo()
    assert saves == [1, 2]
    # The torn write never replaced the checkpoint of epoch 1 (its temporary file is gone too).
    assert [p.name for p in tmp_path.iterdir()] == [file_name(plan.names([cfg.to_dict()]))]
    resumed = train(cfg, dataset=data, checkpoint=plan)
    assert resumed.resumed_from_epoch == 1
    _same(resumed, reference)


def _die(*args: Any) -> None:
    raise Interrupt


def test_a_damaged_checkpoint_starts_over(tmp_path: Path) -> None:
    data = load_dataset("digits")
    cfg = _cfg("plain", "sgd", "constant")
    plan = CheckpointPlan(str(tmp_path), every=1)
    name = file_name(plan.names([cfg.to_dict()]))
    (tmp_path / name).write_bytes(b"PK\x03\x04 not a whole zip")
    result = train(cfg, dataset=data, checkpoint=plan)
    assert result.resumed_from_epoch is None and "could not be loaded" in (result.resume_note or "")
    _same(result, train(cfg, dataset=data))


def test_fsspec_memory_filesystem_round_trip() -> None:
    pytest.importorskip("fsspec")
    data = load_dataset("digits")
    cfg = _cfg("bn", "adam", "cosine")
    plan = CheckpointPlan("memory://lcw-test/ckpt", members=("s1-t1",), every=2)
    with pytest.raises(Interrupt):
        train(cfg, dataset=data, checkpoint=plan, on_epoch=_stop_after(4, []))
    files = Files(plan.location)
    assert files.names() == ["s1-t1.pt"]
    resumed = train(cfg, dataset=data, checkpoint=plan)
    assert resumed.resumed_from_epoch == 2
    _same(resumed, train(cfg, dataset=data))
    ckpt.delete_checkpoint(plan, [cfg.to_dict()])
    assert files.names() == []


def test_locations_and_plans_are_checked() -> None:
    assert check_location("/srv/checkpoints") is None
    assert check_location("file:///srv/checkpoints") is None
    assert check_location("memory://x") is None
    problem = check_location("ftpx://host/dir")
    assert problem is not None and "unsupported scheme 'ftpx'" in problem and "s3" in problem
    with pytest.raises(ValueError, match="every"):
        CheckpointPlan("/tmp/x", every=0)
    with pytest.raises(ValueError, match="unsupported scheme"):
        CheckpointPlan("ftpx://host/dir")
