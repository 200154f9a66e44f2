"""Studies side by side: the cells they share, each study's LCW against its strongest baseline.

Built only on the studies' stored summaries (``Store.summary``, ``service.summary``): every
number here is a field of a summary, read, never computed a second way. A comparison of two
studies is a table, not a new test: each study's difference, CI and adjusted p stay those of its
own family (its own adjustment over its own comparisons), and the page says so.

* The *strongest baseline* of a study is its non-LCW method with the highest mean test
  accuracy over the cells every such method has a result in (the mean of the cells' means); the
  study page opens its heatmap on it, and the comparison shows it per study.
* The *method* is ``lcw`` when the study compares it, else ``bn_lcw``.
* A cell is *shared* when every study has it (depth, width, activation); a shared cell shows,
  per study, the baseline's and the method's test accuracy at their chosen settings, and the
  stored comparison of the two. ``unfinished`` counts the cell's pending and running trials
  (the numbers are provisional while it is above 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from lcw import catalog
from service.errors import NotFoundError, ServiceError
from service.significance import mean
from service.stats import TARGETS
from service.store import Store
from service.summary import CellSummary, Comparison, Summary

Cell = tuple[int | None, int | None, str]  # depth, width, activation
MAX_STUDIES = 6  # a table of more columns than this no longer reads side by side


class CompareQueryError(ServiceError):
    """A malformed ``studies`` query parameter, or studies that cannot be compared."""

    status_code = 422

    def __init__(self, message: str, *, kind: str = "value_error") -> None:
        super().__init__(f"studies: {message}")
        self.kind = kind

    def detail(self) -> Any:
        return [{"loc": ["query", "studies"], "msg": self.message, "type": self.kind}]


class ComparedStudy(BaseModel):
    """One study of a comparison: what it is and which pair it is read through."""

    id: int
    name: str
    dataset: str
    model: str
    status: str
    method: str | None  # lcw, else bn_lcw; None when it has neither
    baseline: str | None  # its strongest baseline (see the module docstring)
    adjustment: str  # how its p-values were adjusted (holm or bh)
    family_size: int  # over how many of its comparisons
    min_pairs: int  # paired seeds a comparison needs to be tested


class StudySide(BaseModel):
    """One study's numbers in one shared cell (fields of its summary)."""

    study_id: int
    method: str | None
    baseline: str | None
    method_test_acc: float | None
    baseline_test_acc: float | None
    mean_diff: float | None  # method minus baseline, test accuracy, paired by seed
    ci95: list[float] | None
    ci95_note: str | None
    n: int
    testable: bool
    p_value: float | None
    p_adjusted: float | None
    p_value_note: str | None
    significant: bool
    method_diverged: int
    baseline_diverged: int
    stopped_early: int  # both sides' cells, not in any mean
    unfinished: int  # pending or running trials of the two methods in this cell


class SharedCell(BaseModel):
    depth: int | None
    width: int | None
    activation: str
    studies: list[StudySide]


class DepthPoint(BaseModel):
    depth: int | None
    test_acc: float | None
    ci95: list[float] | None
    n: int
    unfinished: int


class DepthSeries(BaseModel):
    """A method's test accuracy over depth in one study (one activation and width)."""

    study_id: int
    method: str
    role: str  # "method" or "baseline"
    activation: str
    width: int | None
    points: list[DepthPoint]


class StudiesCompared(BaseModel):
    studies: list[ComparedStudy]
    cells: list[SharedCell]
    series: list[DepthSeries]
    note: str


# -- reading the query ----------------------------------------------------------------------------


def parse_study_ids(raw: str | Sequence[str] | None) -> list[int]:
    """The study ids of ``studies=1,2,3`` (or repeated ``studies=`` parameters), in order;
    CompareQueryError naming what is wrong otherwise."""
    parts: list[str] = []
    for value in [raw] if isinstance(raw, str) else list(raw or []):
        parts += [p.strip() for p in value.split(",")]
    if not parts or parts == [""]:
        raise CompareQueryError(
            f"missing: give 2 to {MAX_STUDIES} study ids separated by commas, e.g. studies=1,2",
            kind="missing",
        )
    bad = [p for p in parts if not (p.isdigit() and 0 < int(p) < 2**31)]
    if bad:
        verb = "is not a study id" if len(bad) == 1 else "are not study ids"
        raise CompareQueryError(
            f"{', '.join(repr(p) for p in bad)} {verb} (positive integers separated by commas, "
            "e.g. studies=1,2)"
        )
    ids = [int(p) for p in parts]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise CompareQueryError(f"study {', '.join(map(str, repeated))} is named twice")
    if not 2 <= len(ids) <= MAX_STUDIES:
        raise CompareQueryError(f"{len(ids)} study id(s) given; compare 2 to {MAX_STUDIES}")
    return ids


# -- what a study is read through -----------------------------------------------------------------


def cell_of(item: CellSummary | Comparison) -> Cell:
    return (item.depth, item.width, item.activation)


def _catalog_rank(method: str) -> int:
    order = list(catalog.METHODS)
    return order.index(method) if method in order else len(order)


def strongest_baseline(summary: Summary, cells: Iterable[Cell] | None = None) -> str | None:
    """The study's non-LCW method with the highest mean test accuracy: the mean of its cells'
    means over the cells where every such method has one (all its cells where there is no such
    cell), within `cells` when given. Among the methods the study compares LCW against; None
    when there is none (ties: catalog order)."""
    within = None if cells is None else set(cells)
    candidates = sorted(
        {c.baseline for c in summary.comparisons if c.baseline not in TARGETS}, key=_catalog_rank
    )
    if not candidates:
        return None
    means: dict[str, dict[Cell, float]] = {m: {} for m in candidates}
    for c in summary.cells:
        in_scope = within is None or cell_of(c) in within
        if c.method in means and c.test_acc_mean is not None and in_scope:
            means[c.method][cell_of(c)] = c.test_acc_mean
    common = set.intersection(*(set(v) for v in means.values()))
    scores: dict[str, float] = {}
    for method, by_cell in means.items():
        values = [v for cell, v in by_cell.items() if not common or cell in common]
        if (score := mean(values)) is not None:
            scores[method] = score
    if not scores:
        return candidates[0]
    return max(candidates, key=lambda m: (scores.get(m, -1.0), -_catalog_rank(m)))


def target_method(summary: Summary) -> str | None:
    """``lcw`` when the study compares it with a baseline, else ``bn_lcw``, else None."""
    compared = {c.method for c in summary.comparisons}
    return next((m for m in TARGETS if m in compared), None)


def _unfinished(cell: CellSummary | None) -> int:
    return 0 if cell is None else sum(lr.unfinished for lr in cell.lrs)


def _side(summary: Summary, cell: Cell, method: str | None, baseline: str | None) -> StudySide:
    cells = {(c.method, cell_of(c)): c for c in summary.cells}
    mine, theirs = cells.get((method or "", cell)), cells.get((baseline or "", cell))
    pair = next(
        (
            c
            for c in summary.comparisons
            if (c.method, c.baseline) == (method, baseline) and cell_of(c) == cell
        ),
        None,
    )
    return StudySide(
        study_id=summary.study_id,
        method=method,
        baseline=baseline,
        method_test_acc=mine.test_acc_mean if mine else None,
        baseline_test_acc=theirs.test_acc_mean if theirs else None,
        mean_diff=pair.mean_diff if pair else None,
        ci95=pair.ci95 if pair else None,
        ci95_note=pair.ci95_note if pair else "no paired comparison of these methods here",
        n=pair.n if pair else 0,
        testable=pair.testable if pair else False,
        p_value=pair.p_value if pair else None,
        p_adjusted=pair.p_adjusted if pair else None,
        p_value_note=pair.p_value_note if pair else None,
        significant=pair.significant if pair else False,
        method_diverged=pair.method_diverged if pair else 0,
        baseline_diverged=pair.baseline_diverged if pair else 0,
        stopped_early=sum(c.stopped_early for c in (mine, theirs) if c is not None),
        unfinished=_unfinished(mine) + _unfinished(theirs),
    )


def _series(summary: Summary, shared: list[Cell], method: str, role: str) -> list[DepthSeries]:
    cells = {cell_of(c): c for c in summary.cells if c.method == method}
    groups: dict[tuple[str, int | None], list[DepthPoint]] = {}
    for cell in shared:
        c = cells.get(cell)
        if c is None:
            continue
        groups.setdefault((cell[2], cell[1]), []).append(
            DepthPoint(
                depth=cell[0],
                test_acc=c.test_acc_mean,
                ci95=c.test_acc_ci95,
                n=c.n,
                unfinished=_unfinished(c),
            )
        )
    return [
        DepthSeries(
            study_id=summary.study_id,
            method=method,
            role=role,
            activation=activation,
            width=width,
            points=sorted(points, key=lambda p: p.depth or 0),
        )
        for (activation, width), points in groups.items()
    ]


def cells_of(summary: Summary) -> list[Cell]:
    """The study's cells (depth, width, activation) in the summary's order."""
    seen: dict[Cell, None] = {}
    for c in summary.cells:
        seen.setdefault(cell_of(c), None)
    return list(seen)


def compare_studies(store: Store, study_ids: Sequence[int]) -> StudiesCompared:
    """The studies' shared cells side by side (see the module docstring); NotFoundError naming
    the ids that do not exist, CompareQueryError when they share no cell."""
    studies, summaries, missing = [], [], []
    for sid in study_ids:
        try:
            studies.append(store.get_study(sid))
            summaries.append(store.summary(sid))
        except NotFoundError:
            missing.append(sid)
    if missing:
        names = ", ".join(map(str, missing))
        raise NotFoundError(
            f"study {names} does not exist"
            if len(missing) == 1
            else f"studies {names} do not exist"
        )
    per_study = [cells_of(s) for s in summaries]
    shared = [c for c in per_study[0] if all(c in cells for cells in per_study[1:])]
    if not shared:
        described = "; ".join(
            _cells_text(s.id, cells) for s, cells in zip(studies, per_study, strict=True)
        )
        raise CompareQueryError(
            f"studies {', '.join(map(str, study_ids))} share no cell (depth, width and "
            f"activation): {described}",
            kind="no_shared_cells",
        )
    shared.sort(key=lambda c: (_activation_rank(c[2]), c[1] or 0, c[0] or 0))
    compared, sides, series = [], [], []
    for study, summary in zip(studies, summaries, strict=True):
        method, baseline = target_method(summary), strongest_baseline(summary, shared)
        compared.append(
            ComparedStudy(
                id=study.id,
                name=study.name,
                dataset=study.dataset,
                model=study.model,
                status=study.status,
                method=method,
                baseline=baseline,
                adjustment=summary.adjustment.method,
                family_size=summary.adjustment.family_size,
                min_pairs=summary.adjustment.min_pairs,
            )
        )
        sides.append([_side(summary, cell, method, baseline) for cell in shared])
        for m, role in ((method, "method"), (baseline, "baseline")):
            if m is not None:
                series += _series(summary, shared, m, role)
    cells = [
        SharedCell(depth=d, width=w, activation=a, studies=[s[i] for s in sides])
        for i, (d, w, a) in enumerate(shared)
    ]
    return StudiesCompared(
        studies=compared,
        cells=cells,
        series=series,
        note=(
            "Each study's difference, 95% CI and adjusted p are its own summary's: paired over "
            "its seeds, adjusted over its own comparisons. Studies are not tested against "
            "each other."
        ),
    )


def _cells_text(study_id: int, cells: list[Cell]) -> str:
    """ "study 3 has 2 cells (depth 5 · width 100 · sigmoid, ...)" for the no-shared-cell error."""
    listed = ", ".join(cell_label(c) for c in cells[:4]) + (", ..." if len(cells) > 4 else "")
    plural = "s" if len(cells) != 1 else ""
    return f"study {study_id} has {len(cells)} cell{plural}" + (f" ({listed})" if cells else "")


def _activation_rank(activation: str) -> int:
    order = list(catalog.ACTIVATIONS)
    return order.index(activation) if activation in order else len(order)


def cell_label(cell: Cell) -> str:
    """A cell as the pages name it: "depth 5 · width 100 · sigmoid" (the activation alone for a
    fixed-layout model)."""
    depth, width, activation = cell
    return activation if depth is None else f"depth {depth} · width {width} · {activation}"
