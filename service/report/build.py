"""A study's report assembled once: its data, its figure sections (each figure, or the text
that says why it is missing), and the files it is written as (HTML, Markdown, PNG figures).

``build_report(store, study_id)`` gathers and draws; ``Report.files()`` renders both documents;
``Report.zip()`` is what ``GET /api/studies/{id}/report`` serves and the CLI unpacks. The HTML
file carries its figures inline (data: URIs) and works alone; the Markdown file refers to
``figures/<name>.png`` beside it.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.report import figures
from service.report.data import ReportData, gather
from service.report.figures import Figure
from service.store import Store

HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
FIGURES_DIR = "figures"
# matplotlib makes no promise of thread safety (its font and text caches are shared): the API
# serves reports from a thread pool, so one report draws at a time in a process.
_DRAWING = threading.Lock()


@dataclass(frozen=True)
class Section:
    """One part of the report's figures: a title, what it shows, its figures and notes (text
    where a figure could not be drawn, and why)."""

    id: str
    title: str
    intro: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    data: ReportData
    sections: list[Section]

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]

    def html(self) -> bytes:
        """The single-file HTML document (figures inline)."""
        from service.report.html import render_html

        return render_html(self).encode()

    def files(self) -> dict[str, bytes]:
        """Every file of the report by its relative path: report.html, report.md and
        figures/<name>.png."""
        from service.report.markdown import render_markdown

        out = {
            HTML_NAME: self.html(),
            MARKDOWN_NAME: render_markdown(self).encode(),
        }
        out.update({figure_path(f): f.png for f in self.figures})
        return out

    def zip(self) -> bytes:
        """The report's files as one zip archive (paths as in ``files``)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, body in self.files().items():
                archive.writestr(path, body)
        return buffer.getvalue()


def figure_path(figure: Figure) -> str:
    """Where a figure's PNG lives, relative to the report files."""
    return f"{FIGURES_DIR}/{figure.name}.png"


def _depth_section(data: ReportData) -> Section:
    drawn = figures.depth_figures(data.summary)
    notes = []
    depths = {c.depth for c in data.summary.cells if c.depth is not None}
    if not depths and data.summary.cells:
        notes.append(f"The model ({data.study.model}) has a fixed layout: there is no depth axis.")
    elif not drawn:
        notes.append("No cell has a test accuracy yet.")
    elif len(depths) == 1:
        notes.append(f"The study has one depth ({depths.pop()}): each line is a single point.")
    return Section(
        "depth",
        "Accuracy vs depth",
        "Each method's test accuracy at its best setting, against the network's depth.",
        drawn,
        notes,
    )


def _cell_section(
    data: ReportData,
    *,
    id: str,
    title: str,
    intro: str,
    draw: Callable[[dict[str, Any]], Figure | None],
    missing: str,
) -> Section:
    """A figure per cell drawn by `draw`, or the note `missing` for a cell it cannot draw."""
    drawn, notes = [], []
    for cell in data.cells:
        figure = draw(cell)
        if figure is None:
            notes.append(f"{cell['label']}: {missing}")
        else:
            drawn.append(figure)
    return Section(id, title, intro, drawn, notes)


def figure_sections(data: ReportData) -> list[Section]:
    """The report's four figure sections, in reading order."""
    sections = [
        _depth_section(data),
        _cell_section(
            data,
            id="lr",
            title="Learning-rate sensitivity",
            intro="Validation accuracy against the learning rate, per cell: how much the result "
            "depends on tuning it.",
            draw=lambda cell: figures.lr_figure(data.summary, cell),
            missing="no setting has a validation accuracy yet.",
        ),
        _cell_section(
            data,
            id="curves",
            title="Learning curves at the best learning rates",
            intro="Training loss and test accuracy per epoch, each method at its best setting.",
            draw=figures.curves_figure,
            missing="no epoch has been recorded yet.",
        ),
    ]
    layers_intro = (
        "Activation shift and gradient norm per layer, at init and at the last epoch: why a "
        "method trains or does not."
    )
    if data.diagnostics_on:
        sections.append(
            _cell_section(
                data,
                id="layers",
                title="Activation shift and gradient norm per layer",
                intro=layers_intro,
                draw=figures.diagnostics_figure,
                missing="no diagnostics have been recorded yet.",
            )
        )
    else:
        sections.append(
            Section(
                "layers",
                "Activation shift and gradient norm per layer",
                layers_intro,
                notes=[
                    "Diagnostics were off for this study (spec: diagnostics: false), so no "
                    "activation shift or gradient norm was measured. A study submitted with "
                    "diagnostics: true (the default) records them at every epoch."
                ],
            )
        )
    return sections


def build_report(store: Store, study_id: int) -> Report:
    """The report of `study_id` (NotFoundError when there is no such study)."""
    data = gather(store, study_id)
    with _DRAWING:
        sections = figure_sections(data)
    return Report(data, sections)
