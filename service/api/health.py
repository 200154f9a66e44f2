"""Probes and Prometheus metrics.

* ``/livez``: liveness. The process answers; nothing else is checked, so a database outage
  never gets an API pod restarted (the store reconnects by itself).
* ``/readyz``: readiness. The database answers and its schema is at this code's migration head
  (503 otherwise: the pod gets no traffic until both hold). ``/healthz`` is the same check,
  kept for existing probes and scripts.
* ``/metrics``: Prometheus.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StoreDep
from service.db import current_revision, head_revision
from service.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=HealthPublic)
def livez() -> HealthPublic:
    """Liveness: the process answers (the database is not checked)."""
    return HealthPublic(status="ok", database="not checked")


def _ready(store: StoreDep) -> HealthPublic | JSONResponse:
    try:
        store.ping()
        at = current_revision(store.engine)
    except Exception:
        body = HealthPublic(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    head = head_revision()
    if at != head:
        body = HealthPublic(
            status="unavailable",
            database=f"schema at {at or 'no revision'}, this code needs {head} "
            "(run: lcw-sweep db upgrade)",
        )
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ok", database="ok")


@router.get("/readyz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def readyz(store: StoreDep) -> HealthPublic | JSONResponse:
    """Readiness: the database answers and its schema is at this code's migration head."""
    return _ready(store)


@router.get("/healthz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def healthz(store: StoreDep) -> HealthPublic | JSONResponse:
    """The readiness check (``/readyz``) under its older name."""
    return _ready(store)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: studies and trials by status, request latency."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
