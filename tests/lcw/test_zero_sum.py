"""The projection's global optimizer hooks exist only once a projection-LCW layer does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from lcw import zero_sum
from lcw.layers import LCWLinear
from lcw.zero_sum import install_projection_hooks

_CHECK = """
import pickle

import torch
from torch.optim import optimizer

import lcw.zero_sum as zero_sum


def ours():
    hooks = [*optimizer._global_optimizer_pre_hooks.values(),
             *optimizer._global_optimizer_post_hooks.values()]
    return [h for h in hooks if h.__module__ == "lcw.zero_sum"]


assert zero_sum._HOOK_HANDLES is None and not ours(), "importing lcw.zero_sum registered hooks"
import lcw.layers
import lcw.models
import lcw.packed

assert not ours(), "importing the layers registered hooks"
lcw.layers.LCWLinear(4, 3, impl="centering")
lcw.layers.LCWLinear(4, 3, impl="basis")
assert not ours(), "a parametrized LCW layer registered hooks"
layer = lcw.layers.LCWLinear(4, 3)
assert len(ours()) == 2, "a projection-LCW layer did not register the hooks"
lcw.layers.LCWConv2d(2, 3, 3)
zero_sum.install_projection_hooks()
assert len(ours()) == 2, "installing twice registered twice"

# An unpickled layer (no constructor call) installs them too.
data = pickle.dumps(layer)
for handle in zero_sum._HOOK_HANDLES:
    handle.remove()
zero_sum._HOOK_HANDLES = None
assert not ours()
layer = pickle.loads(data)
assert len(ours()) == 2, "unpickling a projection-LCW layer did not register the hooks"
opt = torch.optim.Adam(layer.parameters(), lr=0.1)
layer(torch.randn(5, 4)).square().sum().backward()
opt.step()
assert layer.weight.sum(dim=1).abs().max() < 1e-6, "the hooks did not keep the rows zero-sum"
print("ok")
"""


def test_hooks_are_installed_by_building_a_projection_layer_not_by_importing() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHECK], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_installing_is_idempotent_and_keeps_rows_zero_sum() -> None:
    layer = LCWLinear(6, 4, generator=torch.Generator().manual_seed(0))
    handles = zero_sum._HOOK_HANDLES
    assert handles is not None
    install_projection_hooks()
    assert zero_sum._HOOK_HANDLES is handles
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 6)).square().sum().backward()
        opt.step()
    assert layer.weight.sum(dim=1).abs().max() < 1e-6
