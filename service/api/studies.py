"""Routes of studies: submit a spec, list, read, trials, summary, cancel, delete, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from lcw import catalog
from service.api.deps import OwnerDep, SettingsDep, StoreDep, WriterDep
from service.api.public import studies_public, study_public, trials_public
from service.config import Settings
from service.extend import plan_extension, request_hash
from service.schemas import (
    ErrorPublic,
    StudiesPublic,
    StudyExtended,
    StudyPublic,
    StudyRetried,
    SummaryPublic,
    TrialsPublic,
)
from service.spec import load_document, plan_study
from service.store import Store
from service.vocabulary import StudyStatus, TrialStatus

router = APIRouter(prefix="/api/studies", tags=["studies"])

StudyId = Annotated[int, Path(ge=1, le=2**31 - 1)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorPublic}}
_WRITE: dict[int | str, dict[str, Any]] = {401: {"model": ErrorPublic}}
_SPEC_SCHEMA = {"$ref": "#/components/schemas/StudyCreate"}
_EXTEND_SCHEMA = {"$ref": "#/components/schemas/StudyExtend"}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key and body returns the first call's answer.",
    ),
]


def _body_of(schema: dict[str, str]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself (JSON or YAML, by Content-Type)."""
    content = {kind: {"schema": schema} for kind in ("application/json", "application/yaml")}
    return {"requestBody": {"required": True, "content": content}}


def _validation(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


def _create(
    store: Store,
    settings: Settings,
    raw: bytes,
    media_type: str,
    key: str | None,
    owner: str | None,
) -> tuple[StudyPublic, bool]:
    data = load_document(raw, media_type)
    try:
        spec, trials = plan_study(data, max_trials=settings.max_trials_per_study)
    except ValidationError as exc:
        raise _validation(exc) from exc
    study, created = store.create_study(spec, trials, idempotency_key=key, owner=owner)
    return study_public(study), created


@router.post(
    "",
    status_code=201,
    response_model=StudyPublic,
    dependencies=[WriterDep],
    responses={
        **_WRITE,
        413: {"model": ErrorPublic},
        415: {"model": ErrorPublic},
        201: {
            "description": "Created, or the study an earlier call with this Idempotency-Key "
            "created (then the header Idempotent-Replayed: true is set)"
        },
    },
    openapi_extra=_body_of(_SPEC_SCHEMA),
)
async def create_study(
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    owner: OwnerDep,
    idempotency_key: IdempotencyKey = None,
) -> StudyPublic:
    """Submit a study spec (JSON or YAML) and queue its trials; the study records its owner
    (the name of the API token used, when it has one)."""
    raw = await request.body()
    media_type = request.headers.get("content-type", "application/json")
    study, created = await run_in_threadpool(
        _create, store, settings, raw, media_type, idempotency_key, owner
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return study


@router.get("", response_model=StudiesPublic)
def list_studies(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    status: StudyStatus | None = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
) -> StudiesPublic:
    """List studies, newest first (optionally of one status, of one owner)."""
    page = store.list_studies(limit=limit, offset=offset, status=status, owner=owner)
    return studies_public(page)


@router.get("/{study_id}", response_model=StudyPublic, responses=_NOT_FOUND)
def read_study(store: StoreDep, study_id: StudyId) -> StudyPublic:
    """Get one study with its spec, status and progress."""
    return study_public(store.get_study(study_id))


@router.get("/{study_id}/trials", response_model=TrialsPublic, responses=_NOT_FOUND)
def list_trials(
    store: StoreDep,
    study_id: StudyId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    method: Annotated[str | None, Query(max_length=64)] = None,
    depth: Annotated[int | None, Query(ge=1, le=catalog.MAX_DEPTH)] = None,
    width: Annotated[int | None, Query(ge=1, le=65536)] = None,
    activation: Annotated[str | None, Query(max_length=64)] = None,
    status: TrialStatus | None = None,
) -> TrialsPublic:
    """List a study's trials in expansion order, optionally filtered."""
    page = store.list_trials(
        study_id,
        limit=limit,
        offset=offset,
        method=method,
        depth=depth,
        width=width,
        activation=activation,
        status=status,
    )
    return trials_public(page)


@router.get("/{study_id}/summary", response_model=SummaryPublic, responses=_NOT_FOUND)
def read_summary(store: StoreDep, study_id: StudyId) -> Response:
    """Best learning rate per cell, accuracy CIs and paired comparisons of lcw and bn_lcw."""
    # The store keeps the serialized summary until one of the study's cells changes.
    return Response(store.summary_json(study_id), media_type="application/json")


@router.post(
    "/{study_id}/cancel",
    response_model=StudyPublic,
    dependencies=[WriterDep],
    responses={**_NOT_FOUND, **_WRITE, 409: {"model": ErrorPublic}},
)
def cancel_study(store: StoreDep, study_id: StudyId) -> StudyPublic:
    """Cancel a study's pending and running trials."""
    return study_public(store.cancel_study(study_id))


def _extend(
    store: Store, settings: Settings, study_id: int, raw: bytes, media_type: str, key: str | None
) -> tuple[StudyExtended, bool]:
    request = load_document(raw, media_type)
    digest = request_hash(request) if isinstance(request, dict) else ""

    def plan(stored: Any, next_index: int) -> Any:
        return plan_extension(
            stored, request, next_index=next_index, max_trials=settings.max_trials_per_study
        )

    try:
        study, added, replayed = store.extend_study(
            study_id, request, plan, digest=digest, idempotency_key=key
        )
    except ValidationError as exc:
        raise _validation(exc) from exc
    public = study_public(study)
    return StudyExtended(**public.model_dump(), added_trials=added), replayed


@router.post(
    "/{study_id}/extend",
    response_model=StudyExtended,
    dependencies=[WriterDep],
    responses={**_NOT_FOUND, **_WRITE, 409: {"model": ErrorPublic}, 415: {"model": ErrorPublic}},
    openapi_extra=_body_of(_EXTEND_SCHEMA),
)
async def extend_study(
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    study_id: StudyId,
    idempotency_key: IdempotencyKey = None,
) -> StudyExtended:
    """Add trials to a study: more seeds, new values on its axes, more lr_search slots.

    Stored trials and their metrics stay as they are; only the new trials run, and the study
    runs again until they finish. Fields that define the stored trials cannot change (422)."""
    raw = await request.body()
    media_type = request.headers.get("content-type", "application/json")
    study, replayed = await run_in_threadpool(
        _extend, store, settings, study_id, raw, media_type, idempotency_key
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return study


@router.post(
    "/{study_id}/retry",
    response_model=StudyRetried,
    dependencies=[WriterDep],
    responses={**_NOT_FOUND, **_WRITE, 409: {"model": ErrorPublic}},
)
def retry_study(store: StoreDep, study_id: StudyId) -> StudyRetried:
    """Requeue a study's failed and cancelled trials with a fresh attempt budget (resumes a
    cancelled study); trials with a result never run again."""
    study, requeued = store.retry_study(study_id)
    return StudyRetried(**study_public(study).model_dump(), requeued_trials=requeued)


@router.delete(
    "/{study_id}",
    status_code=204,
    response_class=Response,
    dependencies=[WriterDep],
    responses={**_NOT_FOUND, **_WRITE, 409: {"model": ErrorPublic}},
)
def delete_study(store: StoreDep, study_id: StudyId) -> Response:
    """Delete a finished or cancelled study with its trials and metrics."""
    store.delete_study(study_id)
    return Response(status_code=204)


def _csv_lines(columns: list[str], rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    for n, row in enumerate(rows):
        yield ("," if n else "") + json.dumps(row)
    yield "]"


@router.get(
    "/{study_id}/export",
    response_class=StreamingResponse,
    responses={
        **_NOT_FOUND,
        200: {"content": {"text/csv": {}, "application/json": {}}},
    },
)
def export_study(
    store: StoreDep, study_id: StudyId, format: Literal["csv", "json"] = "csv"
) -> StreamingResponse:
    """Download one row per trial and epoch, with the trial's config columns (CSV or JSON)."""
    store.get_study(study_id)  # 404 before the stream starts
    filename = f"study-{study_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        rows = store.iter_export(study_id)
        return StreamingResponse(
            _csv_lines(store.export_columns(), rows), media_type="text/csv", headers=headers
        )
    rows = store.iter_export(study_id, diagnostics=True)
    return StreamingResponse(_json_lines(rows), media_type="application/json", headers=headers)
