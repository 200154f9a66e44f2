"""Client commands of `lcw-sweep`: submit, status, results, cancel (over the REST API).

They talk to a running server through :class:`service.client.Client` (``--url`` / ``LCW_URL``,
``--token`` / ``LCW_TOKEN``) and never touch the database or Ray themselves. A failure is one
line on stderr (``error: 422 methods[2]: 'foo' is not one of ...``) and exit code 1; a server
that does not answer says which URL was tried and how to start one.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from service.cli.common import (
    DEFAULT_URL,
    STUDY_STYLE,
    StudyIdArg,
    TokenOption,
    UrlOption,
    api_client,
    console,
)
from service.cli.study_view import ProgressView, finished_count, print_failures, study_table
from service.cli.tables import print_summary, rows_table
from service.client import cell_rows, comparison_rows
from service.vocabulary import StudyStatus


def submit_command(
    spec: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Study spec (YAML or JSON file)."
        ),
    ],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Show live progress by trial state until the study ends, then the summary table.",
        ),
    ] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between polls (--wait).")] = 1.0,
    timeout: Annotated[
        float | None,
        typer.Option(min=1.0, help="Give up waiting after this many seconds (exit code 1)."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a study spec and print its id (with --wait: follow it to the summary).

    Example: lcw-sweep submit examples/quick-demo.yaml --wait

    Exit code 0 when submitted (with --wait: when the study completed), 1 on an error, a
    failed or cancelled study, or a --timeout.
    """
    out = console()
    with api_client(url, token) as api:
        study = api.submit(spec)
        out.print(
            f"submitted study [bold]{study.id}[/] ({study.name}): {study.trial_count} trials, "
            f"status {study.status}"
        )
        out.print(f"page: {api.url}/studies/{study.id}")
        if not wait:
            out.print(f"follow it with: lcw-sweep status {study.id}")
            return
        view = ProgressView(study, console=out)
        try:
            with view.progress:
                study = api.wait(study.id, poll_s=poll, timeout_s=timeout, on_progress=view.update)
        except KeyboardInterrupt:
            console(stderr=True).print(
                f"stopped waiting; study {study.id} keeps running "
                f"(lcw-sweep status {study.id}, lcw-sweep cancel {study.id})"
            )
            raise typer.Exit(130) from None
        style = STUDY_STYLE.get(study.status, "")
        out.print(f"study {study.id} [{style}]{study.status}[/]")
        if study.status != "failed":
            print_summary(out, api.summary(study.id))
        print_failures(out, api, study)
    if study.status != "completed":
        raise typer.Exit(1)


def status_command(
    study_id: Annotated[
        int | None, typer.Argument(min=1, help="A study id; without it, list the studies.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Studies to list.")] = 20,
    only: Annotated[
        StudyStatus | None,
        typer.Option("--status", help="List only studies in this state."),
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="List only studies of this owner.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Show one study (status, trial counts by state) or list the newest studies.

    Example: lcw-sweep status 3     (or: lcw-sweep status --status running)
    """
    out = console()
    with api_client(url, token) as api:
        if study_id is not None:
            study = api.study(study_id)
            if as_json:
                typer.echo(study.model_dump_json(indent=2))
            else:
                out.print(study_table(study))
                print_failures(out, api, study)
            return
        studies = api.studies(limit=limit, status=only, owner=owner)
    if as_json:
        typer.echo(studies.model_dump_json(indent=2))
        return
    if not studies.data:
        out.print("no studies yet: lcw-sweep submit examples/quick-demo.yaml")
        return
    table = Table(title=f"Studies ({len(studies.data)} of {studies.count}, newest first)")
    for name in ("id", "name", "owner", "status", "dataset", "done", "created"):
        table.add_column(name, justify="right" if name in ("id", "done") else "left")
    for s in studies.data:
        style = STUDY_STYLE.get(s.status, "")
        table.add_row(
            str(s.id),
            s.name,
            s.owner or "-",
            f"[{style}]{s.status}[/]" if style else s.status,
            s.dataset,
            f"{finished_count(s)}/{s.trial_count}",
            s.created_at.isoformat(timespec="seconds"),
        )
    out.print(table)


def _write_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            )
    return buffer.getvalue()


def results_command(
    study_id: StudyIdArg,
    format: Annotated[
        Literal["table", "csv", "json"],
        typer.Option("--format", "-f", help="table: rich tables; csv / json: machine-readable."),
    ] = "table",
    per: Annotated[
        Literal["cell", "comparison", "trial", "epoch"],
        typer.Option(
            help="Rows: cell (best setting per method x depth x width x activation, and the "
            "paired comparisons: the summary), comparison (the paired comparisons only: p, "
            "p_adj, p_signed_rank, star by p_adj), trial (final metrics of each trial), epoch "
            "(every epoch of every trial)."
        ),
    ] = "cell",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print a study's results: the summary (cells and paired comparisons), trials or epochs.

    Example: lcw-sweep results 3 --format csv > study-3.csv

    --format json with --per cell prints the API's summary object (cells, comparisons and
    the adjustment); otherwise json is a list of the rows that csv prints. A comparison's star
    follows its p-value adjusted across the study (p_adj), never the raw p.
    """
    with api_client(url, token) as api:
        if per == "comparison":
            summary = api.summary(study_id)
            if format == "table":
                print_summary(console(), summary, cells=False)
            elif format == "json":
                typer.echo(json.dumps(comparison_rows(summary), indent=2))
            else:
                sys.stdout.write(_write_csv(comparison_rows(summary)))
            return
        if per == "cell":
            summary = api.summary(study_id)
            if format == "table":
                out = console()
                study = api.study(study_id)
                if study.status == "failed":  # no result to show: say why instead
                    print_failures(out, api, study)
                    raise typer.Exit(1)
                print_summary(out, summary)
                print_failures(out, api, study)
            elif format == "json":
                typer.echo(summary.model_dump_json(indent=2))
            else:
                sys.stdout.write(_write_csv(cell_rows(summary)))
                if summary.comparisons:
                    # Second block, separated by a blank line, so one file holds both.
                    sys.stdout.write("\n" + _write_csv(comparison_rows(summary)))
            return
        if per == "epoch" and format in ("csv", "json"):
            sys.stdout.write(api.export(study_id, format=format))  # as the API exports it
            if format == "json":
                sys.stdout.write("\n")
            return
        rows = api.results(study_id, per=per)
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif format == "csv":
        sys.stdout.write(_write_csv(rows))
    else:
        console().print(rows_table(rows, title=f"Study {study_id}: {len(rows)} {per} rows"))


def cancel_command(
    study_id: StudyIdArg, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Cancel a study: pending trials never run, running ones are stopped.

    Example: lcw-sweep cancel 3 --token "$LCW_TOKEN"
    """
    with api_client(url, token) as api:
        study = api.cancel(study_id)
    out = console()
    p = study.progress
    out.print(
        f"study {study.id} {study.status}: {p.cancelled} trials cancelled, "
        f"{p.completed + p.diverged + p.stopped_early} finished before, {p.failed} failed"
    )


def register(app: typer.Typer) -> None:
    """Add `submit`, `status`, `results` and `cancel` to the CLI."""
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("results")(results_command)
    app.command("cancel")(cancel_command)
