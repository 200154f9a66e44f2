"""The FastAPI application factory: ``create_app(settings)`` builds one app with its own engine.

Run it with ``lcw-sweep serve`` (uvicorn, factory mode). The app upgrades the schema on
startup, caps request bodies (``LCW_MAX_BODY_BYTES``: Content-Length and the streamed size),
times every request for Prometheus, and maps ``service.errors`` to HTTP codes. CORS stays
closed unless ``LCW_CORS_ORIGINS`` names origins. While it serves, it sends the webhooks of
finished studies (``service.notify``). Nothing here imports torch.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lcw import __version__
from service import stats
from service.api import compare, datasets, health, report, studies, trials
from service.config import Settings, get_settings
from service.db import make_engine, upgrade_database
from service.errors import install_handlers
from service.notify import Notifier
from service.schemas import StudyCreate, StudyExtend
from service.store import Store
from service.vocabulary import STUDY_STATUSES, TRIAL_STATUSES
from service.web import pages
from workers.metrics import EMBEDDED

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: by Content-Length up front, else while it streams in.

    The (small) body is buffered here and replayed to the app, so no route ever sees more.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        too_large = (
            b'{"detail":"request body exceeds the limit of %d bytes (LCW_MAX_BODY_BYTES)"}'
            % self.max_bytes
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, b'{"detail":"invalid Content-Length"}')
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, too_large)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class LatencyMiddleware:
    """Observe every request's duration, labelled by method, route template and status."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - start
            )


class StateCollector(Collector):
    """Studies and trials per status, read from the database at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("lcw_database_up", "1 when the database answered the scrape")
        try:
            study_counts, trial_counts = self.store.counts_by_status()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, doc, statuses, counts in (
            ("lcw_studies", "Studies by status", STUDY_STATUSES, study_counts),
            ("lcw_trials", "Trials by status", TRIAL_STATUSES, trial_counts),
        ):
            family = GaugeMetricFamily(name, doc, labels=["status"])
            for status in statuses:
                family.add_metric([status], counts.get(status, 0))
            yield family


def _openapi_with_spec(app: FastAPI, *, auth: bool) -> Callable[[], dict[str, Any]]:
    """OpenAPI that documents StudyCreate (the POST body is parsed by hand for YAML), and
    the bearer token only when this server requires one (`auth`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        spec = StudyCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(spec.pop("$defs", {}))
        components["StudyCreate"] = spec
        extend = StudyExtend.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(extend.pop("$defs", {}))
        components["StudyExtend"] = extend
        if not auth:
            schema["components"].pop("securitySchemes", None)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app for `settings` (default: the environment's, ``get_settings()``)."""
    settings = settings or get_settings()
    engine = make_engine(
        settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    store = Store(engine)

    def _settle() -> None:
        # scipy takes ~1 s to import; load it now, not in the first summary request.
        stats.warm_up()
        # What the started process holds (modules, the app, scipy) lives as long as it does:
        # frozen out of the collector's full passes, which rescanned all of it every few large
        # requests (~100 ms pauses in the summary's p95 at 20,000 trials).
        gc.collect()
        gc.freeze()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(upgrade_database, engine)
        # Before the server answers: done in the background, it competed (~1 s of CPU) with
        # the first study submitted right after start.
        await run_in_threadpool(_settle)
        # Webhooks of finished studies (service.notify): sent from here, not the dispatcher.
        notifier = Notifier.from_settings(store, settings)
        notifier.start()
        _app.state.notifier = notifier
        yield
        await run_in_threadpool(notifier.stop)
        engine.dispose()

    app = FastAPI(
        title="lcw-sweep",
        version=__version__,
        description="Hyperparameter sweeps comparing linearly constrained weights with baselines.",
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    registry.register(StateCollector(store))
    registry.register(EMBEDDED)  # `serve`'s embedded dispatcher's lcw_dispatcher_* metrics
    latency = Histogram(
        "lcw_http_request_duration_seconds",
        "HTTP request latency",
        ["method", "route", "status"],
        registry=registry,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = store
    app.state.registry = registry

    install_handlers(app)
    app.include_router(studies.router)
    app.include_router(trials.router)
    app.include_router(report.router)  # GET /api/studies/{id}/report
    app.include_router(compare.router)
    app.include_router(datasets.router)
    app.include_router(health.router)
    app.include_router(pages.router)  # the web view: /, /studies/{id}, /trials/{id}, /static

    # Added last = outermost: latency sees every response, the body cap runs before routing.
    # Responses over 4 KB go out gzipped to clients that accept it, at level 1 (a 20k-trial
    # study's page, ~330 KB, and its summary, ~250 KB, shrink ~20x in ~1 ms); static assets
    # arrive already compressed (Content-Encoding set) and pass through.
    app.add_middleware(GZipMiddleware, minimum_size=4096, compresslevel=1)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(LatencyMiddleware, histogram=latency)
    app.openapi = _openapi_with_spec(app, auth=bool(settings.api_tokens))  # type: ignore[method-assign]
    return app
