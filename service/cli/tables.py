"""The `lcw-sweep results` tables (rich): a study's cells at their best setting, its paired
comparisons with raw, adjusted and signed-rank p-values, the adjustment line, and result rows.

The star on a comparison follows its p-value adjusted across the study (``p_adj``), never the
raw one; a difference whose 95% CI includes 0 is printed dim.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from service.client import star
from service.summary import Summary


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _layout(depth: int | None, width: int | None) -> str:
    return "-" if depth is None else f"{depth}x{width}"


_ADJUSTMENT_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
_TEST_NAMES = {"paired_t": "paired t", "signed_rank_exact": "exact signed-rank"}


def _p(value: float | None) -> str:
    return "-" if value is None else format(value, ".3g")


def adjustment_line(summary: Summary) -> str:
    """How the comparisons' p-values were adjusted, in one line (with the summary's note)."""
    a = summary.adjustment
    name = _ADJUSTMENT_NAMES.get(a.method, a.method)
    if a.family_size:
        significant = sum(c.significant for c in summary.comparisons)
        head = (
            f"p_adj: {name} over {a.family_size} comparison{'s' if a.family_size != 1 else ''}"
            f" ({significant} significant, * = p_adj < {a.alpha:g})"
        )
    elif any(c.n for c in summary.comparisons):
        head = f"p_adj: none (a comparison needs >= {a.min_pairs} paired seeds to be tested)"
    else:  # nothing finished: more seeds would not help
        head = "p_adj: none"
    floor = "-" if a.signed_rank_floor_adjusted is None else f"{a.signed_rank_floor_adjusted:.3g}"
    return (
        f"{head}; primary test: {_TEST_NAMES.get(a.primary_test, a.primary_test)}; "
        f"{_TEST_NAMES.get(a.robustness_test, a.robustness_test)} floor after adjustment: "
        f"{floor}. {a.note}"
    )


def cells_table(summary: Summary) -> Table:
    """Every cell at its chosen setting (best lr and init scale), with the trials counted
    beside its mean (diverged: in it; stopped early: not in it)."""
    cells = Table(
        title=f"Study {summary.study_id} ({summary.status}): test accuracy at the best setting"
    )
    for name, justify in (
        ("activation", "left"),
        ("depth x width", "right"),
        ("method", "left"),
        ("best lr", "right"),
        ("init scale", "right"),
        ("test acc", "right"),
        ("std", "right"),
        ("95% CI", "right"),
        ("n", "right"),
        ("diverged", "right"),
        ("stopped early", "right"),
    ):
        cells.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cell in summary.cells:
        cells.add_row(
            cell.activation,
            _layout(cell.depth, cell.width),
            cell.method,
            _fmt(cell.best_lr, "g"),
            _fmt(cell.best_init_scale, "g"),
            _fmt(cell.test_acc_mean),
            _fmt(cell.test_acc_std),
            _ci(cell.test_acc_ci95),
            str(cell.n),
            str(cell.diverged),
            str(cell.stopped_early),
        )
    return cells


def comparisons_table(summary: Summary) -> Table:
    """The paired comparisons: raw p (the primary test), p_adj (adjusted across the study),
    the exact signed-rank p, and the star, which follows p_adj only."""
    name = _ADJUSTMENT_NAMES.get(summary.adjustment.method, summary.adjustment.method)
    comp = Table(title=f"Paired differences in test accuracy (same seeds); p_adj: {name}")
    for column in ("activation", "depth x width", "method - baseline", "n", "mean diff"):
        left = column in ("activation", "method - baseline")
        comp.add_column(column, justify="left" if left else "right")
    for column in ("95% CI", "p", "p_adj", "p_signed_rank", "sig"):
        comp.add_column(column, justify="right")
    for c in summary.comparisons:
        diff = _fmt(c.mean_diff, "+.3f")
        if c.mean_diff is not None and c.ci95 and (c.ci95[0] > 0 or c.ci95[1] < 0):
            diff = f"[bold {'green' if c.mean_diff > 0 else 'red'}]{diff}[/]"
        elif c.mean_diff is not None:
            diff = f"[dim]{diff}[/]"  # the 95% CI includes 0 (or there is none)
        untestable = f"n<{summary.adjustment.min_pairs}"
        comp.add_row(
            c.activation,
            _layout(c.depth, c.width),
            f"{c.method} - {c.baseline}",
            str(c.n),
            diff,
            _ci(c.ci95),
            _p(c.p_value) if c.testable else untestable,
            _p(c.p_adjusted) if c.testable else untestable,
            _p(c.p_signed_rank) if c.testable else untestable,
            star(c),
        )
    return comp


def summary_tables(summary: Summary) -> list[Table]:
    """The summary as rich tables: cells at their best setting, then the paired comparisons."""
    tables = [cells_table(summary)]
    if summary.comparisons:
        tables.append(comparisons_table(summary))
    return tables


def summary_notes(summary: Summary) -> list[str]:
    """Why a CI or p-value is missing (too few seeds...), each distinct note once."""
    notes: dict[str, None] = {}
    for cell in summary.cells:
        if cell.ci95_note:
            notes[f"95% CI: {cell.ci95_note}"] = None
    for c in summary.comparisons:
        if c.ci95_note:
            notes[f"95% CI: {c.ci95_note}"] = None
        if c.p_value_note:
            notes[f"p: {c.p_value_note}"] = None
    return list(notes)


def print_summary(out: Console, summary: Summary, *, cells: bool = True) -> None:
    for table in summary_tables(summary) if cells else [comparisons_table(summary)]:
        out.print(table)
    if summary.comparisons:
        out.print(adjustment_line(summary), soft_wrap=True, markup=False)
    for note in summary_notes(summary):
        out.print(f"[dim]{note}[/]", soft_wrap=True)


# Trials by their id (per trial: "id", per epoch: "trial_id"), the one trial number.
_ROW_COLUMNS = (
    "id",
    "trial_id",
    "method",
    "depth",
    "width",
    "activation",
    "seed",
    "lr",
    "init_scale",
    "status",
    "epoch",
    "train_loss",
    "val_acc",
    "test_acc",
)


def rows_table(rows: list[dict[str, Any]], *, title: str) -> Table:
    """Result rows (per trial or epoch) as a rich table of their main columns."""
    columns = [c for c in _ROW_COLUMNS if rows and c in rows[0]]
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("method", "activation", "status") else "right")
    for row in rows:
        table.add_row(
            *(
                _fmt(v, ".4g") if isinstance(v, float) else ("-" if v is None else str(v))
                for v in (row.get(c) for c in columns)
            )
        )
    return table
