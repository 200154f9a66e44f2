"""Database failures reach the store's callers as one error type (``service.errors.StoreError``,
503 with Retry-After over HTTP), and a constraint the store handles itself is not one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from testkit import free_port

from service.config import Settings
from service.db import make_engine
from service.errors import StoreError
from service.main import create_app
from service.store import Store


def _unreachable() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2"


def test_an_unreachable_database_is_a_store_error_with_its_cause() -> None:
    store = Store(make_engine(_unreachable()))
    for call in (lambda: store.get_study(1), lambda: store.claim_trials("w", limit=1,
                 lease_seconds=5), store.ping):  # fmt: skip
        with pytest.raises(StoreError) as info:
            call()
        assert info.value.status_code == 503
        assert isinstance(info.value.__cause__, OperationalError)
        assert "the database is unavailable" in str(info.value)


def test_the_api_answers_503_with_retry_after() -> None:
    settings = Settings(database_url=_unreachable(), api_tokens=[], migrate_on_start=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/api/studies/1")
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "5"
        assert "the database is unavailable" in r.json()["detail"]
        assert client.get("/healthz").status_code == 503
