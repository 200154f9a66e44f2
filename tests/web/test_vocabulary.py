"""One status vocabulary (service.vocabulary): the pages receive it rather than redefining it,
and the API's, client's, CLI's and schema's statuses are the module's."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import vocabulary
from service.cli import common as cli
from service.client import STUDY_FINISHED, TRIAL_STATES
from service.config import Settings
from service.main import create_app
from service.schemas import Progress

STATIC = Path(__file__).resolve().parents[2] / "service" / "web" / "static"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("vocabulary")) / "web.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}", api_tokens=[]))) as c:
        yield c


def test_every_page_carries_the_vocabulary_of_the_python_module(client: TestClient) -> None:
    page = client.get("/").text
    island = re.search(r'<script type="application/json" id="lcw-vocabulary">(.*?)</script>',
                       page, re.S)  # fmt: skip
    assert island is not None
    assert json.loads(island.group(1)) == vocabulary.as_json()
    assert vocabulary.as_json()["trial_result"] == ["completed", "diverged", "stopped_early"]


@pytest.mark.parametrize("script", sorted(p.name for p in STATIC.glob("*.js")
                                          if not p.name.startswith("plotly")))  # fmt: skip
def test_no_script_lists_statuses_of_its_own(script: str) -> None:
    text = (STATIC / script).read_text()
    statuses = "|".join(vocabulary.TRIAL_STATUSES + vocabulary.STUDY_STATUSES)
    # A list of two or more status names, or a sum of Progress counts, is a second definition.
    assert not re.search(rf'\[\s*"({statuses})"\s*,\s*"({statuses})"', text), script
    assert not re.search(r"p\.completed\s*\+\s*p\.diverged", text), script


def test_the_api_client_cli_and_schema_use_the_module() -> None:
    assert tuple(TRIAL_STATES) == vocabulary.TRIAL_STATUSES
    assert set(STUDY_FINISHED) == vocabulary.STUDY_FINISHED
    assert [f for f in Progress.model_fields if f != "total"] == list(vocabulary.TRIAL_STATUSES)
    assert set(cli.STATE_STYLE) == set(vocabulary.TRIAL_STATUSES)
    assert set(cli.STUDY_STYLE) == set(vocabulary.STUDY_STATUSES)
    assert typing.get_args(vocabulary.TrialStatus) == vocabulary.TRIAL_STATUSES
    assert set(vocabulary.TRIAL_STATUSES) == vocabulary.TRIAL_TERMINAL | vocabulary.TRIAL_UNFINISHED
    assert vocabulary.TRIAL_SCORED | {vocabulary.TRIAL_STOPPED} == vocabulary.TRIAL_RESULT
    assert vocabulary.TRIAL_RETRIABLE <= vocabulary.TRIAL_TERMINAL - vocabulary.TRIAL_RESULT


def test_with_result_counts_the_result_statuses() -> None:
    p = Progress(pending=1, running=2, completed=3, diverged=4, stopped_early=5, failed=6,
                 cancelled=7, total=28)  # fmt: skip
    assert vocabulary.with_result(p) == 12
