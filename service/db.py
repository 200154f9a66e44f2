"""Database engines, the one transaction scope, and schema upgrades (Alembic, run in code).

SQLite (the embedded default) gets WAL, foreign keys and a busy timeout on every connection, and
its transactions are begun by us: a write transaction starts with ``BEGIN IMMEDIATE`` so that it
takes the write lock up front and waits (busy timeout) instead of failing later with "database
is locked" when it tries to upgrade a read lock. PostgreSQL uses psycopg 3 with pre-ping, so a
restarted server costs one retried connection, not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.config import normalize_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Execution option that marks an engine (and its connections) as writing: see module docstring.
_WRITE_OPTION = "lcw_write"


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 30_000, echo: bool = False) -> Engine:
    """Create an engine for `url` (sqlite:///path or postgresql+psycopg://...)."""
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms=sqlite_busy_timeout_ms, echo=echo)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, echo=echo)
    raise ValueError(
        f"database_url: backend '{parsed.get_backend_name()}' is not 'sqlite' or 'postgresql'"
    )


def _sqlite_engine(url: str, *, busy_timeout_ms: int, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not BEGIN behind our back
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE from studies to trials
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that its transactions take the write lock first (SQLite)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back when it raises.

    Pass ``writer(engine)`` for a transaction that writes.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> Any:
    """An Alembic Config that works from any directory and migrates through `engine`."""
    return alembic_config_for(engine)


def alembic_config_for(engine: Engine | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (idempotent; safe when several processes start at once)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's revision (the schema this code expects)."""
    from alembic.script import ScriptDirectory

    config = alembic_config_for(None)
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
