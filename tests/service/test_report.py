"""The offline report (``GET /api/studies/{id}/report`` and `lcw-sweep report ID --out DIR`) of
a study trained for real.

One real `lcw-sweep serve` subprocess (embedded dispatcher, local Ray, temporary SQLite) runs a
tiny digits study through the queue: plain vs LCW at depths 1 and 2, two learning rates, six
paired seeds (so the comparisons have raw and adjusted p-values), two epochs, diagnostics on;
and a two-trial study with diagnostics off. The report's tables are checked against the summary
the API serves, its figures are opened as PNGs, and the CLI writes the same files to disk.

One fast test builds the report in-process of the study of tests/cli/significance_study.py,
seeded through the store's queue API: every case of the star rule (significant; raw p < 0.05
but not after Holm; a CI across 0; n < 6) and two init scales at one learning rate.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from cli_helpers import lcw, serve, study_spec
from PIL import Image
from significance_study import seed_significance_study

from service.client import Client
from service.db import make_engine, upgrade_database
from service.report.build import build_report
from service.schemas import SummaryPublic
from service.store import Store

# 2 methods x 2 depths x 2 LRs x 6 seeds = 48 trials of a width-16 MLP, 2 epochs: seconds.
REPORTED = study_spec(
    "report-study", depths=[1, 2], widths=[16], learning_rates=[0.05, 0.5], seeds=6, epochs=2
)
NO_DIAGNOSTICS = study_spec(
    "report-no-diag", depths=[1], widths=[16], seeds=1, epochs=1, diagnostics=False
)
CELLS = ("sigmoid-d1-w16", "sigmoid-d2-w16")
FIGURES = {
    "figures/depth-sigmoid-w16.png",
    *(f"figures/{kind}-{cell}.png" for kind in ("lr", "curves", "layers") for cell in CELLS),
}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("report-serve")) as (url, _started):
        yield url


@pytest.fixture(scope="module")
def studies(server: str) -> dict[str, int]:
    """Both studies, submitted together and trained to completion."""
    with Client(server) as api:
        ids = {"reported": api.submit(REPORTED).id, "plain": api.submit(NO_DIAGNOSTICS).id}
        for study_id in ids.values():
            assert api.wait(study_id, poll_s=0.5, timeout_s=400).status == "completed"
    return ids


def _report(server: str, study_id: int, **params: str) -> httpx.Response:
    return httpx.get(f"{server}/api/studies/{study_id}/report", params=params, timeout=300)


@pytest.fixture(scope="module")
def archive(server: str, studies: dict[str, int]) -> dict[str, bytes]:
    """The report zip of the reported study, by file name."""
    response = _report(server, studies["reported"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert f"study-{studies['reported']}-report.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
        return {name: zipped.read(name) for name in zipped.namelist()}


def _table(markdown: str, caption_start: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose bold caption starts so."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{caption_start}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows[2:]  # less the header and the alignment rule


@pytest.mark.slow
def test_the_zip_holds_the_html_the_markdown_and_every_figure(archive: dict[str, bytes]) -> None:
    assert set(archive) == {"report.html", "report.md", *FIGURES}
    for name in FIGURES:
        with Image.open(io.BytesIO(archive[name])) as image:
            assert image.format == "PNG"
            assert image.width >= 400 and image.height >= 200, name
            # Something is drawn: more than a blank canvas's few colours.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20, name
    markdown = archive["report.md"].decode()
    assert set(IMAGE.findall(markdown)) == FIGURES  # every ![](...) is a file of the zip


@pytest.mark.slow
def test_the_tables_are_the_summary_the_api_serves(
    server: str, studies: dict[str, int], archive: dict[str, bytes]
) -> None:
    summary = SummaryPublic.model_validate(
        httpx.get(f"{server}/api/studies/{studies['reported']}/summary").json()
    )
    markdown = archive["report.md"].decode()
    cells = _table(markdown, "Test accuracy at the best setting")
    assert len(cells) == len(summary.cells) == 4
    for row, cell in zip(cells, summary.cells, strict=True):
        assert row[2] == cell.method and row[3] == f"{cell.best_lr:g}"
        assert row[6] == f"{cell.test_acc_mean:.3f}" and row[9] == str(cell.n) == "6"
    comparisons = _table(markdown, "Paired differences in test accuracy")
    assert len(comparisons) == len(summary.comparisons) == 2  # lcw - plain at each depth
    tested = 0
    for row, c in zip(comparisons, summary.comparisons, strict=True):
        assert row[2] == f"{c.method} - {c.baseline}" and row[3] == str(c.n) == "6"
        assert row[4] == f"{c.mean_diff:+.3f}"
        raw, adjusted = row[6], row[7]
        if c.p_value is None:  # every paired difference equal: the summary says so in a note
            assert raw == adjusted == "-"
            continue
        tested += 1
        assert raw == f"{c.p_value:.3g}" and adjusted == f"{c.p_adjusted:.3g}"
        assert row[8] == f"{c.p_signed_rank:.3g}" and row[10] == ("*" if c.significant else "")
    assert tested >= 1
    assert f"p_adj: Holm over {summary.adjustment.family_size} comparison" in markdown


@pytest.mark.slow
def test_the_report_states_the_spec_versions_and_hardware(
    archive: dict[str, bytes], studies: dict[str, int]
) -> None:
    markdown = archive["report.md"].decode()
    assert f"# Study {studies['reported']}: report-study" in markdown
    assert "learning_rates:\n- 0.05\n- 0.5\n" in markdown and "seeds: 6" in markdown
    writer = dict(row[:2] for row in _table(markdown, "Versions of the report writer"))
    assert writer["torch"] == metadata.version("torch")
    assert writer["lcw-sweep"] == metadata.version("lcw-sweep")
    assert set(writer) == {"lcw-sweep", "python", "torch", "matplotlib", "platform"}
    hardware = _table(markdown, "Hardware the trials recorded (all 48 finished trials)")
    assert [row[0] for row in hardware] == ["cpu"]  # device, as every trial's run_info has it
    assert hardware[0][-1] == "48"
    versions = _table(markdown, "Versions the trials recorded")
    assert versions[0][1] == metadata.version("torch") and versions[0][-1] == "48"


@pytest.mark.slow
def test_format_html_is_one_file_with_every_figure_inline(
    server: str, studies: dict[str, int], archive: dict[str, bytes]
) -> None:
    response = _report(server, studies["reported"], format="html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert html.startswith("<!doctype html>")
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!data:)[^"'\s>]""", html)  # nothing to fetch
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(FIGURES)
    # The same document the zip carries, but for its timestamp.
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    assert stamp.sub("", html) == stamp.sub("", archive["report.html"].decode())


@pytest.mark.slow
def test_a_study_without_diagnostics_says_so_instead_of_an_empty_figure(
    server: str, studies: dict[str, int]
) -> None:
    response = _report(server, studies["plain"])
    with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
        names = set(zipped.namelist())
        markdown = zipped.read("report.md").decode()
    assert not any(n.startswith("figures/layers-") for n in names)
    assert {"figures/lr-sigmoid-d1-w16.png", "figures/curves-sigmoid-d1-w16.png"} <= names
    assert "Diagnostics were off for this study (spec: diagnostics: false)" in markdown
    assert "The study has one depth (1): each line is a single point." in markdown


@pytest.mark.slow
def test_a_missing_study_or_format_is_refused(server: str, studies: dict[str, int]) -> None:
    missing = _report(server, 999_999)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "study 999999 does not exist"
    bad = _report(server, studies["reported"], format="pdf")
    assert bad.status_code == 422
    assert "'zip' or 'html'" in bad.text


@pytest.mark.slow
def test_the_cli_writes_the_report_into_a_directory(
    server: str, studies: dict[str, int], archive: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "study"  # created, parents too
    proc = lcw("report", str(studies["reported"]), "--out", str(out), "--url", server)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote the report of study {studies['reported']} to {out}/" in proc.stdout
    assert "7 figures" in proc.stdout
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == set(archive)
    markdown = (out / "report.md").read_text()
    for target in IMAGE.findall(markdown):
        with Image.open(out / target) as image:
            assert image.format == "PNG" and image.width > 0


@pytest.mark.slow
def test_the_cli_names_what_is_wrong(server: str, studies: dict[str, int], tmp_path: Path) -> None:
    missing = lcw("report", "999999", "--out", str(tmp_path / "r"), "--url", server)
    assert missing.returncode == 1
    assert "error: 404 study 999999 does not exist" in missing.stderr
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a directory")
    proc = lcw("report", str(studies["reported"]), "--out", str(a_file), "--url", server)
    assert proc.returncode == 1
    assert f"error: --out {a_file}: it is a file, not a directory" in proc.stderr
    below = a_file / "report"
    proc = lcw("report", str(studies["reported"]), "--out", str(below), "--url", server)
    assert proc.returncode == 1
    assert f"error: --out {below}: cannot write there (Not a directory)" in proc.stderr
    assert a_file.read_text() == "not a directory"


def test_raw_and_adjusted_p_and_the_init_scale_axis_of_a_seeded_study(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'lcw.db'}")
    upgrade_database(engine)
    store = Store(engine)
    study_id = seed_significance_study(store)
    summary = store.summary(study_id)
    report = build_report(store, study_id)
    markdown = report.files()["report.md"].decode()
    rows = {
        (row[0], row[2]): row for row in _table(markdown, "Paired differences in test accuracy")
    }
    assert len(rows) == len(summary.comparisons) == 4
    for c in summary.comparisons:
        row = rows[(c.activation, f"{c.method} - {c.baseline}")]
        if not c.testable:  # relu, lcw - bn: 4 pairs
            assert row[6:10] == ["n<6"] * 4 and row[10] == ""
            continue
        assert row[6] == f"{c.p_value:.3g}" and row[7] == f"{c.p_adjusted:.3g}"
    raw_only = rows[("sigmoid", "lcw - bn")]  # raw p < 0.05, Holm's > 0.05: no star
    assert float(raw_only[6]) < 0.05 < float(raw_only[7]) and raw_only[10] == ""
    assert rows[("sigmoid", "lcw - plain")][10] == "*"
    # One learning rate, two init scales: sensitivity is drawn against the init scale.
    titles = [f.title for f in report.figures if f.name.startswith("lr-")]
    assert sorted(titles) == [
        "Init-scale sensitivity: depth 5 · width 100 · relu",
        "Init-scale sensitivity: depth 5 · width 100 · sigmoid",
    ]
    assert not any(f.name.startswith("layers-") for f in report.figures)
    assert "Diagnostics were off for this study" in markdown
    engine.dispose()
