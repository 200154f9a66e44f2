"""Every figure block in README.md is exactly what its script renders from its saved results
file (no retraining, no re-measuring: the test reads the files the scripts saved)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import docs, gpu_doc, run
from examples import study_table
from examples.paper import claims


def _study(name: str) -> Callable[[], str]:
    return lambda: study_table.render(json.loads(study_table.results_file(name).read_text()))


BLOCKS: dict[str, Callable[[], str]] = {
    "bench": lambda: run.table(json.loads((docs.ROOT / "benchmarks" / "results.json").read_text())),
    **{study_table.block(name): _study(name) for name in study_table.STUDIES},
    claims.BLOCK: lambda: claims.render(json.loads(claims.RESULTS.read_text())),
    gpu_doc.BLOCK: lambda: gpu_doc.render(json.loads(gpu_doc.RESULTS.read_text())),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_the_readme_block_is_rendered_from_its_saved_results(name: str) -> None:
    block = docs.read_block(name)
    assert block is not None, f"README.md has no {name} block"
    assert block.strip() == BLOCKS[name]().strip()


def test_write_block_replaces_only_its_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    x = "<!-- x:start -->\nold\n<!-- x:end -->"
    y = "<!-- y:start -->\nkeep\n<!-- y:end -->"
    readme.write_text(f"a\n{x}\nb \\1 $0\n{y}\n")
    monkeypatch.setattr(docs, "README", readme)
    assert docs.write_block("x", "new \\1 text")
    assert docs.read_block("x") == "new \\1 text" and docs.read_block("y") == "keep"
    assert "b \\1 $0" in readme.read_text()
    assert not docs.write_block("z", "nothing")


def test_the_gpu_results_are_what_a_gpu_check_folder_merges_into(tmp_path: Path) -> None:
    saved = json.loads(gpu_doc.RESULTS.read_text())
    (tmp_path / "gpu_bench.json").write_text(json.dumps(saved["bench"]))
    (tmp_path / "gpu_tests.json").write_text(json.dumps(saved["tests"]))
    (tmp_path / "pytest.log").write_text(f"....\n==== {saved['pytest']} ====\n")
    assert gpu_doc.merge(tmp_path) == saved
