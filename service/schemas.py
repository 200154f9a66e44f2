"""Request and response bodies (pydantic v2), named by role: ``StudyCreate``, ``StudyPublic``...

``StudyCreate`` is the study spec. Field types carry the per-field rules (names from the lcw
registries, positive finite numbers, unique axis values); rules that involve several fields
(one of learning_rates / lr_search, depths only for mlp, the trial cap) live in
:mod:`service.spec`, which also reuses ``lcw.TrialConfig`` on every expanded trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from lcw import catalog
from lcw.catalog import choices
from service.errors import shown
from service.summary import Summary


def _one_of(allowed: Iterable[str]) -> Callable[[str], str]:
    values = tuple(allowed)

    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"{value!r} is not one of {choices(values)}")
        return value

    return check


def _enum(allowed: Iterable[str]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(allowed)})


DatasetName = Annotated[str, AfterValidator(_one_of(catalog.DATASETS)), _enum(catalog.DATASETS)]
ModelName = Annotated[str, AfterValidator(_one_of(catalog.MODELS)), _enum(catalog.MODELS)]
MethodName = Annotated[str, AfterValidator(_one_of(catalog.METHODS)), _enum(catalog.METHODS)]
ActivationName = Annotated[
    str, AfterValidator(_one_of(catalog.ACTIVATIONS)), _enum(catalog.ACTIVATIONS)
]
OptimizerName = Annotated[
    str, AfterValidator(_one_of(catalog.OPTIMIZERS)), _enum(catalog.OPTIMIZERS)
]
LRScheduleName = Annotated[
    str, AfterValidator(_one_of(catalog.LR_SCHEDULES)), _enum(catalog.LR_SCHEDULES)
]
LCWImplName = Annotated[
    str, AfterValidator(_one_of(catalog.LCW_IMPLEMENTATIONS)), _enum(catalog.LCW_IMPLEMENTATIONS)
]
PrecisionName = Annotated[
    str, AfterValidator(_one_of(catalog.PRECISIONS)), _enum(catalog.PRECISIONS)
]
BiasMode = Annotated[str, AfterValidator(_one_of(catalog.BIAS_MODES)), _enum(catalog.BIAS_MODES)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# Above 1000 every method diverges; the bound keeps typos (1e10) out of the queue.
LearningRate = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
# A multiplier of a method's default init std; 1000 bounds typos, as for learning rates.
InitScale = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
Depth = Annotated[int, Field(ge=1, le=catalog.MAX_DEPTH)]
Width = Annotated[int, Field(ge=1, le=65536)]


def _gain(value: Any) -> float | dict[str, float] | None:
    """A gain's shape: null, a number > 0, or a map of names to numbers (the names and values
    of a map are checked with the study's methods in ``service.spec.check_spec``)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{value!r} must be a finite number > 0 (or a map {{method: gain}})")
        return float(value)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = {}
        for key, gain in value.items():
            if isinstance(gain, bool) or not isinstance(gain, int | float):
                raise ValueError(f"the gain of {key!r} must be a number, got {shown(gain)}")
            out[key] = float(gain)
        return out
    raise ValueError(f"must be a number > 0 or a map {{method: gain}}, got {shown(value)}")


Gain = Annotated[
    float | dict[str, float] | None,
    PlainValidator(_gain),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {
                    "type": "object",
                    "propertyNames": {"enum": list(catalog.METHODS)},
                    "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                },
                {"type": "null"},
            ]
        }
    ),
]


def _unique(values: list[Any] | None) -> list[Any] | None:
    seen: set[Any] = set()
    for value in values or ():
        if value in seen:
            raise ValueError(f"{value!r} is listed twice; every value must be distinct")
        seen.add(value)
    return values


class _Spec(BaseModel):
    # strict: "5" is not an integer and true is not a number; unknown fields are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


class OptimizerSpec(_Spec):
    name: OptimizerName = "sgd"
    momentum: float = Field(default=0.9, ge=0, lt=1)  # SGD only; the paper's setting
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default=[0.9, 0.999], min_length=2, max_length=2
    )  # Adam/AdamW only
    # False: weight decay only on weight matrices and filters, not on normalization scales and
    # shifts, biases or weight-norm scales (lcw.config.OptimizerConfig).
    decay_norm_and_bias: bool = False


def _low_below_high(model: Any) -> Any:
    """A range's check: ``high`` must be greater than ``low``."""
    if not model.high > model.low:
        raise ValueError(f"high ({model.high}) must be greater than low ({model.low})")
    return model


class ScaleRange(_Spec):
    """The init-scale range an lr_search samples with the learning rate."""

    low: InitScale
    high: InitScale
    log: bool = True  # sample log-uniformly

    _ordered = model_validator(mode="after")(lambda self: _low_below_high(self))


class LRSearch(_Spec):
    """Search the learning rate (and optionally the init scale) per cell (Optuna, filled in by
    the workers) instead of a grid: every cell gets the same ``trials_per_cell`` slots."""

    low: LearningRate
    high: LearningRate
    trials_per_cell: int = Field(default=8, ge=1, le=1000)  # slots per cell, each x seeds
    sampler: Literal["tpe", "random"] = "tpe"
    log: bool = True  # sample log-uniformly
    init_scale: ScaleRange | None = None  # None: the scale is fixed (init_scales, one value)

    _ordered = model_validator(mode="after")(lambda self: _low_below_high(self))


class Resources(_Spec):
    """What one trial reserves on a Ray node (fractions pack several trials on one GPU)."""

    cpu: float = Field(default=1.0, gt=0, le=1024, allow_inf_nan=False)
    gpu: float = Field(default=0.0, ge=0, le=64, allow_inf_nan=False)


class SchedulerSpec(_Spec):
    """Early stopping across the trials of one cell (Ray Tune's ASHA)."""

    name: Literal["asha"] = "asha"
    grace_period: int = Field(default=1, ge=1)  # epochs every trial runs before it can stop
    reduction_factor: int = Field(default=3, ge=2)


# The documented form of "exactly one of learning_rates or lr_search" (service.spec checks it).
_ONE_LR_AXIS: JsonDict = {
    "anyOf": [
        {
            "required": ["learning_rates"],
            "properties": {"learning_rates": {"type": "array"}, "lr_search": {"type": "null"}},
        },
        {
            "required": ["lr_search"],
            "properties": {"lr_search": {"type": "object"}, "learning_rates": {"type": "null"}},
        },
    ]
}


def _web_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://hooks.example.org/lcw)")
    return value


class NotifySpec(_Spec):
    webhook: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_web_url)]


class StudyCreate(_Spec):
    """A study spec: the grid of trials to run and the settings they share."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_LR_AXIS)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    dataset: DatasetName
    model: ModelName = "mlp"
    methods: list[MethodName] = Field(min_length=1, max_length=len(catalog.METHODS))
    # None: [5] hidden layers / [100] units for mlp; must stay unset for fixed-layout models.
    depths: list[Depth] | None = Field(default=None, min_length=1, max_length=200)
    widths: list[Width] | None = Field(default=None, min_length=1, max_length=100)
    activations: list[ActivationName] = Field(
        default=["sigmoid"], min_length=1, max_length=len(catalog.ACTIVATIONS)
    )
    learning_rates: list[LearningRate] | None = Field(default=None, min_length=1, max_length=100)
    lr_search: LRSearch | None = None
    # Multipliers of each method's default init std (lcw.init): a grid axis crossed with
    # learning_rates, the same for every method; the best (lr, scale) is chosen on validation.
    init_scales: list[InitScale] = Field(default=[1.0], min_length=1, max_length=100)
    seeds: int = Field(default=1, ge=1, le=100)  # n: seeds 0..n-1, paired across methods
    epochs: int = Field(default=5, ge=1, le=10_000)
    batch_size: int = Field(default=100, ge=1, le=1 << 20)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    lr_schedule: LRScheduleName = "constant"
    lcw_impl: LCWImplName = "projection"
    # None: each method's documented default gain; a number: that gain for every method; a
    # map {method: gain}: per method (methods it leaves out keep their default).
    gain: Gain = None
    # "none": no per-neuron bias in plain, wn and cwn hidden layers (lcw has none; an ablation).
    bias: BiasMode = "default"
    # Training-set augmentation (CIFAR: random crop, pad 4, and flip); None: the dataset's
    # default (on for CIFAR-10/100, off otherwise).
    augment: bool | None = None
    train_limit: int | None = Field(default=None, ge=1, le=1 << 31)
    resources: Resources = Field(default_factory=Resources)
    max_retries: int = Field(default=2, ge=0, le=20)  # attempts after the first one
    trial_timeout_s: PositiveFinite | None = None
    scheduler: SchedulerSpec | None = None
    diagnostics: bool = True  # per-layer activation shift and gradient norms per epoch
    # GPU path: bf16 autocast, NHWC layout for conv models, torch.compile (see lcw.config).
    precision: PrecisionName = "fp32"
    channels_last: bool = False
    compile: bool = False
    # Trials that differ only in lr and seed may train as one fused model (workers.packing);
    # false: every trial trains alone (e.g. to time trials one by one).
    packing: bool = True
    # Save each trial's training state every this many epochs, so that an attempt after a
    # crash, timeout or preemption resumes from it (lcw.checkpoint); None: automatic, about
    # every 5 minutes of training (a trial that finishes sooner never writes one).
    checkpoint_every: int | None = Field(default=None, ge=1, le=10_000)

    # How the summary adjusts p-values across the study's comparisons (service.significance).
    adjustment: Literal["holm", "bh"] = "holm"
    # Higher runs first; within one priority the workers are shared fairly across owners, then
    # across each owner's studies (service.store.queue).
    priority: int = Field(default=0, ge=-1000, le=1000)
    # Where to say that the study finished (completed, failed or cancelled): a JSON POST.
    notify: NotifySpec | None = None

    @field_validator("methods", "depths", "widths", "activations", "learning_rates", "init_scales")
    @classmethod
    def _distinct(cls, values: list[Any] | None) -> list[Any] | None:
        return _unique(values)


class LRSearchExtend(_Spec):
    trials_per_cell: int = Field(ge=1, le=1000)  # the new total of slots per cell


class StudyExtend(_Spec):
    """An extension of a stored study (``POST /api/studies/{id}/extend``): values to add to its
    axes, a larger seed total, more lr_search slots. Fields that define the stored trials
    (dataset, model, epochs, optimizer, ...) cannot change (``service.extend``)."""

    seeds: int | None = Field(default=None, ge=1, le=100)  # the new total, more than today's
    methods: list[MethodName] | None = None
    depths: list[Depth] | None = None
    widths: list[Width] | None = None
    activations: list[ActivationName] | None = None
    learning_rates: list[LearningRate] | None = None
    init_scales: list[InitScale] | None = None
    lr_search: LRSearchExtend | None = None


class Progress(BaseModel):
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    diverged: int = 0
    stopped_early: int = 0
    failed: int = 0
    cancelled: int = 0


class StudyPublic(BaseModel):
    id: int
    name: str
    description: str | None
    status: str
    dataset: str
    model: str
    owner: str | None  # the API token's name that submitted it (None: auth off or no name)
    priority: int
    trial_count: int
    spec: dict[str, Any]
    progress: Progress
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None = None  # the most recently failed trial's error (None: none failed)


class StudyExtended(StudyPublic):
    added_trials: int  # trials the extension added (on a replay: the first call's count)


class StudyRetried(StudyPublic):
    requeued_trials: int  # failed and cancelled trials put back in the queue


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class TrialPublic(BaseModel):
    id: int
    study_id: int
    index: int
    cell_key: str
    method: str
    depth: int | None
    width: int | None
    activation: str
    seed: int
    slot: int | None
    lr: float | None
    init_scale: float | None
    status: str
    attempt: int
    max_retries: int
    config: dict[str, Any]
    error: str | None
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class EpochMetricPublic(BaseModel):
    epoch: int
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    seconds: float | None
    samples_per_s: float | None
    lr: float | None
    diagnostics: dict[str, Any] | None


class TrialDetailPublic(TrialPublic):
    resources: dict[str, Any]
    timeout_s: float | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    result: dict[str, Any] | None
    run_info: dict[str, Any] | None
    metrics: list[EpochMetricPublic]


class SummaryPublic(Summary):
    """A study's summary as the API serves it: the store's ``Summary``, field for field."""


class HealthPublic(BaseModel):
    status: str
    database: str


class ErrorPublic(BaseModel):
    detail: str
