"""Trials: ``train(config, on_epoch=callback) -> TrialResult``; ``train_pack`` for many at once.

Config in, per-epoch metrics out through the callback, a result at the end. No database, no Ray.

* Epoch 0 is the evaluation at init (val/test loss and accuracy, diagnostics); epochs 1..E
  follow training epochs. Every metrics dict is JSON-safe (non-finite numbers become None).
* Data order: a CPU generator seeded with ``seed + ORDER_SEED_OFFSET`` permutes the training set
  each epoch, independent of the model, so a seed gives the same batches for every method.
  Initial weights come from a separate generator seeded with ``seed`` (``lcw.models``), and
  when ``augment`` is on, crops and flips from a third, on the device (``lcw.augment``).
* Weight decay: linear-map weights only unless ``decay_norm_and_bias`` (``lcw.optim``).
* Divergence: a non-finite loss, or a mean training loss over the last check window above
  ``divergence_factor * ln(num_classes)`` (10x chance level by default), stops the trial with
  status ``diverged``: an outcome, not an error. Its final accuracies are measured on the model
  as it was when it diverged (non-finite logits count as wrong).
* Determinism: the same config gives bitwise-identical metrics on CPU (single thread default).
* Host memory: on a CPU, freed blocks are kept for reuse (``lcw.allocator``), so a pack's large
  temporaries do not fault pages in every step; results do not depend on it.
* ``on_epoch`` may return True to stop the trial after that epoch (status ``stopped_early``).
* Checkpoints (``checkpoint=``, a ``lcw.checkpoint.CheckpointPlan``): the loop's state is saved
  at epoch ends and a later call resumes from it (``lcw.resume``); the callback then sees only
  the epochs after the saved one, the result holds every epoch and ``resumed_from_epoch``.

One loop serves both paths: a single trial trains its ``Net`` with the torch optimizer, a pack
of K trials (``lcw.packed``) trains one fused model with a per-member optimizer; members that
diverge or stop are frozen while the others go on.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcw.allocator import reuse_freed_memory
from lcw.augment import augment_generator, crop_flip
from lcw.checkpoint import CheckpointPlan
from lcw.config import TrialConfig, pack_key
from lcw.data import Dataset, load_dataset
from lcw.diagnostics import measure_layers
from lcw.models import build_model
from lcw.optim import PackOptimizer, SingleOptimizer, build_optimizer
from lcw.packed_layers import member_state
from lcw.resume import Checkpointer

ORDER_SEED_OFFSET = 1_000_003  # data-order generator seed = seed + this
EVAL_BATCH = 2048  # evaluation batch size (memory bound only; results do not depend on it)

EpochCallback = Callable[[dict[str, Any]], bool | None]
PackEpochCallback = Callable[[int, dict[str, Any]], bool | None]  # (member index, metrics)
StepCallback = Callable[[int, Tensor], None]  # (global step, per-member losses (K,))


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
    resumed_from_epoch: int | None = None  # the checkpoint's epoch this run continued from
    resume_note: str | None = None  # why a checkpoint found was not resumed (started over)

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


def to_channels_last(model: nn.Module, *, packed: bool) -> nn.Module:
    """A conv model's weights in NHWC; a pack also lays out its activations so (``lcw.packed``)."""
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if packed:
        model.channels_last = True  # type: ignore[assignment]
    return model


def cosine_scale(step: int, total: int) -> float:
    """Closed-form cosine annealing from 1 to 0 over `total` steps."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


class _Single(nn.Module):
    """Adapts one ``Net`` to the pack interface: (1, B, ...) -> (1, B, classes)."""

    def __init__(self, net: nn.Module, *, channels_last: bool = False) -> None:
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x: Tensor) -> Tensor:
        x0 = x[0]
        if self.channels_last and x0.dim() == 4:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        logits: Tensor = self.net(x0)
        return logits.unsqueeze(0)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, *, packs: int = 1
) -> list[tuple[float | None, float]]:
    """Per member: (mean cross-entropy, accuracy) in eval mode; non-finite logits are wrong."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(packs, dtype=torch.float64, device=x.device)
    correct = torch.zeros(packs, dtype=torch.int64, device=x.device)
    for i in range(0, len(y), EVAL_BATCH):
        xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
        logits = model(xb.unsqueeze(0).expand(packs, *xb.shape))  # (K, B, C)
        flat = F.cross_entropy(logits.flatten(0, 1), yb.repeat(packs), reduction="none")
        loss_sum += flat.view(packs, -1).double().sum(dim=1)
        ok = torch.isfinite(logits).all(dim=2) & (logits.argmax(dim=2) == yb)
        correct += ok.sum(dim=1)
    model.train(was_training)
    n = max(len(y), 1)
    return [(_num(loss_sum[k] / n), int(correct[k]) / n) for k in range(packs)]


def _env(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        # A plain str: torch's TorchVersion would make whoever unpickles a result (the
        # dispatcher, which never needs torch) import torch, ~2 s of CPU.
        "torch": str(torch.__version__),
        "device": str(device),
        "device_name": name or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def train(
    config: TrialConfig | dict[str, Any],
    *,
    on_epoch: EpochCallback | None = None,
    dataset: Dataset | None = None,
    on_step: StepCallback | None = None,
    checkpoint: CheckpointPlan | None = None,
) -> TrialResult:
    """Train one trial to completion, divergence or an early stop asked for by `on_epoch`;
    with `checkpoint`, save its state as the plan says and resume from a saved one."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    callback = None if on_epoch is None else (lambda _i, m: on_epoch(m))
    return _run(
        [cfg], on_epoch=callback, dataset=dataset, on_step=on_step, packed=False,
        checkpoint=checkpoint,
    )[0]  # fmt: skip


def train_pack(
    configs: Sequence[TrialConfig | dict[str, Any]],
    *,
    on_epoch: PackEpochCallback | None = None,
    dataset: Dataset | None = None,
    on_step: StepCallback | None = None,
    checkpoint: CheckpointPlan | None = None,
) -> list[TrialResult]:
    """Train trials that differ only in `lr` and `seed` as one fused model (``lcw.packed``).

    On CPU an MLP member's result equals its trial run alone bit for bit (``lcw.packed``).
    `checkpoint`: as ``train``'s, for the whole pack (it resumes only the same member set).
    """
    cfgs = [c if isinstance(c, TrialConfig) else TrialConfig.from_dict(c) for c in configs]
    if not cfgs:
        return []
    keys = {pack_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ValueError("configs: a pack's trials may differ only in 'lr' and 'seed'")
    return _run(
        cfgs, on_epoch=on_epoch, dataset=dataset, on_step=on_step, packed=True,
        checkpoint=checkpoint,
    )  # fmt: skip


def _run(
    cfgs: list[TrialConfig],
    *,
    on_epoch: PackEpochCallback | None,
    dataset: Dataset | None,
    on_step: StepCallback | None,
    packed: bool,
    checkpoint: CheckpointPlan | None = None,
) -> list[TrialResult]:
    cfg, packs = cfgs[0], len(cfgs)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
        reuse_freed_memory()
    if dataset is None:
        data = load_dataset(
            cfg.dataset, device=device, root=cfg.data_dir, train_limit=cfg.train_limit
        )
    else:
        data = dataset.limit_train(cfg.train_limit).to(device)
    model: nn.Module
    opt: SingleOptimizer | PackOptimizer
    if packed:
        from lcw.packed import build_packed_model, build_packed_optimizer

        model = build_packed_model(
            cfgs, input_shape=data.input_shape, num_classes=data.num_classes
        ).to(device)
        opt = PackOptimizer(build_packed_optimizer(cfgs, model, device))
    else:
        net = build_model(cfg, input_shape=data.input_shape, num_classes=data.num_classes)
        model = _Single(net.to(device), channels_last=cfg.channels_last)
        opt = SingleOptimizer(build_optimizer(cfg, model), cfg.lr)
    if cfg.channels_last and cfg.model != "mlp":
        model = to_channels_last(model, packed=packed)
    # Training runs the compiled module when asked; evaluation and diagnostics (hooks) stay eager.
    forward: Any = torch.compile(model) if cfg.compile else model
    autocast = partial(
        torch.autocast, device_type=device.type, dtype=torch.bfloat16,
        enabled=cfg.precision == "bf16",
    )  # fmt: skip
    n = len(data.y_train)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)  # a 1-sample tail breaks batch norm
    total_steps = steps_per_epoch * cfg.epochs
    orders = [torch.Generator().manual_seed(c.seed + ORDER_SEED_OFFSET) for c in cfgs]
    # Each member crops and flips its own batch with its own seed's generator: the same
    # augmentation alone, packed with anyone, and for every method.
    augmenters = [augment_generator(c.seed, device) for c in cfgs] if cfg.augment else None
    bound = cfg.divergence_factor * math.log(max(data.num_classes, 2))
    check_every = 1 if device.type == "cpu" else 25  # each check syncs a GPU
    probe = (data.x_train[: cfg.probe_size], data.y_train[: cfg.probe_size])
    x_shape = data.x_train.shape[1:]
    env = _env(device)
    if packed:
        env["pack_size"] = packs
    results = [TrialResult(status="completed", config=c.to_dict(), env=dict(env)) for c in cfgs]
    running = [True] * packs  # not yet diverged or stopped

    def eval_metrics(epoch: int) -> list[dict[str, Any]]:
        with autocast():
            val = evaluate(model, data.x_val, data.y_val, packs=packs)
            test = evaluate(model, data.x_test, data.y_test, packs=packs)
        diags: list[Any] = [None] * packs
        if cfg.diagnostics:
            layers = measure_layers(model, *probe, activation=cfg.activation, packs=packs)
            diags = [{"layers": rows} for rows in layers]
        return [
            {
                "epoch": epoch,
                "val_loss": val[k][0],
                "val_acc": val[k][1],
                "test_loss": test[k][0],
                "test_acc": test[k][1],
                "lr": stopped_lr.get(k, opt.lr(k)),
                "diagnostics": diags[k],
            }
            for k in range(packs)
        ]

    def emit(k: int, metrics: dict[str, Any]) -> None:
        results[k].epochs.append(metrics)
        if on_epoch is not None and on_epoch(k, metrics) and running[k]:
            running[k] = False
            if len(results[k].epochs) <= cfg.epochs:  # stopping after the last epoch is completion
                results[k].status = "stopped_early"

    # A member frozen by divergence keeps the weights and statistics it had when it diverged,
    # as the trial alone does (it stops there): restored after every later step of its pack,
    # which still re-projects its rows and moves its norm statistics in the forward pass.
    frozen: dict[int, list[tuple[Tensor, Tensor]]] = {}
    stopped_lr: dict[int, float] = {}  # a diverged member's LR at its last step, as alone
    saver = None if checkpoint is None else Checkpointer(
        checkpoint, [c.to_dict() for c in cfgs], model=model, optimizer=opt, orders=orders,
        augmenters=augmenters, results=results, running=running, stopped_lr=stopped_lr,
        frozen=frozen, device=device,
    )  # fmt: skip
    model.train()
    resumed = None if saver is None else saver.resume()
    first, step_no = (1, 0) if resumed is None else (resumed[0] + 1, resumed[1])
    if resumed is None:
        for k, m in enumerate(eval_metrics(0)):
            emit(k, {**m, "train_loss": None, "train_acc": None, "seconds": 0.0,
                     "samples_per_s": None})  # fmt: skip
    for epoch in range(first, cfg.epochs + 1):
        if not any(running):
            break
        for k in range(packs):
            opt.active[k] = running[k]
        t0 = time.perf_counter()
        perm = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)  # (K, N)
        loss_sum = torch.zeros(packs, device=device, dtype=torch.float64)
        correct = torch.zeros(packs, device=device, dtype=torch.int64)
        window = torch.zeros(packs, device=device, dtype=torch.float64)
        seen = window_steps = 0
        # Per member: what it trained on this epoch. A member frozen by divergence stops
        # counting at the step that diverged, as the trial alone stops there.
        member_seen = torch.zeros(packs, device=device, dtype=torch.int64)
        diverged = [False] * packs
        active = opt.active.to(device)
        for step in range(steps_per_epoch):
            idx = perm[:, step * bs : (step + 1) * bs]  # (K, B)
            # index_select gathers whole rows (memcpy), several times faster than x[idx].
            flat = idx.reshape(-1)
            xb = data.x_train.index_select(0, flat).view(*idx.shape, *x_shape)  # (K, B, ...)
            if augmenters is not None:
                xb = torch.stack([crop_flip(xk, g) for xk, g in zip(xb, augmenters, strict=True)])
            yb = data.y_train[idx]  # (K, B)
            with autocast():
                logits = forward(xb)  # (K, B, C)
                losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
            losses = losses.float().view(packs, -1).mean(dim=1)  # (K,) each member's mean loss
            total = torch.where(active, losses, torch.zeros_like(losses)).sum()
            opt.zero_grad()
            torch.autograd.backward(total)
            if cfg.lr_schedule == "cosine":
                opt.set_scale(cosine_scale(step_no, total_steps))
            opt.step()
            for saved in frozen.values():
                for live, value in saved:
                    live.copy_(value)
            step_no += 1
            if cfg.lr_schedule == "cosine":
                opt.set_scale(cosine_scale(step_no, total_steps))
            detached = losses.detach().double()
            if on_step is not None:
                on_step(step_no, detached)
            counting = active.to(torch.int64)  # (K,) members that took this step
            loss_sum += torch.where(active, detached * yb.shape[1], torch.zeros_like(detached))
            window += detached
            correct += (logits.detach().argmax(dim=2) == yb).sum(dim=1) * counting
            member_seen += yb.shape[1] * counting
            seen += yb.shape[1]
            window_steps += 1
            if window_steps == check_every or step == steps_per_epoch - 1:
                means = (window / window_steps).tolist()
                for k, mean in enumerate(means):
                    if running[k] and (not math.isfinite(mean) or mean > bound):
                        diverged[k], running[k] = True, False
                        opt.active[k] = False
                        stopped_lr[k] = opt.lr(k)
                        if packs > 1:
                            frozen[k] = member_state(model, k, packs)
                        results[k].status, results[k].diverged_epoch = "diverged", epoch
                        results[k].message = (
                            f"training loss {mean:.4g} is non-finite or above the divergence "
                            f"bound {bound:.4g} ({cfg.divergence_factor:g} x ln "
                            f"{data.num_classes}) at epoch {epoch}"
                        )
                active = opt.active.to(device)
                window.zero_()
                window_steps = 0
                if not any(running):
                    break
        seconds = time.perf_counter() - t0
        metrics = eval_metrics(epoch)
        for k in range(packs):
            if not (running[k] or diverged[k]):
                continue  # frozen before this epoch: nothing new to report
            results[k].seconds += seconds
            trained = max(int(member_seen[k]), 1)
            train_loss = _num(loss_sum[k] / trained)
            train_acc = float(correct[k]) / trained
            results[k].train_loss, results[k].train_acc = train_loss, train_acc
            metrics[k].update(
                train_loss=train_loss,
                train_acc=train_acc,
                seconds=seconds,
                samples_per_s=seen / seconds if seconds > 0 else None,
            )
            emit(k, metrics[k])
        if saver is not None:
            saver.after_epoch(epoch, step_no, last=epoch == cfg.epochs)
    for r in results:
        last = r.epochs[-1]
        r.val_loss, r.val_acc = last["val_loss"], last["val_acc"]
        r.test_loss, r.test_acc = last["test_loss"], last["test_acc"]
    return results
