"""What every client command of `lcw-sweep` shares: the server options, the console, the
client whose errors end the command with one line, and the colours of statuses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

import typer
from pydantic import BaseModel
from rich.console import Console

from service.client import DEFAULT_URL, Client, ClientError

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="LCW_URL", help="Base URL of the lcw-sweep server."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="LCW_TOKEN",
        help="Bearer token for writes (one of the server's LCW_API_TOKENS).",
        show_default=False,
    ),
]
StudyIdArg = Annotated[int, typer.Argument(min=1, help="Study id (see `lcw-sweep status`).")]
OutputFormat = Literal["text", "json"]
FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format", "-f", help="text: for people; json: the API's JSON object, for scripts."
    ),
]
# `--json`: the older spelling of `--format json` (status had it); hidden from --help.
JsonAliasOption = Annotated[
    bool, typer.Option("--json", hidden=True, help="Older spelling of --format json.")
]

# Colours of the trial states in the progress view.
STATE_STYLE = {
    "pending": "bright_black",
    "running": "cyan",
    "completed": "green",
    "diverged": "yellow",
    "stopped_early": "blue",
    "failed": "red",
    "cancelled": "magenta",
}
STUDY_STYLE = {
    "queued": "bright_black",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console(*, stderr: bool = False) -> Console:
    # Made per call, not at import: the width (COLUMNS) and streams are the invocation's.
    return Console(stderr=stderr, highlight=False)


def database_shown(url: str) -> str:
    """A database URL fit for a log line: without user name and password."""
    from sqlalchemy.engine import make_url

    return (
        make_url(url)._replace(username=None, password=None).render_as_string(hide_password=False)
    )


def output_format(format: OutputFormat, as_json: bool) -> OutputFormat:
    """The chosen format; the older ``--json`` still works, with a note on stderr."""
    if as_json:
        console(stderr=True).print("note: --json is now --format json", style="dim")
        return "json"
    return format


def print_json(model: BaseModel) -> None:
    """An API object as indented JSON on stdout (nothing else goes there with --format json)."""
    typer.echo(model.model_dump_json(indent=2))


@contextmanager
def api_client(url: str, token: str | None) -> Iterator[Client]:
    """A Client whose errors end the command with one line on stderr and exit code 1."""
    try:
        with Client(url, token=token) as api:
            yield api
    except ClientError as exc:
        console(stderr=True).print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


__all__ = [
    "DEFAULT_URL",
    "STATE_STYLE",
    "STUDY_STYLE",
    "FormatOption",
    "JsonAliasOption",
    "OutputFormat",
    "StudyIdArg",
    "TokenOption",
    "UrlOption",
    "api_client",
    "console",
    "database_shown",
    "output_format",
    "print_json",
]
