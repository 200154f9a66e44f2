"""/livez, /readyz and /healthz on a live app (SQLite and PostgreSQL). The database stopped for
real is in tests/reliability/test_faults.py (a private PostgreSQL stopped mid-study: /livez 200,
/readyz and /healthz 503, then 200 again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.db import head_revision


def test_live_and_ready_on_a_migrated_database(client: Any) -> None:
    assert client.get("/livez").json() == {"status": "ok", "database": "not checked"}
    for probe in ("/readyz", "/healthz"):
        r = client.get(probe)
        assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def test_a_schema_behind_the_code_is_not_ready(client: Any) -> None:
    store = client.app.state.store
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
    try:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["database"] == (
            f"schema at 0005, this code needs {head_revision()} (run: lcw-sweep db upgrade)"
        )
        assert client.get("/livez").status_code == 200
    finally:
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()}
            )
    assert client.get("/readyz").status_code == 200
