"""How the CLI shows one study: its table, a live progress view while it runs (through a
server outage), its outcome, and why it failed."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.cli.common import STATE_STYLE, STUDY_STYLE, console
from service.cli.tables import print_summary
from service.client import TRIAL_STATES, Client, ServerUnreachableError
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
        f"{trial.id} ({trial.method}, attempt {trial.attempt}; {api.url}/trials/{trial.id}):",
        soft_wrap=True,
    )
    what, fix = describe(trial.error).lines(study.id)
    out.print(f"  {what}", soft_wrap=True, markup=False, style="red")
    out.print(f"  {fix}", soft_wrap=True, markup=False)
    return True


def follow(
    api: Client,
    study: StudyPublic,
    *,
    out: Console,
    poll: float,
    timeout: float | None,
    live: bool = True,
) -> StudyPublic:
    """Wait for `study` to finish (with `live`: a progress bar per trial state); returns it.

    When the server stops answering, a warning on stderr says so at the first failed poll (a
    poll gives up after ``POLL_TIMEOUT_S``), stops the bars and names the command that
    follows the study again; polling goes on, and the bars come back with the server.
    Ctrl-C ends the wait with exit code 130; the study keeps running.
    """
    err = console(stderr=True)
    view = ProgressView(study, console=out) if live else None

    def on_outage(exc: ServerUnreachableError | None) -> None:
        if exc is None:
            err.print(f"the server at {api.url} answers again; following study {study.id}")
            if view is not None:
                view.progress.start()
            return
        if view is not None:
            view.progress.stop()  # no frozen bars with a ticking timer meanwhile
        err.print(
            f"[yellow]warning:[/] the server at {api.url} stopped answering ({exc.reason}); "
            f"still trying every {poll:g} s. Study {study.id} keeps its state on the server: "
            f"follow it again with `lcw-sweep status {study.id} --wait`",
            soft_wrap=True,
        )

    try:
        if view is not None:
            view.progress.start()
        return api.wait(
            study.id,
            poll_s=poll,
            timeout_s=timeout,
            on_progress=view.update if view is not None else None,
            on_outage=on_outage,
        )
    except KeyboardInterrupt:
        if view is not None:
            view.progress.stop()
        err.print(
            f"stopped waiting; study {study.id} keeps running "
            f"(lcw-sweep status {study.id} --wait, lcw-sweep cancel {study.id})"
        )
        raise typer.Exit(130) from None
    finally:
        if view is not None:
            view.progress.stop()


def print_outcome(out: Console, api: Client, study: StudyPublic) -> None:
    """A finished study: its status, the summary tables (unless it failed) and its first error."""
    style = STUDY_STYLE.get(study.status, "")
    out.print(f"study {study.id} [{style}]{study.status}[/]")
    if study.status != "failed":
        print_summary(out, api.summary(study.id))
    print_failures(out, api, study)


__all__ = [
    "ProgressView",
    "finished_count",
    "follow",
    "print_failures",
    "print_outcome",
    "study_table",
]
