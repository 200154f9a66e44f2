"""The trainer: the paper's headline on shipped data, determinism, pairing, divergence."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from lcw import TrialConfig, train
from lcw.data import load_dataset

HEADLINE = dict(
    dataset="mnist5k", depth=50, width=100, activation="sigmoid", lr=0.1, epochs=5,
    batch_size=100, diagnostics=False,
)  # fmt: skip


@pytest.mark.slow
def test_lcw_trains_a_depth_50_sigmoid_mlp_that_plain_cannot() -> None:
    lcw_acc, plain_acc = [], []
    for seed in (0, 1, 2):
        lcw_acc.append(train(TrialConfig(method="lcw", seed=seed, **HEADLINE)).test_acc)
        plain_acc.append(train(TrialConfig(method="plain", seed=seed, **HEADLINE)).test_acc)
    assert statistics.mean(lcw_acc) >= 0.65, lcw_acc
    assert max(plain_acc) <= 0.20, plain_acc


def test_result_shape_and_epoch_zero_is_the_init_evaluation() -> None:
    cfg = TrialConfig(dataset="digits", method="lcw", depth=3, epochs=2, seed=1)
    seen: list[int] = []
    result = train(cfg, on_epoch=lambda m: seen.append(m["epoch"]))
    assert seen == [0, 1, 2]
    assert result.status == "completed"
    first, last = result.epochs[0], result.epochs[-1]
    assert first["train_loss"] is None and first["diagnostics"]["layers"][0]["layer"] == 1
    assert len(last["diagnostics"]["layers"]) == 3
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"):
        assert isinstance(last[key], float)
    assert last["samples_per_s"] > 0 and last["seconds"] > 0
    assert result.test_acc == last["test_acc"] and result.val_acc == last["val_acc"]
    assert result.test_acc > 0.5  # digits at depth 3 learns in 2 epochs
    json.dumps(result.to_dict())  # JSON-safe


def test_bitwise_deterministic_on_cpu() -> None:
    cfg = TrialConfig(dataset="digits", method="bn_lcw", depth=4, epochs=2, seed=7)
    a, b = train(cfg).to_dict(), train(cfg).to_dict()
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        ea.pop("seconds"), eb.pop("seconds"), ea.pop("samples_per_s"), eb.pop("samples_per_s")
    assert a["epochs"] == b["epochs"]
    assert a["test_acc"] == b["test_acc"]


def test_seed_changes_the_outcome() -> None:
    base = dict(dataset="digits", method="plain", depth=2, epochs=1, diagnostics=False)
    a = train(TrialConfig(seed=0, **base)).epochs[-1]["train_loss"]
    b = train(TrialConfig(seed=1, **base)).epochs[-1]["train_loss"]
    assert a != b


def test_same_seed_gives_every_method_the_same_data_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    orders: dict[str, list[list[int]]] = {}
    real = torch.randperm

    def spy(n: int, *args: object, **kwargs: object) -> torch.Tensor:
        out = real(n, *args, **kwargs)  # type: ignore[call-overload]
        orders.setdefault(current, []).append(out.tolist())
        return out

    monkeypatch.setattr(torch, "randperm", spy)
    for current in ("plain", "lcw", "bn"):
        train(TrialConfig(dataset="digits", method=current, depth=2, epochs=2, seed=5,
                          diagnostics=False))  # fmt: skip
    assert orders["plain"] == orders["lcw"] == orders["bn"]
    assert orders["plain"][0] != orders["plain"][1]  # reshuffled each epoch


def test_huge_lr_diverges_as_an_outcome() -> None:
    cfg = TrialConfig(dataset="digits", method="plain", activation="relu", depth=3, lr=1e3,
                      epochs=3)  # fmt: skip
    result = train(cfg)
    assert result.status == "diverged"
    assert result.diverged_epoch == 1
    assert "divergence bound" in (result.message or "")
    assert result.test_acc is not None and result.test_acc < 0.3
    json.dumps(result.to_dict())


def test_on_epoch_can_stop_early() -> None:
    cfg = TrialConfig(dataset="digits", depth=2, epochs=5, diagnostics=False)
    result = train(cfg, on_epoch=lambda m: m["epoch"] >= 2)
    assert result.status == "stopped_early"
    assert [m["epoch"] for m in result.epochs] == [0, 1, 2]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_optimizers_and_schedules(optimizer: str, schedule: str) -> None:
    lr = 0.1 if optimizer == "sgd" else 1e-3
    cfg = TrialConfig.from_dict(
        {"dataset": "digits", "depth": 2, "epochs": 2, "lr": lr, "lr_schedule": schedule,
         "optimizer": {"name": optimizer, "weight_decay": 1e-4}, "diagnostics": False}
    )  # fmt: skip
    result = train(cfg)
    assert result.status == "completed"
    assert result.epochs[-1]["train_loss"] < result.epochs[1]["train_loss"] * 1.5
    if schedule == "cosine":
        assert math.isclose(result.epochs[-1]["lr"], 0.0, abs_tol=1e-12)


def test_train_limit_and_preloaded_dataset() -> None:
    data = load_dataset("digits")
    cfg = TrialConfig(dataset="digits", depth=2, epochs=1, train_limit=200, batch_size=50,
                      diagnostics=False)  # fmt: skip
    result = train(cfg, dataset=data)
    assert result.epochs[-1]["samples_per_s"] > 0
    assert result.epochs[-1]["train_acc"] * 200 == pytest.approx(
        round(result.epochs[-1]["train_acc"] * 200)
    )


def test_lcw_train_is_the_function_even_after_submodule_imports() -> None:
    import lcw
    import lcw.trainer

    assert callable(lcw.train) and lcw.train.__module__ == "lcw.trainer"


def test_bf16_autocast_and_channels_last_train() -> None:
    cfg = TrialConfig(dataset="synthetic", model="vgg11", method="bn_lcw", activation="relu",
                      epochs=1, batch_size=25, train_limit=100, precision="bf16",
                      channels_last=True, lr=0.01, diagnostics=False)  # fmt: skip
    result = train(cfg)
    assert result.status == "completed"
    assert result.epochs[-1]["train_loss"] is not None
    with pytest.raises(ValueError, match="precision"):
        TrialConfig(precision="fp8")


@pytest.mark.slow
def test_torch_compile_trains_as_eager_does() -> None:
    """``compile=True`` (the GPU path's option) runs here too, on the CPU's inductor backend,
    and its steps match the eager run to rounding (fused kernels may round differently)."""
    base = dict(dataset="digits", method="lcw", depth=3, width=32, epochs=1, batch_size=50,
                train_limit=300, seed=4, diagnostics=False)  # fmt: skip
    losses: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    for compiled in (False, True):
        results[compiled] = train(
            TrialConfig(compile=compiled, **base),
            on_step=lambda _s, loss, c=compiled: losses[c].append(float(loss[0])),
        )
    assert results[True].status == results[False].status == "completed"
    assert len(losses[True]) == len(losses[False]) == 6
    for a, b in zip(losses[True], losses[False], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert losses[False][-1] < losses[False][0]  # it trained


def test_a_result_unpickles_without_torch() -> None:
    # The dispatcher receives results pickled by Ray and never needs torch: a torch object in
    # a result (torch.__version__ is one) made it import torch, ~2 s of CPU mid-study.
    import pickle
    import subprocess
    import sys

    result = train(TrialConfig(dataset="digits", depth=1, width=8, epochs=1, train_limit=64))
    code = (
        "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(result.to_dict()),
        capture_output=True, check=True,
    )  # fmt: skip
    assert done.stdout.decode().strip() == "[]"
