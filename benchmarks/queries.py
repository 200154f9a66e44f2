"""Result queries at scale: a study of 20,000 trials x 20 epochs on SQLite and PostgreSQL.

The study is created through the store (the real expansion), then all but ``PENDING`` of its
trials are marked completed with final metrics and 20 epoch rows each by bulk SQL (seeding
400,000 metric rows through the lease API would take minutes and measure nothing of interest).
The API is then called through an in-process HTTP client, p50 / p95 of repeats:

* summary ``cold``: right after a trial finished (one of the pending trials claimed and
  completed through the store, as a worker does), the case of a running study's page polling;
* summary ``restart``: the process's cache dropped, the stored cell results kept (a restarted
  server's first request);
* summary ``full``: every cached and stored part dropped, a full recomputation (a study's first
  summary ever), and ``first``: the same with no scipy result cached either;
* summary ``warm`` (nothing changed), the first trials page, a filtered trials page, a deep page,
  a trial's detail and the study page's HTML.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import insert, select, text, update

from benchmarks.common import postgres_database
from service import significance, stats
from service.config import Settings
from service.db import make_engine, upgrade_database
from service.models import Trial, TrialMetric
from service.spec import plan_study
from service.store import Store

EPOCHS = 20
SPEC: dict[str, Any] = {
    "name": "scale",
    "dataset": "digits",
    "methods": ["plain", "bn", "lcw", "bn_lcw"],
    "depths": [2, 5, 10, 20, 50],
    "activations": ["sigmoid", "tanh", "relu", "leaky_relu", "gelu"],
    "learning_rates": [round(0.005 * (i + 1), 3) for i in range(20)],
    "seeds": 10,
    "epochs": EPOCHS,
}  # 4 x 5 x 5 x 20 x 10 = 20,000 trials
PENDING = 64  # trials left pending, spread over the cells: the "cold" repeats finish them


def _seed(store: Store, url: str) -> int:
    spec, planned = plan_study(SPEC, max_trials=20_000)
    study, _ = store.create_study(spec, planned)
    rng = random.Random(0)
    engine = store.engine
    with engine.begin() as c:
        ids = [r[0] for r in c.execute(select(Trial.id).where(Trial.study_id == study.id))]
        pending = set(ids[:: len(ids) // PENDING][:PENDING])
        c.execute(
            update(Trial)
            .where(Trial.study_id == study.id, Trial.id.not_in(pending))
            .values(status="completed", attempt=1, val_acc=0.5, test_acc=0.5, train_loss=1.0)
        )
        batch: list[dict[str, Any]] = []
        for tid in ids:
            if tid in pending:
                continue
            for epoch in range(EPOCHS + 1):
                acc = rng.random()
                batch.append({
                    "trial_id": tid, "epoch": epoch, "train_loss": 1.0 - acc / 2,
                    "train_acc": acc, "val_loss": 1.0, "val_acc": acc, "test_loss": 1.0,
                    "test_acc": acc, "seconds": 0.1, "samples_per_s": 1000.0, "lr": 0.1,
                })  # fmt: skip
            if len(batch) >= 50_000:
                c.execute(insert(TrialMetric), batch)
                batch.clear()
        if batch:
            c.execute(insert(TrialMetric), batch)
        for tid in ids[:: max(1, len(ids) // 200)]:  # vary final accuracies a little
            c.execute(update(Trial).where(Trial.id == tid).values(val_acc=rng.random()))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            # What autovacuum does within a minute of a bulk change (20,000 rows updated at
            # once: far past its thresholds): fresh statistics for the planner, and a
            # visibility map that lets the summary's GROUP BY read the covering index alone.
            c.execute(text("VACUUM ANALYZE trials, trial_metrics"))
    return study.id


def _percentiles(
    fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None
) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()  # untimed
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
    }


def _measure(url: str, *, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from service.main import create_app

    engine = make_engine(url)
    upgrade_database(engine)
    store = Store(engine)
    t0 = time.perf_counter()
    study_id = _seed(store, url)
    seeded = time.perf_counter() - t0
    app = create_app(Settings(database_url=url, migrate_on_start=False))
    out: dict[str, Any] = {"seed_seconds": seeded}
    with TestClient(app) as client:
        trial_id = client.get(f"/api/studies/{study_id}/trials?limit=1").json()["data"][0]["id"]
        stats.warm_up()  # what the app's start does in the background

        def get(path: str) -> Callable[[], Any]:
            def call() -> Any:
                r = client.get(path)
                r.raise_for_status()
                return r

            return call

        app_store: Store = app.state.store
        summary = get(f"/api/studies/{study_id}/summary")
        rng = random.Random(1)

        def finish_a_trial() -> None:
            # What a worker does: claim the next pending trial, report its result.
            [claimed] = app_store.claim_trials("bench", limit=1, lease_seconds=600)
            acc = rng.random()
            app_store.complete_trial(
                "bench", claimed.id, status="completed", run_info={},
                result={"val_acc": acc, "test_acc": acc, "train_loss": 1.0},
            )  # fmt: skip

        def fresh_process(*, stored: bool) -> None:
            # As in a new process: no cached summary and no cached scipy results; `stored`:
            # the stored cell results dropped too (a study's first summary ever).
            app_store.forget_summaries(stored=stored)
            significance._t_quantile.cache_clear()
            significance._paired_t_p.cache_clear()
            significance._wilcoxon_p.cache_clear()

        def forget() -> None:
            app_store.forget_summaries()

        summary()
        cold_repeats = min(PENDING, max(10, repeats))
        out["summary_cold"] = _percentiles(summary, cold_repeats, setup=finish_a_trial)
        out["summary_restart"] = _percentiles(
            summary, max(10, repeats // 2), setup=lambda: fresh_process(stored=False)
        )
        out["summary_full"] = _percentiles(summary, max(10, repeats // 2), setup=forget)
        out["summary_first"] = _percentiles(
            summary, max(5, repeats // 4), setup=lambda: fresh_process(stored=True)
        )
        out["summary_warm"] = _percentiles(summary, repeats)
        out["trials_page"] = _percentiles(get(f"/api/studies/{study_id}/trials?limit=50"), repeats)
        out["trials_filtered"] = _percentiles(
            get(f"/api/studies/{study_id}/trials?limit=50&method=lcw&depth=20&status=completed"),
            repeats,
        )
        out["trials_deep_page"] = _percentiles(
            get(f"/api/studies/{study_id}/trials?limit=50&offset=19000"), repeats
        )
        out["trial_detail"] = _percentiles(get(f"/api/trials/{trial_id}"), repeats)
        page = client.get(f"/studies/{study_id}")
        if page.status_code == 200:
            out["study_page"] = _percentiles(get(f"/studies/{study_id}"), max(5, repeats // 4))
    engine.dispose()
    return out


def run(*, repeats: int = 40, quick: bool = False) -> dict[str, Any]:
    repeats = 10 if quick else repeats
    results: dict[str, Any] = {}
    with TemporaryDirectory() as tmp:
        results["sqlite"] = _measure(f"sqlite:///{Path(tmp) / 'bench.db'}", repeats=repeats)
    with postgres_database() as url:
        results["postgresql"] = _measure(url, repeats=repeats)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
