"""Alembic: an empty database upgraded to head matches the models, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from svc_helpers import fresh_pg_database

from service.db import make_engine, upgrade_database
from service.models import Base, Study, StudyCell, Trial
from service.store import Store


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
            assert context.get_current_revision() == "0008"
        tables = set(inspect(engine).get_table_names())
        assert {"studies", "trials", "trial_metrics", "study_cells", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_migrations_ship_with_the_package() -> None:
    import service

    root = Path(service.__file__).parent / "migrations"
    assert (root / "env.py").is_file() and (root / "script.py.mako").is_file()
    assert (root / "alembic.ini").is_file() and list((root / "versions").glob("*.py"))


def test_upgrade_to_0003_gives_stored_studies_their_cells(empty_db_url: str) -> None:
    """Studies stored before study_cells existed get one row per cell, and summaries work."""
    engine = make_engine(empty_db_url)
    try:
        upgrade_database(engine, "0002")
        with engine.begin() as c:
            sid = c.execute(
                insert(Study).returning(Study.id),
                [{"name": "old", "status": "completed", "dataset": "digits", "model": "mlp",
                  "spec": {}, "trial_count": 4}],
            ).scalar_one()  # fmt: skip
            c.execute(
                insert(Trial),
                [
                    {"study_id": sid, "index": i, "cell_key": f"{m}|2|100|relu", "method": m,
                     "depth": 2, "width": 100, "activation": "relu", "seed": i // 2, "lr": 0.1,
                     "config": {}, "status": "completed", "attempt": 1, "max_retries": 0,
                     "resources": {}, "val_acc": 0.5, "test_acc": 0.25 * i}
                    for i, m in enumerate(["plain", "lcw", "plain", "lcw"])
                ],
            )  # fmt: skip
        upgrade_database(engine)
        with engine.connect() as c:
            rows = c.execute(select(StudyCell.cell_key, StudyCell.version)).all()
        assert sorted(rows) == [("lcw|2|100|relu", 0), ("plain|2|100|relu", 0)]
        summary = Store(engine).summary(sid)
        assert [(c.method, c.n) for c in summary.cells] == [("lcw", 2), ("plain", 2)]
        assert summary.comparisons[0].mean_diff == 0.25
    finally:
        engine.dispose()
