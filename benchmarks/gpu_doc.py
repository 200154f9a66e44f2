"""The README's GPU block, rendered from ``benchmarks/gpu_results.json``.

``benchmarks/gpu_check.sh OUT`` runs on a CUDA machine and leaves ``gpu_bench.json`` (every
GPU benchmark), ``gpu_tests.json`` (what each ``pytest -m gpu`` test measured) and
``pytest.log`` in OUT. Then, on any machine:

    python -m benchmarks.gpu_doc OUT    # merge OUT into gpu_results.json, re-render the block
    python -m benchmarks.gpu_doc        # re-render the block from gpu_results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.docs import ROOT, write_block

RESULTS = ROOT / "benchmarks" / "gpu_results.json"
BLOCK = "gpu"
SETUPS = {
    "mlp_d20_w100_fp32": "depth-20 width-100 MLP, batch 100, fp32",
    "vgg11_fp32": "VGG-11 on 32x32, batch 128, fp32 (TF32 convolutions)",
    "vgg11_bf16_nhwc": "VGG-11 on 32x32, batch 128, bf16 autocast + channels_last",
}
PACKS = {
    "packing_mlp": "depth-20 width-100 sigmoid MLPs (lcw), batch 100, fp32",
    "packing_vgg19": "VGG-19 bn_lcw, batch 128, fp32",
    "packing_vgg19_bf16_nhwc": "VGG-19 bn_lcw, batch 128, bf16 autocast + channels_last",
}


def merge(folder: Path) -> dict[str, Any]:
    """One results document from a gpu_check.sh output folder."""
    log = (folder / "pytest.log").read_text().splitlines()
    summary = next(line for line in reversed(log) if " passed" in line or " failed" in line)
    return {
        "bench": json.loads((folder / "gpu_bench.json").read_text()),
        "tests": json.loads((folder / "gpu_tests.json").read_text()),
        "pytest": summary.strip("= "),
    }


def _rel(x: float) -> str:
    return "0 (bitwise)" if x == 0 else f"{x:.1e}"


def render(results: dict[str, Any]) -> str:
    bench, tests = results["bench"], results["tests"]
    lines = [
        f"Measured on one {bench['device']} (PyTorch {bench['torch']}, {bench['date']}) by "
        f"`benchmarks/gpu_check.sh`: `pytest -m gpu` ({results['pytest']}), then "
        f"`python -m benchmarks.gpu` ({bench['seconds']:.0f} s).",
        "",
        "| GPU check | figure |",
        "|---|---|",
    ]
    for key, label in SETUPS.items():
        c = bench["lcw_cost"][key]
        lines.append(
            f"| LCW training-step time / plain, {label}: projection, basis "
            f"| {c['projection']['ratio']:.3f}x, {c['basis']['ratio']:.3f}x |"
        )
    for key, label in PACKS.items():
        r = bench[key]
        lines.append(
            f"| Packed trials, K = {r['packs']} {label}: samples/s fused / one at a time "
            f"| {r['ratio']:.1f}x |"
        )
    t = tests["trial_on_cuda"]
    lines.append(
        "| The same trial (lcw relu depth-5 MLP, mnist5k, 3 epochs) on the GPU and on the CPU: "
        f"test accuracy | {t['gpu_test_acc']:.3f} / {t['cpu_test_acc']:.3f} |"
    )
    packs = {k.removeprefix("pack_vs_alone_"): v for k, v in tests.items()
             if k.startswith("pack_vs_alone_")}  # fmt: skip
    worst = max(packs, key=lambda m: packs[m]["max_rel_step_loss"])
    bitwise = [m for m, v in packs.items() if v["bitwise"]]
    lines.append(
        f"| A packed member vs the trial alone, {len(packs)} methods, "
        f"{packs[worst]['steps']} steps: largest relative step-loss difference "
        f"| {_rel(packs[worst]['max_rel_step_loss'])} ({worst}); bitwise: "
        f"{', '.join(bitwise) or 'none'} |"
    )
    b = tests["bf16_vs_fp32"]
    mean16 = sum(b["bf16_test_acc"]) / len(b["bf16_test_acc"])
    mean32 = sum(b["fp32_test_acc"]) / len(b["fp32_test_acc"])
    lines.append(
        f"| bf16 autocast vs fp32, {len(b['fp32_test_acc'])} seeds, 5 epochs: mean test "
        f"accuracy | {mean16:.3f} / {mean32:.3f} |"
    )
    c = tests["compile_vs_eager"]
    lines.append(
        "| `compile: true` vs eager, 70 steps: largest relative step-loss difference "
        f"| {_rel(c['max_rel_step_loss'])} (compiling and training: {c['compiled_seconds']:.1f}"
        " s) |"
    )
    v = tests["vgg11_channels_last"]
    lines.append(
        f"| VGG-11 channels_last vs NCHW, {v['steps']} steps: largest relative step-loss "
        f"difference | {_rel(v['max_rel_step_loss_nhwc_vs_nchw'])} |"
    )
    p = tests["vgg_pack_vs_alone"]
    lines.append(
        f"| A channels_last VGG-11 pack vs its members alone, {p['steps']} steps: largest "
        f"relative step-loss difference | {_rel(p['max_rel_step_loss'])} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a gpu_check.sh output folder to merge first")
    args = parser.parse_args()
    if args.folder:
        RESULTS.write_text(json.dumps(merge(Path(args.folder)), indent=2) + "\n")
    write_block(BLOCK, render(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
