"""Study specs: parse a JSON or YAML body, check the study-level rules, expand into trials.

Expansion is deterministic: methods x depths x widths x activations x settings x seeds, in that
nesting order, where the settings are learning_rates x init_scales (a grid) or the lr_search
slots. Each trial has its ``index``, a ``cell_key`` (``method|depth|width|activation``, ``-`` for
a fixed-layout model's depth and width) and a ``config`` that is exactly
``lcw.TrialConfig(...).to_dict()``. lr_search trials start with ``lr = None`` (and
``init_scale = None`` when the scale is searched too); the workers fill each slot in later
(``Store.assign_lr``). Every method gets the same settings: the budget is fair by construction.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lcw import catalog
from lcw.config import ConfigError, OptimizerConfig, TrialConfig
from service.documents import DocumentError, decode_json, decode_yaml
from service.errors import SpecError, UnsupportedMediaTypeError
from service.schemas import StudyCreate
from service.spec_hints import did_you_mean, with_suggestions

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

# ConfigError names a TrialConfig field; the spec field it came from is sometimes plural.
_SPEC_FIELD = {
    "method": "methods",
    "depth": "depths",
    "width": "widths",
    "activation": "activations",
    "lr": "learning_rates",
    "seed": "seeds",
    "init_scale": "init_scales",
}


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of an expanded study, before it is stored."""

    index: int
    cell_key: str
    method: str
    depth: int | None  # None: the model has a fixed layout (VGG)
    width: int | None
    activation: str
    seed: int
    slot: int | None  # lr_search slot, None for a grid learning rate
    lr: float | None
    init_scale: float | None  # None: searched with the lr (lr_search.init_scale)
    config: dict[str, Any]


def load_document(raw: bytes, media_type: str) -> Any:
    """Decode a request body as JSON or YAML (by media type) into plain Python data."""
    media_type = media_type.split(";", 1)[0].strip().lower() or "application/json"
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        kind, decode = "JSON", decode_json
    elif media_type in YAML_TYPES:
        kind, decode = "YAML", decode_yaml  # safe_load: plain data only, never Python objects
    else:
        raise UnsupportedMediaTypeError(
            f"Content-Type '{media_type}' is not supported; send application/json or "
            "application/yaml"
        )
    invalid = f"{kind.lower()}_invalid"
    try:
        return decode(raw)
    except DocumentError as exc:  # "line 3, column 9: mapping values are not allowed here"
        raise SpecError((), f"body is not valid {kind}: {exc}", kind=invalid) from exc
    except RecursionError as exc:  # "[[[[...": a small body that nests past the stack
        raise SpecError((), "body is nested too deeply", kind=invalid) from exc


def parse_spec(data: Any) -> StudyCreate:
    """Validate decoded data as a StudyCreate; raises pydantic's ValidationError."""
    if not isinstance(data, dict):
        raise SpecError((), f"the spec must be an object, got {type(data).__name__}")
    try:
        return StudyCreate.model_validate(data)
    except ValidationError as exc:
        raise with_suggestions(exc, StudyCreate) from None


def normalized(spec: StudyCreate) -> dict[str, Any]:
    """The spec as JSON data with every default filled in (what the study stores)."""
    return spec.model_dump(mode="json")


# Fields added to the spec after studies were stored, with their defaults: left out of the hash
# while at the default, so an Idempotency-Key replays across the upgrade that added them.
_LATER_FIELDS: dict[str, Any] = {"checkpoint_every": None, "priority": 0, "notify": None}


def spec_hash(spec: StudyCreate) -> str:
    """A stable hash of the normalized spec: JSON and YAML of the same spec hash alike."""
    data = {k: v for k, v in normalized(spec).items()
            if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}  # fmt: skip
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _axes(spec: StudyCreate) -> tuple[list[int | None], list[int | None]]:
    if catalog.MODELS[spec.model].uses_depth:
        return list(spec.depths or [5]), list(spec.widths or [100])
    return [None], [None]


def lr_slots(spec: StudyCreate) -> int:
    """Settings per cell: learning_rates x init_scales, or lr_search.trials_per_cell."""
    if spec.lr_search is not None:
        return spec.lr_search.trials_per_cell
    return len(spec.learning_rates or ()) * len(spec.init_scales)


def settings(spec: StudyCreate) -> list[tuple[int | None, float | None, float | None]]:
    """(slot, lr, init_scale) of each setting of a cell, in expansion order."""
    if spec.lr_search is not None:
        scale = None if spec.lr_search.init_scale is not None else spec.init_scales[0]
        return [(slot, None, scale) for slot in range(spec.lr_search.trials_per_cell)]
    return [(None, lr, scale) for lr in spec.learning_rates or () for scale in spec.init_scales]


def method_gain(spec: StudyCreate, method: str) -> float | None:
    """The init gain override of `method`: the spec's number, its map entry, or None."""
    if isinstance(spec.gain, dict):
        return spec.gain.get(method)
    return spec.gain


def trial_count(spec: StudyCreate) -> int:
    """How many trials the spec expands into (computed without expanding)."""
    depths, widths = _axes(spec)
    cells = len(spec.methods) * len(depths) * len(widths) * len(spec.activations)
    return cells * lr_slots(spec) * spec.seeds


def check_spec(spec: StudyCreate, *, max_trials: int) -> None:
    """The rules that involve several fields; raises SpecError naming the field."""
    if (spec.learning_rates is None) == (spec.lr_search is None):
        raise SpecError(("learning_rates",), "give exactly one of learning_rates or lr_search")
    if spec.lr_search is not None and len(spec.init_scales) > 1:
        raise SpecError(
            ("init_scales",),
            "with lr_search give one value (a fixed scale), or search the scale with the "
            "learning rate: lr_search.init_scale {low, high}",
        )
    if (
        spec.lr_search is not None
        and spec.lr_search.init_scale is not None
        and "init_scales" in spec.model_fields_set
    ):
        raise SpecError(
            ("init_scales",),
            "lr_search.init_scale searches the scale; leave init_scales out",
        )
    if isinstance(spec.gain, dict):
        for method, gain in spec.gain.items():
            if method not in catalog.METHODS:
                hint = did_you_mean(method, catalog.METHODS)
                raise SpecError(
                    ("gain", method),
                    f"'{method}' is not one of {choices(list(catalog.METHODS))}"
                    + (f" ({hint})" if hint else ""),
                )
            if method not in spec.methods:
                raise SpecError(
                    ("gain", method),
                    f"'{method}' is not one of the study's methods ({choices(spec.methods)})",
                )
            if not (math.isfinite(gain) and gain > 0):
                raise SpecError(("gain", method), f"{gain!r} must be greater than 0 and finite")
    if not catalog.MODELS[spec.model].uses_depth:
        for field in ("depths", "widths"):
            if getattr(spec, field) is not None:
                raise SpecError(
                    (field,),
                    f"only applies to model 'mlp'; model '{spec.model}' has a fixed layout",
                )
    if not catalog.model_accepts(spec.model, spec.dataset):
        shapes = catalog.MODELS[spec.model].input_shapes
        fits = [d for d in catalog.DATASETS if catalog.model_accepts(spec.model, d)]
        raise SpecError(
            ("model",),
            f"'{spec.model}' needs inputs of shape {shapes}; dataset '{spec.dataset}' has "
            f"{catalog.DATASETS[spec.dataset].input_shape} (datasets that fit: {choices(fits)})",
        )
    if spec.scheduler is not None and spec.scheduler.grace_period > spec.epochs:
        raise SpecError(
            ("scheduler", "grace_period"),
            f"{spec.scheduler.grace_period} exceeds epochs ({spec.epochs})",
        )
    count = trial_count(spec)
    if count > max_trials:
        depths, widths = _axes(spec)
        raise SpecError(
            (),
            f"the spec expands into {count} trials, more than the cap of {max_trials} "
            f"(LCW_MAX_TRIALS_PER_STUDY): {len(spec.methods)} methods x {len(depths)} depths x "
            f"{len(widths)} widths x {len(spec.activations)} activations x {lr_slots(spec)} "
            f"settings (learning rates x init scales) x {spec.seeds} seeds",
            kind="too_many_trials",
        )


def choices(names: list[str]) -> str:
    return catalog.choices(names) if names else "none"


def _config(
    spec: StudyCreate,
    *,
    method: str,
    depth: int | None,
    width: int | None,
    activation: str,
    lr: float | None,
    init_scale: float | None,
) -> dict[str, Any]:
    opt = spec.optimizer
    # A placeholder LR validates an lr_search trial; its stored config then says None.
    check_lr = lr if lr is not None else (spec.lr_search.low if spec.lr_search else 0.1)
    try:
        config = TrialConfig(
            dataset=spec.dataset,
            model=spec.model,
            method=method,
            activation=activation,
            depth=depth if depth is not None else TrialConfig.depth,
            width=width if width is not None else TrialConfig.width,
            lr=check_lr,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            seed=0,
            optimizer=OptimizerConfig(
                name=opt.name,
                momentum=opt.momentum,
                nesterov=opt.nesterov,
                weight_decay=opt.weight_decay,
                betas=(opt.betas[0], opt.betas[1]),
                decay_norm_and_bias=opt.decay_norm_and_bias,
            ),
            lr_schedule=spec.lr_schedule,
            gain=method_gain(spec, method),
            init_scale=init_scale if init_scale is not None else 1.0,
            bias=spec.bias,
            augment=spec.augment,
            lcw_impl=spec.lcw_impl,
            # A trial that reserves a GPU runs on it; its CPU share sets torch's threads.
            device="cuda" if spec.resources.gpu > 0 else "cpu",
            threads=max(1, math.floor(spec.resources.cpu)),
            diagnostics=spec.diagnostics,
            train_limit=spec.train_limit,
            precision=spec.precision,
            channels_last=spec.channels_last,
            compile=spec.compile,
        )
    except ConfigError as exc:
        raise _spec_error(exc) from exc
    data = config.to_dict()
    data["lr"] = lr
    data["init_scale"] = init_scale
    return data


def _spec_error(exc: ConfigError) -> SpecError:
    field, _, message = str(exc).partition(": ")
    if not message:
        return SpecError((), str(exc))
    parts = field.split(".")
    parts[0] = _SPEC_FIELD.get(parts[0], parts[0])
    return SpecError(tuple(parts), message)


def expand(spec: StudyCreate) -> list[PlannedTrial]:
    """Every trial of the spec, in a deterministic order (check_spec first)."""
    depths, widths = _axes(spec)
    lrs = settings(spec)
    trials: list[PlannedTrial] = []
    for method in spec.methods:
        for depth in depths:
            for width in widths:
                for activation in spec.activations:
                    cell_key = "|".join((method, _key(depth), _key(width), activation))
                    for slot, lr, scale in lrs:
                        base = _config(
                            spec,
                            method=method,
                            depth=depth,
                            width=width,
                            activation=activation,
                            lr=lr,
                            init_scale=scale,
                        )
                        for seed in range(spec.seeds):
                            trials.append(
                                PlannedTrial(
                                    index=len(trials),
                                    cell_key=cell_key,
                                    method=method,
                                    depth=depth,
                                    width=width,
                                    activation=activation,
                                    seed=seed,
                                    slot=slot,
                                    lr=lr,
                                    init_scale=scale,
                                    config={**base, "seed": seed},
                                )
                            )
    return trials


def _key(value: int | None) -> str:
    return "-" if value is None else str(value)


def plan_study(data: Any, *, max_trials: int) -> tuple[StudyCreate, list[PlannedTrial]]:
    """Decoded body -> validated spec and its trials; raises ValidationError or SpecError."""
    spec = parse_spec(data)
    check_spec(spec, max_trials=max_trials)
    return spec, expand(spec)


__all__ = [
    "PlannedTrial",
    "ValidationError",
    "check_spec",
    "expand",
    "load_document",
    "normalized",
    "parse_spec",
    "plan_study",
    "spec_hash",
    "trial_count",
]
