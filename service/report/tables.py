"""The report's tables as plain text cells, rendered alike by the HTML and the Markdown writer:
the study's facts, the versions and hardware, every cell at its best setting and the paired
comparisons with raw and adjusted p-values, all read from the summary (``service.summary``).

Numbers are formatted as ``lcw-sweep results`` prints them (``service.cli.tables``), and the
adjustment line and the notes on missing CIs and p-values are that module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.cli.tables import adjustment_line, summary_notes
from service.report.data import ReportData, RunInfoCount
from service.summary import Comparison, Summary, star
from service.vocabulary import TRIAL_STATUSES


@dataclass(frozen=True)
class Table:
    """A captioned table of text cells; `numeric` columns are right-aligned."""

    caption: str
    columns: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _p(value: float | None) -> str:
    return "-" if value is None else format(value, ".3g")


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def layout(depth: int | None, width: int | None) -> str:
    """A cell's depth x width ("-" for a model with a fixed layout)."""
    return "-" if depth is None else f"{depth}x{width}"


def fmt_time(value: Any) -> str:
    """A timestamp as the report prints it (UTC), "-" when missing."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def study_table(data: ReportData) -> Table:
    """The study's facts: name, status, dataset, trials by state, dates."""
    s = data.study
    p = s.progress
    states = ", ".join(
        f"{getattr(p, name)} {name.replace('_', ' ')}"
        for name in TRIAL_STATUSES
        if getattr(p, name)
    )
    rows = [
        ["study", f"{s.id}: {s.name}"],
        ["description", s.description or "-"],
        ["status", s.status],
        ["dataset / model", f"{s.dataset} / {s.model}"],
        ["owner", s.owner or "-"],
        ["trials", f"{s.trial_count} ({states or 'none finished'})"],
        ["created", fmt_time(s.created_at)],
        ["started", fmt_time(s.started_at)],
        ["finished", fmt_time(s.finished_at)],
        ["report written", fmt_time(data.generated_at)],
    ]
    return Table("The study", ["field", "value"], rows)


def generator_table(data: ReportData) -> Table:
    """Versions of the software that wrote this report."""
    rows = [[name, version] for name, version in data.generator.items()]
    return Table("Versions of the report writer", ["software", "version"], rows)


def _counts_table(caption: str, counts: list[RunInfoCount]) -> Table:
    keys = list(counts[0].values) if counts else []
    rows = [[*("-" if c.values[k] is None else str(c.values[k]) for k in keys), str(c.trials)]
            for c in counts]  # fmt: skip
    return Table(caption, [*keys, "trials"], rows, frozenset({len(keys)}))


def hardware_tables(data: ReportData) -> list[Table]:
    """Where the trials ran and with which versions, as their run_info recorded it."""
    info = data.run_info
    if not info.read:
        return []
    of = (
        f"all {info.read} finished trials"
        if info.read == info.finished
        else f"the first {info.read} of {info.finished} finished trials"
    )
    return [
        _counts_table(f"Hardware the trials recorded ({of})", info.hardware),
        _counts_table(f"Versions the trials recorded ({of})", info.versions),
    ]


def cells_table(summary: Summary) -> Table:
    """Every cell at its chosen setting (best lr and init scale, chosen on validation accuracy),
    with its test accuracy, 95% CI and the trials counted beside the mean."""
    columns = [
        "activation", "depth x width", "method", "best lr", "init scale", "val acc",
        "test acc", "std", "95% CI", "n", "diverged", "stopped early",
    ]  # fmt: skip
    rows = [
        [
            c.activation,
            layout(c.depth, c.width),
            c.method,
            _fmt(c.best_lr, "g"),
            _fmt(c.best_init_scale, "g"),
            _fmt(c.val_acc_mean),
            _fmt(c.test_acc_mean),
            _fmt(c.test_acc_std),
            _ci(c.test_acc_ci95),
            str(c.n),
            str(c.diverged),
            str(c.stopped_early),
        ]
        for c in summary.cells
    ]
    caption = f"Test accuracy at the best setting (study {summary.study_id}, {summary.status})"
    return Table(caption, columns, rows, frozenset(range(3, len(columns))))


def _comparison_row(c: Comparison, min_pairs: int) -> list[str]:
    untestable = f"n<{min_pairs}"

    def p(value: float | None) -> str:
        return _p(value) if c.testable else untestable

    return [
        c.activation,
        layout(c.depth, c.width),
        f"{c.method} - {c.baseline}",
        str(c.n),
        _fmt(c.mean_diff, "+.3f"),
        _ci(c.ci95),
        p(c.p_value),
        p(c.p_adjusted),
        p(c.p_signed_rank),
        p(c.p_signed_rank_adjusted),
        star(c),
    ]


def comparisons_table(summary: Summary) -> Table:
    """The paired comparisons (same seeds): the primary test's raw p and its p adjusted across
    the study, the exact signed-rank p raw and adjusted; the star follows the adjusted p."""
    columns = [
        "activation", "depth x width", "method - baseline", "n", "mean diff", "95% CI",
        "p (paired t)", "p_adj", "p signed-rank", "p signed-rank adj", "sig",
    ]  # fmt: skip
    rows = [_comparison_row(c, summary.adjustment.min_pairs) for c in summary.comparisons]
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}.get(
        summary.adjustment.method, summary.adjustment.method
    )
    caption = f"Paired differences in test accuracy, method minus baseline (p_adj: {name})"
    return Table(caption, columns, rows, frozenset(range(3, len(columns))))


def summary_text(summary: Summary) -> list[str]:
    """The adjustment line and the notes on missing CIs and p-values, as ``results`` prints
    them."""
    lines = [adjustment_line(summary)] if summary.comparisons else []
    return lines + summary_notes(summary)
