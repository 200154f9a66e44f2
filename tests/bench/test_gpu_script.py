"""``benchmarks/gpu.py`` runs its whole path (every benchmark, the table) on the CPU, quickly.

The figures need a CUDA device; this checks that the script a lent GPU machine runs once does
not fail on a typo, a shape or a missing import first (and that without CUDA it says so).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu

ROOT = Path(__file__).resolve().parents[2]


def _gpu_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_gpu_benchmarks_run_end_to_end_on_the_cpu() -> None:
    done = _gpu_script("--device", "cpu", "--quick", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["device"] == "cpu"
    assert set(results["lcw_cost"]) == {"mlp_d20_w100_fp32", "vgg11_fp32", "vgg11_bf16_nhwc"}
    for cands in results["lcw_cost"].values():
        for impl in ("projection", "basis"):
            assert cands[impl]["ratio"] > 0
    for key in ("packing_mlp", "packing_vgg19"):
        assert results[key]["packs"] >= 2 and results[key]["ratio"] > 0
    assert "| packing_mlp: K=4 fused vs one at a time |" in gpu.table(results)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_the_gpu_benchmarks_say_so() -> None:
    done = _gpu_script()
    assert done.returncode != 0 and "no CUDA device" in done.stderr
