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


def require_writer(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """Refuse a write without a valid bearer token when LCW_API_TOKENS is set; returns the
    token's owner name (None: auth is off, or the token has no name)."""
    entries = settings.token_owners()
    if not entries:
        return None
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("this write needs 'Authorization: Bearer <token>'")
    matched, owner = token_owner(credentials.credentials, entries)
    if not matched:
        raise UnauthorizedError("the bearer token is not valid")
    return owner


def token_owner(token: str, entries: list[tuple[str | None, str]]) -> tuple[bool, str | None]:
    """(whether `token` is one of `entries`, its owner name or None); every entry is compared
    in constant time, with no early exit."""
    matched, owner = False, None
    for name, candidate in entries:
        if hmac.compare_digest(token.encode(), candidate.encode()) and not matched:
            matched, owner = True, name
    return matched, owner


WriterDep = Depends(require_writer)
OwnerDep = Annotated[str | None, Depends(require_writer)]
