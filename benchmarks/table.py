"""The table `make bench` writes (README, results.md): one section of rows per benchmark.

A benchmark re-run on its own (``benchmarks.run --only``) keeps the others' figures; its rows
then name the machine and date they were measured on when those differ from the header's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _lcw_cost(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for setup, label in (("mlp_d20_w100", "MLP depth 20 width 100, batch 100"),
                         ("vgg11_32x32", "VGG-11 on 32x32, batch 32")):  # fmt: skip
        c = r["lcw_cost"][setup]
        rows.append(
            f"| LCW step cost, {label}: projection / centering / basis | "
            f"{c['projection']['ratio']:.3f}x / {c['centering']['ratio']:.3f}x / "
            f"{c['basis']['ratio']:.3f}x plain | projection <= 1.05x |"
        )
    return rows


def _packing(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    p = r["packing"]
    rows.append(
        f"| Packed trials, K={p['packs']} depth-20 sigmoid MLPs, 1 thread | "
        f"{p['ratio']:.2f}x samples/s vs one by one | >= 3x |"
    )
    mm = p.get("matmul_gflops")
    if isinstance(mm, dict):
        rows.append(
            "| Matmul bound on fusing: one trial's 100x100 layer, batch 100 / K=16 batched "
            f"(1 thread) | {mm['alone']:.0f} / {mm['batched']:.0f} GFLOP/s | - |"
        )
    return rows


def _activation_cost(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    a = r.get("activation_cost")
    if isinstance(a, dict):
        rows.append(
            "| SIMD-exact sigmoid (pack invariance), 16 depth-20 MLPs: trials alone / one pack "
            f"| {a['alone_ratio']:.2f}x / {a['pack_ratio']:.2f}x nn.Sigmoid's time | - |"
        )
    return rows


def _overhead(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    o = r["overhead"]
    for key, label, target in (
        ("ratio_median", "32-trial digits study, unpacked", "<= 1.25"),
        ("ratio_median_64", "64-trial digits study, unpacked", "<= 1.10"),
        ("ratio_median_64_packed", "64-trial digits study, packed", "-"),
    ):
        ratio = o.get(key)
        if isinstance(ratio, int | float):
            rows.append(
                f"| Orchestration overhead, {label} | {ratio:.3f} "
                f"(wall / (compute / concurrency)) | {target} |"
            )
    speedup = o.get("packed_wall_speedup")
    if isinstance(speedup, dict):  # keyed by trial count (int live, str after JSON)
        speedup = {str(k): v for k, v in speedup.items()}.get("64")
    if isinstance(speedup, int | float):
        rows.append(f"| 64-trial study wall time, packed vs unpacked | {speedup:.2f}x faster | - |")
    return rows


def _queries(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for db in ("sqlite", "postgresql"):
        q = r["queries"][db]
        kinds = ("summary_cold", "summary_warm", "summary_restart", "summary_full")
        rows.append(
            f"| 20k-trial study on {db}: summary p95 after a trial finishes / nothing changed "
            "/ after a restart / full recomputation | "
            + " / ".join(f"{q[k]['p95_ms']:.0f}" for k in kinds if k in q)
            + " ms | <= 100 ms |"
        )
        trials = [q[k]["p95_ms"] for k in ("trials_page", "trials_filtered", "trials_deep_page")]
        rows.append(
            f"| 20k-trial study on {db}: trials p95 first page / filtered / page 381 | "
            + " / ".join(f"{t:.0f}" for t in trials)
            + " ms | <= 100 ms |"
        )
        first = q.get("summary_first")
        if isinstance(first, dict):
            rows.append(
                f"| 20k-trial study on {db}: a study's first summary ever (every cell), p50 / p95 "
                f"| {first['p50_ms']:.0f} / {first['p95_ms']:.0f} ms | - |"
            )
    return rows


def _page_load(r: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    pl = r.get("page_load")
    if isinstance(pl, dict) and "first_visit" in pl:
        rows.append(
            "| Study page, 20k trials, chromium: first visit / repeat visit | "
            f"{pl['first_visit']['median_s']:.2f} / {pl['repeat_visit']['median_s']:.2f} s | "
            "<= 2 s |"
        )
        doc = next((e for e in pl["biggest_resources"] if e["type"] == "navigation"), None)
        if doc is not None:
            rows.append(
                "| Study page, 20k trials: HTML (summary and one cell's curves inline) decoded "
                f"/ sent gzipped | {doc['decoded_bytes'] / 1e3:.0f} / "
                f"{doc['transfer_bytes'] / 1e3:.0f} KB | - |"
            )
    elif isinstance(pl, dict) and "skipped" in pl:
        rows.append(f"| Study page, 20k trials, chromium | skipped: {pl['skipped']} | <= 2 s |")
    return rows


def _versus(r: dict[str, Any]) -> list[str]:
    v = r["versus"]
    rows = [
        f"| 64-trial digits grid, {v['epochs']} epochs: wall time / warm `Pool(2)` "
        f"({v['pool_s_median']:.1f} s), lcw-sweep unpacked / packed, median of "
        f"{len(v['unpacked']['runs'])} rounds | "
        f"{v['unpacked']['ratio_median']:.2f} / {v['packed']['ratio_median']:.2f} | "
        "<= 1.05 / <= 0.6 |"
    ]
    runs = [*v.get("pool_runs", []), *(run for x in v.values() if isinstance(x, dict)
                                        for run in x.get("runs", []))]  # fmt: skip
    probes = [run["probe_s"] for run in runs if "probe_s" in run]
    if probes:
        rows.append(
            f"| The core's speed across those runs: a fixed matmul loop timed before each, "
            f"slowest / fastest | {max(probes) / min(probes):.2f} "
            f"({min(probes):.3f} to {max(probes):.3f} s) | - |"
        )
    if "tune" in v and "optuna" in v:
        rows.append(
            "| The same grid through peers: Ray Tune `Tuner` (`reuse_actors=True`) / Optuna (2 "
            f"processes, journal storage), / `Pool(2)`, median of "
            f"{len(v['tune']['runs'])} rounds | {v['tune']['ratio_median']:.2f} / "
            f"{v['optuna']['ratio_median']:.2f} | - |"
        )
    return rows


def _first_study(r: dict[str, Any]) -> list[str]:
    f = r["first_study"]
    return [
        f"| First study after `serve` starts / the same study warm (64-trial grid, "
        f"{f['epochs']} epochs; serve ready in {f['ready_s_median']:.1f} s) | "
        f"{f['ratio_median']:.2f} | <= 1.1 |"
    ]


def _capacity(r: dict[str, Any]) -> list[str]:
    c = r["capacity"]
    rows = []
    for db, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        for mode in ("unpacked", "packed"):
            cases = [c["cases"].get(f"{db}_{n}d_{mode}") for n in (1, 2)]
            if None in cases:
                continue
            figures = " / ".join(
                f"{x['trials_per_s']:.0f} ({x['rows_per_s']:.0f})" for x in cases if x
            )
            target = ">= 200 trials/s" if db == "postgresql" else "-"
            rows.append(
                f"| Control-plane capacity, no-op trials of {c['epochs']} epochs on {label}, "
                f"{mode}: trials/s (metric rows/s), 1 / 2 dispatchers | {figures} | {target} |"
            )
    return rows


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "lcw_cost": _lcw_cost,
    "packing": _packing,
    "activation_cost": _activation_cost,
    "overhead": _overhead,
    "queries": _queries,
    "page_load": _page_load,
    "versus": _versus,
    "first_study": _first_study,
    "capacity": _capacity,
}


def _where(r: dict[str, Any], name: str) -> str:
    """ " (measured <date> on <machine>)" when `name` was measured apart from the header's run."""
    m = r.get(name + "_measured")
    if not m or (m["date"], m["machine"]) == (r["date"], r["machine"]):
        return ""
    return f" (measured {m['date']} on {m['machine']})"


def table(r: dict[str, Any]) -> str:
    rows = [
        f"Measured {r['date']} on {r['machine']} (`make bench`; medians of interleaved repeats).",
        "",
        "| what | figure | target |",
        "|---|---|---|",
    ]
    for name, section in SECTIONS.items():
        if not isinstance(r.get(name), dict):
            continue
        where = _where(r, name)
        for row in section(r):
            what, rest = row.split(" | ", 1)
            rows.append(f"{what}{where} | {rest}")
    return "\n".join(rows)
