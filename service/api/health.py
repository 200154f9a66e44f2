"""Liveness (`/healthz`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StoreDep
from service.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def healthz(store: StoreDep) -> HealthPublic | JSONResponse:
    """Report whether the service and its database answer."""
    try:
        store.ping()
    except Exception:
        body = HealthPublic(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ok", database="ok")


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: studies and trials by status, request latency."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
