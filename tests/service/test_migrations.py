"""Alembic: an empty database upgraded to head matches the models, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from svc_helpers import fresh_pg_database

from service.db import make_engine, upgrade_database
from service.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


def test_empty_database_upgraded_to_head_matches_models(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert inspect(engine).get_table_names() == []
        upgrade_database(engine)
        upgrade_database(engine)  # a second upgrade is a no-op
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == "0002"
        tables = set(inspect(engine).get_table_names())
        assert {"studies", "trials", "trial_metrics", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_migrations_ship_with_the_package() -> None:
    import service

    root = Path(service.__file__).parent / "migrations"
    assert (root / "env.py").is_file() and (root / "script.py.mako").is_file()
    assert (root / "alembic.ini").is_file() and list((root / "versions").glob("*.py"))
