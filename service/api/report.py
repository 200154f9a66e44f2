"""The offline report of a study: ``GET /api/studies/{id}/report``.

By default a zip archive (``application/zip``) of ``report.html`` (self-contained: figures
inline, no scripts), ``report.md`` and the Markdown's ``figures/*.png``; ``?format=html``
returns the HTML file alone (``text/html``). Built from the summary the API serves and the
study's stored curves and diagnostics (``service.report``); 404 for a study that does not exist.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response

from service.api.deps import StoreDep
from service.api.studies import StudyId
from service.schemas import ErrorPublic

router = APIRouter(prefix="/api/studies", tags=["studies"])

MEDIA_TYPES = {"zip": "application/zip", "html": "text/html; charset=utf-8"}


@router.get(
    "/{study_id}/report",
    response_class=Response,
    responses={
        404: {"model": ErrorPublic},
        200: {
            "description": "A zip of report.html, report.md and figures/*.png, or "
            "(format=html) the single HTML file",
            "content": {"application/zip": {}, "text/html": {}},
        },
    },
)
def study_report(
    store: StoreDep, study_id: StudyId, format: Literal["zip", "html"] = "zip"
) -> Response:
    """Download an offline report: a zip of HTML, Markdown and PNG figures (or format=html)."""
    from service.report.build import build_report  # matplotlib: imported on first use

    report = build_report(store, study_id)
    body = report.html() if format == "html" else report.zip()
    filename = f"study-{study_id}-report.{format}"
    return Response(
        body,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
