"""Fixtures for the service tests: one `db_url` parametrized over SQLite and PostgreSQL.

PostgreSQL is the shared local server (127.0.0.1:5432, trust auth). Other people run tests
against it at the same time, so this session creates its own uniquely named database and drops
it at the end; each test then starts from empty tables. An unreachable server fails the
PostgreSQL tests loudly (CI starts it), it does not skip them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from svc_helpers import fresh_pg_database, libpq_url

from service.config import Settings
from service.db import make_engine, upgrade_database
from service.main import create_app
from service.store import Store


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """This session's PostgreSQL database, migrated to head once."""
    with fresh_pg_database() as url:
        engine = make_engine(url)
        upgrade_database(engine)
        engine.dispose()
        yield url


def _truncate(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE trial_metrics, trials, study_cells, studies RESTART IDENTITY CASCADE"
        )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A database URL with the schema at head and no rows: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lcw.db'}"
        return
    url = request.getfixturevalue("pg_session_url")
    _truncate(url)
    yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.fixture
def make_client(db_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build a started TestClient for an app on `db_url`; settings overrides as keywords."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        settings = Settings(database_url=db_url, **overrides)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
