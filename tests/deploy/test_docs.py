"""The README's reference sections cover every spec field and every LCW_ variable.

They live in deploy/README-sections.md until merged into README.md; whichever holds the
configuration table is checked. Fields come from the schema, variables from what the code
reads, so a new setting or spec field without documentation fails here.
"""

from __future__ import annotations

from pathlib import Path

from deploy_helpers import REPO, env_vars_read
from pydantic import BaseModel

from service.schemas import LRSearch, OptimizerSpec, Resources, SchedulerSpec, StudyCreate


def _docs() -> str:
    for path in (REPO / "deploy" / "README-sections.md", REPO / "README.md"):
        if path.exists() and "## Configuration" in path.read_text():
            return path.read_text()
    raise AssertionError("no README with a '## Configuration' section")


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_spec_field_is_documented() -> None:
    text = _docs()
    for name in _fields(StudyCreate):
        assert f"| `{name}` |" in text, name
    for model in (OptimizerSpec, LRSearch, Resources, SchedulerSpec):
        for name in _fields(model):
            assert f"`{name}`" in text, f"{model.__name__}.{name}"


def test_every_variable_is_in_the_configuration_table() -> None:
    table = _docs().split("## Configuration", 1)[1]
    for name in sorted(env_vars_read()):
        assert f"| `{name}` |" in table, name


def test_the_examples_table_lists_every_example() -> None:
    text = _docs()
    for path in sorted((REPO / "examples").glob("*.yaml")):
        assert f"`{Path(path).name}`" in text, path.name


def test_the_paper_is_cited_as_published() -> None:
    """Kutsuna's LCW paper is ECML PKDD 2019 (LNCS 11906), never an ECCV paper."""
    wrong = "EC" + "CV 20"  # split so this file does not match itself
    roots = ("lcw", "service", "workers", "benchmarks", "examples", "deploy", "tests")
    files = [REPO / "README.md"] + [
        p for root in roots for p in (REPO / root).rglob("*") if p.suffix in (".py", ".yaml", ".md")
    ]
    assert not [str(p) for p in files if wrong in p.read_text(errors="ignore")]
    assert "ECML PKDD 2019" in (REPO / "README.md").read_text()
