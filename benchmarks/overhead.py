"""Orchestration overhead of the dispatcher: study wall time / (trial compute / concurrency).

``digits`` studies of depth-5 MLPs (4 methods x 4 learning rates x 2 or 4 seeds, 5 epochs: 32
and 64 trials) run through the real queue: a temporary SQLite database, a local Ray with one
CPU per slot, the ``workers.dispatcher.Dispatcher`` with its warm actors. Wall time is the
study's ``finished_at - created_at`` as the database records it (from submission to the last
trial's completion); trial compute is each trial's ``run_info["compute_seconds"]``, the wall
time of the ``lcw.train`` call inside its actor. 1.0 would be a dispatcher that costs nothing;
Ray Tune's ``Tuner`` spent 1.7 s per trivial trial on this 2-core machine, about 10x a trial
here.

Each study runs twice, unpacked (``pack_size=1``, as ``LCW_PACK_SIZE=1``) and packed (the
automatic pack size: here the 16 trials of each method train as one fused model). For a packed
trial the compute is its share of its pack's ``lcw.train_pack`` call (the pack's wall time
divided among its members), so the ratio measures the dispatcher, not the packing; the
user-facing win of packing is the study's wall time, reported packed vs unpacked.

One warm-up study per mode first (actor processes import torch and load the dataset once, as
they do in a running service), then ``repeats`` interleaved rounds of every case; the figures
are their medians.

    python -m benchmarks.overhead            # prints one JSON object
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

from benchmarks.sweep import local_sweep, run_study

SPEC: dict[str, Any] = {
    "name": "overhead",
    "dataset": "digits",
    "model": "mlp",
    "methods": ["plain", "bn", "lcw", "bn_lcw"],
    "depths": [5],
    "learning_rates": [0.01, 0.03, 0.1, 0.3],
    "seeds": 2,
    "epochs": 5,
}
SPEC_64: dict[str, Any] = {**SPEC, "seeds": 4}
TARGET = 1.25  # issue 4; issue 7 asks for 1.10 on a 64-trial study
TARGET_64 = 1.10
CASES = {  # name -> (spec, pack_size): None is the automatic pack size
    "trials32_unpacked": (SPEC, 1),
    "trials32_packed": (SPEC, None),
    "trials64_unpacked": (SPEC_64, 1),
    "trials64_packed": (SPEC_64, None),
}


def _run_study(store: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The study's wall time as the database records it, and its trials' compute."""
    r = run_study(store, spec, poll_s=0.05)
    return {k: r[k] for k in ("study_id", "status", "trials", "compute_s")} | {
        "wall_s": r["db_wall_s"]
    }


def run(*, repeats: int = 3, slots: int | None = None) -> dict[str, Any]:
    """Measure every case `repeats` times, interleaved; returns the figures and their medians."""
    slots = slots or min(os.cpu_count() or 1, 2)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    with local_sweep(slots) as (store, dispatcher):
        warm_up = {**SPEC, "name": "warm-up", "methods": ["lcw"], "learning_rates": [0.1]}
        for pack_size in (1, None):  # one study per mode: a pack of 2 on each actor
            dispatcher.pack_size = pack_size
            _run_study(store, {**warm_up, "seeds": 4})
        for _ in range(repeats):
            for name, (spec, pack_size) in CASES.items():
                dispatcher.pack_size = pack_size
                figures = _run_study(store, {**spec, "name": name})
                concurrency = dispatcher.slots
                figures["ratio"] = figures["wall_s"] / (figures["compute_s"] / concurrency)
                runs[name].append(figures)
    cases = {
        name: {
            "trials": len(CASES[name][0]["methods"])
            * len(CASES[name][0]["learning_rates"])
            * CASES[name][0]["seeds"],
            "packed": CASES[name][1] != 1,
            "ratio_median": statistics.median(r["ratio"] for r in rs),
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "compute_s_median": statistics.median(r["compute_s"] for r in rs),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    speedup = {
        n: cases[f"trials{n}_unpacked"]["wall_s_median"]
        / cases[f"trials{n}_packed"]["wall_s_median"]
        for n in (32, 64)
    }
    return {
        "name": "orchestration_overhead",
        "what": "study wall time / (sum of trial compute / concurrency), digits studies",
        # The 32-trial unpacked figure, as before (make bench's table row).
        "trials": 32,
        "concurrency": dispatcher.slots,
        "ratio_median": cases["trials32_unpacked"]["ratio_median"],
        "target": TARGET,
        "ratio_median_64": cases["trials64_unpacked"]["ratio_median"],
        "ratio_median_64_packed": cases["trials64_packed"]["ratio_median"],
        "target_64": TARGET_64,
        # What a user waits for: the study's wall time unpacked / packed.
        "packed_wall_speedup": speedup,
        "cases": cases,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
