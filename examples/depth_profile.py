"""Every method x activation at its default init: how signal and gradient change over 20 layers.

    python -m examples.depth_profile           # measure (~10 s, one thread), save the results
    python -m examples.depth_profile --readme  # re-render README.md's two blocks, no measuring

Measuring runs ``lcw.diagnostics.depth_profile`` (20 layers of width 500, 256 standard-normal
inputs, seed 0, float32, no training) for every method in ``lcw.catalog.METHODS`` and every
activation, with the mean-field prediction beside each figure (``lcw.meanfield``), and saves
them with the date, the machine and the versions to ``examples/results/depth_profile.json``.
``--readme`` renders, from that file alone, README's ``depth-profile`` block, and from lcw's
own definitions (``lcw.init``) its ``init-defaults`` block: the defaults table, so the docs
never drift from the code. ``tests/lcw/test_depth_profile_doc.py`` checks both blocks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

from benchmarks.docs import ROOT, machine, write_block
from lcw import catalog
from lcw.init import INIT_DEFAULTS, default_chi

RESULTS = ROOT / "examples" / "results" / "depth_profile.json"
BLOCKS = ("init-defaults", "depth-profile")
SETUP = {"depth": 20, "width": 500, "batch": 256, "seed": 0}
QUANTITIES = {
    "q": "Forward: preactivation variance q, layer 20 / layer 1",
    "grad_z": "Backward: gradient of the loss w.r.t. the preactivations, |dL/dz|, layer 20 / "
    "layer 1 (above 1: it shrinks towards the input)",
    "grad_norm": "Weight gradient the optimizer applies, |dL/dW|, layer 20 / layer 1",
}


def measure() -> dict[str, Any]:
    """The profile of every method x activation, with its mean-field prediction."""
    import numpy as np
    import torch

    from lcw.diagnostics import depth_profile

    torch.set_num_threads(1)
    profiles = {
        a: {m: depth_profile(m, a, **SETUP) for m in catalog.METHODS} for a in catalog.ACTIVATIONS
    }
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "processor": platform.processor(),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "setup": {
            **SETUP,
            "inputs": "standard normal",
            "labels": "uniform over 10 classes",
            "loss": "mean cross-entropy",
            "dtype": "float32",
            "threads": 1,
        },
        "profiles": profiles,
    }


def _num(v: float) -> str:
    return (
        f"{v:.3g}"
        if 0.01 <= abs(v) < 1000
        else f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+")
    )


def _ratio(values: list[float]) -> float:
    return values[-1] / values[0]


def render(results: dict[str, Any]) -> str:
    """README's depth-profile block, from saved results only."""
    profiles = results["profiles"]
    activations = list(profiles)
    methods = list(profiles[activations[0]])
    s = results["setup"]
    lines = [
        f"{s['depth']} layers of width {s['width']} at the default init, {s['batch']} "
        f"{s['inputs']} inputs (seed {s['seed']}), {s['loss']}, no training. Each cell: "
        "measured (mean-field prediction, `lcw.meanfield`). Measured "
        f"{results['date']} on {results['machine']}, torch {results['versions']['torch']}.",
    ]
    for name, title in QUANTITIES.items():
        lines += ["", f"*{title}*", "", "| method | " + " | ".join(activations) + " |",
                  "|---|" + "---|" * len(activations)]  # fmt: skip
        for m in methods:
            cells = []
            for a in activations:
                p = profiles[a][m]
                measured, predicted = _ratio(p["measured"][name]), _ratio(p["predicted"][name])
                cells.append(f"{_num(measured)} ({_num(predicted)})")
            lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The weight-gradient prediction assumes the samples' contributions add incoherently; "
        "it holds where every layer's input has zero mean (zero-sum rows, tanh), while a shared "
        "input mean (plain/bn/ln behind sigmoid, relu, gelu) adds a coherent part. plain and wn "
        "with gelu cross from relu-like to near-linear within these 20 layers, and finite "
        "width moves that crossover by layers from seed to seed, so their predictions are "
        "rough. Bounds and their reasons: `tests/lcw/test_depth_profile.py`.",
    ]
    return "\n".join(lines)


def render_defaults() -> str:
    """README's init-defaults block, from ``lcw.init`` (the code's own table)."""
    lines = [
        "| activation | default gain | chi at q = 1 | chi where the signal settles: "
        "unconstrained / zero-sum rows | why |",
        "|---|---|---|---|---|",
    ]
    for a, d in INIT_DEFAULTS.items():
        at_1 = default_chi(a, zero_sum=False, q=1.0)
        settled = (default_chi(a, zero_sum=False), default_chi(a, zero_sum=True))
        lines.append(
            f"| {a} | {d.gain:.5g} | {at_1:.2f} | {settled[0]:.2f} / {settled[1]:.2f} | "
            f"{d.reason} |"
        )
    return "\n".join(lines)


def write_readme(results: dict[str, Any]) -> None:
    for name, content in (("init-defaults", render_defaults()), ("depth-profile", render(results))):
        if not write_block(name, content):
            raise SystemExit(f"README.md has no <!-- {name}:start --> / end markers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true",
                        help="re-render README.md's blocks from the saved results")  # fmt: skip
    args = parser.parse_args(argv)
    if args.readme:
        write_readme(json.loads(RESULTS.read_text()))
        return
    results = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"saved {Path(RESULTS).relative_to(ROOT)}")
    print(render(results))


if __name__ == "__main__":
    main()
