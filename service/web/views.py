"""What the pages show, assembled from the store's queries and the API's summary (no queries or
statistics of its own): chart data per study cell, the trial table's page, method colors.

Everything here is plain JSON data, ready for a ``<script type="application/json">`` island.
Learning curves and diagnostics are for one cell (depth x width x activation) at a time, each
method at its best learning rate (the summary's choice), so that a page of a 20,000-trial study
carries only aggregates and one table page.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from lcw import catalog
from service.compare import cell_label, cells_of, strongest_baseline
from service.records import Page, StudyRecord, TrialRecord
from service.store import TRIAL_SORT_KEYS, Store
from service.summary import CellSummary, Summary
from service.vocabulary import TRIAL_STATUSES

# One color per method, the same in every chart and the table (Okabe-Ito, colour-blind safe);
# the constrained methods get the warm colors so that "LCW" reads the same across charts.
METHOD_COLORS: dict[str, str] = {
    "plain": "#6e6e6e",
    "bn": "#0072b2",
    "lcw": "#d55e00",
    "bn_lcw": "#cc79a7",
    "wn": "#009e73",
    "cwn": "#e69f00",
    "ln": "#56b4e9",
}
METHOD_ORDER = list(catalog.METHODS)
TABLE_PAGE = 50  # trials per table page
STUDIES_PAGE = 25  # studies per list page

Cell = tuple[int | None, int | None, str]  # depth, width, activation


@dataclass(frozen=True)
class TableQuery:
    """The trial table's state (filters, order, page), read from query parameters."""

    method: str | None = None
    depth: int | None = None
    activation: str | None = None
    status: str | None = None
    sort: str = "index"
    descending: bool = False
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> TableQuery:
        """Lenient parse: an unknown or malformed value falls back to its default."""

        def text(name: str, allowed: Any) -> str | None:
            value = params.get(name) or None
            return value if value in allowed else None

        def number(name: str, default: int | None) -> int | None:
            try:
                return int(params.get(name, ""))
            except ValueError:
                return default

        sort = params.get("sort", "index")
        return cls(
            method=text("method", catalog.METHODS),
            depth=number("depth", None),
            activation=text("activation", catalog.ACTIVATIONS),
            status=text("status", TRIAL_STATUSES),
            sort=sort if sort in TRIAL_SORT_KEYS else "index",
            descending=params.get("dir") == "desc",
            page=max(1, number("page", 1) or 1),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """Query parameters of this state with `changes` (defaults left out)."""
        state = {
            "method": self.method,
            "depth": self.depth,
            "activation": self.activation,
            "status": self.status,
            "sort": None if self.sort == "index" else self.sort,
            "dir": "desc" if self.descending else None,
            "page": None if self.page == 1 else self.page,
        }
        state.update(changes)
        return {k: str(v) for k, v in state.items() if v is not None}


def trial_page(store: Store, study_id: int, query: TableQuery) -> Page[TrialRecord]:
    """One page of the trial table (the store's list_trials, as the API serves it)."""
    return store.list_trials(
        study_id,
        limit=TABLE_PAGE,
        offset=(query.page - 1) * TABLE_PAGE,
        method=query.method,
        depth=query.depth,
        activation=query.activation,
        status=query.status,
        order_by=query.sort,
        descending=query.descending,
    )


def default_cell(summary: Summary) -> Cell | None:
    """The cell to show first: the deepest sigmoid one (else of the first activation), where
    the methods differ most."""
    cells = cells_of(summary)
    if not cells:
        return None
    activations = [c[2] for c in cells]
    first = "sigmoid" if "sigmoid" in activations else activations[0]
    return max((c for c in cells if c[2] == first), key=lambda c: (c[0] or 0, c[1] or 0))


Setting = tuple[float, float | None]  # (lr, init_scale)


def best_settings(summary: Summary, cell: Cell) -> dict[str, Setting]:
    """Each method's best (lr, init_scale) in `cell` (methods without one are left out)."""
    out: dict[str, Setting] = {}
    for c in summary.cells:
        if (c.depth, c.width, c.activation) == cell and c.best_lr is not None:
            out[c.method] = (c.best_lr, c.best_init_scale)
    return out


def _fallback_setting(cells: list[CellSummary], method: str, cell: Cell) -> Setting | None:
    """A method without a best setting (no validation score yet): its setting with the most
    results."""
    for c in cells:
        if c.method == method and (c.depth, c.width, c.activation) == cell:
            scored = [lr for lr in c.lrs if lr.n]
            if scored:
                pick = max(scored, key=lambda lr: (lr.n, -lr.lr))
                return (pick.lr, pick.init_scale)
    return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def cell_data(store: Store, study_id: int, summary: Summary, cell: Cell) -> dict[str, Any]:
    """Learning curves and layer diagnostics of `cell`, every method at its best setting.

    {"cell": {...}, "curves": {method: {"lr", "init_scale", "epoch": [...], "train_loss": [...],
    "test_acc": [...], "n": [...]}}, "diagnostics": {method: {"lr", "init": {"layer": [...],
    "shift": [...], "grad_norm": [...]}, "last": {... , "epoch"}, "seeds"}}}; means over seeds.
    """
    depth, width, activation = cell
    rows = store.cell_curves(study_id, depth=depth, width=width, activation=activation)
    settings = best_settings(summary, cell)
    for method in {r["method"] for r in rows} - set(settings):
        setting = _fallback_setting(summary.cells, method, cell)
        if setting is not None:
            settings[method] = setting
    curves: dict[str, dict[str, Any]] = {}
    for r in rows:
        if settings.get(r["method"]) != (r["lr"], r["init_scale"]):
            continue
        curve = curves.setdefault(
            r["method"],
            {
                "lr": r["lr"],
                "init_scale": r["init_scale"],
                "epoch": [],
                "train_loss": [],
                "test_acc": [],
                "n": [],
            },
        )
        for key in ("epoch", "train_loss", "test_acc", "n"):
            curve[key].append(r[key])
    diag_rows = store.cell_diagnostics(
        study_id, depth=depth, width=width, activation=activation, settings=settings
    )
    # (method, "init" | "last") -> layer -> metric -> values over seeds
    acc: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    last_epoch: dict[str, int] = {}
    seeds: dict[str, set[int]] = defaultdict(set)
    for r in diag_rows:
        phases = (["init"] if r["epoch"] == 0 else []) + (
            ["last"] if r["last"] and r["epoch"] > 0 else []
        )
        seeds[r["method"]].add(r["seed"])
        if "last" in phases:
            last_epoch[r["method"]] = max(last_epoch.get(r["method"], 0), r["epoch"])
        for phase in phases:
            for i, layer in enumerate(r["layers"]):
                index = layer.get("layer")  # 1-based: layer 1 is the first hidden layer
                if not isinstance(index, int) or isinstance(index, bool):
                    index = i + 1
                for metric in ("shift", "grad_norm"):
                    value = layer.get(metric)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        acc[(r["method"], phase)][index][metric].append(float(value))
    diagnostics: dict[str, dict[str, Any]] = {}
    for (method, phase), layers in sorted(acc.items()):
        entry = diagnostics.setdefault(
            method,
            {
                "lr": settings[method][0] if method in settings else None,
                "init_scale": settings[method][1] if method in settings else None,
                "seeds": len(seeds[method]),
                "last_epoch": None,
            },
        )
        order = sorted(layers)
        entry[phase] = {
            "layer": order,
            "shift": [_mean(layers[i]["shift"]) for i in order],
            "grad_norm": [_mean(layers[i]["grad_norm"]) for i in order],
        }
        entry["last_epoch"] = last_epoch.get(method)
    return {
        "cell": {"depth": depth, "width": width, "activation": activation},
        "label": cell_label(cell),
        "curves": _ordered(curves),
        "diagnostics": _ordered(diagnostics),
    }


def _ordered(by_method: dict[str, Any]) -> dict[str, Any]:
    """The same mapping with methods in catalog order (legend order everywhere)."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return {m: by_method[m] for m in sorted(by_method, key=lambda m: rank.get(m, len(rank)))}


def timing(study: StudyRecord, now: Any) -> dict[str, float | None]:
    """Elapsed seconds since the first claim and a naive remaining estimate (elapsed per
    finished trial x unfinished trials); None where it cannot be known yet."""
    p = study.progress
    if study.started_at is None:
        return {"elapsed_s": None, "remaining_s": None}
    end = study.finished_at or now
    elapsed = max(0.0, (end - study.started_at).total_seconds())
    done = p.total - p.pending - p.running
    left = p.pending + p.running
    remaining = None
    if study.finished_at is None and done > 0 and study.status == "running":
        remaining = elapsed / done * left
    return {"elapsed_s": elapsed, "remaining_s": remaining}


def page_config(study: StudyRecord, summary: Summary, *, auth: bool) -> dict[str, Any]:
    """Static facts the study page's script needs (colors, the cells, whether writes need a
    token)."""
    rank = {a: i for i, a in enumerate(catalog.ACTIVATIONS)}
    cells = sorted(cells_of(summary), key=lambda c: (rank.get(c[2], 99), c[1] or 0, c[0] or 0))
    methods = sorted({c.method for c in summary.cells}, key=METHOD_ORDER.index)
    return {
        "study_id": study.id,
        "auth": auth,
        "colors": METHOD_COLORS,
        "methods": methods,
        "activations": list(catalog.ACTIVATIONS),
        "targets": [m for m in ("lcw", "bn_lcw") if m in methods],
        # The heatmap opens on the strongest baseline (service.compare), not on the weakest.
        "default_baseline": strongest_baseline(summary),
        "cells": [
            {"depth": d, "width": w, "activation": a, "label": cell_label((d, w, a))}
            for d, w, a in cells
        ],
        "default_cell": None if (c := default_cell(summary)) is None else list(c),
    }
