"""The 64-trial grid (``benchmarks.grid``) through lcw-sweep and its peers, side by side.

Each round runs, in turn: the warm ``Pool(2)`` baseline, lcw-sweep unpacked (``pack_size=1``)
and packed (the automatic pack size), and in the first `peer_repeats` rounds Ray Tune's
``Tuner`` with ``reuse_actors=True`` and Optuna with two processes on a journal storage
(``benchmarks.peers``, each in a process of its own). Every figure is the round's wall time
over the baseline's in that round; the table shows the medians over rounds. lcw-sweep gets
more rounds than its peers: one core's speed on a shared VM wanders by 10% or more within a
minute (the saved ``pool_runs`` of one run span 13.0 to 16.0 s), and a round's ratio carries
that noise. Each run saves ``probe_s``, a fixed single-thread loop of batched matmuls timed in
a pool process just before it (``benchmarks.grid.speed_probe``): the core's speed as the run
starts, not a slowdown that begins during it. Every runner must report the baseline's test
accuracies exactly (the same configs, and the same numbers bit for bit on CPU); a runner that
does not is an error.

lcw-sweep runs in this process (``benchmarks.sweep``: the real dispatcher, its warm actors,
a SQLite queue), timed as the database records it: from the study's creation to its last
trial's completion (``finished_at - created_at``), polled every 0.25 s.

    python -m benchmarks.versus [--epochs 20] [--repeats 5] [--peer-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.grid import SLOTS, WarmPool, grid_configs, grid_spec
from benchmarks.sweep import local_sweep, run_study

PEERS = ("tune", "optuna")


def _peer(name: str, epochs: int) -> dict[str, Any]:
    """One peer's run of the grid, in a fresh process (``benchmarks.peers``)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers", name, "--epochs", str(epochs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _check(name: str, accs: list[float | None], expected: list[float | None]) -> None:
    if accs != expected:
        diff = sum(a != b for a, b in zip(accs, expected, strict=True))
        raise AssertionError(f"{name}: {diff} of {len(accs)} test accuracies differ from Pool's")


def run(
    *, epochs: int = 20, repeats: int = 5, peer_repeats: int = 3, peers: bool = True
) -> dict[str, Any]:
    """`repeats` interleaved rounds of the baseline and lcw-sweep on the grid (the peers in
    the first `peer_repeats` of them); medians of the ratios."""
    configs = grid_configs(epochs=epochs)
    pool = WarmPool(configs[0])
    names = ["pool", "unpacked", "packed", *(PEERS if peers else ())]
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        with local_sweep(SLOTS) as (store, dispatcher):
            for pack_size in (1, None):  # warm both modes' actors (torch, trainer, dataset)
                dispatcher.pack_size = pack_size
                run_study(store, {**grid_spec(epochs=1), "name": "warm-up"})
            for round_no in range(repeats):
                probe = pool.probe()
                wall, expected = pool.run(configs)
                rounds["pool"].append({"wall_s": wall, "probe_s": probe})
                for mode, pack_size in (("unpacked", 1), ("packed", None)):
                    dispatcher.pack_size = pack_size
                    probe = pool.probe()
                    r = run_study(store, grid_spec(epochs=epochs, name=mode), poll_s=0.25)
                    _check(mode, r.pop("test_acc"), expected)
                    # The database's own wall time (submission to the last completion): a
                    # client polling faster would only take CPU from the trials it times.
                    rounds[mode].append({**r, "ratio": r["db_wall_s"] / wall, "probe_s": probe})
                for name in PEERS if peers and round_no < peer_repeats else ():
                    probe = pool.probe()
                    p = _peer(name, epochs)
                    _check(name, p.pop("test_acc"), expected)
                    rounds[name].append({**p, "ratio": p["wall_s"] / wall, "probe_s": probe})
    finally:
        pool.close()
    out: dict[str, Any] = {
        "what": "64-trial digits grid: wall time / a warm multiprocessing.Pool(2)'s",
        "epochs": epochs,
        "repeats": repeats,
        "pool_s_median": statistics.median(r["wall_s"] for r in rounds["pool"]),
        "pool_runs": rounds["pool"],
    }
    for name in names[1:]:
        out[name] = {
            "ratio_median": statistics.median(r["ratio"] for r in rounds[name]),
            "ratio_min": min(r["ratio"] for r in rounds[name]),
            "ratio_max": max(r["ratio"] for r in rounds[name]),
            "wall_s_median": statistics.median(r["wall_s"] for r in rounds[name]),
            "runs": rounds[name],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="only Pool and lcw-sweep")
    args = parser.parse_args()
    out = run(
        epochs=args.epochs,
        repeats=args.repeats,
        peer_repeats=args.peer_repeats,
        peers=not args.no_peers,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
