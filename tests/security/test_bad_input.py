"""Hand-written bad submissions: each is a 4xx whose message names the field; nothing is stored.

tests/service/test_spec.py already has a table of invalid specs (unknown names, empty methods,
negative and zero LRs, the trial cap, wrong types, unknown fields...). This table adds what a
hostile or careless client sends beyond that: NaN and infinities (JSON literals and YAML
``.nan``), negative counts, empty and huge axes, wrong shapes, malformed and malicious YAML
(a Python object tag, a "billion laughs" alias bomb), bodies nested past the parser's stack,
oversize bodies, a wrong media type and a malformed Idempotency-Key. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from svc_helpers import fresh_pg_database, snapshot, study_spec

from service.config import Settings
from service.main import create_app

GOOD = study_spec("bad input")
PWNED = Path("/tmp/lcw-sweep-yaml-object-was-built")

JSON = "application/json"
YAML = "application/yaml"


def _json(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def _raw_json(field: str, literal: str) -> bytes:
    """GOOD with `field` set to a JSON literal Python's json accepts (NaN, Infinity)."""
    body = json.dumps({**GOOD, field: "@@"})
    return body.replace('"@@"', literal).encode()


_BOMB = b"""
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
name: *h
dataset: digits
methods: [lcw]
learning_rates: [0.1]
"""

# (case, body, content type, status, loc of the error, words its message must contain)
CASES: list[tuple[str, bytes, str, int, list[Any], list[str]]] = [
    (
        "NaN lr (JSON literal)",
        _raw_json("learning_rates", "[NaN]"),
        JSON,
        422,
        ["learning_rates", 0],
        ["learning_rates[0]", "finite"],
    ),
    (
        "Infinity lr",
        _raw_json("learning_rates", "[0.1, Infinity]"),
        JSON,
        422,
        ["learning_rates", 1],
        ["learning_rates[1]", "finite"],
    ),
    ("-Infinity gain", _raw_json("gain", "-Infinity"), JSON, 422, ["gain"], ["gain"]),
    (
        "YAML .nan timeout",
        b"name: y\ndataset: digits\nmethods: [lcw]\nlearning_rates: [0.1]\ntrial_timeout_s: .nan\n",
        YAML,
        422,
        ["trial_timeout_s"],
        ["trial_timeout_s", "finite"],
    ),
    (
        "YAML .inf lr_search",
        b"name: y\ndataset: digits\nmethods: [lcw]\nlr_search: {low: 0.01, high: .inf}\n",
        YAML,
        422,
        ["lr_search", "high"],
        ["lr_search.high", "finite"],
    ),
    ("negative epochs", _json(epochs=-3), JSON, 422, ["epochs"], ["epochs", "greater than"]),
    ("negative seeds", _json(seeds=-1), JSON, 422, ["seeds"], ["seeds", "greater than"]),
    ("zero batch size", _json(batch_size=0), JSON, 422, ["batch_size"], ["batch_size"]),
    (
        "negative weight decay",
        _json(optimizer={"weight_decay": -0.1}),
        JSON,
        422,
        ["optimizer", "weight_decay"],
        ["optimizer.weight_decay", "greater than"],
    ),
    ("negative width", _json(widths=[-100]), JSON, 422, ["widths", 0], ["widths[0]"]),
    (
        "negative gpu",
        _json(resources={"gpu": -0.5}),
        JSON,
        422,
        ["resources", "gpu"],
        ["resources.gpu"],
    ),
    ("empty depths", _json(depths=[]), JSON, 422, ["depths"], ["depths", "at least 1"]),
    ("empty activations", _json(activations=[]), JSON, 422, ["activations"], ["at least 1"]),
    ("empty widths", _json(widths=[]), JSON, 422, ["widths"], ["at least 1"]),
    (
        "zero lr_search budget",
        _json(learning_rates=None, lr_search={"low": 0.01, "high": 1, "trials_per_cell": 0}),
        JSON,
        422,
        ["lr_search", "trials_per_cell"],
        ["trials_per_cell"],
    ),
    (
        "huge grid",
        _json(
            depths=list(range(1, 201)), learning_rates=[i / 100 for i in range(1, 101)], seeds=100
        ),
        JSON,
        422,
        [],
        ["trials", "cap of", "depths", "seeds"],
    ),
    ("huge width", _json(widths=[65537]), JSON, 422, ["widths", 0], ["widths[0]", "65536"]),
    ("too many depths", _json(depths=list(range(1, 202))), JSON, 422, ["depths"], ["depths"]),
    (
        "lr as a string",
        _json(learning_rates=["0.1"]),
        JSON,
        422,
        ["learning_rates", 0],
        ["learning_rates[0]", "number", "'0.1'"],
    ),
    ("fractional depth", _json(depths=[2.5]), JSON, 422, ["depths", 0], ["depths[0]", "integer"]),
    ("name as a number", _json(name=123), JSON, 422, ["name"], ["name", "string"]),
    ("optimizer as a string", _json(optimizer="sgd"), JSON, 422, ["optimizer"], ["optimizer"]),
    ("resources as a list", _json(resources=[1, 0]), JSON, 422, ["resources"], ["resources"]),
    (
        "diagnostics as text",
        _json(diagnostics="yes"),
        JSON,
        422,
        ["diagnostics"],
        ["diagnostics", "boolean"],
    ),
    ("methods null", _json(methods=None), JSON, 422, ["methods"], ["methods"]),
    (
        "malformed YAML",
        b"name: y\nmethods: [lcw, plain\ndataset: digits\n",
        YAML,
        422,
        [],
        ["YAML"],
    ),
    ("YAML tab indentation", b"name: y\nmethods:\n\t- lcw\n", YAML, 422, [], ["YAML"]),
    (
        "YAML Python object tag",
        f"!!python/object/apply:os.system ['touch {PWNED}']\n".encode(),
        YAML,
        422,
        [],
        ["YAML"],
    ),
    ("YAML alias bomb", _BOMB, YAML, 422, ["name"], ["name", "string"]),
    (
        "JSON nested past the stack",
        b"[" * 100_000 + b"]" * 100_000,
        JSON,
        422,
        [],
        ["nested too deeply"],
    ),
    ("YAML nested past the stack", b"x: " + b"[" * 50_000, YAML, 422, [], ["nested too deeply"]),
    ("not UTF-8", b'{"name": "\xff\xfe"}', JSON, 422, [], ["JSON"]),
    ("oversize body", _json(description="x" * (1 << 20)), JSON, 413, [], ["LCW_MAX_BODY_BYTES"]),
    ("wrong media type", _json(), "text/plain", 415, [], ["Content-Type", "application/yaml"]),
    # The fair budget's init axis (init_scales, lr_search.init_scale) and per-method gains.
    ("empty init_scales", _json(init_scales=[]), JSON, 422, ["init_scales"], ["at least 1"]),
    (
        "non-positive init scale",
        _json(init_scales=[0.5, 0.0]),
        JSON,
        422,
        ["init_scales", 1],
        ["init_scales[1]", "greater than 0"],
    ),
    (
        "non-numeric init scale",
        _json(init_scales=["big"]),
        JSON,
        422,
        ["init_scales", 0],
        ["init_scales[0]", "number"],
    ),
    (
        "duplicate init scale",
        _json(init_scales=[1.0, 2.0, 1.0]),
        JSON,
        422,
        ["init_scales"],
        ["init_scales", "1.0", "twice"],
    ),
    (
        "init scale range low >= high",
        _json(
            learning_rates=None,
            lr_search={"low": 0.01, "high": 1, "init_scale": {"low": 2.0, "high": 0.5}},
        ),
        JSON,
        422,
        ["lr_search", "init_scale"],
        ["lr_search.init_scale", "high (0.5) must be greater than low (2.0)"],
    ),
    (
        "init_scales grid with lr_search",
        _json(learning_rates=None, lr_search={"low": 0.01, "high": 1}, init_scales=[0.5, 1.0]),
        JSON,
        422,
        ["init_scales"],
        ["init_scales", "lr_search.init_scale"],
    ),
    (
        "gain map naming an unknown method",
        _json(gain={"lcw": 1.0, "lwc": 2.0}),
        JSON,
        422,
        ["gain", "lwc"],
        ["'lwc'", "'plain'", "'bn_lcw'"],
    ),
    (
        "gain map naming a method outside the study",
        _json(gain={"bn": 2.0}),
        JSON,
        422,
        ["gain", "bn"],
        ["gain.bn", "'bn'", "not one of the study's methods"],
    ),
    (
        "non-positive gain in a map",
        _json(gain={"lcw": -1.0}),
        JSON,
        422,
        ["gain", "lcw"],
        ["gain.lcw", "greater than 0"],
    ),
    ("unknown bias mode", _json(bias="zero"), JSON, 422, ["bias"], ["'zero'", "'none'"]),
    ("unknown adjustment", _json(adjustment="bonferroni"), JSON, 422, ["adjustment"], ["'holm'"]),
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bad') / 'lcw.db'}"
        with TestClient(create_app(Settings(database_url=url))) as c:
            yield c
        return
    with fresh_pg_database() as url, TestClient(create_app(Settings(database_url=url))) as c:
        yield c


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("body", "media_type", "status", "loc", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_a_bad_submission_is_a_4xx_naming_the_field_and_stores_nothing(
    client: TestClient, body: bytes, media_type: str, status: int, loc: list[Any], words: list[str]
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = snapshot(engine)
    started = time.monotonic()
    r = client.post("/api/studies", content=body, headers={"Content-Type": media_type})
    assert time.monotonic() - started < 5  # refused quickly, whatever the body expands into
    assert r.status_code == status, r.text[:500]
    detail = r.json()["detail"]
    if isinstance(detail, str):  # 413/415: one message about the whole body
        message = detail
    else:
        matching = [d for d in detail if d["loc"] == ["body", *loc]]
        assert matching, detail
        message = matching[0]["msg"]
    for word in words:
        assert word in message, (word, message)
    assert len(r.content) < 10_000  # an error never echoes the body back at length
    assert snapshot(engine) == before
    assert not PWNED.exists()


@pytest.mark.parametrize("key", ["has space", "na\u00efve".encode(), "", "x" * 256])
def test_a_malformed_idempotency_key_is_422_naming_the_header(
    client: TestClient, key: str | bytes
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = snapshot(engine)
    r = client.post(
        "/api/studies", content=_json(), headers={"Content-Type": JSON, "Idempotency-Key": key}
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert snapshot(engine) == before
