"""Shared test data and helpers for tests/service (a plain module: conftest holds fixtures)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select
from testkit import PG_ADMIN_URL as PG_ADMIN_URL  # re-exported for this folder's tests
from testkit import fresh_pg_database as fresh_pg_database
from testkit import libpq_url as libpq_url
from testkit import study_spec as study_spec

from service.db import session_scope
from service.models import Study, Trial, TrialMetric


def snapshot(engine: Engine) -> tuple[int, int, int, Any]:
    """Row counts and the newest change: equal before and after = nothing stored changed."""
    with session_scope(engine) as s:
        return (
            s.scalar(select(func.count()).select_from(Study)) or 0,
            s.scalar(select(func.count()).select_from(Trial)) or 0,
            s.scalar(select(func.count()).select_from(TrialMetric)) or 0,
            s.scalar(select(func.max(Trial.updated_at))),
        )


SPEC: dict[str, Any] = {
    "name": "sigmoid-depth",
    "dataset": "mnist5k",
    "model": "mlp",
    "methods": ["plain", "bn", "lcw", "bn_lcw"],
    "depths": [5, 20, 50],
    "widths": [100],
    "activations": ["sigmoid", "relu"],
    "learning_rates": [0.01, 0.1, 1.0],
    "seeds": 3,
    "epochs": 5,
    "batch_size": 100,
    "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0},
    "resources": {"cpu": 1, "gpu": 0},
}
SPEC_TRIALS = 4 * 3 * 1 * 2 * 3 * 3  # 216

SMALL: dict[str, Any] = {
    "name": "small",
    "dataset": "digits",
    "methods": ["plain", "lcw"],
    "learning_rates": [0.1],
    "seeds": 2,
}


def lr_search_study(**search: Any) -> dict[str, Any]:
    """plain vs LCW on digits (depth 3, tanh, 5 seeds), learning rates searched in [0.001, 1];
    `search` completes the lr_search block (trials_per_cell, init_scale)."""
    return study_spec(
        "search",
        learning_rates=None,
        activations=["tanh"],
        lr_search={"low": 0.001, "high": 1.0, **search},
        seeds=5,
    )


def make_study(store: Any, spec: dict[str, Any] | None = None, **changes: Any) -> int:
    """Validate, expand and store a spec (SMALL by default); returns the study id."""
    from service.spec import plan_study

    parsed, trials = plan_study({**(spec or SMALL), **changes}, max_trials=5000)
    study, created = store.create_study(parsed, trials)
    assert created
    return int(study.id)


def result(val_acc: float, test_acc: float, **extra: Any) -> dict[str, Any]:
    return {
        "train_loss": 0.1,
        "train_acc": 0.99,
        "val_loss": 0.2,
        "val_acc": val_acc,
        "test_loss": 0.3,
        "test_acc": test_acc,
        **extra,
    }


def row_based_summary(store: Any, study_id: int) -> dict[str, Any]:
    """The study's summary by the row-by-row definition (``stats.summarize`` over every trial
    row in expansion order), as the API's model dumps it: the reference for ``Store.summary``."""
    from service.schemas import SummaryPublic
    from service.stats import TrialOutcome, summarize
    from service.store import OUTCOME_COLUMNS

    with session_scope(store.engine) as s:
        rows = [
            TrialOutcome(*row)
            for row in s.execute(
                select(*OUTCOME_COLUMNS).where(Trial.study_id == study_id).order_by(Trial.index)
            )
        ]
    status = store.get_study(study_id).status
    return SummaryPublic.model_validate(
        {"study_id": study_id, "status": status, **summarize(rows)}
    ).model_dump()
