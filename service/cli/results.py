"""`lcw-sweep results`: a study's summary, cells, comparisons, trials or epochs, as rich tables
or as one machine-readable table per output (CSV or JSON).

``--what`` picks the table: ``summary`` (the default for the table and JSON views: the cells at
their best setting, the paired comparisons and how their p-values were adjusted), ``cells``
(the default for CSV), ``comparisons``, ``trials`` (final metrics of each trial, by trial id) or
``epochs`` (every epoch of every trial). A CSV always holds exactly one table, so that one
``read_csv`` loads it. ``--per cell|comparison|trial|epoch`` is the older spelling.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Annotated, Any, Literal

import typer

from service.cli.common import (
    DEFAULT_URL,
    StudyIdArg,
    TokenOption,
    UrlOption,
    api_client,
    console,
)
from service.cli.study_view import print_failures
from service.cli.tables import cells_table, print_summary, rows_table
from service.client import TRIAL_ROW_EXCLUDE, Client, cell_rows, comparison_rows

What = Literal["summary", "cells", "comparisons", "trials", "epochs"]
_PER_TO_WHAT: dict[str, What] = {
    "comparison": "comparisons",
    "trial": "trials",
    "epoch": "epochs",
}


def write_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as one CSV table (dict and list values as JSON text)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            )
    return buffer.getvalue()


def _rows(api: Client, study_id: int, what: What, format: str) -> list[dict[str, Any]]:
    if what == "cells":
        return cell_rows(api.summary(study_id))
    if what == "comparisons":
        return comparison_rows(api.summary(study_id))
    if what == "epochs" and format == "csv":
        # The export's own CSV columns (no per-layer diagnostics), less the trial index.
        rows = csv.DictReader(io.StringIO(api.export(study_id, format="csv")))
        return [{k: v for k, v in row.items() if k not in TRIAL_ROW_EXCLUDE} for row in rows]
    rows_: list[dict[str, Any]] = api.results(
        study_id, per="trial" if what == "trials" else "epoch"
    )
    return rows_


def _resolve(what: What | None, per: str | None, format: str) -> What:
    if what is not None and per is not None:
        console(stderr=True).print("[red]error:[/] give --what or --per (its older name), not both")
        raise typer.Exit(2)
    if per is not None:
        what = _PER_TO_WHAT.get(per)  # cell: the default below
    if what is None:
        return "cells" if format == "csv" else "summary"
    if what == "summary" and format == "csv":
        console(stderr=True).print(
            "[red]error:[/] --what summary is two tables (cells and comparisons) and a CSV holds "
            "one: give --what cells or --what comparisons (or --format json for the summary)"
        )
        raise typer.Exit(2)
    return what


def results_command(
    study_id: StudyIdArg,
    format: Annotated[
        Literal["table", "csv", "json"],
        typer.Option("--format", "-f", help="table: rich tables; csv / json: machine-readable."),
    ] = "table",
    what: Annotated[
        What | None,
        typer.Option(
            "--what",
            "-w",
            help="summary (cells and paired comparisons; json: the API's summary object), "
            "cells (best setting per method x depth x width x activation), comparisons (p, "
            "p_adj, p_signed_rank, star by p_adj), trials (final metrics, by trial id), epochs "
            "(every epoch of every trial). Default: summary, or cells for csv (a CSV holds one "
            "table).",
            show_default=False,
        ),
    ] = None,
    per: Annotated[
        Literal["cell", "comparison", "trial", "epoch"] | None,
        typer.Option(hidden=True, help="Older name of --what (cell, comparison, trial, epoch)."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print a study's results: the summary, its cells or comparisons, trials or epochs.

    Example: lcw-sweep results 3 --what cells -f csv > cells.csv
    (and: --what comparisons -f csv > comparisons.csv)

    Every CSV or JSON output is one table (JSON: a list of rows), except --what summary with
    --format json: the API's summary object (cells, comparisons and the adjustment). A
    comparison's star follows its p-value adjusted across the study (p_adj), never the raw p.
    """
    chosen = _resolve(what, per, format)
    with api_client(url, token) as api:
        if format == "table" and chosen in ("summary", "cells", "comparisons"):
            out = console()
            study = api.study(study_id)
            if study.status == "failed":  # no result to show: say why instead
                print_failures(out, api, study)
                raise typer.Exit(1)
            summary = api.summary(study_id)
            if chosen == "cells":
                out.print(cells_table(summary))
            else:
                print_summary(out, summary, cells=chosen == "summary")
            print_failures(out, api, study)
            return
        if chosen == "summary":  # json
            typer.echo(api.summary(study_id).model_dump_json(indent=2))
            return
        rows = _rows(api, study_id, chosen, format)
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif format == "csv":
        sys.stdout.write(write_csv(rows))
    else:
        console().print(rows_table(rows, title=f"Study {study_id}: {len(rows)} {chosen[:-1]} rows"))


def register(app: typer.Typer) -> None:
    """Add `results` to the CLI."""
    app.command("results")(results_command)
