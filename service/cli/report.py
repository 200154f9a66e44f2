"""`lcw-sweep report ID --out DIR`: write a study's offline report into a directory.

The server builds the report (``GET /api/studies/{id}/report``, a zip); this command checks
that DIR can be written first, then unpacks ``report.html`` (self-contained: open it from disk,
no server or network needed), ``report.md`` and its ``figures/*.png`` into it.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from service.cli.common import (
    DEFAULT_URL,
    StudyIdArg,
    TokenOption,
    UrlOption,
    api_client,
    console,
)

OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Directory for report.html, report.md and figures/ (created if missing; files "
        "of an earlier report there are replaced).",
    ),
]


def out_problem(out: Path) -> str | None:
    """Why the report cannot be written into `out` (None: it can): not a directory, cannot be
    created, or no file can be created in it."""
    if out.exists() and not out.is_dir():
        return "it is a file, not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return f"cannot write there ({exc.strerror or type(exc).__name__})"
    return None


def _is_report_file(name: str) -> bool:
    """A path the report archive may hold: report.html, report.md or figures/<name>.png."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        return False
    return name in ("report.html", "report.md") or (
        len(path.parts) == 2 and path.parts[0] == "figures" and path.suffix == ".png"
    )


def unpack(archive: bytes, out: Path) -> list[str]:
    """Write the report archive's files under `out`; returns their relative paths. An entry
    that is not a report file (or would land outside `out`) is refused."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        names = zipped.namelist()
        unexpected = [n for n in names if not _is_report_file(n)]
        if unexpected:
            raise ValueError(f"the server's report holds unexpected files: {unexpected[:3]}")
        for name in names:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(name))
    return names


def report_command(
    study_id: StudyIdArg,
    out: OutOption,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Write a study's offline report: report.html (one file, figures inline), report.md and
    figures/*.png. It opens without the server or a network.

    Example: lcw-sweep report 3 --out reports/study-3

    Exit code 0 when written; 1 for a study that does not exist, a server that does not
    answer, or a --out directory that cannot be written.
    """
    err = console(stderr=True)
    problem = out_problem(out)
    if problem is not None:
        err.print(f"[red]error:[/] --out {out}: {problem}", soft_wrap=True)
        raise typer.Exit(1)
    with api_client(url, token) as api:
        archive = api.report(study_id)
    try:
        names = unpack(archive, out)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        err.print(f"[red]error:[/] --out {out}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    figures = sum(n.startswith("figures/") for n in names)
    console().print(
        f"wrote the report of study {study_id} to {out}{os.sep}: report.html (self-contained), "
        f"report.md and {figures} figure{'s' if figures != 1 else ''} in figures{os.sep}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add `report` to the CLI."""
    app.command("report")(report_command)
