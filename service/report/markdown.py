"""The report as Markdown: the same sections and tables as the HTML file, its figures as
``![title](figures/<name>.png)`` beside it (GitHub-flavoured pipe tables)."""

from __future__ import annotations

import yaml

from service.report import tables
from service.report.build import Report, figure_path
from service.report.tables import Table


def _cell(text: str) -> str:
    """A table cell's text with Markdown's table syntax escaped and on one line."""
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").split()) or " "


def _table(t: Table) -> list[str]:
    columns = t.columns
    rule = ["---:" if i in t.numeric else "---" for i in range(len(columns))]
    lines = [f"**{_cell(t.caption)}**", ""]
    lines.append("| " + " | ".join(_cell(c) for c in columns) + " |")
    lines.append("| " + " | ".join(rule) + " |")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t.rows]
    return [*lines, ""]


def render_markdown(report: Report) -> str:
    """The report as one Markdown document; its figures are files under ``figures/``."""
    data = report.data
    s = data.study
    out = [
        f"# Study {s.id}: {s.name}",
        "",
        f"lcw-sweep report, written {tables.fmt_time(data.generated_at)}; status {s.status}.",
        "",
        "## Study",
        "",
        *_table(tables.study_table(data)),
        "## Spec",
        "",
        "The spec as stored, with the server's defaults filled in.",
        "",
        "```yaml",
        yaml.safe_dump(s.spec, sort_keys=False, width=88).strip(),
        "```",
        "",
        "## Versions and hardware",
        "",
        *_table(tables.generator_table(data)),
    ]
    hardware = tables.hardware_tables(data)
    for t in hardware:
        out += _table(t)
    if not hardware:
        out += ["No trial has finished yet: no run_info to show where the trials ran.", ""]
    out += ["## Comparison", ""]
    cells = tables.cells_table(data.summary)
    out += _table(cells) if cells.rows else ["The study has no cells yet.", ""]
    comparisons = tables.comparisons_table(data.summary)
    if comparisons.rows:
        out += _table(comparisons)
    for line in tables.summary_text(data.summary):
        out += [line, ""]
    for section in report.sections:
        out += [f"## {section.title}", "", section.intro, ""]
        for figure in section.figures:
            out += [f"![{figure.title}]({figure_path(figure)})", "", f"*{figure.caption}*", ""]
        for note in section.notes:
            out += [f"> {note}", ""]
    return "\n".join(out).rstrip() + "\n"
