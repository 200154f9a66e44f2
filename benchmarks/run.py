"""`make bench`: every CPU benchmark, side-by-side ratios, medians of repeats.

Writes ``benchmarks/results.json`` (all figures) and ``benchmarks/results.md`` (the table), and
replaces the table between the ``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers in
README.md. ``--quick`` runs a smoke version (fewer repeats) that the tests use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any

from benchmarks.docs import ROOT, machine, write_block


def run_all(*, quick: bool) -> dict[str, Any]:
    from benchmarks import activation_cost, lcw_cost, overhead, packing, page_load, queries

    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "quick": quick,
    }
    for name, fn in (
        ("lcw_cost", lambda: lcw_cost.run(repeats=3 if quick else 5, quick=quick)),
        ("packing", lambda: packing.run(repeats=1 if quick else 3, quick=quick)),
        ("activation_cost", lambda: activation_cost.run(repeats=1 if quick else 3, quick=quick)),
        ("overhead", lambda: overhead.run(repeats=1 if quick else 3)),
        ("queries", lambda: queries.run(quick=quick)),
        ("page_load", lambda: page_load.run(repeats=1 if quick else 3, quick=quick)),
    ):
        t0 = time.perf_counter()
        out[name] = fn()
        out[name + "_seconds"] = time.perf_counter() - t0
    return out


def table(r: dict[str, Any]) -> str:
    rows = [
        f"Measured {r['date']} on {r['machine']} (`make bench`; medians of interleaved repeats).",
        "",
        "| what | figure | target |",
        "|---|---|---|",
    ]
    for setup, label in (("mlp_d20_w100", "MLP depth 20 width 100, batch 100"),
                         ("vgg11_32x32", "VGG-11 on 32x32, batch 32")):  # fmt: skip
        c = r["lcw_cost"][setup]
        rows.append(
            f"| LCW step cost, {label}: projection / centering / basis | "
            f"{c['projection']['ratio']:.3f}x / {c['centering']['ratio']:.3f}x / "
            f"{c['basis']['ratio']:.3f}x plain | projection <= 1.05x |"
        )
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
    a = r.get("activation_cost")
    if isinstance(a, dict):
        rows.append(
            "| SIMD-exact sigmoid (pack invariance), 16 depth-20 MLPs: trials alone / one pack "
            f"| {a['alone_ratio']:.2f}x / {a['pack_ratio']:.2f}x nn.Sigmoid's time | - |"
        )
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
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every CPU benchmark.")
    parser.add_argument("--quick", action="store_true", help="smoke run (fewer repeats)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument(
        "--table-only", action="store_true", help="re-render the table from results.json"
    )
    args = parser.parse_args()
    if args.table_only:
        results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    else:
        results = run_all(quick=args.quick)
    md = table(results)
    suffix = ".quick" if args.quick else ""
    (ROOT / "benchmarks" / f"results{suffix}.json").write_text(json.dumps(results, indent=2))
    (ROOT / "benchmarks" / f"results{suffix}.md").write_text(md + "\n")
    if not args.quick and not args.no_readme:
        write_block("bench", md)
    print(md)


if __name__ == "__main__":
    main()
