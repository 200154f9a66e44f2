"""The errors of :mod:`service.client`: one base class whose ``str()`` is a single line fit
for a terminal, and the one-line rendering of an API error body."""

from __future__ import annotations

import json
from typing import Any

import httpx


class ClientError(Exception):
    """Base of every error this client raises; ``str()`` is one line."""


class ServerUnreachableError(ClientError):
    """No server answered at the URL (refused, DNS, timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the lcw-sweep server at {url} ({reason}); start one with "
            "`lcw-sweep serve` (or `make serve`), or point --url / LCW_URL at a running one"
        )
        self.url = url
        self.reason = reason


class APIError(ClientError):
    """The server answered with a 4xx/5xx; ``detail`` is the decoded ``detail`` of the body."""

    def __init__(self, status_code: int, detail: Any, *, hint: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        message = f"{status_code} {describe_detail(detail)}"
        super().__init__(f"{message} ({hint})" if hint else message)


class StudyTimeoutError(ClientError):
    """`wait` gave up before the study finished (the study itself keeps running)."""


def describe_detail(detail: Any) -> str:
    """An API error body's ``detail`` as one line: 422 lists become 'loc: msg; loc: msg'."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                # The service's messages already start with the field path (service.errors).
                parts.append(str(item.get("msg") or item))
            else:
                parts.append(str(item))
        return "; ".join(parts) or "invalid request"
    if isinstance(detail, dict):
        return json.dumps(detail, sort_keys=True)
    return " ".join(str(detail).split()) or "error"


def api_error(response: httpx.Response, *, has_token: bool) -> APIError:
    """The APIError of a 4xx/5xx response (a 401 says what to do about the token)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    hint = ""
    if response.status_code == 401:
        hint = "check the token" if has_token else "pass --token or set LCW_TOKEN"
    return APIError(response.status_code, detail, hint=hint)


def reason_of(exc: httpx.TransportError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "resolve" in text:
        return "unknown host"
    return str(exc).split("\n")[0] or type(exc).__name__


__all__ = [
    "APIError",
    "ClientError",
    "ServerUnreachableError",
    "StudyTimeoutError",
    "api_error",
    "describe_detail",
    "reason_of",
]
