"""Alembic environment for the lcw-sweep schema (run through ``service.db.upgrade_database``).

The engine comes from ``config.attributes["engine"]`` (set in code, so no alembic.ini or working
directory is needed), else from the ``sqlalchemy.url`` option or the service settings. The whole
upgrade runs in one transaction that first takes a lock, so that an API server and a dispatcher
starting together do not both create the tables: PostgreSQL takes an advisory lock, SQLite
begins with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from service.db import make_engine, writer
from service.models import Base

# Any fixed number: the key of the advisory lock that serializes concurrent upgrades.
_PG_MIGRATION_LOCK = 7_270_341


def _engine() -> tuple[Engine, bool]:
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine, False
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from service.config import get_settings

        url = get_settings().effective_database_url
    return make_engine(url), True


def run_migrations_online() -> None:
    engine, owned = _engine()
    try:
        with writer(engine).connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                )
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                transactional_ddl=True,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run `lcw-sweep db upgrade`"
    )
run_migrations_online()
