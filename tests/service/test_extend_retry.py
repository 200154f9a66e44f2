"""Extending and retrying a stored study through the API, on SQLite and PostgreSQL.

Trials are run by a worker that speaks the store's queue (claim, write metrics, complete,
fail), as the Ray workers do; the tests check what the API and the database say afterwards.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from svc_helpers import SMALL, result, snapshot

from service.db import session_scope
from service.models import StudyChange, Trial, TrialMetric
from service.store import Store

OWNER = "test-worker"


def _run_all(store: Store, *, acc: float = 0.9) -> list[int]:
    """Claim and complete every pending trial (one metrics row per epoch); returns the ids."""
    ran: list[int] = []
    while claimed := store.claim_trials(OWNER, limit=50, lease_seconds=60):
        for c in claimed:
            store.write_metrics(OWNER, [(c.id, {"epoch": 1, "val_acc": acc, "test_acc": acc})])
            bonus = 0.01 * c.seed  # seeds differ, so paired tests have a spread
            store.complete_trial(
                OWNER, c.id, status="completed",
                result=result(acc + bonus, acc + bonus), run_info={"attempt": c.attempt},
            )  # fmt: skip
            ran.append(c.id)
    return ran


def _rows(store: Store, study_id: int) -> dict[int, tuple[Any, ...]]:
    """Every trial's identity, result and timestamps, with its metric rows."""
    with session_scope(store.engine) as s:
        trials = s.execute(
            select(Trial.id, Trial.index, Trial.cell_key, Trial.seed, Trial.lr, Trial.status,
                   Trial.test_acc, Trial.attempt, Trial.finished_at, Trial.config)
            .where(Trial.study_id == study_id)
        ).all()  # fmt: skip
        metrics = s.execute(
            select(TrialMetric.trial_id, TrialMetric.epoch, TrialMetric.val_acc, TrialMetric.id)
        ).all()
    return {t[0]: (*t, sorted(m[1:] for m in metrics if m[0] == t[0])) for t in trials}


def _submit(client: TestClient, spec: dict[str, Any] | None = None) -> int:
    r = client.post("/api/studies", json=spec or SMALL)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _n_by_method(client: TestClient, study_id: int) -> dict[str, int]:
    cells = client.get(f"/api/studies/{study_id}/summary").json()["cells"]
    return {c["method"]: c["n"] for c in cells}


def test_extend_seeds_runs_exactly_the_new_trials(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    _run_all(store)
    assert client.get(f"/api/studies/{sid}").json()["status"] == "completed"
    assert _n_by_method(client, sid) == {"plain": 2, "lcw": 2}
    before = _rows(store, sid)

    r = client.post(f"/api/studies/{sid}/extend", json={"seeds": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added_trials"] == 4 and body["trial_count"] == 8
    assert body["status"] == "running" and body["finished_at"] is None
    assert body["spec"]["seeds"] == 4
    assert body["progress"] == {**body["progress"], "pending": 4, "completed": 4, "total": 8}

    ran = _run_all(store)
    after = _rows(store, sid)
    assert sorted(ran) == sorted(set(after) - set(before))  # only the new trials ran
    assert {tid: after[tid] for tid in before} == before  # old rows and metrics untouched
    new = [after[tid] for tid in ran]
    assert sorted((t[2], t[3]) for t in new) == sorted(
        (cell, seed) for cell in ("plain|5|100|sigmoid", "lcw|5|100|sigmoid") for seed in (2, 3)
    )
    assert sorted(t[1] for t in new) == [4, 5, 6, 7]  # numbered after the stored trials
    assert client.get(f"/api/studies/{sid}").json()["status"] == "completed"
    assert _n_by_method(client, sid) == {"plain": 4, "lcw": 4}


def test_extend_with_a_learning_rate_and_a_method(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    _run_all(store)
    r = client.post(f"/api/studies/{sid}/extend", json={"learning_rates": [0.3], "methods": ["bn"]})
    assert r.status_code == 200, r.text
    # (plain, lcw, bn) x (0.1, 0.3) x 2 seeds = 12 trials, 4 of them stored.
    assert r.json()["added_trials"] == 8
    spec = r.json()["spec"]
    assert spec["learning_rates"] == [0.1, 0.3] and spec["methods"] == ["plain", "lcw", "bn"]
    _run_all(store)
    cells = client.get(f"/api/studies/{sid}/summary").json()["cells"]
    assert {c["method"]: sorted(x["lr"] for x in c["lrs"]) for c in cells} == {
        m: [0.1, 0.3] for m in ("plain", "lcw", "bn")
    }
    # Listing every value the study has, plus the new ones, is the same as listing the new.
    r = client.post(f"/api/studies/{sid}/extend", json={"learning_rates": [0.1, 0.3, 1.0]})
    assert r.status_code == 200 and r.json()["added_trials"] == 6


def test_extend_refuses_changes_removals_and_bad_values(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    _run_all(store)
    stored = snapshot(store.engine)
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        ({"epochs": 10}, ["body", "epochs"], "submit a new study"),
        ({"dataset": "mnist"}, ["body", "dataset"], "submit a new study"),
        ({"optimizer": {"name": "adam"}}, ["body", "optimizer"], "submit a new study"),
        ({"seeds": 1}, ["body", "seeds"], "only adds seeds"),
        ({"seeds": 2.5}, ["body", "seeds"], "integer"),
        ({"seeds": "4"}, ["body", "seeds"], "integer"),
        ({"methods": ["lcw", "bn"]}, ["body", "methods"], "would remove ['plain']"),
        ({"learning_rates": [0.3, 0.3]}, ["body", "learning_rates", 1], "listed twice"),
        ({"learning_rates": [-1.0]}, ["body", "learning_rates", 0], "greater than 0"),
        ({"methods": ["nope"]}, ["body", "methods", 0], "is not one of"),
        ({"lr_search": {"trials_per_cell": 4}}, ["body", "lr_search"], "learning-rate grid"),
        ({"colour": "blue"}, ["body", "colour"], "not a field"),
        ({}, ["body"], "empty"),
    ]
    for body, loc, words in cases:
        r = client.post(f"/api/studies/{sid}/extend", json=body)
        assert r.status_code == 422, (body, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == loc, (body, detail)
        assert words in detail["msg"], (body, detail)
    # The same value for a field that defines the trials changes nothing and is accepted.
    same = client.post(f"/api/studies/{sid}/extend", json={"dataset": "digits", "seeds": 2})
    assert same.status_code == 200 and same.json()["added_trials"] == 0
    assert snapshot(store.engine)[:3] == stored[:3]
    assert client.post("/api/studies/999/extend", json={"seeds": 3}).status_code == 404


def test_extend_applies_the_trial_cap_to_the_total(make_client: Any, store: Store) -> None:
    client = make_client(max_trials_per_study=6)
    sid = _submit(client)  # 4 trials
    stored = snapshot(store.engine)
    r = client.post(f"/api/studies/{sid}/extend", json={"seeds": 4})  # 8 > 6
    assert r.status_code == 422
    assert "8 trials, more than the cap of 6" in r.json()["detail"][0]["msg"]
    assert snapshot(store.engine) == stored
    assert client.post(f"/api/studies/{sid}/extend", json={"seeds": 3}).status_code == 200


def test_extend_is_idempotent_with_a_key(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    headers = {"Idempotency-Key": "more-seeds"}
    first = client.post(f"/api/studies/{sid}/extend", json={"seeds": 3}, headers=headers)
    assert first.status_code == 200 and first.json()["added_trials"] == 2
    again = client.post(f"/api/studies/{sid}/extend", json={"seeds": 3}, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["added_trials"] == 2 and again.json()["trial_count"] == 6
    other = client.post(f"/api/studies/{sid}/extend", json={"seeds": 4}, headers=headers)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert client.get(f"/api/studies/{sid}").json()["trial_count"] == 6
    with session_scope(store.engine) as s:
        changes = s.execute(select(StudyChange.kind, StudyChange.trials)).all()
    assert changes == [("extend", 2)]


def test_extend_lr_search_adds_slots_and_new_seeds_keep_their_slot_lr(
    client: TestClient, store: Store
) -> None:
    spec = {**SMALL, "learning_rates": None, "methods": ["lcw"],
            "lr_search": {"low": 0.01, "high": 1.0, "trials_per_cell": 2}}  # fmt: skip
    sid = _submit(client, spec)
    cell = "lcw|5|100|sigmoid"
    store.assign_lr(sid, cell, 0, 0.05)
    r = client.post(
        f"/api/studies/{sid}/extend", json={"seeds": 3, "lr_search": {"trials_per_cell": 3}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["added_trials"] == 3 * 3 - 2 * 2
    with session_scope(store.engine) as s:
        rows = s.execute(
            select(Trial.slot, Trial.seed, Trial.lr, Trial.config).where(Trial.study_id == sid)
        ).all()
    by = {(slot, seed): (lr, config["lr"]) for slot, seed, lr, config in rows}
    assert by[(0, 2)] == (0.05, 0.05)  # a new seed of an assigned slot trains at its LR
    assert by[(2, 0)] == (None, None)  # a new slot waits for the searcher
    bad = client.post(f"/api/studies/{sid}/extend", json={"lr_search": {"trials_per_cell": 1}})
    assert bad.status_code == 422 and "only adds slots" in bad.json()["detail"][0]["msg"]
    bad = client.post(f"/api/studies/{sid}/extend", json={"learning_rates": [0.1]})
    assert bad.status_code == 422 and "lr_search" in bad.json()["detail"][0]["msg"]


def test_retry_requeues_failed_trials_with_a_fresh_budget(client: TestClient, store: Store) -> None:
    sid = _submit(client, {**SMALL, "max_retries": 0})
    claimed = store.claim_trials(OWNER, limit=10, lease_seconds=60)
    for c in claimed[:3]:
        store.complete_trial(OWNER, c.id, status="completed", result=result(0.9, 0.9),
                             run_info={})  # fmt: skip
    assert store.fail_trial_attempt(OWNER, claimed[3].id, error="RuntimeError: boom") == "failed"
    assert client.get(f"/api/studies/{sid}").json()["status"] == "completed"
    before = _rows(store, sid)

    r = client.post(f"/api/studies/{sid}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["requeued_trials"] == 1 and r.json()["status"] == "running"
    ran = _run_all(store)
    assert ran == [claimed[3].id]  # completed trials never run again
    after = _rows(store, sid)
    assert {t: after[t] for t in before if t != claimed[3].id} == {
        t: before[t] for t in before if t != claimed[3].id
    }
    assert after[claimed[3].id][5] == "completed" and after[claimed[3].id][7] == 1
    nothing = client.post(f"/api/studies/{sid}/retry")
    assert nothing.status_code == 409 and "no failed or cancelled" in nothing.json()["detail"]
    assert client.post("/api/studies/999/retry").status_code == 404


def test_retry_resumes_a_cancelled_study(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    first = store.claim_trials(OWNER, limit=1, lease_seconds=60)[0]
    store.complete_trial(OWNER, first.id, status="completed", result=result(0.9, 0.9), run_info={})
    assert client.post(f"/api/studies/{sid}/cancel").json()["status"] == "cancelled"
    assert store.claim_trials(OWNER, limit=10, lease_seconds=60) == []
    refused = client.post(f"/api/studies/{sid}/extend", json={"seeds": 3})
    assert refused.status_code == 409 and "retry" in refused.json()["detail"]

    r = client.post(f"/api/studies/{sid}/retry")
    assert r.status_code == 200 and r.json()["requeued_trials"] == 3
    assert r.json()["status"] == "running"
    ran = _run_all(store)
    assert len(ran) == 3 and first.id not in ran
    study = client.get(f"/api/studies/{sid}").json()
    assert study["status"] == "completed" and study["progress"]["completed"] == 4
