"""The `lcw-sweep` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from service.cli import client, data, lifecycle, report, results, server, train, worker

app = typer.Typer(
    name="lcw-sweep",
    help="Hyperparameter sweeps that measure when linearly constrained weights help.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        try:
            installed = version("lcw-sweep")
        except PackageNotFoundError:  # run from a source tree that was never installed
            installed = "unknown (not installed)"
        typer.echo(f"lcw-sweep {installed}")
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Hyperparameter sweeps that measure when linearly constrained weights help."""


for module in (train, server, worker, client, results, lifecycle, report, data):
    module.register(app)
