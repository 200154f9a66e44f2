"""One trial: ``train(config, on_epoch=callback) -> TrialResult``.

Config in, per-epoch metrics out through the callback, a result at the end. No database, no Ray.

* Epoch 0 is the evaluation at init (val/test loss and accuracy, diagnostics); epochs 1..E
  follow training epochs. Every metrics dict is JSON-safe (non-finite numbers become None).
* Data order: a CPU generator seeded with ``seed + ORDER_SEED_OFFSET`` permutes the training set
  each epoch, independent of the model, so a seed gives the same batches for every method.
  Initial weights come from a separate generator seeded with ``seed`` (``lcw.models``).
* Divergence: a non-finite loss, or a mean training loss over the last check window above
  ``divergence_factor * ln(num_classes)`` (10x chance level by default), stops the trial with
  status ``diverged``: an outcome, not an error. Its final accuracies are measured on the model
  as it was when it diverged (non-finite logits count as wrong).
* Determinism: the same config gives bitwise-identical metrics on CPU (single thread default).
* ``on_epoch`` may return True to stop the trial after that epoch (status ``stopped_early``).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcw.config import TrialConfig
from lcw.data import Dataset, load_dataset
from lcw.diagnostics import measure_layers
from lcw.models import build_model

ORDER_SEED_OFFSET = 1_000_003  # data-order generator seed = seed + this
EVAL_BATCH = 2048  # evaluation batch size (memory bound only; results do not depend on it)

EpochCallback = Callable[[dict[str, Any]], bool | None]


@dataclass
class TrialResult:
    """The outcome of one trial (JSON-safe through ``to_dict``)."""

    status: str  # "completed", "diverged" or "stopped_early"
    config: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    seconds: float = 0.0  # training time, all epochs (evaluation excluded)
    diverged_epoch: int | None = None
    message: str | None = None
    env: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: float | Tensor | None) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: '{name}' requested but no CUDA device is available")
    return torch.device(name)


def build_optimizer(cfg: TrialConfig, params: Any) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=o.betas, weight_decay=o.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float | None, float]:
    """(mean cross-entropy, accuracy) in eval mode; non-finite logits count as wrong."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), EVAL_BATCH):
        logits = model(x[i : i + EVAL_BATCH])
        yb = y[i : i + EVAL_BATCH]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        ok = torch.isfinite(logits).all(dim=1) & (logits.argmax(dim=1) == yb)
        correct += int(ok.sum())
    model.train(was_training)
    n = max(len(y), 1)
    return _num(loss_sum / n), correct / n


def _env(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": name or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def train(
    config: TrialConfig | dict[str, Any],
    *,
    on_epoch: EpochCallback | None = None,
    dataset: Dataset | None = None,
) -> TrialResult:
    """Train one trial to completion, divergence or an early stop asked for by `on_epoch`."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    data = dataset or load_dataset(
        cfg.dataset, device=device, root=cfg.data_dir, train_limit=cfg.train_limit
    )
    if dataset is not None:
        data = data.limit_train(cfg.train_limit).to(device)
    model = build_model(cfg, input_shape=data.input_shape, num_classes=data.num_classes).to(device)
    optimizer = build_optimizer(cfg, model.parameters())
    n = len(data.y_train)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)  # a 1-sample tail breaks batch norm
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        if cfg.lr_schedule == "cosine"
        else None
    )
    order = torch.Generator().manual_seed(cfg.seed + ORDER_SEED_OFFSET)
    bound = cfg.divergence_factor * math.log(max(data.num_classes, 2))
    check_every = 1 if device.type == "cpu" else 25  # each check syncs a GPU
    probe = (data.x_train[: cfg.probe_size], data.y_train[: cfg.probe_size])

    result = TrialResult(status="completed", config=cfg.to_dict(), env=_env(device))

    def emit(metrics: dict[str, Any]) -> bool:
        result.epochs.append(metrics)
        return bool(on_epoch(metrics)) if on_epoch is not None else False

    def eval_metrics(epoch: int) -> dict[str, Any]:
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        diag = None
        if cfg.diagnostics:
            diag = {"layers": measure_layers(model, *probe, activation=cfg.activation)}
        return {
            "epoch": epoch,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "diagnostics": diag,
        }

    model.train()
    stop = emit(
        {
            **eval_metrics(0),
            "train_loss": None,
            "train_acc": None,
            "seconds": 0.0,
            "samples_per_s": None,
        }
    )
    train_loss = train_acc = None
    for epoch in range(1, cfg.epochs + 1):
        if stop:
            result.status = "stopped_early"
            break
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        window = torch.zeros((), device=device, dtype=torch.float64)
        seen = window_steps = 0
        diverged = False
        for step in range(steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs]
            xb, yb = data.x_train[idx], data.y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            detached = loss.detach().double()
            loss_sum += detached * len(yb)
            window += detached
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            seen += len(yb)
            window_steps += 1
            if window_steps == check_every or step == steps_per_epoch - 1:
                mean = float(window) / window_steps
                if not math.isfinite(mean) or mean > bound:
                    diverged = True
                    break
                window.zero_()
                window_steps = 0
        seconds = time.perf_counter() - t0
        result.seconds += seconds
        train_loss = _num(float(loss_sum) / max(seen, 1))
        train_acc = float(correct) / max(seen, 1)
        metrics = eval_metrics(epoch)
        metrics.update(
            train_loss=train_loss,
            train_acc=train_acc,
            seconds=seconds,
            samples_per_s=seen / seconds if seconds > 0 else None,
        )
        stop = emit(metrics)
        if diverged:
            result.status = "diverged"
            result.diverged_epoch = epoch
            result.message = (
                f"training loss {mean:.4g} is non-finite or above the divergence bound "
                f"{bound:.4g} ({cfg.divergence_factor:g} x ln {data.num_classes}) at epoch {epoch}"
            )
            break
    last = result.epochs[-1]
    result.train_loss, result.train_acc = train_loss, train_acc
    result.val_loss, result.val_acc = last["val_loss"], last["val_acc"]
    result.test_loss, result.test_acc = last["test_loss"], last["test_acc"]
    return result
