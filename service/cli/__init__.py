"""The `lcw-sweep` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import typer

from service.cli import client, lifecycle, server, train, worker

app = typer.Typer(
    name="lcw-sweep",
    help="Hyperparameter sweeps that measure when linearly constrained weights help.",
    no_args_is_help=True,
    add_completion=False,
)

for module in (train, server, worker, client, lifecycle):
    module.register(app)
