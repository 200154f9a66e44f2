"""'Did you mean ...?' for a spec's misspelt names: methods, activations, datasets, models and
the other registry names, and unknown field names (``learning_rate`` -> ``learning_rates``).

``service.spec`` passes pydantic's ValidationError through :func:`with_suggestions`, so the
422 that the API answers (and the CLI prints as its one error line) ends with the closest
allowed name, found with :func:`difflib.get_close_matches`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from lcw import catalog

# Spec fields whose values are registry names, by their path without list positions.
NAMES: dict[tuple[str, ...], Iterable[str]] = {
    ("dataset",): catalog.DATASETS,
    ("model",): catalog.MODELS,
    ("methods",): catalog.METHODS,
    ("activations",): catalog.ACTIVATIONS,
    ("optimizer", "name"): catalog.OPTIMIZERS,
    ("lr_schedule",): catalog.LR_SCHEDULES,
    ("lcw_impl",): catalog.LCW_IMPLEMENTATIONS,
    ("precision",): catalog.PRECISIONS,
    ("bias",): catalog.BIAS_MODES,
}


def did_you_mean(value: object, names: Iterable[str]) -> str:
    """ "did you mean 'lcw'?" for the allowed name closest to `value`, or "" when none is close
    (case does not count: 'LCW' -> 'lcw')."""
    if not isinstance(value, str) or not value:
        return ""
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'?" if close else ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (through Optional, list, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def field_names(model: type[BaseModel], path: Iterable[str | int]) -> list[str]:
    """The fields of the object at `path` inside `model` ([] when it is no model)."""
    models = [model]
    for part in path:
        if isinstance(part, int):
            continue  # a list position: the item has the list's model
        models = [
            inner
            for m in models
            if part in m.model_fields
            for inner in _models_in(m.model_fields[part].annotation)
        ]
    return [name for m in models for name in m.model_fields]


def suggestion(error: Any, model: type[BaseModel]) -> str:
    """The hint for one pydantic error of `model`, "" when there is none."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc and isinstance(loc[-1], str):
        return did_you_mean(loc[-1], field_names(model, loc[:-1]))
    names = NAMES.get(tuple(p for p in loc if isinstance(p, str)))
    return did_you_mean(error.get("input"), names) if names is not None else ""


def with_suggestions(exc: ValidationError, model: type[BaseModel]) -> ValidationError:
    """`exc` with a hint after every message that has one (types, paths and inputs kept)."""
    errors = exc.errors()
    hints = [suggestion(e, model) for e in errors]
    if not any(hints):
        return exc
    details: list[InitErrorDetails] = []
    for error, hint in zip(errors, hints, strict=True):
        msg = str(error["msg"])
        if hint:
            if error["type"] == "extra_forbidden":
                msg = "unknown field (not part of the spec)"
            msg = f"{msg} ({hint})"
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(str(error["type"]), msg),
                loc=tuple(error["loc"]),
                input=error.get("input"),
            )
        )
    return ValidationError.from_exception_data(exc.title, details)


__all__ = ["NAMES", "did_you_mean", "field_names", "suggestion", "with_suggestions"]
