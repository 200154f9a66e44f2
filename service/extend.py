"""Extending a stored study: a partial spec that only adds to the study's axes.

``plan_extension(stored, request)`` merges an extension into the study's normalized spec and
returns the new spec with exactly the trials the extension adds. The rules:

- ``seeds`` is the new total (an integer larger than the study's; equal adds nothing).
- ``learning_rates``, ``init_scales``, ``depths``, ``widths``, ``activations`` and ``methods``
  list values to add. A list may also repeat every value the study has, plus the new ones; a
  list that leaves out some of the study's values but not all would remove them, which an
  extension cannot do. A value listed twice is an error.
- ``lr_search: {trials_per_cell: N}`` gives each cell N slots in all (more than today's); the
  new slots are proposed by each cell's searcher, which goes on from the slots it has seen.
- Every other field defines the trials already run (dataset, model, epochs, optimizer, ...)
  and cannot change: sending it with another value is an error that says to submit a new
  study (the same value is accepted and changes nothing).

A trial is identified by its cell, setting (slot, or grid lr and init scale) and seed; the new
trials are the merged spec's expansion less the stored spec's, numbered after the study's last
index, so every stored trial keeps its index, config and metrics. The trial cap applies to the
merged spec's total.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from lcw import catalog
from service.errors import SpecError
from service.schemas import StudyCreate, StudyExtend
from service.spec import PlannedTrial, check_spec, expand, parse_spec
from service.spec_hints import with_suggestions

# Axes an extension adds values to; seeds and lr_search.trials_per_cell grow a count instead.
LIST_AXES = ("methods", "depths", "widths", "activations", "learning_rates", "init_scales")
EXTENDABLE = (*LIST_AXES, "seeds", "lr_search")
NEW_STUDY = "it defines the study's existing trials; submit a new study to change it"


def request_hash(request: Mapping[str, Any]) -> str:
    """A stable hash of an extension request (an Idempotency-Key replays only the same one)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_values(request: Mapping[str, Any]) -> None:
    """The extendable fields' values on their own (ValidationError with the request's paths)."""
    values = {k: request[k] for k in (*LIST_AXES, "seeds") if k in request}
    search = request.get("lr_search")
    if isinstance(search, dict) and "trials_per_cell" in search:
        values["lr_search"] = {"trials_per_cell": search["trials_per_cell"]}
    try:
        StudyExtend.model_validate(values)
    except ValidationError as exc:  # a misspelt method: "(did you mean 'lcw'?)"
        raise with_suggestions(exc, StudyExtend) from None


def _identity(t: PlannedTrial) -> tuple[Any, ...]:
    return (t.cell_key, t.slot, t.lr, t.init_scale, t.seed)


def _effective(stored: StudyCreate, axis: str) -> list[Any]:
    """The values an axis has in the stored study (an MLP's unset depths/widths: defaults)."""
    value = getattr(stored, axis)
    if value is None and axis in ("depths", "widths"):
        if catalog.MODELS[stored.model].uses_depth:
            return [5] if axis == "depths" else [100]
        return []
    return list(value or [])


def _added(stored: StudyCreate, axis: str, given: Any) -> list[Any]:
    """The values of `axis` the extension adds (see the module docstring)."""
    if not isinstance(given, list):
        raise SpecError((axis,), f"must be a list of values to add, got {type(given).__name__}")
    have = _effective(stored, axis)
    if axis in ("depths", "widths") and not catalog.MODELS[stored.model].uses_depth:
        raise SpecError((axis,), f"only applies to model 'mlp'; model '{stored.model}' has a "
                        "fixed layout")  # fmt: skip
    seen: set[Any] = set()
    for i, value in enumerate(given):
        if value in seen:
            raise SpecError((axis, i), f"{value!r} is listed twice; every value must be distinct")
        seen.add(value)
    kept = [v for v in have if v in seen]
    if kept and len(kept) < len(have):
        gone = [v for v in have if v not in seen]
        raise SpecError(
            (axis,),
            f"would remove {gone!r}: an extension only adds values. List only the new values, "
            f"or every value the study has ({have!r}) plus the new ones",
        )
    return [v for v in given if v not in have]


def _merge(stored: StudyCreate, request: Mapping[str, Any]) -> dict[str, Any]:
    """The stored spec (as JSON data) with the extension applied; SpecError on a bad field."""
    merged = stored.model_dump(mode="json")
    fields = StudyCreate.model_fields
    for name, given in request.items():
        if name in EXTENDABLE:
            continue
        if name not in fields:
            raise SpecError(
                (name,), f"is not a field of a study spec; an extension may give {list(EXTENDABLE)}"
            )
        if _normalized(merged, name, given) != merged.get(name):
            raise SpecError((name,), f"cannot change from {merged.get(name)!r}: {NEW_STUDY}")
    for axis in LIST_AXES:
        if axis in request:
            if axis == "learning_rates" and stored.lr_search is not None:
                raise SpecError((axis,), "the study searches its learning rates (lr_search); "
                                "extend lr_search.trials_per_cell instead")  # fmt: skip
            merged[axis] = _effective(stored, axis) + _added(stored, axis, request[axis])
    if "seeds" in request:
        seeds = request["seeds"]
        if isinstance(seeds, bool) or not isinstance(seeds, int):
            raise SpecError(("seeds",), f"must be an integer (the new total), got {seeds!r}")
        if seeds < stored.seeds:
            raise SpecError(
                ("seeds",),
                f"{seeds} is fewer than the study's {stored.seeds}: an extension only adds "
                f"seeds (give the new total, more than {stored.seeds})",
            )
        merged["seeds"] = seeds
    if "lr_search" in request:
        merged["lr_search"] = _merged_search(stored, request["lr_search"])
    if stored.lr_search is not None and stored.lr_search.init_scale is not None:
        merged.pop("init_scales", None)  # searched with the lr: the spec must leave it out
    return merged


def _normalized(spec: dict[str, Any], name: str, given: Any) -> Any:
    """`given` as the stored spec would hold it (defaults filled in), or `given` itself when it
    is not a valid value of the field."""
    try:
        return StudyCreate.model_validate({**spec, name: given}).model_dump(mode="json")[name]
    except ValidationError:
        return given


def _merged_search(stored: StudyCreate, given: Any) -> dict[str, Any]:
    if stored.lr_search is None:
        raise SpecError(("lr_search",), "the study has a learning-rate grid; extend "
                        "learning_rates instead")  # fmt: skip
    if not isinstance(given, dict):
        raise SpecError(("lr_search",), "must be an object {trials_per_cell: N}")
    block = stored.lr_search.model_dump(mode="json")
    for key, value in given.items():
        if key != "trials_per_cell" and value != block.get(key):
            raise SpecError(("lr_search", key), f"cannot change from {block.get(key)!r}: "
                            f"{NEW_STUDY}")  # fmt: skip
    n = given.get("trials_per_cell", block["trials_per_cell"])
    if isinstance(n, bool) or not isinstance(n, int):
        raise SpecError(("lr_search", "trials_per_cell"), f"must be an integer, got {n!r}")
    if n < block["trials_per_cell"]:
        raise SpecError(
            ("lr_search", "trials_per_cell"),
            f"{n} is fewer than the study's {block['trials_per_cell']}: an extension only "
            "adds slots",
        )
    return {**block, "trials_per_cell": n}


def plan_extension(
    stored: Mapping[str, Any], request: Any, *, next_index: int, max_trials: int
) -> tuple[StudyCreate, list[PlannedTrial]]:
    """(the merged spec, the trials it adds, numbered from `next_index`); SpecError or
    pydantic's ValidationError (paths in the merged spec) when the extension is invalid."""
    if not isinstance(request, dict):
        raise SpecError((), f"the extension must be an object, got {type(request).__name__}")
    if not request:
        raise SpecError((), f"the extension is empty; give at least one of {list(EXTENDABLE)}")
    _check_values(request)
    old = parse_spec(dict(stored))
    spec = parse_spec(_merge(old, request))
    check_spec(spec, max_trials=max_trials)
    have = {_identity(t) for t in expand(old)}
    new = [t for t in expand(spec) if _identity(t) not in have]
    return spec, [replace(t, index=next_index + i) for i, t in enumerate(new)]


__all__ = ["EXTENDABLE", "plan_extension", "request_hash"]
