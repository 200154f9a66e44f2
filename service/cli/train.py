"""`lcw-sweep train`: run one trial locally, with a progress bar and a per-epoch table."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import typer

from lcw import catalog
from lcw.config import ConfigError, OptimizerConfig, TrialConfig

# Choices come from the catalog, so the CLI can never drift from what lcw accepts.
if TYPE_CHECKING:
    DatasetName: TypeAlias = str
    ModelName: TypeAlias = str
    MethodName: TypeAlias = str
    ActivationName: TypeAlias = str
    OptimizerName: TypeAlias = str
    ScheduleName: TypeAlias = str
    ImplName: TypeAlias = str
else:
    DatasetName = Literal[tuple(catalog.DATASETS)]
    ModelName = Literal[tuple(catalog.MODELS)]
    MethodName = Literal[tuple(catalog.METHODS)]
    ActivationName = Literal[tuple(catalog.ACTIVATIONS)]
    OptimizerName = Literal[tuple(catalog.OPTIMIZERS)]
    ScheduleName = Literal[tuple(catalog.LR_SCHEDULES)]
    ImplName = Literal[tuple(catalog.LCW_IMPLEMENTATIONS)]


def train_command(
    dataset: Annotated[DatasetName, typer.Option(help="Dataset name.")] = "digits",
    model: Annotated[ModelName, typer.Option()] = "mlp",
    method: Annotated[MethodName, typer.Option()] = "lcw",
    activation: Annotated[ActivationName, typer.Option()] = "sigmoid",
    depth: Annotated[int, typer.Option(min=1, max=catalog.MAX_DEPTH, help="Hidden layers.")] = 5,
    width: Annotated[int, typer.Option(min=1, help="Units per hidden layer.")] = 100,
    lr: Annotated[float, typer.Option(help="Learning rate (> 0).")] = 0.1,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    batch_size: Annotated[int, typer.Option(min=1)] = 100,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    optimizer: Annotated[OptimizerName, typer.Option()] = "sgd",
    momentum: Annotated[float, typer.Option(help="SGD momentum in [0, 1).")] = 0.9,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.0,
    lr_schedule: Annotated[ScheduleName, typer.Option()] = "constant",
    lcw_impl: Annotated[ImplName, typer.Option()] = "projection",
    gain: Annotated[float | None, typer.Option(help="Override the init gain.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    threads: Annotated[int, typer.Option(min=1, help="Torch threads.")] = 1,
    data_dir: Annotated[str | None, typer.Option(help="Dataset directory.")] = None,
    diagnostics: Annotated[bool, typer.Option(help="Per-layer diagnostics.")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Train one trial and print its metrics.

    Example: lcw-sweep train --dataset mnist5k --depth 50 --method lcw --lr 0.1 --json
    """
    try:
        cfg = TrialConfig(
            dataset=dataset,
            model=model,
            method=method,
            activation=activation,
            depth=depth,
            width=width,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            optimizer=OptimizerConfig(name=optimizer, momentum=momentum, weight_decay=weight_decay),
            lr_schedule=lr_schedule,
            lcw_impl=lcw_impl,
            gain=gain,
            device=device,
            threads=threads,
            data_dir=data_dir,
            diagnostics=diagnostics,
        )
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0].split(".")[-1].replace("_", "-")
        raise typer.BadParameter(str(exc), param_hint=f"--{field}") from exc

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from lcw.trainer import train

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"{method} depth {depth}", total=epochs)

        def on_epoch(m: dict[str, Any]) -> None:
            if m["epoch"] > 0:
                progress.advance(task)

        try:
            result = train(cfg, on_epoch=on_epoch)
        except FileNotFoundError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc

    if as_json:
        out = result.to_dict()
        sys.stdout.write(json.dumps(out) + "\n")
        return
    table = Table(title=f"{method} · {dataset} · {model} depth {depth} · lr {lr:g}")
    for col in ("epoch", "train loss", "train acc", "val acc", "test acc", "seconds"):
        table.add_column(col, justify="right")
    for m in result.epochs:
        table.add_row(
            str(m["epoch"]),
            _fmt(m.get("train_loss")),
            _fmt(m.get("train_acc")),
            _fmt(m.get("val_acc")),
            _fmt(m.get("test_acc")),
            _fmt(m.get("seconds"), 2),
        )
    out_console = Console()
    out_console.print(table)
    out_console.print(f"status: [bold]{result.status}[/bold]  test_acc: {_fmt(result.test_acc)}")
    if result.message:
        out_console.print(result.message)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def register(app: typer.Typer) -> None:
    """Add `train` to the CLI."""
    app.command("train")(train_command)
