"""Route of a comparison of studies: the cells they share, side by side (``service.compare``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import StoreDep
from service.compare import StudiesCompared, compare_studies, parse_study_ids
from service.schemas import ErrorPublic

router = APIRouter(prefix="/api", tags=["studies"])

StudyIds = Annotated[
    str | None,
    Query(
        description="2 to 6 study ids separated by commas, e.g. 1,2",
        examples=["1,2"],
        max_length=200,
    ),
]


@router.get(
    "/compare",
    response_model=StudiesCompared,
    responses={404: {"model": ErrorPublic}},
)
def compare(store: StoreDep, studies: StudyIds = None) -> StudiesCompared:
    """Compare studies: their shared cells, each study's LCW against its strongest baseline."""
    return compare_studies(store, parse_study_ids(studies))
