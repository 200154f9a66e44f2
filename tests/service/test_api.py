"""REST API through a real HTTP client (TestClient) against the app, on both databases."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from svc_helpers import SMALL, SPEC, SPEC_TRIALS, result, snapshot

from service.store import Store

RUN_INFO = {"versions": {"lcw": "0.1.0", "torch": "2.x"}, "device": "cpu", "node": "n1"}


def _store(client: TestClient) -> Store:
    return client.app.state.store  # type: ignore[attr-defined,no-any-return]


def _finish_all(client: TestClient, accs: Callable[[Any], tuple[float, float]]) -> None:
    store = _store(client)
    while batch := store.claim_trials("w", limit=100, lease_seconds=60):
        for c in batch:
            store.write_metrics("w", [(c.id, {"epoch": e, "val_acc": 0.1 * e}) for e in (0, 1)])
            val, test = accs(c)
            store.complete_trial(
                "w", c.id, status="completed", result=result(val, test), run_info=RUN_INFO
            )


def test_create_read_and_list(client: TestClient) -> None:
    r = client.post("/api/studies", json=SPEC)
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["status"] == "queued" and study["trial_count"] == SPEC_TRIALS
    assert study["progress"]["total"] == SPEC_TRIALS == study["progress"]["pending"]
    assert study["spec"]["methods"] == SPEC["methods"] and study["spec"]["max_retries"] == 2
    got = client.get(f"/api/studies/{study['id']}").json()
    assert got["id"] == study["id"] and got["created_at"] and got["started_at"] is None
    client.post("/api/studies", json=SMALL)
    listing = client.get("/api/studies", params={"limit": 1}).json()
    assert listing["count"] == 2 and [s["name"] for s in listing["data"]] == ["small"]
    assert client.get("/api/studies", params={"offset": 1}).json()["data"][0]["id"] == study["id"]
    assert client.get("/api/studies", params={"status": "running"}).json() == {
        "data": [],
        "count": 0,
    }
    r = client.get("/api/studies", params={"status": "bogus"})
    assert r.status_code == 422 and "'queued'" in r.json()["detail"][0]["msg"]


def test_yaml_body_is_the_same_spec(client: TestClient) -> None:
    text = yaml.safe_dump(SPEC)
    r = client.post(
        "/api/studies",
        content=text,
        headers={"Content-Type": "application/yaml", "Idempotency-Key": "k-yaml"},
    )
    assert r.status_code == 201 and r.json()["trial_count"] == SPEC_TRIALS
    again = client.post("/api/studies", json=SPEC, headers={"Idempotency-Key": "k-yaml"})
    assert again.status_code == 201 and again.json()["id"] == r.json()["id"]
    bad = client.post(
        "/api/studies", content="name: [unclosed", headers={"Content-Type": "text/yaml"}
    )
    assert bad.status_code == 422 and "YAML" in bad.json()["detail"][0]["msg"]
    r = client.post("/api/studies", content="x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_trials_filters_and_detail(client: TestClient) -> None:
    sid = client.post("/api/studies", json=SPEC).json()["id"]
    base = f"/api/studies/{sid}/trials"
    page = client.get(base, params={"limit": 5, "offset": 2}).json()
    assert page["count"] == SPEC_TRIALS and [t["index"] for t in page["data"]] == [2, 3, 4, 5, 6]
    lcw = client.get(base, params={"method": "lcw", "depth": 20, "activation": "relu"}).json()
    assert lcw["count"] == 9
    assert {(t["method"], t["depth"], t["activation"]) for t in lcw["data"]} == {
        ("lcw", 20, "relu")
    }
    assert client.get(base, params={"width": 100, "status": "pending"}).json()["count"] == 216
    assert client.get(base, params={"status": "completed"}).json()["count"] == 0
    store = _store(client)
    [c] = store.claim_trials("w", limit=1, lease_seconds=60)
    store.write_metrics(
        "w",
        [
            (c.id, {"epoch": 0, "val_acc": 0.1, "diagnostics": {"layers": []}}),
            (c.id, {"epoch": 1, "val_acc": 0.7, "seconds": 1.5}),
        ],
    )
    store.complete_trial("w", c.id, status="completed", result=result(0.7, 0.6), run_info=RUN_INFO)
    trial = client.get(f"/api/trials/{c.id}").json()
    assert trial["status"] == "completed" and trial["attempt"] == 1
    assert trial["run_info"] == RUN_INFO and trial["test_acc"] == 0.6
    assert trial["config"]["method"] == "plain" and trial["error"] is None
    assert [(m["epoch"], m["val_acc"]) for m in trial["metrics"]] == [(0, 0.1), (1, 0.7)]
    assert trial["metrics"][0]["diagnostics"] == {"layers": []}
    assert client.get("/api/studies", params={"status": "running"}).json()["count"] == 1


def test_a_large_summary_is_sent_gzipped_to_clients_that_accept_it(client: TestClient) -> None:
    spec = {**SMALL, "methods": ["plain", "bn", "lcw", "bn_lcw"], "depths": [2, 3, 5],
            "activations": ["relu", "tanh"], "seeds": 2}  # fmt: skip
    sid = client.post("/api/studies", json=spec).json()["id"]
    _finish_all(client, lambda c: (0.5 + 0.01 * c.seed, 0.4 + 0.02 * c.seed))
    path = f"/api/studies/{sid}/summary"
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and len(plain.content) > 4096
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.json() == plain.json() and len(plain.json()["cells"]) == 24
    assert plain.content == _store(client).summary_json(sid)
    # A small summary goes out as it is, asked for gzip or not.
    small = client.post("/api/studies", json={**SMALL, "name": "small"}).json()["id"]
    r = client.get(f"/api/studies/{small}/summary", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "content-encoding" not in r.headers


def test_summary_export_and_metrics(client: TestClient) -> None:
    spec = {**SMALL, "seeds": 3, "learning_rates": [0.1, 1.0]}
    sid = client.post("/api/studies", json=spec).json()["id"]

    def accs(c: Any) -> tuple[float, float]:
        bonus = 0.1 if c.config["method"] == "lcw" else 0.0
        lr_bonus = 0.05 if c.config["lr"] == 1.0 else 0.0
        return 0.5 + bonus + lr_bonus + 0.01 * c.seed, 0.4 + bonus + 0.01 * c.seed

    _finish_all(client, accs)
    assert client.get(f"/api/studies/{sid}").json()["status"] == "completed"
    summary = client.get(f"/api/studies/{sid}/summary").json()
    cells = {c["method"]: c for c in summary["cells"]}
    assert cells["lcw"]["best_lr"] == 1.0 and cells["lcw"]["n"] == 3
    assert cells["lcw"]["test_acc_mean"] == pytest.approx(0.51)
    [comp] = summary["comparisons"]
    assert (comp["method"], comp["baseline"], comp["n"]) == ("lcw", "plain", 3)
    assert comp["mean_diff"] == pytest.approx(0.1)
    assert comp["p_value"] is None and "n=3" in comp["p_value_note"]

    r = client.get(f"/api/studies/{sid}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 12 * 2  # 12 trials x 2 epochs
    assert {"method", "lr", "seed", "optimizer.name", "epoch", "val_acc"} <= set(rows[0])
    assert rows[0]["epoch"] == "0" and rows[1]["epoch"] == "1"
    # One trial number, the id (as the pages, the CLI and the trial API give it): no index.
    assert next(iter(rows[0])) == "trial_id" and not {"trial_index", "index"} & set(rows[0])
    ids = {t["id"] for t in client.get(f"/api/studies/{sid}/trials").json()["data"]}
    assert {int(row["trial_id"]) for row in rows} == ids
    data = client.get(f"/api/studies/{sid}/export", params={"format": "json"}).json()
    assert len(data) == 24 and data[1]["val_acc"] == pytest.approx(0.1)
    assert client.get(f"/api/studies/{sid}/export", params={"format": "xml"}).status_code == 422

    text = client.get("/metrics").text
    assert 'lcw_trials{status="completed"} 12.0' in text
    assert 'lcw_studies{status="completed"} 1.0' in text
    assert "lcw_http_request_duration_seconds_bucket" in text
    assert 'route="/api/studies/{study_id}/summary"' in text
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_cancel_delete_and_missing(client: TestClient) -> None:
    sid = client.post("/api/studies", json=SMALL).json()["id"]
    assert client.delete(f"/api/studies/{sid}").status_code == 409
    r = client.post(f"/api/studies/{sid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["progress"]["cancelled"] == 4
    r = client.post(f"/api/studies/{sid}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]
    assert client.delete(f"/api/studies/{sid}").status_code == 204
    for method, path in (
        ("get", f"/api/studies/{sid}"),
        ("get", f"/api/studies/{sid}/trials"),
        ("get", f"/api/studies/{sid}/summary"),
        ("get", f"/api/studies/{sid}/export"),
        ("post", f"/api/studies/{sid}/cancel"),
        ("delete", f"/api/studies/{sid}"),
        ("get", "/api/trials/1"),
    ):
        r = client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert "does not exist" in r.json()["detail"]


def test_twenty_concurrent_submissions(client: TestClient) -> None:
    results: dict[int, Any] = {}
    barrier = threading.Barrier(20)

    def submit(n: int) -> None:
        barrier.wait()
        results[n] = client.post("/api/studies", json={**SMALL, "name": f"s{n}", "seeds": n + 1})

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r.status_code == 201 for r in results.values()), [
        r.text for r in results.values() if r.status_code != 201
    ]
    ids = {r.json()["id"] for r in results.values()}
    assert len(ids) == 20
    for n, r in results.items():
        study = client.get(f"/api/studies/{r.json()['id']}").json()
        assert study["name"] == f"s{n}"
        assert study["trial_count"] == study["progress"]["total"] == 2 * (n + 1)


def test_idempotency_key(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/api/studies", json=SMALL, headers=headers)
    again = client.post("/api/studies", json=SMALL, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    before = snapshot(engine)
    r = client.post("/api/studies", json={**SMALL, "seeds": 5}, headers=headers)
    assert r.status_code == 422 and "retry-1" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert snapshot(engine) == before
    # Concurrent retries of one submission create one study.
    got: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: got.append(
                client.post("/api/studies", json=SMALL, headers={"Idempotency-Key": "race"}).json()[
                    "id"
                ]
            )
        )
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 6 and len(set(got)) == 1
    assert client.get("/api/studies").json()["count"] == 2


def test_writes_need_a_valid_token(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "s3cret-token-value"
    client = make_client(api_tokens=f"other-token, {token}")
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = snapshot(engine)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
    ):
        r = client.post("/api/studies", json=SMALL, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"] == "Bearer"
    # 401 comes before the body is looked at: an invalid spec is still a 401.
    assert client.post("/api/studies", json={"bogus": 1}).status_code == 401
    assert snapshot(engine) == before
    ok = {"Authorization": f"Bearer {token}"}
    sid = client.post("/api/studies", json=SMALL, headers=ok).json()["id"]
    assert client.get(f"/api/studies/{sid}").status_code == 200  # reads stay open
    assert client.post(f"/api/studies/{sid}/cancel").status_code == 401
    assert client.post(f"/api/studies/{sid}/cancel", headers=ok).status_code == 200
    assert client.delete(f"/api/studies/{sid}").status_code == 401
    assert client.delete(f"/api/studies/{sid}", headers=ok).status_code == 204
    assert token not in caplog.text
    assert token not in repr(client.app.state.settings)  # type: ignore[attr-defined]


def test_oversize_bodies_are_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = snapshot(engine)
    big = {**SMALL, "description": "x" * 5000}
    r = client.post("/api/studies", json=big)
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    body = json.dumps(big).encode()

    def chunks() -> Any:  # no Content-Length: the streamed size is checked
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    r = client.post("/api/studies", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert snapshot(engine) == before
    assert client.post("/api/studies", json=SMALL).status_code == 201


def test_default_one_mib_cap(client: TestClient) -> None:
    r = client.post("/api/studies", json={**SMALL, "description": "x" * (1 << 20)})
    assert r.status_code == 413


def test_openapi_documents_the_spec_and_auth_only_when_required(
    make_client: Callable[..., TestClient],
) -> None:
    open_api = make_client().get("/openapi.json").json()
    body = open_api["paths"]["/api/studies"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/yaml"}
    spec = open_api["components"]["schemas"]["StudyCreate"]
    assert "lcw" in spec["properties"]["methods"]["items"]["enum"]
    assert "securitySchemes" not in open_api["components"]
    guarded = make_client(api_tokens="t").get("/openapi.json").json()
    assert "security" in guarded["paths"]["/api/studies"]["post"]
    assert "HTTPBearer" in guarded["components"]["securitySchemes"]


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.put("/api/studies/1")
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET"
