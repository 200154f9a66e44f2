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
from benchmarks.table import table

BENCHMARKS = (
    "lcw_cost", "packing", "activation_cost", "overhead", "queries", "page_load", "versus",
    "first_study", "capacity",
)  # fmt: skip


def run_all(*, quick: bool, only: tuple[str, ...] = BENCHMARKS) -> dict[str, Any]:
    from benchmarks import (
        activation_cost,
        capacity,
        first_study,
        lcw_cost,
        overhead,
        packing,
        page_load,
        queries,
        versus,
    )

    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "quick": quick,
    }
    epochs = 2 if quick else 20
    for name, fn in (
        ("lcw_cost", lambda: lcw_cost.run(repeats=3 if quick else 5, quick=quick)),
        ("packing", lambda: packing.run(repeats=1 if quick else 3, quick=quick)),
        ("activation_cost", lambda: activation_cost.run(repeats=1 if quick else 3, quick=quick)),
        ("overhead", lambda: overhead.run(repeats=1 if quick else 3)),
        ("queries", lambda: queries.run(quick=quick)),
        ("page_load", lambda: page_load.run(repeats=1 if quick else 3, quick=quick)),
        ("versus", lambda: versus.run(epochs=epochs, repeats=1 if quick else 5, peers=not quick)),
        ("first_study", lambda: first_study.run(repeats=1 if quick else 3, epochs=epochs)),
        ("capacity", lambda: capacity.run(trials=200 if quick else 1000, repeats=1 + (not quick))),
    ):
        if name not in only:
            continue
        t0 = time.perf_counter()
        out[name] = fn()
        out[name + "_seconds"] = time.perf_counter() - t0
        out[name + "_measured"] = {"date": out["date"], "machine": out["machine"]}
    return out


def merged(old: dict[str, Any], new: dict[str, Any], only: tuple[str, ...]) -> dict[str, Any]:
    """`old` results with the benchmarks in `only` replaced by `new`'s; each benchmark keeps
    where and when it was measured (``<name>_measured``), and the table names it when that is
    not the header's machine and date."""
    out = dict(old)
    for name in BENCHMARKS:
        out.setdefault(name + "_measured", {"date": old["date"], "machine": old["machine"]})
    for name in only:
        for key in (name, name + "_seconds", name + "_measured"):
            out[key] = new[key]
    out["date"], out["machine"] = new["date"], new["machine"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every CPU benchmark.")
    parser.add_argument("--quick", action="store_true", help="smoke run (fewer repeats)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument(
        "--table-only", action="store_true", help="re-render the table from results.json"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        help="run these benchmarks only; the others' figures stay as results.json has them",
    )
    args = parser.parse_args()
    saved = ROOT / "benchmarks" / "results.json"
    if args.table_only:
        results = json.loads(saved.read_text())
    elif args.only:
        only = tuple(args.only)
        results = merged(json.loads(saved.read_text()), run_all(quick=args.quick, only=only), only)
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
