"""Schemathesis against the app's own /openapi.json: generated requests to every operation.

In-process (ASGI) against a real SQLite database, 130 generated cases per operation (over 1,000
in all, valid and invalid): no response is a 5xx, and every response's status code, content type,
headers and body match what the OpenAPI document says. The trial cap is lowered to 50 so that
valid generated specs stay cheap to store. A second run has tokens configured, so the 401
answers are documented and checked too.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from service.config import Settings
from service.main import create_app

CASES_PER_OPERATION = 130
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def _schema(**overrides: Any) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="lcw-fuzz-"))
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp / 'lcw.db'}", max_trials_per_study=50, **overrides)
    )
    from service.db import upgrade_database

    upgrade_database(app.state.engine)  # schemathesis calls the app without its lifespan
    return schemathesis.openapi.from_asgi("/openapi.json", app)


SEEN: Counter[tuple[str, int]] = Counter()  # (operation, status) over the open run
open_schema = _schema()
guarded_schema = _schema(api_tokens="fuzz-token")
FUZZ = settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is reproducible
)


def test_every_operation_is_fuzzed() -> None:
    operations = {(op.method.upper(), op.path) for op in _operations(open_schema)}
    assert len(operations) >= 9 and len(operations) * CASES_PER_OPERATION >= 1000, operations


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
@open_schema.parametrize()
@FUZZ
def test_open_api_conforms_to_its_document(case: Any) -> None:
    response = case.call_and_validate(checks=CHECKS)
    SEEN[(f"{case.method} {case.path}", response.status_code)] += 1


@pytest.mark.slow
@guarded_schema.include(method=["POST", "DELETE"]).parametrize()
@settings(FUZZ, max_examples=40)
def test_guarded_writes_conform_to_their_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)


@pytest.mark.slow
def test_the_fuzzing_reached_success_and_rejection_paths() -> None:
    """Runs after the open run: its cases hit both accepted and refused requests."""
    if not SEEN:
        pytest.skip("run with the fuzz tests")
    assert sum(SEEN.values()) >= 1000
    statuses = {status for _, status in SEEN}
    assert {200, 201, 404, 422} <= statuses, SEEN
    assert SEEN[("POST /api/studies", 201)] > 0 and SEEN[("POST /api/studies", 422)] > 0, SEEN
