"""Studies trained for real for the page and comparison tests: the store's queue worked as the
dispatcher works it (claim, train with ``lcw.trainer.train``, write every epoch's metrics,
complete with the result), in this process and without Ray. Tiny grids on scikit-learn's digits
train in about 0.1 s a trial."""

from __future__ import annotations

from typing import Any

from lcw.config import TrialConfig
from lcw.trainer import train
from service.spec import plan_study
from service.store import ClaimedTrial, Store

OWNER = "web-trainer"


def create(store: Store, spec: dict[str, Any]) -> int:
    """Store the study `spec` (planned as the API plans it); its id."""
    parsed, trials = plan_study(spec, max_trials=5000)
    study, _ = store.create_study(parsed, trials)
    return int(study.id)


def claim(store: Store, *, owner: str = OWNER) -> list[ClaimedTrial]:
    """Lease every pending trial to `owner` (they are `running` until trained)."""
    out: list[ClaimedTrial] = []
    while batch := store.claim_trials(owner, limit=500, lease_seconds=3600):
        out += batch
    return out


def train_claimed(store: Store, claimed: list[ClaimedTrial], *, owner: str = OWNER) -> None:
    """Train each claimed trial on the CPU and store its epochs and result, as the dispatcher
    does with a runner's reply."""
    for c in claimed:
        result = train(TrialConfig.from_dict({**c.config, "device": "cpu", "threads": 1}))
        out = result.to_dict()
        epochs = out.pop("epochs")
        rows = [(c.id, {**e, "attempt_start": e.get("epoch") == 0}) for e in epochs]
        store.write_metrics(owner, rows)
        store.complete_trial(
            owner,
            c.id,
            status=result.status,
            result=out,
            run_info={"config": c.config, "seed": c.seed, "device": "cpu"},
        )


def train_study(store: Store, spec: dict[str, Any]) -> int:
    """A study of `spec`, every trial trained; its id."""
    sid = create(store, spec)
    train_claimed(store, claim(store))
    return sid
