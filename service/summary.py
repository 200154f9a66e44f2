"""The summary of a study, as ``service.stats`` computes it and the store serves it.

Value types, not HTTP models: the store's summary cache builds them (each cell's part once, when
its version moves) and keeps their JSON; the API serves that JSON under ``SummaryPublic``
(``service.schemas``), the client and the pages read the same types. One definition: every
field below is what a reader of the comparison sees.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class LRSummary(BaseModel):
    """One setting (learning rate, init scale) of a cell."""

    lr: float
    init_scale: float | None
    val_acc_mean: float | None
    test_acc_mean: float | None
    n: int  # trials that ran the whole budget at this setting (completed or diverged)
    diverged: int
    stopped_early: int  # not in the means
    failed: int
    unfinished: int  # pending or running


class CellSummary(BaseModel):
    method: str
    depth: int | None
    width: int | None
    activation: str
    best_lr: float | None
    best_init_scale: float | None
    val_acc_mean: float | None
    test_acc_mean: float | None
    test_acc_std: float | None
    test_acc_ci95: list[float] | None
    ci95_note: str | None
    n: int
    diverged: int  # in the cell, every setting
    stopped_early: int  # in the cell, every setting (never in a mean)
    lrs: list[LRSummary]


class Comparison(BaseModel):
    method: str  # lcw or bn_lcw
    baseline: str
    depth: int | None
    width: int | None
    activation: str
    method_lr: float | None
    baseline_lr: float | None
    method_init_scale: float | None
    baseline_init_scale: float | None
    n: int  # seeds with a result for both
    mean_diff: float | None  # method minus baseline, test accuracy
    ci95: list[float] | None
    ci95_note: str | None
    testable: bool  # n >= Adjustment.min_pairs
    p_value: float | None  # primary test (paired t), raw
    p_value_note: str | None
    p_adjusted: float | None  # p_value adjusted across the study's comparisons
    p_signed_rank: float | None  # exact Wilcoxon signed-rank p, raw (robustness)
    p_signed_rank_adjusted: float | None
    significant: bool  # p_adjusted < alpha
    method_diverged: int  # of the n paired seeds, trials that diverged
    baseline_diverged: int


class Adjustment(BaseModel):
    """How the study's p-values were adjusted, and what its seed count can reach."""

    method: str  # "holm" or "bh"
    family_size: int  # comparisons with a p-value
    alpha: float
    primary_test: str
    robustness_test: str
    min_pairs: int  # paired seeds a comparison needs to be tested
    signed_rank_floor_adjusted: float | None  # smallest adjusted signed-rank p reachable here
    note: str


class Summary(BaseModel):
    study_id: int
    status: str
    cells: list[CellSummary]
    comparisons: list[Comparison]
    adjustment: Adjustment


# -- the summary as rows (the CLI's csv/json, the client's DataFrames) ----------------------------

CELL_COLUMNS = (
    "method", "depth", "width", "activation", "best_lr", "best_init_scale", "val_acc_mean",
    "test_acc_mean", "test_acc_std", "test_acc_ci95_low", "test_acc_ci95_high", "n",
    "diverged", "stopped_early",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "method", "baseline", "depth", "width", "activation", "method_lr", "method_init_scale",
    "baseline_lr", "baseline_init_scale", "n", "mean_diff", "ci95_low", "ci95_high", "p_value",
    "p_adjusted", "p_signed_rank", "p_signed_rank_adjusted", "significant", "star", "testable",
    "method_diverged", "baseline_diverged", "p_value_note",
)  # fmt: skip


def _flat(item: Any, columns: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """`item`'s `columns` as one flat row, a CI field split into its low and high ends."""
    row: dict[str, Any] = {}
    for column in columns:
        if column in extra:
            row[column] = extra[column]
        elif column.endswith(("_low", "_high")):
            field, end = column.rsplit("_", 1)
            ci = getattr(item, field) or (None, None)
            row[column] = ci[0] if end == "low" else ci[1]
        else:
            row[column] = getattr(item, column)
    return row


def cell_rows(summary: Summary) -> list[dict[str, Any]]:
    """One flat row per cell of a summary (ci95 split into low/high), for tables and CSV."""
    return [_flat(cell, CELL_COLUMNS) for cell in summary.cells]


def star(comparison: Comparison) -> str:
    """A comparison's star: "*" when it is significant after the study's adjustment (its
    adjusted p is below alpha), else "". Never from the raw p."""
    return "*" if comparison.significant else ""


def comparison_rows(summary: Summary) -> list[dict[str, Any]]:
    """One flat row per paired comparison (lcw / bn_lcw minus a baseline): the raw paired-t p,
    its adjusted p across the study, the exact signed-rank p (raw and adjusted) and the star,
    which follows the adjusted p."""
    return [_flat(c, COMPARISON_COLUMNS, star=star(c)) for c in summary.comparisons]
