"""The seed paper's claims as one command: run the studies in examples/paper/, render a table.

    python -m examples.paper.claims run      # serve, submit the three studies, wait, save
    python -m examples.paper.claims readme   # re-render README's paper-claims block from the file

The paper: T. Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster
Training of Neural Networks", ECML PKDD 2019, LNCS 11906 (Springer, 2020), doi
10.1007/978-3-030-46147-8_16. Its claims that run on shipped data (mnist5k) on a CPU, each
measured with 6 paired seeds (the same data order and initial draw for both methods):

1. ``shift.yaml``: without LCW the activation shift of a sigmoid MLP grows with depth at init,
   and LCW removes it (the shift of the deepest hidden layer, epoch 0's diagnostics).
2. ``deep-sigmoid.yaml``: deep sigmoid MLPs (depth 20/50/100) train with LCW and not without,
   both methods tuned alike over 4 learning rates x 4 init scales.
3. ``bn-lcw.yaml``: LCW with batch normalization generalizes better than batch norm alone.
4. VGG-19 on CIFAR-10/100 (``examples/vgg19-cifar10.yaml``, ``vgg19-cifar100.yaml``) needs GPUs
   and the CIFAR files: listed with its spec, not run here.

``run`` starts ``lcw-sweep serve`` (or uses ``--url``), submits the three studies at once,
waits, and saves their summaries, the init shifts of every trial of study 1, the date, the
machine and the wall time to ``examples/results/paper-claims.json``. ``readme`` renders the
README block ``paper-claims`` from that file alone (``tests/deploy/test_readme_blocks.py``
checks it). Each row's p is the primary test's (paired t over seeds), adjusted by Holm over the
table's rows that have one: the table is one family. Verdict: ``supported`` when the adjusted p
is below alpha and the difference points the claimed way, ``contradicted`` when it is below
alpha the other way, ``not shown`` otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.docs import machine, write_block
from examples.study_table import EXAMPLES, fmt_p, saved_study, serving, wait
from service.significance import ALPHA, adjust, compare

PAPER = EXAMPLES / "paper"
RESULTS = EXAMPLES / "results" / "paper-claims.json"
BLOCK = "paper-claims"
STUDIES = ("shift", "deep-sigmoid", "bn-lcw")


def run(url: str | None) -> dict[str, Any]:
    """Submit the three studies, wait for all of them, and return what is saved."""
    with serving(url) as client:
        started = time.monotonic()
        ids = {name: client.submit(PAPER / f"{name}.yaml").id for name in STUDIES}
        studies: dict[str, Any] = {}
        for name, sid in ids.items():  # shift first: the cheapest, and checked at once
            done = wait(client, sid)
            saved = saved_study(f"paper/{name}.yaml", done, time.monotonic() - started,
                                client.summary(sid))  # fmt: skip
            if name == "shift":
                saved["init_shift"] = [
                    {
                        "method": t.method,
                        "depth": t.depth,
                        "seed": t.seed,
                        "shift": [row["shift"] for row in _init_layers(client.trial(t.id))],
                    }
                    for t in client.iter_trials(sid)
                ]
                print(_shift_rows(saved), flush=True)
            studies[name] = saved
        wall = time.monotonic() - started
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "wall_s": round(wall, 1),
        "studies": studies,
    }


def _init_layers(trial: Any) -> list[dict[str, Any]]:
    epoch0 = next(m for m in trial.metrics if m.epoch == 0)
    return list((epoch0.diagnostics or {}).get("layers", []))


def _ci(c: dict[str, Any]) -> str:
    if c["mean_diff"] is None:
        return "n/a"
    ci = c["ci95"]
    text = f"{c['mean_diff']:+.3g}"
    return text + (f" [{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "")


def _shift_rows(saved: dict[str, Any]) -> list[dict[str, Any]]:
    trials = saved["init_shift"]
    rows = []
    for depth in sorted({t["depth"] for t in trials}):
        by = {(t["method"], t["seed"]): t["shift"] for t in trials if t["depth"] == depth}
        seeds = sorted(s for m, s in by if m == "plain" and ("lcw", s) in by)
        plain = [by[("plain", s)] for s in seeds]
        lcw = [by[("lcw", s)] for s in seeds]
        c = compare([x[-1] for x in lcw], [x[-1] for x in plain])

        def avg(rows: list[list[float]], i: int) -> float:
            return sum(r[i] for r in rows) / len(rows)

        rows.append({
            "claim": ("Without LCW the activation shift grows with depth at init; LCW removes "
                      "the growth (deepest layer, lcw - plain)"),
            "setting": f"sigmoid MLP depth {depth} width 100, mnist5k; shift of layer {depth}",
            "measured": (
                f"plain {avg(plain, 0):.3g} at layer 1 -> {avg(plain, -1):.3g} at layer "
                f"{depth}; lcw {avg(lcw, -1):.3g}; lcw - plain {_ci(c)} (n={c['n']})"
            ),
            "p": c["p_value"],
            "diff": c["mean_diff"],
            "sign": -1,
        })  # fmt: skip
    return rows


def _comparison_rows(saved: dict[str, Any], method: str, baseline: str, claim: str,
                     setting: str) -> list[dict[str, Any]]:  # fmt: skip
    summary = saved["summary"]
    cells = {(c["method"], c["depth"]): c for c in summary["cells"]}
    rows = []
    for c in sorted(summary["comparisons"], key=lambda c: c["depth"] or 0):
        if (c["method"], c["baseline"]) != (method, baseline):
            continue

        def acc(m: str, c: dict[str, Any] = c) -> str:
            cell = cells[(m, c["depth"])]
            if cell["test_acc_mean"] is None:
                return f"{m} n/a"
            return (f"{m} {cell['test_acc_mean']:.3f} (lr {cell['best_lr']:g}, "
                    f"x{cell['best_init_scale']:g})")  # fmt: skip

        rows.append({
            "claim": claim,
            "setting": setting.format(depth=c["depth"]),
            "measured": f"{acc(method)} vs {acc(baseline)}; difference {_ci(c)} (n={c['n']})",
            "p": c["p_value"],
            "diff": c["mean_diff"],
            "sign": 1,
        })  # fmt: skip
    return rows


def render(saved: dict[str, Any]) -> str:
    """The README block from the saved results file."""
    studies = saved["studies"]
    rows = _shift_rows(studies["shift"])
    rows += _comparison_rows(
        studies["deep-sigmoid"], "lcw", "plain",
        "LCW trains deep sigmoid MLPs that plain layers, tuned alike, train worse or not at "
        "all (test accuracy, lcw - plain)",
        "sigmoid MLP depth {depth} width 100, mnist5k, 10 epochs; 4 LRs x 4 init scales each",
    )  # fmt: skip
    rows += _comparison_rows(
        studies["bn-lcw"], "bn_lcw", "bn",
        "BN + LCW generalizes better than BN alone (test accuracy, bn_lcw - bn)",
        "sigmoid MLP depth {depth} width 100, mnist5k, 10 epochs; 4 LRs each",
    )  # fmt: skip
    family = [r for r in rows if r["p"] is not None]
    for r, p in zip(family, adjust([r["p"] for r in family], "holm"), strict=True):
        r["p_adj"] = p
    trials = sum(s["trials"] for s in studies.values())
    lines = [
        f"Measured {saved['date']} on {saved['machine']}: the three studies in `examples/paper/`, "
        f"{trials} trials, {saved['wall_s'] / 60:.1f} min wall time in all "
        "(`python -m examples.paper.claims run`; this table: `... readme`).",
        "",
        f"Differences are paired over seeds with a 95% t interval; p is the paired t-test's, "
        f"adjusted by Holm over the table's {len(family)} rows; a verdict needs adjusted p < "
        f"{ALPHA} in the claimed direction.",
        "",
        "| claim | setting | measured | p adj | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = r.get("p_adj")
        lines.append(f"| {r['claim']} | {r['setting']} | {r['measured']} | {fmt_p(p)} | "
                     f"{_verdict(r)} |")  # fmt: skip
    lines.append(
        "| LCW with BN improves VGG-19 on CIFAR-10/100 | `examples/vgg19-cifar10.yaml`, "
        "`examples/vgg19-cifar100.yaml` (100 epochs, GPUs, the CIFAR files) | not run here | "
        "n/a | not run here |"
    )
    return "\n".join(lines)


def _verdict(row: dict[str, Any]) -> str:
    p = row.get("p_adj")
    diff = row["diff"]
    if p is None or diff is None or p >= ALPHA:
        return "not shown"
    return "supported" if diff * row["sign"] > 0 else "contradicted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "readme"])
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args()
    if args.what == "run":
        saved = run(args.url)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    text = render(json.loads(Path(RESULTS).read_text()))
    if not write_block(BLOCK, text):
        print(f"README.md has no {BLOCK} markers; the table:")
    print(text)


if __name__ == "__main__":
    main()
