"""How the CLI shows one study: its table, a live progress view, and why it failed."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.cli.common import STATE_STYLE, STUDY_STYLE
from service.client import TRIAL_STATES, Client
from service.failures import describe
from service.schemas import StudyPublic


def study_table(study: StudyPublic) -> Table:
    table = Table(title=f"Study {study.id}: {study.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    style = STUDY_STYLE.get(study.status, "")
    table.add_row("status", f"[{style}]{study.status}[/]" if style else study.status)
    table.add_row("dataset / model", f"{study.dataset} / {study.model}")
    if study.owner:
        table.add_row("owner", study.owner)
    if study.priority:
        table.add_row("priority", str(study.priority))
    table.add_row("trials", str(study.trial_count))
    for state in TRIAL_STATES:
        count = getattr(study.progress, state)
        if count:
            table.add_row(f"  {state}", f"[{STATE_STYLE[state]}]{count}[/]")
    table.add_row("created", study.created_at.isoformat(timespec="seconds"))
    if study.started_at:
        table.add_row("started", study.started_at.isoformat(timespec="seconds"))
    if study.finished_at:
        table.add_row("finished", study.finished_at.isoformat(timespec="seconds"))
    if study.description:
        table.add_row("description", study.description)
    return table


def finished_count(study: StudyPublic) -> int:
    p = study.progress
    return p.completed + p.diverged + p.stopped_early + p.failed + p.cancelled


class ProgressView:
    """A rich live view: one bar per trial state, plus the finished count over the total."""

    def __init__(self, study: StudyPublic, *, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        total = max(study.trial_count, 1)
        self.done = self.progress.add_task("[bold]finished[/]", total=total)
        self.tasks = {
            state: self.progress.add_task(
                f"[{STATE_STYLE[state]}]{state}[/]", total=total, visible=False
            )
            for state in TRIAL_STATES
        }

    def update(self, study: StudyPublic) -> None:
        self.progress.update(self.done, completed=finished_count(study))
        for state, task in self.tasks.items():
            count = getattr(study.progress, state)
            # States that never occurred stay hidden; once seen, a state keeps its row.
            visible = count > 0 or self.progress.tasks[task].visible
            self.progress.update(task, completed=count, visible=visible)


def print_failures(out: Console, api: Client, study: StudyPublic) -> bool:
    """Print the study's first error (type, message, the fix to try) when trials failed;
    True when it printed one."""
    if not study.progress.failed:
        return False
    trial = api.first_error(study.id)
    if trial is None:
        return False
    p = study.progress
    every = " (every trial)" if p.failed == p.total else ""
    out.print(
        f"[red]{p.failed} of {p.total} trials failed{every}.[/] The first error, trial "
        f"{trial.index} ({trial.method}, attempt {trial.attempt}; {api.url}/trials/{trial.id}):",
        soft_wrap=True,
    )
    what, fix = describe(trial.error).lines(study.id)
    out.print(f"  {what}", soft_wrap=True, markup=False, style="red")
    out.print(f"  {fix}", soft_wrap=True, markup=False)
    return True


__all__ = ["ProgressView", "finished_count", "print_failures", "study_table"]
