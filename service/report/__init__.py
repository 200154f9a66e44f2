"""Offline reports of a study: one self-contained HTML file (figures inline, no scripts) and a
Markdown file with PNG figures, readable without the server or a network.

What a report holds: the spec, the versions of the report writer and what the trials recorded
about where they ran, the comparison tables (raw and adjusted p-values, from the summary the API
serves), accuracy against depth, learning-rate sensitivity, the learning curves at the best
learning rates, and activation shift and gradient norm per layer at init and at the end.

=================  ===============================================================
``data.py``        gathers the study, its summary, cell curves and diagnostics, run_info
``tables.py``      the tables as text cells (shared by both documents)
``figures.py``     matplotlib figures on the Agg canvas, as PNG bytes
``build.py``       the report's sections and files; the zip the API serves
``html.py``        the single-file HTML document
``markdown.py``    the Markdown document
=================  ===============================================================

Served as ``GET /api/studies/{id}/report`` (``service.api.report``) and written by
``lcw-sweep report ID --out DIR`` (``service.cli.report``). matplotlib is imported only when a
report is built, never when the app starts.
"""
