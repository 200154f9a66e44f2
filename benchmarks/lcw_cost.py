"""What the constraint costs: training-step time of LCW networks vs the same network, plain.

The plain twin has exactly the lcw network's layout (no hidden biases, since lcw has none), so
the ratio isolates the constraint. Measured for an MLP (depth 20, width 100, batch 100, sigmoid)
and a VGG-11 conv stack on 32x32 inputs (batch 32, relu), for every implementation: the
default ``projection``, ``centering`` (forward-time reparameterization) and the paper's
``basis``. One torch thread, SGD with momentum, medians of interleaved repeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import interleaved_ratios
from lcw import TrialConfig
from lcw.models import build_model


def _drop_hidden_bias(model: nn.Module) -> nn.Module:
    for block in getattr(model, "blocks", []):
        if getattr(block.linear, "bias", None) is not None:
            block.linear.register_parameter("bias", None)
    return model


def step_fn(
    cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor, *, plain_twin: bool
) -> Callable[[], None]:
    """One SGD training step of `cfg`'s model on (x, y), on x's device.

    Honours `cfg.channels_last` and `cfg.precision` ("bf16" autocast); waits for the device so
    a timed call covers the whole step. `plain_twin`: the same layout with plain layers.
    """
    if plain_twin:
        cfg = TrialConfig.from_dict({**cfg.to_dict(), "method": "plain"})
    model = build_model(cfg)
    if plain_twin:
        _drop_hidden_bias(model)
    model = model.to(x.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    bf16 = cfg.precision == "bf16"
    cuda = x.device.type == "cuda"

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize(x.device)

    return step


def run(*, repeats: int = 5, quick: bool = False) -> dict[str, Any]:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    setups: dict[str, tuple[dict[str, Any], torch.Tensor, int]] = {
        "mlp_d20_w100": (
            dict(dataset="mnist5k", model="mlp", depth=20, width=100, activation="sigmoid"),
            torch.rand(100, 1, 28, 28, generator=g),
            60 if not quick else 10,
        ),
        "vgg11_32x32": (
            dict(dataset="synthetic", model="vgg11", activation="relu"),
            torch.randn(32, 3, 32, 32, generator=g),
            8 if not quick else 1,  # ~0.3 s a step: 8 calls a round keep a round's median steady
        ),
    }
    out: dict[str, Any] = {}
    for name, (base, x, calls) in setups.items():
        y = torch.randint(0, 10, (len(x),), generator=g)
        candidates = {"plain": step_fn(TrialConfig(method="lcw", **base), x, y, plain_twin=True)}
        for impl in ("projection", "centering", "basis"):
            cfg = TrialConfig(method="lcw", lcw_impl=impl, **base)
            candidates[impl] = step_fn(cfg, x, y, plain_twin=False)
        out[name] = interleaved_ratios(candidates, baseline="plain", calls=calls, repeats=repeats)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
