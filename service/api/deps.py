"""Dependencies shared by the routes: settings, a session, the store, and the write guard.

Everything is reached through ``request.app.state`` (set by ``create_app``), never module
globals, so each app (and each test) has its own; ``app.dependency_overrides`` replaces them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import session_scope
from service.errors import UnauthorizedError
from service.store import Store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
SessionDep = Annotated[Session, Depends(get_session)]

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
