"""README's initialization blocks are exactly what examples/depth_profile.py renders: the
defaults table from lcw's own definitions, the depth profile from the saved results file."""

from __future__ import annotations

import json

from benchmarks import docs
from examples import depth_profile
from lcw import catalog


def test_the_init_defaults_block_is_rendered_from_lcw_init() -> None:
    block = docs.read_block("init-defaults")
    assert block is not None, "README.md has no init-defaults block"
    assert block.strip() == depth_profile.render_defaults().strip()
    rows = [line.split(" | ")[0] for line in block.splitlines()[2:]]
    assert rows == [f"| {a}" for a in catalog.ACTIVATIONS]


def test_the_depth_profile_block_is_rendered_from_the_saved_results() -> None:
    results = json.loads(depth_profile.RESULTS.read_text())
    # The saved run covers every registered method and activation, and the setup the test
    # bounds (tests/lcw/test_depth_profile.py).
    assert list(results["profiles"]) == list(catalog.ACTIVATIONS)
    assert all(
        list(by_method) == list(catalog.METHODS) for by_method in results["profiles"].values()
    )
    assert {k: results["setup"][k] for k in depth_profile.SETUP} == depth_profile.SETUP
    block = docs.read_block("depth-profile")
    assert block is not None, "README.md has no depth-profile block"
    assert block.strip() == depth_profile.render(results).strip()
