"""Dependencies shared by the routes: the app's settings, the store, and the write guard.

Everything is reached through ``request.app.state`` (set by ``create_app``), never module
globals, so each app (and each test) has its own; ``app.dependency_overrides`` replaces them.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.config import Settings
from service.errors import UnauthorizedError
from service.store import Store


def app_settings(request: Request) -> Settings:
    """The settings of the app serving `request` (``service.config.get_settings`` reads the
    environment's, once, for the app and the CLI)."""
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[Store, Depends(get_store)]

_bearer = HTTPBearer(auto_error=False, description="An LCW_API_TOKENS token (writes only)")


def token_matches(token: str, allowed: list[str]) -> bool:
    """Constant-time check of `token` against every allowed token (no early exit)."""
    ok = False
    for candidate in allowed:
        ok |= hmac.compare_digest(token.encode(), candidate.encode())
    return ok


def require_writer(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse a write without a valid bearer token when LCW_API_TOKENS is set."""
    allowed = settings.token_values()
    if not allowed:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("this write needs 'Authorization: Bearer <token>'")
    if not token_matches(credentials.credentials, allowed):
        raise UnauthorizedError("the bearer token is not valid")


WriterDep = Depends(require_writer)
