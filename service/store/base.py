"""The store's plumbing: sessions on the engine and its write engine, and small helpers."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from service.db import session_scope, writer
from service.errors import StoreError

_IN_BATCH = 1000  # ids per IN (...) list
log = logging.getLogger("service.store")


def _num(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clean_json(value: Any) -> Any:
    """Plain JSON data: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, float):  # first: most of a metrics row is floats (np.float64 too)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return clean_json(item())
    return str(value)


def _is(column: Any, value: Any) -> Any:
    """`column` = `value`, or IS NULL for None."""
    return column.is_(None) if value is None else column == value


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# A database that failed or is out of reach (connection refused or lost, a locked SQLite file
# past its busy timeout, an exhausted pool): the store's callers see one ``StoreError``. An
# IntegrityError is a constraint the store itself handles (idempotent creation), not this.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, DisconnectionError)


@contextmanager
def _translated(scope: Any) -> Iterator[Session]:
    """`scope` (a ``session_scope``) with database failures raised as ``StoreError``."""
    try:
        with scope as session:
            yield session
    except _UNAVAILABLE as exc:
        why = _first_line(exc)
        raise StoreError(f"the database is unavailable ({why}); retry shortly") from exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class StoreBase:
    """Sessions on one database (``engine``) and its writer engine (``service.db.writer``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = writer(engine)

    def _read(self) -> Any:
        return _translated(session_scope(self.engine))

    def _write(self) -> Any:
        return _translated(session_scope(self._writer))

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def ping(self) -> None:
        """Run a trivial query; raises when the database is unreachable."""
        with self._read() as s:
            s.execute(text("SELECT 1"))
