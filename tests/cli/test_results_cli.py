"""`lcw-sweep results` and the Python client's comparison rows: raw p, p_adj (adjusted across
the study), the signed-rank p, and a star that follows p_adj only; cells with their chosen init
scale and early-stopped count.

A real `lcw-sweep serve --no-worker` on a SQLite database seeded beforehand with
significance_study (every case: significant, raw p < 0.05 but p_adj >= 0.05, CI across 0,
n < 6), and the tables rendered from a hand-made summary.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import pytest
from cli_helpers import lcw, serve
from rich.console import Console
from significance_study import CHOSEN_SCALE, seed_significance_study

from service.cli.tables import comparisons_table
from service.client import Client
from service.db import make_engine, upgrade_database
from service.schemas import SummaryPublic
from service.store import Store

Seeded = tuple[str, int]  # the server's URL, the study id


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    tmp = tmp_path_factory.mktemp("serve-results")
    engine = make_engine(f"sqlite:///{tmp / 'lcw.db'}")
    upgrade_database(engine)
    store = Store(engine)
    study_id = seed_significance_study(store)
    store.settle_summaries()
    engine.dispose()
    with serve(tmp, extra_args=("--no-worker",)) as (url, _started):
        yield url, study_id


def _table(out: str, title: str) -> list[dict[str, str]]:
    """The rows of the rich table under `title` in `out`, as {header: cell text}."""
    lines = out[out.index(title) :].splitlines()
    header_at = next(i for i, line in enumerate(lines) if "┃" in line)
    header = [h.strip() for h in lines[header_at].strip().strip("┃").split("┃")]
    rows = []
    for line in lines[header_at + 1 :]:
        if line.startswith("└"):
            break
        if "│" in line:
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _pair(rows: list[dict[str, str]], activation: str, baseline: str) -> dict[str, str]:
    return next(
        r
        for r in rows
        if r["activation"] == activation and r["method - baseline"] == f"lcw - {baseline}"
    )


def test_results_table_shows_p_adj_and_stars_by_it_only(seeded: Seeded) -> None:
    url, study_id = seeded
    with Client(url) as api:
        summary = api.summary(study_id)
    proc = lcw("results", str(study_id), "--url", url)
    assert proc.returncode == 0, proc.stderr
    rows = _table(proc.stdout, "Paired differences in test accuracy")
    assert list(rows[0])[-5:] == ["95% CI", "p", "p_adj", "p_signed_rank", "sig"]
    assert len(rows) == len(summary.comparisons) == 4

    clear, raw_only = _pair(rows, "sigmoid", "plain"), _pair(rows, "sigmoid", "bn")
    assert clear["sig"] == "*" and float(clear["p_adj"]) < 0.05
    # Raw p < 0.05, adjusted p >= 0.05: no star.
    assert float(raw_only["p"]) < 0.05 <= float(raw_only["p_adj"])
    assert raw_only["sig"] == ""
    across_zero = _pair(rows, "relu", "plain")
    assert across_zero["sig"] == "" and float(across_zero["p_adj"]) >= 0.05
    few = _pair(rows, "relu", "bn")
    assert (few["n"], few["p"], few["p_adj"], few["p_signed_rank"], few["sig"]) == (
        "4", "n<6", "n<6", "n<6", "",
    )  # fmt: skip
    for r in rows:  # the star is exactly the API's verdict on the adjusted p
        c = next(
            c
            for c in summary.comparisons
            if (c.activation, f"{c.method} - {c.baseline}")
            == (r["activation"], r["method - baseline"])
        )
        assert r["sig"] == ("*" if c.p_adjusted is not None and c.p_adjusted < 0.05 else "")

    floor = summary.adjustment.signed_rank_floor_adjusted
    assert floor is not None
    line = next(line for line in proc.stdout.splitlines() if line.startswith("p_adj: "))
    assert line.startswith("p_adj: Holm over 3 comparisons (1 significant, * = p_adj < 0.05)")
    assert f"exact signed-rank floor after adjustment: {floor:.3g}" in line
    assert summary.adjustment.note in line

    cells = _table(proc.stdout, "test accuracy at the best setting")
    assert len(cells) == 6
    for cell in cells:
        assert cell["best lr"] == "0.1"
        assert cell["init scale"] == f"{CHOSEN_SCALE[cell['method']]:g}"
    stopped = {(c["method"], c["activation"]): c["stopped early"] for c in cells}
    assert stopped.pop(("plain", "sigmoid")) == "1"
    assert set(stopped.values()) == {"0"}


def test_results_csv_and_json_carry_the_new_columns(seeded: Seeded) -> None:
    url, study_id = seeded
    sid = str(study_id)
    # One table per output: cells (the CSV default) and comparisons each load with one reader.
    out = lcw("results", sid, "--what", "cells", "--format", "csv", "--url", url)
    assert out.returncode == 0, out.stderr
    cells_block = out.stdout
    assert lcw("results", sid, "-f", "csv", "--url", url).stdout == cells_block
    assert "\n\n" not in cells_block and cells_block.count("best_lr") == 1
    cells = list(csv.DictReader(io.StringIO(cells_block)))
    assert len(cells) == 6 and all(c["method"] in ("plain", "bn", "lcw") for c in cells)
    assert {"best_lr", "best_init_scale", "diverged", "stopped_early"} <= set(cells[0])
    lcw_cells = [c for c in cells if c["method"] == "lcw"]
    assert {c["best_init_scale"] for c in lcw_cells} == {"0.5"}
    comparisons_block = lcw("results", sid, "--what", "comparisons", "-f", "csv", "--url", url)
    assert comparisons_block.returncode == 0, comparisons_block.stderr
    assert "\n\n" not in comparisons_block.stdout
    comparisons = list(csv.DictReader(io.StringIO(comparisons_block.stdout)))
    assert len(comparisons) == 4
    assert {
        "p_value",
        "p_adjusted",
        "p_signed_rank",
        "p_signed_rank_adjusted",
        "significant",
        "star",
        "testable",
        "method_init_scale",
        "baseline_init_scale",
    } <= set(comparisons[0])
    raw_only = next(c for c in comparisons if (c["activation"], c["baseline"]) == ("sigmoid", "bn"))
    assert float(raw_only["p_value"]) < 0.05 <= float(raw_only["p_adjusted"])
    assert raw_only["star"] == "" and raw_only["significant"] == "False"
    assert [c["star"] for c in comparisons].count("*") == 1

    # --per comparison (the older spelling of --what comparisons): the same rows.
    alone = lcw("results", sid, "--per", "comparison", "-f", "csv", "--url", url)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == comparisons_block.stdout
    as_json = json.loads(
        lcw("results", sid, "--what", "comparisons", "-f", "json", "--url", url).stdout
    )
    assert [r["star"] for r in as_json] == [c["star"] for c in comparisons]
    table = lcw("results", sid, "--what", "comparisons", "--url", url)
    assert "p_adj" in table.stdout and "test accuracy at the best setting" not in table.stdout
    only_cells = lcw("results", sid, "--what", "cells", "--url", url)
    assert "test accuracy at the best setting" in only_cells.stdout
    assert "Paired differences" not in only_cells.stdout
    cells_json = json.loads(lcw("results", sid, "-w", "cells", "-f", "json", "--url", url).stdout)
    assert [r["method"] for r in cells_json] == [c["method"] for c in cells]

    # Two tables do not fit one CSV: --what summary asks for one of them.
    both = lcw("results", sid, "--what", "summary", "-f", "csv", "--url", url)
    assert both.returncode == 2 and both.stdout == ""
    assert "--what cells or --what comparisons" in both.stderr

    # The summary's JSON has the adjustment block; trial rows have their init scale.
    summary = json.loads(lcw("results", sid, "-f", "json", "--url", url).stdout)
    assert summary["adjustment"]["family_size"] == 3
    trials = list(
        csv.DictReader(
            io.StringIO(lcw("results", sid, "--what", "trials", "-f", "csv", "--url", url).stdout)
        )
    )
    assert {t["init_scale"] for t in trials} == {"0.5", "1.0"}
    # The trial id is the one trial number: no second (expansion index) column.
    assert "id" in trials[0] and "index" not in trials[0]
    with Client(url) as api:
        assert [int(t["id"]) for t in trials] == [t.id for t in api.iter_trials(study_id)]


def test_python_client_comparison_rows(seeded: Seeded) -> None:
    pd = pytest.importorskip("pandas")
    url, study_id = seeded
    with Client(url) as api:
        frame = api.results(study_id, per="comparison", as_dataframe=True)
        cells = api.results(study_id, as_dataframe=True)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 4
    assert {"p_value", "p_adjusted", "p_signed_rank", "star"} <= set(frame.columns)
    assert (frame["star"] == "*").tolist() == (frame["p_adjusted"] < 0.05).tolist()
    assert (frame["p_adjusted"].dropna() >= frame["p_value"].dropna()).all()
    assert {"best_init_scale", "stopped_early"} <= set(cells.columns)


def _summary(**comparison: object) -> SummaryPublic:
    base = {
        "method": "lcw", "baseline": "plain", "depth": 5, "width": 100, "activation": "sigmoid",
        "method_lr": 0.1, "baseline_lr": 0.1, "method_init_scale": 1.0,
        "baseline_init_scale": 1.0, "n": 8, "mean_diff": 0.02, "ci95": [0.001, 0.039],
        "ci95_note": None, "testable": True, "p_value": 0.01, "p_value_note": None,
        "p_adjusted": 0.2, "p_signed_rank": 0.03, "p_signed_rank_adjusted": 0.5,
        "significant": False, "method_diverged": 0, "baseline_diverged": 0,
    }  # fmt: skip
    adjustment = {
        "method": "holm", "family_size": 20, "alpha": 0.05, "primary_test": "paired_t",
        "robustness_test": "signed_rank_exact", "min_pairs": 6,
        "signed_rank_floor_adjusted": 0.16, "note": "a note",
    }  # fmt: skip
    return SummaryPublic.model_validate(
        {
            "study_id": 1,
            "status": "completed",
            "cells": [],
            "comparisons": [{**base, **comparison}],
            "adjustment": adjustment,
        }
    )


def _render(summary: SummaryPublic) -> dict[str, str]:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(comparisons_table(summary))
    (row,) = _table(console.export_text(), "Paired differences")
    return row


@pytest.mark.parametrize(
    ("changes", "p", "p_adj", "sig"),
    [
        ({}, "0.01", "0.2", ""),  # raw p < 0.05, adjusted not: no star
        ({"p_adjusted": 0.012, "significant": True}, "0.01", "0.012", "*"),
        (
            {"testable": False, "n": 3, "p_value": None, "p_adjusted": None, "p_signed_rank": None},
            "n<6",
            "n<6",
            "",
        ),
    ],
)
def test_the_star_is_the_adjusted_verdict(
    changes: dict[str, object], p: str, p_adj: str, sig: str
) -> None:
    row = _render(_summary(**changes))
    assert (row["p"], row["p_adj"], row["sig"]) == (p, p_adj, sig)
    assert re.fullmatch(r"\+0\.020", row["mean diff"])


def test_results_help_names_the_comparison_rows() -> None:
    proc = lcw("results", "--help")
    assert proc.returncode == 0 and "comparison" in proc.stdout and "p_adj" in proc.stdout
