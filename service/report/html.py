"""The report as one self-contained HTML file: inline CSS, every figure an ``<img>`` with a
``data:image/png;base64`` URI, no scripts and no request to anything (it opens from disk with
the network off). Jinja2 with autoescaping: every study text is escaped.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml
from jinja2 import Environment, select_autoescape

from service.report import tables
from service.report.build import Report

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ddd; padding: .25em .55em; vertical-align: top; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .8em; overflow-x: auto; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; margin-top: .3em; }
p.note { color: #6b4e00; background: #fff8e1; border-left: 3px solid #e0b000; padding: .4em .7em; }
p.muted { color: #666; }
"""

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Study {{ study.id }}: {{ study.name }} (lcw-sweep report)</title>
<style>{{ style }}</style>
</head>
<body>
<h1>Study {{ study.id }}: {{ study.name }}</h1>
<p class="muted">lcw-sweep report, written {{ written }}; status {{ study.status }}.</p>

{% macro table(t) -%}
<table>
<caption>{{ t.caption }}</caption>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr>
{%- for v in row %}<td{% if loop.index0 in t.numeric %} class="num"{% endif %}>{{ v }}</td>
{%- endfor %}</tr>
{% endfor %}</tbody>
</table>
{%- endmacro %}

<section id="study">
<h2>Study</h2>
{{ table(facts) }}
</section>

<section id="spec">
<h2>Spec</h2>
<p class="muted">The spec as stored, with the server's defaults filled in.</p>
<pre>{{ spec }}</pre>
</section>

<section id="versions">
<h2>Versions and hardware</h2>
{{ table(generator) }}
{% for t in hardware %}{{ table(t) }}{% else %}<p class="note">No trial has finished yet: no
run_info to show where the trials ran.</p>{% endfor %}
</section>

<section id="results">
<h2>Comparison</h2>
{% if cells.rows %}{{ table(cells) }}
{%- else %}<p class="note">The study has no cells yet.</p>{% endif %}
{% if comparisons.rows %}{{ table(comparisons) }}{% endif %}
{% for line in summary_text %}<p class="muted">{{ line }}</p>
{% endfor %}
</section>

{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
<p class="muted">{{ s.intro }}</p>
{% for f in s.figures %}<figure id="fig-{{ f.name }}">
<img src="data:image/png;base64,{{ images[f.name] }}" alt="{{ f.title }}">
<figcaption>{{ f.caption }}</figcaption>
</figure>
{% endfor %}{% for note in s.notes %}<p class="note">{{ note }}</p>
{% endfor %}</section>
{% endfor %}
</body>
</html>
"""


def _environment() -> Environment:
    return Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def render_html(report: Report) -> str:
    """The report as one HTML document (figures inline)."""
    data = report.data
    context: dict[str, Any] = {
        "style": _STYLE,
        "study": data.study,
        "written": tables.fmt_time(data.generated_at),
        "facts": tables.study_table(data),
        "spec": yaml.safe_dump(data.study.spec, sort_keys=False, width=88).strip(),
        "generator": tables.generator_table(data),
        "hardware": tables.hardware_tables(data),
        "cells": tables.cells_table(data.summary),
        "comparisons": tables.comparisons_table(data.summary),
        "summary_text": tables.summary_text(data.summary),
        "sections": report.sections,
        "images": {f.name: base64.b64encode(f.png).decode("ascii") for f in report.figures},
    }
    return _environment().from_string(_TEMPLATE).render(**context)
