"""The store returns records, the API maps them: the two sides must agree field for field."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from pydantic import BaseModel

from service import records, schemas
from service.records import Progress, StudyRecord, TrialDetail, TrialRecord, field_names
from service.vocabulary import TRIAL_STATUSES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("record", "public"),
    [
        (StudyRecord, schemas.StudyPublic),
        (TrialRecord, schemas.TrialPublic),
        (TrialDetail, schemas.TrialDetailPublic),
        (records.EpochRecord, schemas.EpochMetricPublic),
        (Progress, schemas.Progress),
    ],
)
def test_every_response_field_comes_from_the_record(record: type, public: type[BaseModel]) -> None:
    # A field the response model has and the record lacks would fail every mapping at run
    # time; one the record has and the response lacks is dropped on the wire unnoticed.
    assert field_names(record) == list(public.model_fields)


def test_progress_counts_every_status_once() -> None:
    p = Progress()
    for n, status in enumerate(TRIAL_STATUSES, 1):
        p.count(status, n)
    p.count("no-such-status", 100)
    assert [getattr(p, s) for s in TRIAL_STATUSES] == list(range(1, len(TRIAL_STATUSES) + 1))
    assert p.total == sum(range(1, len(TRIAL_STATUSES) + 1)) + 100


def test_records_and_store_do_not_import_the_response_models() -> None:
    # The store's modules and the records may import the spec (StudyCreate) but no *Public.
    for path in [ROOT / "service/records.py", *sorted((ROOT / "service/store").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert not {n for n in names if n.endswith("Public")}, path
    assert all(dataclasses.is_dataclass(c) for c in (StudyRecord, TrialRecord, TrialDetail))


def test_the_api_maps_a_record_to_its_public_model() -> None:
    from datetime import UTC, datetime

    from service.api.public import study_public

    now = datetime(2026, 1, 2, tzinfo=UTC)
    study = StudyRecord(
        id=3, name="n", description=None, status="running", dataset="digits", model="mlp",
        owner="alice", priority=2,
        trial_count=2, spec={"seeds": 2}, progress=Progress(total=2, running=2),
        created_at=now, updated_at=now, started_at=now, finished_at=None,
    )  # fmt: skip
    out = study_public(study)
    assert isinstance(out, schemas.StudyPublic)
    assert out.model_dump() == {
        **{f: getattr(study, f) for f in field_names(StudyRecord) if f != "progress"},
        "progress": dataclasses.asdict(study.progress),
    }
