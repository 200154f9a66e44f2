"""Web pages: the studies list with the New study form, a study's comparison page, a trial page.

Server-rendered with Jinja2 (autoescaped; data for the charts travels as JSON in
``<script type="application/json">`` islands, never spliced into HTML or JS). Charts are drawn by
plotly.js's basic partial bundle (scatter, bar, pie), shipped in static/ and served from here
(no CDN: works offline); the heatmaps of paired differences are HTML tables. The full bundle is
four times larger; with the cartesian one and plotly heatmaps a 20k-trial study page's first
visit took 1.81 s on the 2-core benchmark machine, 1.26 s with this one and tables (median of
5; the file is the npm package plotly.js-basic-dist-min, v4.1.1, MIT, unmodified). The pages read
through the same ``Store`` methods and summary as the JSON API; the scripts write through the
API itself (``POST /api/studies``, ``.../cancel``) with the token in the Authorization header.
No inline scripts or handlers, so a strict Content-Security-Policy holds (styles need
'unsafe-inline' for plotly).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lcw import catalog
from service import vocabulary
from service.api.deps import SettingsDep, StoreDep
from service.api.public import study_public, trial_public
from service.compare import CompareQueryError, compare_studies, parse_study_ids
from service.errors import NotFoundError
from service.failures import describe
from service.models import utcnow
from service.store import Store
from service.vocabulary import STUDY_FINISHED, TRIAL_RETRIABLE, TRIAL_STATUSES
from service.web import formatting, views

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_YEAR = 365 * 24 * 3600

COMPARE_CHOICES = 50  # other studies offered by a study page's "compare with..." control

EXAMPLE_SPEC = """\
# One trial per method x depth x width x activation x learning rate x seed.
name: deep-sigmoid-mlp
description: Does LCW make deep sigmoid MLPs trainable?
dataset: digits          # shipped with scikit-learn: runs offline
model: mlp
methods: [plain, bn, lcw, bn_lcw]
depths: [5, 20]
widths: [100]
activations: [sigmoid]
learning_rates: [0.01, 0.1, 1.0]
seeds: 3                 # paired across methods
epochs: 5
"""


# -- templates and assets (built on first use, one set per app) --------------------------------


@dataclass
class _Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str


class _Web:
    """Per-app template environment and static asset cache (created lazily, never at import)."""

    def __init__(self) -> None:
        env = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            num=formatting.fmt_num,
            lr=formatting.fmt_lr,
            duration=formatting.fmt_duration,
            ago=formatting.fmt_ago,
            time=formatting.fmt_time,
            pretty=formatting.pretty,
        )
        env.globals["static_url"] = self.static_url
        # The status vocabulary (``service.vocabulary``): the templates' groupings, and the
        # data island base.html hands to the scripts (common.js: LCW.vocabulary).
        env.globals["vocabulary"] = vocabulary.as_json()
        env.filters["with_result"] = vocabulary.with_result
        self.templates = Jinja2Templates(env=env)
        self._assets: dict[str, _Asset] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _path(name: str) -> Path | None:
        path = _HERE / "static" / name
        # Only plain files directly inside static/ (the route's name never contains "/").
        if path.suffix in _MEDIA and path.is_file() and path.parent == _HERE / "static":
            return path
        return None

    def asset(self, name: str) -> _Asset | None:
        with self._lock:
            if name in self._assets:
                return self._assets[name]
            path = self._path(name)
            if path is None:
                return None
            body = path.read_bytes()
            asset = _Asset(
                body=body,
                gzipped=gzip.compress(body, 6) if len(body) > 1024 else None,
                etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
                media_type=_MEDIA[path.suffix],
            )
            self._assets[name] = asset
            return asset

    def static_url(self, name: str) -> str:
        """The asset's URL with a content version, so it can be cached for a year."""
        asset = self.asset(name)
        version = asset.etag.strip('"')[:12] if asset else "0"
        return f"/static/{name}?v={version}"


def _web(request: Request) -> _Web:
    state = request.app.state
    web = getattr(state, "web", None)
    if web is None:
        web = state.web = _Web()
    return web


def _render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    return _web(request).templates.TemplateResponse(
        request, template, context, status_code=status, headers=_SECURITY_HEADERS
    )


def _not_found(request: Request, what: str) -> HTMLResponse:
    return _render(request, "not_found.html", {"what": what}, status=404)


def _int_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**62 else None


# -- routes -------------------------------------------------------------------------------------


@router.get("/static/{name}")
def static_asset(request: Request, name: str) -> Response:
    """A static asset (app CSS/JS, plotly.js's basic bundle), cached by version."""
    asset = _web(request).asset(name)
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain")
    versioned = "v" in request.query_params
    headers = {
        "ETag": asset.etag,
        "Cache-Control": f"public, max-age={_YEAR}, immutable" if versioned else "no-cache",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


def _studies_context(store: Store, page: int) -> dict[str, Any]:
    studies = store.list_studies(limit=views.STUDIES_PAGE, offset=(page - 1) * views.STUDIES_PAGE)
    pages = max(1, math.ceil(studies.count / views.STUDIES_PAGE))
    return {
        "studies": studies.data,
        "count": studies.count,
        "page": page,
        "pages": pages,
        "live": any(s.status not in STUDY_FINISHED for s in studies.data),
    }


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() else 1


@router.get("/", response_class=HTMLResponse)
def index(request: Request, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    """The studies list and the New study form."""
    context = _studies_context(store, _page_number(request))
    context.update(
        auth=bool(settings.api_tokens),
        example=EXAMPLE_SPEC,
        methods=list(catalog.METHODS),
        datasets=list(catalog.DATASETS),
        activations=list(catalog.ACTIVATIONS),
    )
    return _render(request, "index.html", context)


@router.get("/fragments/studies", response_class=HTMLResponse)
def studies_fragment(request: Request, store: StoreDep) -> HTMLResponse:
    """The studies table alone (the list page refreshes it while studies run)."""
    return _render(request, "_studies.html", _studies_context(store, _page_number(request)))


def _table_context(store: Store, study_id: int, request: Request) -> dict[str, Any]:
    query = views.TableQuery.parse(request.query_params)
    trials = views.trial_page(store, study_id, query)
    return {
        "trials": trials.data,
        "trial_count": trials.count,
        "query": query,
        "table_pages": max(1, math.ceil(trials.count / views.TABLE_PAGE)),
        "table_page": views.TABLE_PAGE,
        "colors": views.METHOD_COLORS,
        "study_id": study_id,
    }


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(
    request: Request, store: StoreDep, settings: SettingsDep, study_id: str
) -> HTMLResponse:
    """One study: progress, comparison charts, diagnostics and the trial table."""
    sid = _int_id(study_id)
    if sid is None:
        return _not_found(request, f"study {study_id}")
    try:
        study = store.get_study(sid)
        summary = store.summary(sid)
        table = _table_context(store, sid, request)
    except NotFoundError:
        return _not_found(request, f"study {sid}")
    cell = views.default_cell(summary)
    first_failed = None
    if study.progress.failed:
        failed = store.list_trials(sid, status="failed", limit=1)
        first_failed = failed.data[0] if failed.data else None
    p = study.progress
    context = {
        "study": study,
        "study_json": study_public(study).model_dump(mode="json"),  # what GET /api/studies/ID says
        "summary": summary,
        "scored": p.completed + p.diverged + p.stopped_early,
        "first_failed": first_failed,
        "timing": views.timing(study, utcnow()),
        "config": views.page_config(study, summary, auth=bool(settings.api_tokens)),
        "cell_data": None if cell is None else views.cell_data(store, sid, summary, cell),
        "auth": bool(settings.api_tokens),
        "methods": [m for m in catalog.METHODS if m in study.spec.get("methods", [])],
        "depths": study.spec.get("depths") or [],
        "activations": study.spec.get("activations") or [],
        "statuses": TRIAL_STATUSES,
        "finished": study.status in STUDY_FINISHED,
        "uses_depth": catalog.MODELS[study.model].uses_depth,
        "failure": describe(first_failed.error) if first_failed else None,
        "retriable": sum(getattr(p, status) for status in TRIAL_RETRIABLE),
        "other_methods": [m for m in catalog.METHODS if m not in study.spec.get("methods", [])],
        "other_activations": [
            a for a in catalog.ACTIVATIONS if a not in study.spec.get("activations", [])
        ],
        # The "compare with..." control: the latest other studies.
        "compare_with": [s for s in store.list_studies(limit=COMPARE_CHOICES).data if s.id != sid],
        **table,
    }
    return _render(request, "study.html", context)


@router.get("/studies/{study_id}/table", response_class=HTMLResponse)
def trial_table(request: Request, store: StoreDep, study_id: str) -> HTMLResponse:
    """One page of the study's trial table (filters, order and page from the query)."""
    sid = _int_id(study_id)
    try:
        if sid is None:
            raise NotFoundError(f"study {study_id} does not exist")
        return _render(request, "_trials.html", _table_context(store, sid, request))
    except NotFoundError:
        return _not_found(request, f"study {study_id}")


def _optional_int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


@router.get("/studies/{study_id}/cell")
def cell_view(
    request: Request,
    store: StoreDep,
    study_id: str,
    activation: str,
    depth: str | None = None,
    width: str | None = None,
) -> JSONResponse:
    """Learning curves and layer diagnostics of one cell, each method at its best LR."""
    sid = _int_id(study_id)
    try:
        if sid is None:
            raise NotFoundError(f"study {study_id} does not exist")
        summary = store.summary(sid)
    except NotFoundError as exc:
        return JSONResponse({"detail": exc.message}, status_code=404)
    cell = (_optional_int(depth), _optional_int(width), activation)
    if cell not in views.cells_of(summary):
        return JSONResponse({"detail": f"study {sid} has no cell {cell}"}, status_code=404)
    return JSONResponse(views.cell_data(store, sid, summary, cell))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, store: StoreDep) -> HTMLResponse:
    """Studies side by side: their shared cells and accuracy over depth (GET /api/compare)."""
    raw = request.query_params.getlist("studies")
    ids: list[int] = []
    try:
        ids = parse_study_ids(raw)
        compared = compare_studies(store, ids).model_dump(mode="json")
        error, status = None, 200
    except CompareQueryError as exc:
        compared, error, status = None, exc.message, 422
    except NotFoundError as exc:
        compared, error, status = None, exc.message, 404
    context = {"compared": compared, "error": error, "status": status, "query": ",".join(raw)}
    return _render(request, "compare.html", context, status=status)


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(request: Request, store: StoreDep, trial_id: str) -> HTMLResponse:
    """One trial: config, status, error, run info, curves and diagnostics."""
    tid = _int_id(trial_id)
    if tid is None:
        return _not_found(request, f"trial {trial_id}")
    try:
        trial = store.get_trial(tid)
        study = store.get_study(trial.study_id)
    except NotFoundError:
        return _not_found(request, f"trial {tid}")
    metrics = [m.model_dump(mode="json") for m in trial_public(trial).metrics]
    context = {
        "trial": trial,
        "study": study,
        "color": views.METHOD_COLORS.get(trial.method, "#333333"),
        "metrics": metrics,
        "last_epoch": metrics[-1]["epoch"] if metrics else None,
        "result": {k: v for k, v in (trial.result or {}).items() if k not in ("epochs", "config")},
    }
    return _render(request, "trial.html", context)
