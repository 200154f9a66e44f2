"""Every GPU benchmark in one run (under 8 minutes on one H200), printed as one table.

1. LCW cost on the GPU: training-step time of lcw (projection, basis) vs the plain twin, for the
   depth-20 width-100 MLP (batch 100) and VGG-11 on 32x32 (batch 128), in fp32 and in bf16 with
   channels_last.
2. Packing: K = 64 depth-20 width-100 sigmoid MLPs trained as one pack vs the same 64 trials one
   at a time (samples/s of the training loop, data resident on the device).
3. VGG-19 (bn_lcw) training steps, a fused pack of 8 vs one at a time, in fp32 (NCHW) and in
   bf16 with channels_last.

    python -m benchmarks.gpu            # on a CUDA machine
    python -m benchmarks.gpu --out F    # ... and save the figures as JSON in F
    python -m benchmarks.gpu --device cpu --quick   # smoke run of the same code (tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved_ratios
from benchmarks.lcw_cost import step_fn
from lcw import TrialConfig, catalog
from lcw.data import load_dataset
from lcw.packed import build_packed_model, build_packed_optimizer
from lcw.trainer import to_channels_last


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(
    cfg: TrialConfig, device: torch.device, batch: int, *, plain_twin: bool = False
) -> Callable[[], None]:
    shape = (batch, *catalog.DATASETS[cfg.dataset].input_shape)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    return step_fn(cfg, x, y, plain_twin=plain_twin)


def lcw_cost(device: torch.device, *, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    setups: dict[str, tuple[dict[str, Any], int]] = {
        "mlp_d20_w100_fp32": (dict(dataset="mnist5k", depth=20, activation="sigmoid"), 100),
        "vgg11_fp32": (dict(dataset="synthetic", model="vgg11", activation="relu"), 128),
        "vgg11_bf16_nhwc": (
            dict(
                dataset="synthetic",
                model="vgg11",
                activation="relu",
                precision="bf16",
                channels_last=True,
            ),
            128,
        ),
    }
    for name, (base, batch) in setups.items():
        if quick:
            batch = 4
        cands: dict[str, Callable[[], None]] = {
            "plain": _step(TrialConfig(method="lcw", **base), device, batch, plain_twin=True)
        }
        for impl in ("projection", "basis"):
            cands[impl] = _step(TrialConfig(method="lcw", lcw_impl=impl, **base), device, batch)
        out[name] = interleaved_ratios(
            cands, baseline="plain", calls=5 if quick else 50, repeats=3 if quick else 5
        )
    return out


def _pack_throughput(
    cfgs: list[TrialConfig], device: torch.device, *, steps: int, batch: int
) -> float:
    """Samples/s of `steps` training steps of the pack (data on the device)."""
    data = load_dataset(cfgs[0].dataset, device=device)
    k = len(cfgs)
    model = build_packed_model(cfgs, input_shape=data.input_shape, num_classes=10).to(device)
    opt = build_packed_optimizer(cfgs, model, device)
    if cfgs[0].channels_last:
        to_channels_last(model, packed=True)  # in place, as nn.Module.to is
    bf16 = cfgs[0].precision == "bf16"
    n = len(data.y_train)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def one() -> None:
        idx = torch.randint(0, n, (k, batch), generator=gen).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(data.x_train[idx])
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), data.y_train[idx].flatten(), reduction="none"
        )
        opt.zero_grad(set_to_none=True)
        loss.view(k, -1).mean(dim=1).sum().backward()
        opt.step()

    for _ in range(3):
        one()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    _sync(device)
    return k * batch * steps / (time.perf_counter() - t0)


def packing(device: torch.device, *, quick: bool, packs: int = 64) -> dict[str, Any]:
    packs = 4 if quick else packs
    steps = 3 if quick else 40
    base: dict[str, Any] = dict(
        dataset="mnist5k", method="lcw", depth=20, width=100, activation="sigmoid",
        device=str(device),
    )  # fmt: skip
    cfgs = [TrialConfig(lr=0.05, seed=s, **base) for s in range(packs)]
    # One at a time: a pack of one is the same code path, so only fusion differs.
    single = _pack_throughput(cfgs[:1], device, steps=steps, batch=100)
    fused = _pack_throughput(cfgs, device, steps=steps, batch=100)
    return {"packs": packs, "single_samples_per_s": single, "packed_samples_per_s": fused,
            "ratio": fused / single}  # fmt: skip


def vgg19_pack(device: torch.device, *, quick: bool, fast: bool = False) -> dict[str, Any]:
    """`fast`: bf16 autocast and channels_last, else fp32 NCHW."""
    base: dict[str, Any] = dict(
        dataset="synthetic", model="vgg19", method="bn_lcw", activation="relu", device=str(device)
    )
    if fast:
        base.update(precision="bf16", channels_last=True)
    packs = 2 if quick else 8
    cfgs = [TrialConfig(lr=0.05, seed=s, **base) for s in range(packs)]
    batch, steps = (4, 2) if quick else (128, 10)
    single = _pack_throughput(cfgs[:1], device, steps=steps, batch=batch)
    fused = _pack_throughput(cfgs, device, steps=steps, batch=batch)
    return {"packs": packs, "single_samples_per_s": single, "packed_samples_per_s": fused,
            "ratio": fused / single}  # fmt: skip


def run(*, device: str = "cuda", quick: bool = False) -> dict[str, Any]:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks.gpu: no CUDA device (use --device cpu --quick for a smoke run)"
        )
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": dt.date.today().isoformat(),
        "lcw_cost": lcw_cost(dev, quick=quick),
        "packing_mlp": packing(dev, quick=quick),
        "packing_vgg19": vgg19_pack(dev, quick=quick),
        "packing_vgg19_bf16_nhwc": vgg19_pack(dev, quick=quick, fast=True),
    }
    out["seconds"] = time.perf_counter() - t0
    return out


def table(results: dict[str, Any]) -> str:
    lines = [f"GPU benchmarks on {results['device']} ({results['seconds']:.0f} s)", ""]
    lines.append("| benchmark | figure |")
    lines.append("|---|---|")
    for name, cands in results["lcw_cost"].items():
        for impl in ("projection", "basis"):
            lines.append(f"| LCW step cost {name} ({impl}) | {cands[impl]['ratio']:.3f}x plain |")
    for key in ("packing_mlp", "packing_vgg19", "packing_vgg19_bf16_nhwc"):
        r = results[key]
        lines.append(
            f"| {key}: K={r['packs']} fused vs one at a time | {r['ratio']:.1f}x samples/s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also save the figures as JSON in this file")
    args = parser.parse_args()
    res = run(device=args.device, quick=args.quick)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2) if args.json else table(res))
