"""One trial's configuration: a frozen dataclass, torch-free, validated on construction.

A trial is a function call (``lcw.train(config)``); everything that determines its outcome is
here, so a stored config reruns the trial exactly. ``TrialConfig.from_dict`` accepts the JSON
the service stores and rejects unknown keys with a message naming them.

Also the pack key (``pack_key``): trials whose configs differ only in ``PACK_MEMBER_FIELDS``
(``lr`` and ``seed``) can train as one fused model (``lcw.packed``); ``lcw.trainer.train_pack``
checks it and the dispatcher groups trials by it (``workers.packing``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lcw import catalog
from lcw.catalog import choices


class ConfigError(ValueError):
    """A trial configuration field holds a value that is not allowed."""


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    momentum: float = 0.9  # SGD only; the paper's setting
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW only
    # False: weight_decay applies to the weight matrices / filters of linear maps only (the
    # classifier's included), not to normalization scales and shifts, biases or weight-norm
    # scales g, the common recipe; True: to every parameter (torch's default).
    decay_norm_and_bias: bool = False

    def __post_init__(self) -> None:
        if self.name not in catalog.OPTIMIZERS:
            raise ConfigError(
                f"optimizer.name: '{self.name}' is not one of {choices(catalog.OPTIMIZERS)}"
            )
        if not (0.0 <= self.momentum < 1.0):
            raise ConfigError(f"optimizer.momentum: {self.momentum} is outside [0, 1)")
        if not (self.weight_decay >= 0.0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"optimizer.weight_decay: {self.weight_decay} must be >= 0")
        if self.nesterov and self.momentum == 0.0:
            raise ConfigError("optimizer.nesterov: needs momentum > 0")
        if not isinstance(self.decay_norm_and_bias, bool):
            raise ConfigError(
                f"optimizer.decay_norm_and_bias: {self.decay_norm_and_bias!r} must be true or false"
            )
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


@dataclass(frozen=True)
class TrialConfig:
    dataset: str = "digits"
    model: str = "mlp"
    method: str = "lcw"
    activation: str = "sigmoid"
    depth: int = 5  # hidden layers (MLP only)
    width: int = 100  # units per hidden layer (MLP only)
    lr: float = 0.1
    epochs: int = 5
    batch_size: int = 100
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: str = "constant"
    # None: the activation's default gain (lcw.init, one principle for every method); a number
    # replaces it (std = gain / sqrt(fan_in)).
    gain: float | None = None
    # Multiplies the init std of every hidden layer, on top of the default gain or `gain` (the
    # classifier head keeps std 1/sqrt(fan_in)): studies tune it like the learning rate.
    init_scale: float = 1.0
    bias: str = "default"  # "none": no hidden bias for plain, wn, cwn either (catalog.BIAS_MODES)
    # Training-batch augmentation (crop + flip, lcw.augment). None: the dataset's default
    # (catalog.DatasetInfo.augment: on for cifar10/cifar100), resolved on construction.
    augment: bool | None = None
    lcw_impl: str = "projection"  # exact and nearly free; "basis" is the paper's parameterization
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto"
    precision: str = "fp32"  # "bf16": autocast the forward pass to bfloat16 (weights stay fp32)
    channels_last: bool = False  # NHWC memory layout for conv models (faster on tensor cores)
    compile: bool = False  # torch.compile the model (pays a compile time up front)
    threads: int = 1  # torch intra-op threads; one per concurrent trial avoids oversubscription
    diagnostics: bool = True  # per-layer activation shift and gradient norms, one probe batch
    probe_size: int = 256  # samples in the diagnostics probe batch
    # A mean training loss above this many times the chance-level loss ln(C) is divergence.
    divergence_factor: float = 10.0
    train_limit: int | None = None  # use only the first N training samples (None: all)
    data_dir: str | None = None  # None: $LCW_DATA_DIR or ./data

    def __post_init__(self) -> None:
        _one_of("dataset", self.dataset, catalog.DATASETS)
        _one_of("model", self.model, catalog.MODELS)
        _one_of("method", self.method, catalog.METHODS)
        _one_of("activation", self.activation, catalog.ACTIVATIONS)
        _one_of("lr_schedule", self.lr_schedule, catalog.LR_SCHEDULES)
        _one_of("lcw_impl", self.lcw_impl, catalog.LCW_IMPLEMENTATIONS)
        _one_of("precision", self.precision, catalog.PRECISIONS)
        _one_of("bias", self.bias, catalog.BIAS_MODES)
        if not catalog.model_accepts(self.model, self.dataset):
            shape = catalog.DATASETS[self.dataset].input_shape
            raise ConfigError(
                f"model: '{self.model}' needs inputs of shape "
                f"{catalog.MODELS[self.model].input_shapes}, dataset '{self.dataset}' has {shape}"
            )
        _int_range("depth", self.depth, 1, catalog.MAX_DEPTH)
        _int_range("width", self.width, 1, 65536)
        _int_range("epochs", self.epochs, 1, 10000)
        _int_range("batch_size", self.batch_size, 1, 1 << 20)
        _int_range("seed", self.seed, 0, 2**31 - 1)
        _int_range("threads", self.threads, 1, 1024)
        _int_range("probe_size", self.probe_size, 2, 1 << 16)
        if self.train_limit is not None:
            _int_range("train_limit", self.train_limit, 1, 1 << 31)
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: {self.lr!r} must be a finite number > 0")
        if self.gain is not None and not (_is_number(self.gain) and self.gain > 0):
            raise ConfigError(f"gain: {self.gain!r} must be a finite number > 0 or null")
        if not (_is_number(self.init_scale) and self.init_scale > 0):
            raise ConfigError(f"init_scale: {self.init_scale!r} must be a finite number > 0")
        if self.augment is None:
            object.__setattr__(self, "augment", catalog.DATASETS[self.dataset].augment)
        elif not isinstance(self.augment, bool):
            raise ConfigError(f"augment: {self.augment!r} must be true, false or null")
        if not (math.isfinite(self.divergence_factor) and self.divergence_factor > 1):
            raise ConfigError(f"divergence_factor: {self.divergence_factor} must be > 1")
        dev = self.device
        if not (dev in ("cpu", "cuda", "auto") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device: '{dev}' is not 'cpu', 'cuda', 'cuda:N' or 'auto'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["optimizer"]["betas"] = list(self.optimizer.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown field(s) {unknown}; allowed: {sorted(known)}")
        opt = data.pop("optimizer", None)
        if isinstance(opt, dict):
            okeys = {f.name for f in fields(OptimizerConfig)}
            bad = sorted(set(opt) - okeys)
            if bad:
                raise ConfigError(f"optimizer: unknown field(s) {bad}; allowed: {sorted(okeys)}")
            opt_cfg = OptimizerConfig(**opt)
        elif isinstance(opt, OptimizerConfig):
            opt_cfg = opt
        elif opt is None:
            opt_cfg = OptimizerConfig()
        else:
            raise ConfigError("optimizer: must be an object")
        return cls(optimizer=opt_cfg, **data)


# The fields a pack's members may differ in; every other field shapes the model or the update
# rule and must be shared.
PACK_MEMBER_FIELDS: tuple[str, ...] = ("lr", "seed")


def pack_key(config: TrialConfig | Mapping[str, Any]) -> str:
    """Configs with equal keys can train as one pack: all but ``PACK_MEMBER_FIELDS``, as JSON.

    A ``TrialConfig`` and its ``to_dict()`` have the same key.
    """
    data = config.to_dict() if isinstance(config, TrialConfig) else config
    shared = {k: v for k, v in data.items() if k not in PACK_MEMBER_FIELDS}
    return json.dumps(shared, sort_keys=True, default=repr)


def _is_number(value: object) -> bool:
    """A finite int or float (bool excluded: JSON true is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(name: str, value: object, allowed: Any) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {choices(allowed)}")


def _int_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
        raise ConfigError(f"{name}: {value!r} must be an integer from {low} to {high}")
