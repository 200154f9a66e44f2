"""Client commands that change a stored study: `extend` (more seeds, new axis values, more
lr_search slots) and `retry` (requeue failed and cancelled trials; resumes a cancelled study)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from service.cli.common import (
    DEFAULT_URL,
    STUDY_STYLE,
    FormatOption,
    StudyIdArg,
    TokenOption,
    UrlOption,
    api_client,
    console,
    print_json,
)

_ADD = "Repeat the option to add several values."


def extend_command(
    study_id: StudyIdArg,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="The new total of seeds (more than today's).")
    ] = None,
    lr: Annotated[list[float] | None, typer.Option("--lr", help=f"A learning rate. {_ADD}")] = None,
    init_scale: Annotated[
        list[float] | None, typer.Option("--init-scale", help=f"An init scale. {_ADD}")
    ] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help=f"A method. {_ADD}")] = None,
    depth: Annotated[list[int] | None, typer.Option("--depth", help=f"A depth. {_ADD}")] = None,
    width: Annotated[list[int] | None, typer.Option("--width", help=f"A width. {_ADD}")] = None,
    activation: Annotated[
        list[str] | None, typer.Option("--activation", help=f"An activation. {_ADD}")
    ] = None,
    trials_per_cell: Annotated[
        int | None,
        typer.Option(min=1, help="lr_search studies: the new total of slots per cell."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help="Idempotency-Key: running the command again with it adds nothing."),
    ] = None,
    format: FormatOption = "text",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Add trials to a study; only the new ones run, stored results stay as they are.

    Example: lcw-sweep extend 3 --seeds 6 --lr 0.3

    Fields that define the stored trials (dataset, model, epochs, optimizer, ...) cannot
    change: submit a new study for that.
    """
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("seeds", seeds),
            ("learning_rates", lr),
            ("init_scales", init_scale),
            ("methods", method),
            ("depths", depth),
            ("widths", width),
            ("activations", activation),
        )
        if value
    }
    if trials_per_cell is not None:
        changes["lr_search"] = {"trials_per_cell": trials_per_cell}
    if not changes:
        console(stderr=True).print(
            "[red]error:[/] nothing to add: give --seeds, --lr, --init-scale, --method, "
            "--depth, --width, --activation or --trials-per-cell"
        )
        raise typer.Exit(2)
    with api_client(url, token) as api:
        study = api.extend(study_id, idempotency_key=key, **changes)
        page = f"{api.url}/studies/{study.id}"
    if format == "json":
        print_json(study)
        return
    style = STUDY_STYLE.get(study.status, "")
    console().print(
        f"study {study.id}: added {study.added_trials} trials ({study.trial_count} in all), "
        f"status [{style}]{study.status}[/]\npage: {page}"
    )


def retry_command(
    study_id: StudyIdArg,
    format: FormatOption = "text",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Run a study's failed and cancelled trials again, each with a fresh attempt budget.

    Example: lcw-sweep retry 3

    A cancelled study resumes; trials with a result never run again.
    """
    with api_client(url, token) as api:
        study = api.retry(study_id)
    if format == "json":
        print_json(study)
        return
    style = STUDY_STYLE.get(study.status, "")
    console().print(
        f"study {study.id}: requeued {study.requeued_trials} failed or cancelled trials, "
        f"status [{style}]{study.status}[/]"
    )


def register(app: typer.Typer) -> None:
    """Add `extend` and `retry` to the CLI."""
    app.command("extend")(extend_command)
    app.command("retry")(retry_command)
