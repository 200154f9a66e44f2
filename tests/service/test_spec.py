"""Spec validation and expansion: bad specs are 4xx naming the field, good ones expand exactly."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from svc_helpers import SMALL, SPEC, SPEC_TRIALS, snapshot

from lcw.config import TrialConfig
from service.errors import SpecError
from service.spec import check_spec, expand, parse_spec, plan_study, spec_hash, trial_count


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


# (case, body, expected loc inside the body, words the message must contain)
BAD_SPECS: list[tuple[str, dict[str, Any], list[Any], list[str]]] = [
    (
        "unknown method",
        _with(methods=["plain", "bn", "foo"]),
        ["methods", 2],
        ["methods[2]", "'foo'", "'plain'", "'bn_lcw'"],
    ),
    (
        "unknown activation",
        _with(activations=["swish"]),
        ["activations", 0],
        ["'swish'", "'sigmoid'"],
    ),
    ("unknown dataset", _with(dataset="imagenet"), ["dataset"], ["'imagenet'", "'mnist5k'"]),
    ("unknown model", _with(model="resnet"), ["model"], ["'resnet'", "'vgg11'"]),
    (
        "unknown optimizer",
        _with(optimizer={"name": "rmsprop"}),
        ["optimizer", "name"],
        ["optimizer.name", "'adam'"],
    ),
    ("empty methods", _with(methods=[]), ["methods"], ["methods", "at least 1"]),
    ("empty learning rates", _with(learning_rates=[]), ["learning_rates"], ["at least 1"]),
    (
        "negative lr",
        _with(learning_rates=[0.1, -1.0]),
        ["learning_rates", 1],
        ["learning_rates[1]", "greater than 0"],
    ),
    ("zero lr", _with(learning_rates=[0.0]), ["learning_rates", 0], ["greater than 0"]),
    ("duplicate method", _with(methods=["lcw", "lcw"]), ["methods"], ["'lcw'", "twice"]),
    (
        "too many trials",
        _with(seeds=100, learning_rates=[0.001, 0.01, 0.1, 1.0]),
        [],
        ["9600 trials", "cap of 5000"],
    ),
    ("wrong type seeds", _with(seeds="3"), ["seeds"], ["seeds", "integer", "'3'"]),
    ("bool as int", _with(epochs=True), ["epochs"], ["epochs", "integer"]),
    ("wrong type methods", _with(methods="lcw"), ["methods"], ["methods", "list"]),
    ("unknown field", _with(learning_rate=[0.1]), ["learning_rate"], ["unknown field"]),
    (
        "unknown nested field",
        _with(resources={"cpu": 1, "tpu": 1}),
        ["resources", "tpu"],
        ["resources.tpu", "unknown field"],
    ),
    ("missing name", _with(name=None), ["name"], ["name", "required"]),
    ("long name", _with(name="x" * 201), ["name"], ["200"]),
    (
        "both lr axes",
        _with(lr_search={"low": 0.01, "high": 1.0}),
        ["learning_rates"],
        ["exactly one of learning_rates or lr_search"],
    ),
    ("no lr axis", _with(learning_rates=None), ["learning_rates"], ["exactly one"]),
    (
        "lr_search high <= low",
        _with(learning_rates=None, lr_search={"low": 1.0, "high": 0.1}),
        ["lr_search"],
        ["lr_search", "greater than low"],
    ),
    (
        "depths for vgg",
        _with(model="vgg11", dataset="cifar10"),
        ["depths"],
        ["only applies to model 'mlp'"],
    ),
    (
        "vgg on mnist",
        _with(model="vgg11", depths=None, widths=None),
        ["model"],
        ["(3, 32, 32)", "'synthetic'"],
    ),
    ("too deep", _with(depths=[5, 500]), ["depths", 1], ["depths[1]", "200"]),
    ("negative cpu", _with(resources={"cpu": -1}), ["resources", "cpu"], ["greater than 0"]),
    ("seeds over 100", _with(seeds=101), ["seeds"], ["100"]),
    ("packing not a bool", _with(packing="no"), ["packing"], ["packing", "bool"]),
    ("checkpoint_every 0", _with(checkpoint_every=0), ["checkpoint_every"], ["greater than"]),
    ("checkpoint_every 1.5", _with(checkpoint_every=1.5), ["checkpoint_every"], ["integer"]),
    (
        "grace period over epochs",
        _with(scheduler={"name": "asha", "grace_period": 9}),
        ["scheduler", "grace_period"],
        ["exceeds epochs"],
    ),
    ("unknown scheduler", _with(scheduler={"name": "pbt"}), ["scheduler", "name"], ["'asha'"]),
    (
        "momentum out of range",
        _with(optimizer={"name": "sgd", "momentum": 1.5}),
        ["optimizer", "momentum"],
        ["optimizer.momentum", "less than 1"],
    ),
    (
        "nesterov without momentum",
        _with(optimizer={"momentum": 0.0, "nesterov": True}),
        ["optimizer", "nesterov"],
        ["momentum > 0"],
    ),
]


@pytest.mark.parametrize(
    ("body", "loc", "words"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[Any], words: list[str]
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = snapshot(engine)
    r = client.post("/api/studies", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    match = [d for d in detail if d["loc"] == ["body", *loc]]
    assert match, detail
    for word in words:
        assert word in match[0]["msg"], (word, match[0]["msg"])
    assert snapshot(engine) == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"null"])
def test_malformed_bodies(client: TestClient, raw: bytes) -> None:
    r = client.post("/api/studies", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


def test_trial_cap_is_configurable(make_client: Any) -> None:
    client = make_client(max_trials_per_study=10)
    r = client.post("/api/studies", json={**SMALL, "seeds": 6})
    assert r.status_code == 422 and "cap of 10" in r.json()["detail"][0]["msg"]
    assert client.post("/api/studies", json={**SMALL, "seeds": 5}).status_code == 201


def test_expansion_is_deterministic_and_complete() -> None:
    spec = parse_spec(SPEC)
    check_spec(spec, max_trials=5000)
    trials = expand(spec)
    assert len(trials) == trial_count(spec) == SPEC_TRIALS
    assert [t.index for t in trials] == list(range(SPEC_TRIALS))
    assert expand(parse_spec(copy.deepcopy(SPEC))) == trials
    keys = {(t.method, t.depth, t.width, t.activation, t.lr, t.seed) for t in trials}
    assert len(keys) == SPEC_TRIALS
    first = trials[0]
    assert (first.cell_key, first.lr, first.seed) == ("plain|5|100|sigmoid", 0.01, 0)
    assert trials[1].seed == 1 and trials[3].lr == 0.1  # seeds vary fastest, then the LR
    assert trials[9].activation == "relu"
    expected = TrialConfig(
        dataset="mnist5k",
        method="plain",
        activation="sigmoid",
        depth=5,
        width=100,
        lr=0.01,
        epochs=5,
        batch_size=100,
        seed=0,
    ).to_dict()
    assert first.config == expected
    assert TrialConfig.from_dict(trials[-1].config).method == "bn_lcw"


def test_lr_search_expansion_and_fixed_layout_models() -> None:
    _spec, trials = plan_study(
        {
            "name": "s",
            "dataset": "synthetic",
            "model": "vgg11",
            "methods": ["bn", "bn_lcw"],
            "lr_search": {"low": 1e-4, "high": 1.0, "trials_per_cell": 4},
            "seeds": 3,
            "resources": {"cpu": 2, "gpu": 0.5},
        },
        max_trials=5000,
    )
    assert len(trials) == 2 * 4 * 3
    assert [(t.slot, t.seed) for t in trials[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert all(t.lr is None and t.config["lr"] is None for t in trials)
    assert trials[0].cell_key == "bn|-|-|sigmoid" and trials[0].depth is None
    assert trials[0].config["device"] == "cuda" and trials[0].config["threads"] == 2


def test_spec_hash_ignores_spelling_of_defaults() -> None:
    explicit = {**SMALL, "model": "mlp", "epochs": 5, "optimizer": {"name": "sgd"}}
    assert spec_hash(parse_spec(SMALL)) == spec_hash(parse_spec(explicit))
    assert spec_hash(parse_spec(SMALL)) != spec_hash(parse_spec({**SMALL, "seeds": 3}))


def test_spec_hash_of_a_stored_study_survives_fields_added_later() -> None:
    # A study stored before checkpoint_every existed was hashed without it: an Idempotency-Key
    # sent again after the upgrade must still match while the new field is at its default.
    import hashlib
    import json

    from service.spec import normalized

    later = {"checkpoint_every", "priority", "notify"}  # fields added after studies were stored
    before = {k: v for k, v in normalized(parse_spec(SMALL)).items() if k not in later}
    old = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode())
    assert spec_hash(parse_spec(SMALL)) == old.hexdigest()
    assert spec_hash(parse_spec({**SMALL, "checkpoint_every": 2})) != old.hexdigest()
    assert spec_hash(parse_spec({**SMALL, "priority": 1})) != old.hexdigest()


def test_spec_error_formats_paths() -> None:
    err = SpecError(("methods", 2), "bad")
    assert err.message == "methods[2]: bad"
    assert err.detail() == [
        {"loc": ["body", "methods", 2], "msg": "methods[2]: bad", "type": "value_error"}
    ]


# (case, body, the message of its one error: the allowed values, then the closest one)
DID_YOU_MEAN: list[tuple[str, dict[str, Any], str]] = [
    ("method", _with(methods=["plain", "lwc"]), "methods[1]: 'lwc' is not one of"),
    ("activation", _with(activations=["sigmod"]), "activations[0]: 'sigmod' is not one of"),
    ("dataset", _with(dataset="digitz"), "dataset: 'digitz' is not one of"),
    ("field", _with(learning_rate=[0.1]), "learning_rate: unknown field (not part of the spec)"),
    (
        "nested field",
        _with(optimizer={"nmae": "sgd"}),
        "optimizer.nmae: unknown field (not part of the spec)",
    ),
    ("case", _with(methods=["LCW"]), "methods[0]: 'LCW' is not one of"),
    ("gain map", _with(methods=["lcw"], gain={"lwc": 2.0}), "gain.lwc: 'lwc' is not one of"),
]
_CLOSEST = {
    "method": "lcw",
    "activation": "sigmoid",
    "dataset": "digits",
    "field": "learning_rates",
    "nested field": "name",
    "case": "lcw",
    "gain map": "lcw",
}


@pytest.mark.parametrize(("case", "body", "start"), DID_YOU_MEAN, ids=[c[0] for c in DID_YOU_MEAN])
def test_a_misspelt_name_gets_the_closest_allowed_one(
    client: TestClient, case: str, body: dict[str, Any], start: str
) -> None:
    r = client.post("/api/studies", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["msg"].startswith(start), error
    assert error["msg"].endswith(f" (did you mean '{_CLOSEST[case]}'?)"), error
    if case in ("field", "nested field"):
        assert error["type"] == "extra_forbidden"


def test_no_suggestion_when_nothing_is_close(client: TestClient) -> None:
    r = client.post("/api/studies", json=_with(methods=["zzz"], activations=["sigmod"]))
    assert r.status_code == 422
    by_loc = {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}
    # Every error keeps its own message; only the close one gets a hint.
    assert "did you mean" not in by_loc[("body", "methods", 0)]
    assert by_loc[("body", "methods", 0)].startswith("methods[0]: 'zzz' is not one of 'plain'")
    assert by_loc[("body", "activations", 0)].endswith("(did you mean 'sigmoid'?)")


@pytest.mark.parametrize(
    ("raw", "media", "where"),
    [
        (b"name: x\ndataset: digits\n  methods: [lcw]\n", "application/yaml", "line 3, column 10"),
        (b"name: x\nmethods: [lcw, plain\n", "application/yaml", "line 3, column 1"),
        (b'{"name": "x",\n "methods": }', "application/json", "line 2, column 13"),
    ],
)
def test_a_body_that_does_not_parse_names_line_and_column(
    client: TestClient, raw: bytes, media: str, where: str
) -> None:
    r = client.post("/api/studies", content=raw, headers={"Content-Type": media})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert f"body is not valid {media.split('/')[1].upper()}: {where}: " in error["msg"], error
    assert "<byte string>" not in error["msg"]
