"""`lcw-sweep data list | fetch | verify`: the datasets on this machine.

``list`` shows every dataset (shipped, or with files: where they are looked for, present,
missing or corrupt, their size; the structural check only, no checksums). ``fetch NAME...``
downloads the published files (or from ``$LCW_DATASET_MIRROR``) with a progress bar on stderr,
resumable, each verified before it is moved into place (``lcw.fetch``). ``verify [NAME]``
compares every file with its published checksums. Files go to ``--dir``, else
``$LCW_DATA_DIR``, else ``./data``: run ``fetch`` where the trials run (every GPU node, or
once into the volume they mount). Exit code 1 when a dataset is missing (named ones), corrupt,
or cannot be fetched.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from service.cli.common import console

app = typer.Typer(
    help="Datasets: list them, fetch their files, verify their checksums.",
    no_args_is_help=True,
)

DirOption = Annotated[
    str | None,
    typer.Option(
        "--dir",
        help="Data directory (each dataset in <dir>/<name>/); default: $LCW_DATA_DIR, else ./data.",
        show_default=False,
    ),
]
STATE_STYLE = {"shipped": "green", "present": "green", "missing": "yellow", "corrupt": "red"}


def _size(n: int) -> str:
    """Bytes for people: 512 B, 9.9 MB."""
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class Bar:
    """A progress bar per file on stderr (a line per quarter when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown: dict[str, int] = {}
        self.started: dict[str, float] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        start = self.started.setdefault(name, time.monotonic())
        pct = int(100 * done / total) if total else None
        if self.tty:
            filled = (pct or 0) * 30 // 100
            rate = done / max(time.monotonic() - start, 1e-6)
            text = f"{pct:3d}%" if pct is not None else "   ?"
            sys.stderr.write(
                f"\r{name[-40:]:<40} [{'#' * filled}{'.' * (30 - filled)}] {text} "
                f"{_size(done)} {_size(int(rate))}/s"
            )
            if total is not None and done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
            return
        step = (pct // 25) * 25 if pct is not None else -1
        if pct is not None and self.shown.get(name) != step:
            self.shown[name] = step
            total_text = _size(total) if total is not None else "?"
            sys.stderr.write(f"{name}: {pct}% of {total_text}\n")
            sys.stderr.flush()


@app.command("list")
def list_command(data_dir: DirOption = None) -> None:
    """Every dataset: shipped or files, where they are looked for, state and size."""
    from lcw.dataset_files import statuses

    table = Table(box=None, header_style="bold")
    for column in ("dataset", "kind", "where", "state", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for status in statuses(data_dir, level="cheap"):
        style = STATE_STYLE[status.state]
        table.add_row(
            status.name,
            "shipped" if status.shipped else "files",
            status.folder or "(inside an installed package)",
            f"[{style}]{status.state}[/]",
            _size(status.size) if not status.shipped else "",
        )
    console().print(table)


@app.command("fetch")
def fetch_command(
    names: Annotated[list[str], typer.Argument(help="Datasets to fetch, e.g. mnist cifar10.")],
    data_dir: DirOption = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            envvar="LCW_DATASET_MIRROR",
            help="Base URL to download from (<mirror>/<dataset>/<file>); default: the "
            "standard sources.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download datasets' files (resumable), verified against their checksums."""
    from lcw.dataset_files import DatasetError
    from lcw.fetch import fetch_dataset

    err, out = console(stderr=True), console()
    failed = False
    for name in names:
        try:
            status = fetch_dataset(name, root=data_dir, mirror=mirror, progress=Bar())
        except (DatasetError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}", soft_wrap=True, highlight=False)
            failed = True
            continue
        out.print(
            f"{name}: {len(status.files)} files verified in {status.folder} ({_size(status.size)})",
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(1)


@app.command("verify")
def verify_command(
    name: Annotated[
        str | None, typer.Argument(help="One dataset; default: every dataset with files.")
    ] = None,
    data_dir: DirOption = None,
) -> None:
    """Compare every file with its published checksum (computed once per file version)."""
    from lcw.dataset_files import inspect
    from lcw.dataset_sources import downloadable

    out = console()
    try:
        found = [inspect(n, data_dir, level="full") for n in ([name] if name else downloadable())]
    except ValueError as exc:
        console(stderr=True).print(f"[red]error:[/] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    bad = False
    for status in found:
        style = STATE_STYLE[status.state]
        out.print(f"{status.name}: [{style}]{status.state}[/] ({status.folder})", soft_wrap=True)
        for f in status.files:
            if f.state == "ok":
                mark = "verified" if f.verified else "ok (no published checksum)"
                out.print(f"  {f.path}: {mark}", soft_wrap=True, highlight=False)
            elif f.state == "corrupt":
                out.print(f"  {f.path}: [red]{f.detail}[/]", soft_wrap=True, highlight=False)
            else:
                out.print(f"  {f.path}: [yellow]missing[/]", soft_wrap=True, highlight=False)
        error = status.error()
        bad |= status.state == "corrupt" or (name is not None and error is not None)
        if error is not None:
            out.print(f"  fix: lcw-sweep data fetch {status.name}", soft_wrap=True)
    if bad:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add the `data` command group to the CLI."""
    root.add_typer(app, name="data")
