"""Client commands of `lcw-sweep`: submit, status, cancel and delete (over the REST API);
`results` lives in :mod:`service.cli.results`.

They talk to a running server through :class:`service.client.Client` (``--url`` / ``LCW_URL``,
``--token`` / ``LCW_TOKEN``) and never touch the database or Ray themselves. A failure is one
line on stderr (``error: 422 methods[2]: 'foo' is not one of ... (did you mean 'lcw'?)``) and
exit code 1; a server that does not answer says which URL was tried and how to start one.
``--format json`` prints the API's JSON object on stdout instead of text (``--json``: the
older spelling).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from service.cli.common import (
    DEFAULT_URL,
    STUDY_STYLE,
    FormatOption,
    JsonAliasOption,
    StudyIdArg,
    TokenOption,
    UrlOption,
    api_client,
    console,
    output_format,
    print_json,
)
from service.cli.study_view import (
    finished_count,
    follow,
    print_failures,
    print_outcome,
    study_table,
)
from service.client import Client
from service.schemas import StudyPublic
from service.vocabulary import StudyStatus

WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Show live progress by trial state until the study ends, then the summary table.",
    ),
]
PollOption = Annotated[float, typer.Option(min=0.1, help="Seconds between polls (--wait).")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(min=1.0, help="Give up waiting after this many seconds (exit code 1)."),
]


def submit_command(
    spec: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Study spec (YAML or JSON file)."
        ),
    ],
    wait: WaitOption = False,
    poll: PollOption = 1.0,
    timeout: TimeoutOption = None,
    format: FormatOption = "text",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a study spec and print its id (with --wait: follow it to the summary).

    Example: lcw-sweep submit examples/quick-demo.yaml --wait

    Exit code 0 when submitted (with --wait: when the study completed), 1 on an error, a
    failed or cancelled study, or a --timeout. With --format json: the study's JSON once
    submitted (with --wait: once finished).
    """
    out = console()
    with api_client(url, token) as api:
        study = api.submit(spec)
        if format == "text":
            out.print(
                f"submitted study [bold]{study.id}[/] ({study.name}): {study.trial_count} "
                f"trials, status {study.status}"
            )
            out.print(f"page: {api.url}/studies/{study.id}")
        if not wait:
            if format == "json":
                print_json(study)
            else:
                out.print(f"follow it with: lcw-sweep status {study.id} --wait")
            return
        _follow_to_the_end(api, study, poll=poll, timeout=timeout, format=format)


def _follow_to_the_end(
    api: Client, study: StudyPublic, *, poll: float, timeout: float | None, format: str
) -> StudyPublic:
    """--wait: follow the study, then print its outcome; exit code 1 unless it completed."""
    out = console()
    study = follow(api, study, out=out, poll=poll, timeout=timeout, live=format == "text")
    if format == "json":
        print_json(study)
    else:
        print_outcome(out, api, study)
    if study.status != "completed":
        raise typer.Exit(1)
    return study


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
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="With a study id: follow it live until it ends, then show the summary table "
            "(exit code 1 unless it completed).",
        ),
    ] = False,
    poll: PollOption = 1.0,
    timeout: TimeoutOption = None,
    format: FormatOption = "text",
    as_json: JsonAliasOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Show one study (status, trial counts by state) or list the newest studies.

    Example: lcw-sweep status 3 --wait     (or: lcw-sweep status --status running)
    """
    format = output_format(format, as_json)
    out = console()
    if wait and study_id is None:
        console(stderr=True).print("[red]error:[/] --wait follows one study: give its id")
        raise typer.Exit(2)
    with api_client(url, token) as api:
        if study_id is not None:
            study = api.study(study_id)
            if wait:
                _follow_to_the_end(api, study, poll=poll, timeout=timeout, format=format)
            elif format == "json":
                print_json(study)
            else:
                out.print(study_table(study))
                print_failures(out, api, study)
            return
        studies = api.studies(limit=limit, status=only, owner=owner)
    if format == "json":
        print_json(studies)
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


def cancel_command(
    study_id: StudyIdArg,
    format: FormatOption = "text",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Cancel a study: pending trials never run, running ones are stopped.

    Example: lcw-sweep cancel 3 --token "$LCW_TOKEN"
    """
    with api_client(url, token) as api:
        study = api.cancel(study_id)
    if format == "json":
        print_json(study)
        return
    p = study.progress
    console().print(
        f"study {study.id} {study.status}: {p.cancelled} trials cancelled, "
        f"{p.completed + p.diverged + p.stopped_early} finished before, {p.failed} failed"
    )


def delete_command(
    study_id: StudyIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking first.")] = False,
    format: FormatOption = "text",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete a finished or cancelled study with its trials and results (asks first).

    Example: lcw-sweep delete 3 --yes
    """
    with api_client(url, token) as api:
        study = api.study(study_id)
        if not yes:
            typer.confirm(
                f"Delete study {study.id} ({study.name}: {study.trial_count} trials, "
                f"{study.status}) and every result of it?",
                abort=True,
                err=True,
            )
        api.delete(study_id)
    if format == "json":
        typer.echo(json.dumps({"id": study.id, "name": study.name, "deleted": True}, indent=2))
    else:
        console().print(f"deleted study {study.id} ({study.name}, {study.trial_count} trials)")


def register(app: typer.Typer) -> None:
    """Add `submit`, `status`, `cancel` and `delete` to the CLI."""
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("cancel")(cancel_command)
    app.command("delete")(delete_command)
