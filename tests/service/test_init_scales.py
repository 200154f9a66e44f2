"""The init scale as part of the fair budget: `init_scales` expands like learning rates, the best
(lr, scale) is chosen on validation, and trials, summaries and exports carry the scale. Through
the real store (SQLite and PostgreSQL) and the real API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from svc_helpers import make_study, result, row_based_summary, study_spec

from service.spec import expand, parse_spec, trial_count
from service.store import Store

RUN_INFO = {"versions": {"lcw": "0.1.0"}, "device": "cpu", "node": "test"}
SPEC = study_spec("init scales", learning_rates=[0.01, 0.1], init_scales=[0.5, 1.0, 2.0], seeds=2)


def test_init_scales_cross_learning_rates_for_every_method() -> None:
    spec = parse_spec(SPEC)
    trials = expand(spec)
    assert len(trials) == trial_count(spec) == 2 * 2 * 3 * 2
    for method in ("plain", "lcw"):
        settings = [(t.lr, t.init_scale) for t in trials if t.method == method and t.seed == 0]
        assert settings == [(lr, s) for lr in (0.01, 0.1) for s in (0.5, 1.0, 2.0)]
    assert all(t.config["init_scale"] == t.init_scale for t in trials)
    # The default is the method's documented init, scale 1, and a gain map applies per method.
    plain = expand(parse_spec(_without_scales()))
    assert {t.init_scale for t in plain} == {1.0}
    mapped = expand(parse_spec({**SPEC, "gain": {"lcw": 2.5}}))
    assert {t.config["gain"] for t in mapped if t.method == "lcw"} == {2.5}
    assert {t.config["gain"] for t in mapped if t.method == "plain"} == {None}


def _without_scales() -> dict[str, Any]:
    spec = dict(SPEC)
    del spec["init_scales"]
    return spec


def _finish_all(store: Store, study_id: int, score: Any) -> None:
    while claimed := store.claim_trials("w", limit=50, lease_seconds=60):
        for c in claimed:
            val, test = score(c)
            store.complete_trial(
                "w", c.id, status="completed", result=result(val, test), run_info=RUN_INFO
            )


def test_the_best_lr_and_scale_are_chosen_on_validation_and_exported(store: Store) -> None:
    study_id = make_study(store, SPEC)

    def score(c: Any) -> tuple[float, float]:
        lr, scale = c.config["lr"], c.config["init_scale"]
        # Validation prefers (0.1, 2.0) for lcw and (0.01, 0.5) for plain; test accuracy is
        # highest elsewhere, so a pick on the test split would differ.
        best = (0.1, 2.0) if c.cell_key.startswith("lcw") else (0.01, 0.5)
        val = 0.9 if (lr, scale) == best else 0.6 + 0.01 * c.seed
        test = 0.7 + 0.01 * c.seed if (lr, scale) == best else 0.95
        return val, test

    _finish_all(store, study_id, score)
    summary = store.summary(study_id)
    cells = {c.method: c for c in summary.cells}
    assert (cells["lcw"].best_lr, cells["lcw"].best_init_scale) == (0.1, 2.0)
    assert (cells["plain"].best_lr, cells["plain"].best_init_scale) == (0.01, 0.5)
    assert cells["lcw"].test_acc_mean == pytest.approx(0.705)
    assert len(cells["lcw"].lrs) == 6
    assert {(e.lr, e.init_scale) for e in cells["lcw"].lrs} == {
        (lr, s) for lr in (0.01, 0.1) for s in (0.5, 1.0, 2.0)
    }
    [comp] = summary.comparisons
    assert (comp.method_init_scale, comp.baseline_init_scale) == (2.0, 0.5)
    assert summary.model_dump(mode="json") == row_based_summary(store, study_id)
    trials = store.list_trials(study_id).data
    assert sorted({t.init_scale for t in trials}) == [0.5, 1.0, 2.0]
    assert all(t.init_scale == t.config["init_scale"] for t in trials)
    assert "init_scale" in store.export_columns()
    rows = list(store.iter_export(study_id))
    assert sorted({r["init_scale"] for r in rows}) == [0.5, 1.0, 2.0]


def test_an_lr_search_slot_gets_its_lr_and_scale_in_one_transaction(store: Store) -> None:
    spec = _without_scales()
    del spec["learning_rates"]
    spec["lr_search"] = {
        "low": 0.01,
        "high": 1.0,
        "trials_per_cell": 2,
        "init_scale": {"low": 0.25, "high": 4.0},
    }
    study_id = make_study(store, spec)
    trials = store.list_trials(study_id).data
    assert all(t.lr is None and t.init_scale is None for t in trials)
    cell = trials[0].cell_key
    store.assign_lr(study_id, cell, 0, 0.05, init_scale=2.0)
    store.assign_lr(study_id, cell, 0, 0.5, init_scale=0.5)  # never overwrites
    assert store.slot_setting(study_id, cell, 0) == (0.05, 2.0)
    slot0 = [t for t in store.list_trials(study_id).data if t.cell_key == cell and t.slot == 0]
    assert [(t.lr, t.init_scale, t.config["init_scale"]) for t in slot0] == [(0.05, 2.0, 2.0)] * 2
    with pytest.raises(ValueError, match="init_scale"):
        store.assign_lr(study_id, cell, 1, 0.1, init_scale=-1.0)


def test_the_api_serves_the_scale_and_the_adjustment(client: TestClient) -> None:
    r = client.post("/api/studies", json={**SPEC, "adjustment": "bh"})
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["spec"]["init_scales"] == [0.5, 1.0, 2.0]
    assert study["trial_count"] == 24
    summary = client.get(f"/api/studies/{study['id']}/summary").json()
    assert summary["adjustment"]["method"] == "bh"
    assert summary["adjustment"]["family_size"] == 0
    trial = client.get(f"/api/studies/{study['id']}/trials").json()["data"][0]
    assert trial["init_scale"] == 0.5
