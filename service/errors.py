"""The service's one exception hierarchy; ``install_handlers`` maps it to HTTP responses.

Routes and the store raise these domain errors, never bare HTTP exceptions. Validation failures
(pydantic's and our own :class:`SpecError`) share one body shape,
``{"detail": [{"loc": [...], "msg": "path: what is wrong", "type": ...}]}``, and every message
starts with the field path (``methods[2]``, ``optimizer.name``) and names the allowed values.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def detail(self) -> Any:
        return self.message


class NotFoundError(ServiceError):
    """A study or trial id that does not exist."""

    status_code = 404


class ConflictError(ServiceError):
    """The request is valid but not in the resource's current state (cancel a finished study)."""

    status_code = 409


class UnauthorizedError(ServiceError):
    """A write without a valid bearer token while tokens are configured."""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class PayloadTooLargeError(ServiceError):
    status_code = 413


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415


class SpecError(ServiceError):
    """An invalid study spec field; `loc` is the path inside the body, e.g. ("methods", 2)."""

    status_code = 422

    def __init__(self, loc: Sequence[str | int], message: str, *, kind: str = "value_error"):
        path = format_loc(loc)
        super().__init__(f"{path}: {message}" if path else message)
        self.loc = tuple(loc)
        self.kind = kind

    def detail(self) -> Any:
        return [{"loc": ["body", *self.loc], "msg": self.message, "type": self.kind}]


class StoreError(ServiceError):
    """The database failed or could not be reached (the store's one error type for database
    failures; the SQLAlchemy error is its ``__cause__``). Nothing of the call was stored: it
    may be retried."""

    status_code = 503
    headers = {"Retry-After": "5"}

    def __init__(self, message: str = "the database is unavailable; retry shortly") -> None:
        super().__init__(message)


class IdempotencyKeyReusedError(ServiceError):
    """The same Idempotency-Key sent again with a different request (IETF draft: 422)."""

    status_code = 422

    def __init__(self, key: str, *, what: str = "spec") -> None:
        new = "a new study" if what == "spec" else f"a new {what}"
        super().__init__(
            f"Idempotency-Key '{key}' was already used with a different {what}; "
            f"send a new key for {new}"
        )
        self.key = key

    def detail(self) -> Any:
        return [{"loc": ["header", "Idempotency-Key"], "msg": self.message, "type": "idempotency"}]


def format_loc(loc: Sequence[str | int]) -> str:
    """('methods', 2) -> 'methods[2]'; ('optimizer', 'name') -> 'optimizer.name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_WHERE = {"body", "query", "path", "header", "cookie"}

# Bounded repr of a rejected input: a YAML body of a few hundred bytes can alias a list into
# billions of elements ("billion laughs"); a plain repr of it would take minutes and gigabytes.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 4, 4, 4
_REPR.maxstring = _REPR.maxother = 60


def shown(value: Any) -> str:
    """A short repr of `value` (at most about 60 characters, whatever its size)."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_LITERAL = re.compile(r"^Input should be (.+)$")


def _message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif error.get("type") == "literal_error":
        match = _LITERAL.match(msg)
        if match:
            msg = f"{shown(error.get('input'))} is not one of {match.group(1)}"
    elif error.get("type") == "extra_forbidden" and not msg.startswith("unknown field"):
        msg = "unknown field (not part of the spec)"  # kept when a "did you mean" follows
    elif str(error.get("type", "")).endswith(("_type", "_parsing")) and "input" in error:
        msg = f"{msg}, got {shown(error['input'])}"
    return msg


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors -> [{"loc", "msg": "path: message", "type"}], JSON-safe."""
    detail = []
    for error in errors:
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
        inner = loc[1:] if loc and loc[0] in _WHERE else loc
        path = format_loc(inner)
        msg = _message(error)
        if path and not msg.startswith(f"{path}: "):
            msg = f"{path}: {msg}"
        detail.append({"loc": loc, "msg": msg, "type": str(error.get("type", "value_error"))})
    return detail


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


def install_handlers(app: FastAPI) -> None:
    """Map ServiceError, request validation and HTTP errors to JSON responses."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail()}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; a path served by
            # several routes (GET and DELETE /api/studies/{id}) must list all of them.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
