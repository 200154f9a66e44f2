"""Property tests (hypothesis): spec expansion and the summary statistics hold for any input.

- Expansion: a spec expands into exactly the product of its axes (trial_count agrees without
  expanding), no two trials share a configuration, indices run 0..n-1, and the result is the same
  every time and whether the spec arrived as JSON or YAML.
- Statistics: a 95% t interval contains the mean; a paired comparison is antisymmetric (A vs B
  is minus B vs A: same n, mirrored interval, same p-value); the summary's intervals contain
  their means for any mix of trial outcomes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcw import catalog
from service import stats
from service.spec import expand, load_document, parse_spec, plan_study, spec_hash, trial_count
from service.vocabulary import TRIAL_SCORED

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

lrs = st.floats(min_value=1e-6, max_value=1000, allow_nan=False, allow_infinity=False)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "property",
        "dataset": "digits",
        "methods": draw(
            st.lists(st.sampled_from(sorted(catalog.METHODS)), min_size=1, unique=True)
        ),
        "depths": draw(
            st.lists(st.integers(1, catalog.MAX_DEPTH), min_size=1, max_size=4, unique=True)
        ),
        "widths": draw(st.lists(st.integers(1, 4096), min_size=1, max_size=3, unique=True)),
        "activations": draw(
            st.lists(st.sampled_from(sorted(catalog.ACTIVATIONS)), min_size=1, unique=True)
        ),
        "seeds": draw(st.integers(1, 4)),
    }
    if draw(st.booleans()):
        spec["learning_rates"] = draw(st.lists(lrs, min_size=1, max_size=4, unique=True))
    else:
        low = draw(st.floats(1e-5, 1.0))
        spec["lr_search"] = {
            "low": low,
            "high": low * 10,
            "trials_per_cell": draw(st.integers(1, 5)),
        }
    return spec


def _axes_product(spec: dict[str, Any]) -> int:
    lr_axis = (
        len(spec["learning_rates"])
        if "learning_rates" in spec
        else spec["lr_search"]["trials_per_cell"]
    )
    return (
        len(spec["methods"])
        * len(spec["depths"])
        * len(spec["widths"])
        * len(spec["activations"])
        * lr_axis
        * spec["seeds"]
    )


@FAST
@given(specs())
def test_expansion_is_the_product_of_the_axes_without_duplicates(spec: dict[str, Any]) -> None:
    parsed, trials = plan_study(spec, max_trials=10**9)
    assert len(trials) == trial_count(parsed) == _axes_product(spec)
    assert [t.index for t in trials] == list(range(len(trials)))
    keys = {(t.method, t.depth, t.width, t.activation, t.lr, t.slot, t.seed) for t in trials}
    assert len(keys) == len(trials)
    configs = {json.dumps(t.config, sort_keys=True) for t in trials}
    # lr_search trials of different slots differ only by slot until an LR is assigned.
    assert len(configs) == len(trials) // (1 if "learning_rates" in spec else _slots(spec))
    assert {t.seed for t in trials} == set(range(spec["seeds"]))


def _slots(spec: dict[str, Any]) -> int:
    return int(spec["lr_search"]["trials_per_cell"])


@FAST
@given(specs())
def test_expansion_is_deterministic_and_the_same_from_json_and_yaml(spec: dict[str, Any]) -> None:
    _, first = plan_study(spec, max_trials=10**9)
    _, again = plan_study(json.loads(json.dumps(spec)), max_trials=10**9)
    from_yaml = load_document(yaml.safe_dump(spec).encode(), "application/yaml")
    _, via_yaml = plan_study(from_yaml, max_trials=10**9)
    assert first == again == via_yaml
    assert spec_hash(parse_spec(spec)) == spec_hash(parse_spec(from_yaml))
    assert expand(parse_spec(spec)) == first


accuracies = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(accuracies, min_size=2, max_size=40))
def test_the_t_interval_contains_the_mean(values: list[float]) -> None:
    ci, note = stats.t_interval(values)
    assert ci is not None and note is None
    low, high = ci
    mean = sum(values) / len(values)
    assert low <= mean + 1e-12 and mean <= high + 1e-12
    assert high - low >= 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(accuracies, accuracies), min_size=1, max_size=12))
def test_the_paired_difference_is_antisymmetric(pairs: list[tuple[float, float]]) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    ab, ba = stats.compare(a, b), stats.compare(b, a)
    assert ab["n"] == ba["n"] == len(pairs)
    assert ab["mean_diff"] == -ba["mean_diff"]  # a - b is exactly -(b - a) in floating point
    if ab["ci95"] is None:
        assert ba["ci95"] is None and ab["ci95_note"] == ba["ci95_note"]
    else:
        assert ab["ci95"] == [-ba["ci95"][1], -ba["ci95"][0]]
        assert ab["ci95"][0] <= ab["mean_diff"] + 1e-12 <= ab["ci95"][1] + 2e-12
    if ab["p_value"] is None:
        assert ba["p_value"] is None and ab["p_value_note"] == ba["p_value_note"]
    else:
        assert math.isclose(ab["p_value"], ba["p_value"], rel_tol=1e-9, abs_tol=1e-12)
        assert 0.0 <= ab["p_value"] <= 1.0


statuses = st.sampled_from(["completed", "diverged", "stopped_early", "failed", "pending"])


@st.composite
def outcomes(draw: st.DrawFn) -> list[stats.TrialOutcome]:
    rows = []
    seeds = draw(st.integers(1, 6))
    for method in ("plain", "bn", "lcw"):
        for lr in draw(st.lists(st.sampled_from([0.01, 0.1, 1.0]), min_size=1, unique=True)):
            for seed in range(seeds):
                status = draw(statuses)
                scored = status in TRIAL_SCORED
                rows.append(
                    stats.TrialOutcome(
                        method=method,
                        depth=3,
                        width=100,
                        activation="sigmoid",
                        lr=lr,
                        seed=seed,
                        status=status,
                        val_acc=draw(accuracies) if scored else None,
                        test_acc=draw(accuracies) if scored else None,
                    )
                )
    return rows


@settings(max_examples=200, deadline=None)
@given(outcomes())
def test_summary_intervals_contain_their_means(rows: list[stats.TrialOutcome]) -> None:
    summary = stats.summarize(rows)
    for cell in summary["cells"]:
        if cell["test_acc_ci95"] is not None:
            low, high = cell["test_acc_ci95"]
            assert low - 1e-12 <= cell["test_acc_mean"] <= high + 1e-12
    for comparison in summary["comparisons"]:
        assert comparison["method"] == "lcw" and comparison["baseline"] in ("plain", "bn")
        if comparison["ci95"] is not None:
            low, high = comparison["ci95"]
            assert low - 1e-12 <= comparison["mean_diff"] <= high + 1e-12
