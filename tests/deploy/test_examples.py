"""Every spec in examples/ passes the API's own validation, with the trial count it promises.

Each file goes through exactly what ``POST /api/studies`` does with a YAML body
(``load_document`` then ``plan_study`` under the default trial cap), so an example that the
server would refuse fails here. A new example needs a line in ``EXPECTED``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lcw import catalog
from service.config import Settings
from service.schemas import StudyCreate
from service.spec import PlannedTrial, load_document, plan_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# file -> trials (the comment at the top of each file says how it multiplies out)
EXPECTED = {
    "quick-demo.yaml": 3 * 3 * 3 * 6,  # methods x depths x LRs x seeds
    "paper-sigmoid-mnist.yaml": 4 * 5 * 8 * 6,  # methods x depths x LR slots x seeds
    "paper-sigmoid-fashion.yaml": 4 * 5 * 8 * 6,
    # methods x depths x activations x (LRs x init scales) x seeds
    "activations.yaml": 4 * 3 * 3 * (3 * 3) * 6,
    "vgg19-cifar10.yaml": 2 * 4 * 6,  # methods x LRs x seeds
    "vgg19-cifar100.yaml": 2 * 4 * 6,
}


def _plan(name: str) -> tuple[StudyCreate, list[PlannedTrial]]:
    data = load_document((EXAMPLES / name).read_bytes(), "application/yaml")
    return plan_study(data, max_trials=Settings().max_trials_per_study)


def test_every_example_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_valid_with_its_trial_count(name: str) -> None:
    spec, trials = _plan(name)
    assert len(trials) == EXPECTED[name]
    assert spec.name == name.removesuffix(".yaml")
    # Trial counts are a comment in the file as well: keep them in step.
    assert f"= {EXPECTED[name]} " in (EXAMPLES / name).read_text()


def test_quick_demo_runs_on_shipped_data_and_compares_deep_sigmoid_mlps() -> None:
    spec, _ = _plan("quick-demo.yaml")
    assert catalog.DATASETS[spec.dataset].shipped
    assert spec.activations == ["sigmoid"] and spec.model == "mlp"
    assert {"plain", "lcw", "bn"} <= set(spec.methods)
    assert max(spec.depths or []) >= 50
    assert spec.resources.gpu == 0
    assert spec.diagnostics  # the page's "why" panels have something to show


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_example_that_compares_methods_has_six_paired_seeds(name: str) -> None:
    spec, _ = _plan(name)
    assert len(spec.methods) >= 2 and spec.seeds >= 6


@pytest.mark.parametrize("name", ["paper-sigmoid-mnist.yaml", "paper-sigmoid-fashion.yaml"])
def test_paper_mlp_reproductions(name: str) -> None:
    spec, _ = _plan(name)
    assert spec.depths == [5, 10, 20, 50, 100]
    assert set(spec.methods) == {"plain", "bn", "lcw", "bn_lcw"}
    assert spec.activations == ["sigmoid"] and spec.lr_search is not None
    assert spec.dataset == ("mnist" if "mnist" in name else "fashion_mnist")


def test_activation_comparison() -> None:
    spec, _ = _plan("activations.yaml")
    assert set(spec.activations) == {"sigmoid", "tanh", "relu"}


@pytest.mark.parametrize("name", ["vgg19-cifar10.yaml", "vgg19-cifar100.yaml"])
def test_vgg_examples_reserve_gpus(name: str) -> None:
    spec, trials = _plan(name)
    assert spec.model == "vgg19" and set(spec.methods) == {"bn", "bn_lcw"}
    assert spec.dataset == name.removeprefix("vgg19-").removesuffix(".yaml")
    assert 0 < spec.resources.gpu <= 1
    assert all(t.config["device"] == "cuda" for t in trials)
