"""lcw: linearly constrained weights (LCW) for PyTorch, with the baselines a fair study needs.

Reference: T. Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster
Training of Neural Networks", ECML PKDD 2019, LNCS 11906 (Springer, 2020), doi
10.1007/978-3-030-46147-8_16. Every neuron's weight vector is kept summing to zero, which
removes the activation shift that sigmoid (and other non-zero-mean) inputs cause.

Torch-free names (``lcw.catalog``, ``lcw.config``, ``lcw.init``, ``lcw.meanfield``) import
eagerly or need only NumPy; everything that needs torch is imported on first use, so the
service can validate specs without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from lcw.catalog import ACTIVATIONS, DATASETS, METHODS, MODELS
from lcw.config import ConfigError, OptimizerConfig, TrialConfig

__version__ = "0.1.0"

_LAZY = {
    "init_gain": "lcw.init",
    "INIT_DEFAULTS": "lcw.init",
    "LCWLinear": "lcw.layers",
    "LCWConv2d": "lcw.layers",
    "zero_sum_basis": "lcw.layers",
    "build_model": "lcw.models",
    "load_dataset": "lcw.data",
    "train": "lcw.trainer",
    "train_pack": "lcw.trainer",
    "TrialResult": "lcw.trainer",
    "measure_layers": "lcw.diagnostics",
}

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "METHODS",
    "MODELS",
    "ConfigError",
    "OptimizerConfig",
    "TrialConfig",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lcw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
