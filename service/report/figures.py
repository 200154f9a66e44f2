"""The report's static figures, drawn with matplotlib on its Agg canvas (no display, no pyplot
state: each figure is its own object, so reports can be written from several threads).

Four kinds, from the summary and the study page's cell data (``service.web.views.cell_data``):
accuracy against depth (one per activation and width), learning-rate sensitivity, learning
curves at each method's best setting, and activation shift and gradient norm per layer at
init and at the last epoch (one of each per cell). Colours are the study page's.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from service.summary import CellSummary, LRSummary, Summary
from service.web.views import METHOD_COLORS, METHOD_ORDER, cell_label

DPI = 100
_RANK = {m: i for i, m in enumerate(METHOD_ORDER)}
_DASHES = ("-", "--", ":", "-.")  # one line style per init scale of a method


@dataclass(frozen=True)
class Figure:
    """One rendered figure: `name` is its file name stem (``figures/<name>.png``)."""

    name: str
    title: str
    caption: str
    png: bytes


def slug(*parts: object) -> str:
    """A file-name-safe stem from `parts` ("lr", "sigmoid", "d3", "w16" -> lr-sigmoid-d3-w16)."""
    text = "-".join(str(p) for p in parts if p is not None and p != "")
    return re.sub(r"[^a-z0-9._-]+", "_", text.lower())


def cell_slug(depth: int | None, width: int | None, activation: str) -> str:
    return slug(
        activation, None if depth is None else f"d{depth}", None if width is None else f"w{width}"
    )


def _canvas(
    *, panels: int = 1, width: float = 6.4, height: float = 3.8
) -> tuple[MplFigure, list[Axes]]:
    # Fixed margins, not a layout engine: constrained layout measures every label again at
    # save time (measured: 4.6 s of CPU for a 14-figure report, 3.8 s with fixed margins).
    figure = MplFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.62 / width, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    axes = list(figure.subplots(1, panels, squeeze=False)[0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return figure, axes


def _png(figure: MplFigure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _num(value: Any) -> float:
    """A value to plot: None and non-finite values become NaN (a gap in the line)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


def _ordered(methods: Sequence[str]) -> list[str]:
    return sorted(set(methods), key=lambda m: (_RANK.get(m, len(_RANK)), m))


def _color(method: str) -> str:
    return METHOD_COLORS.get(method, "#333333")


def _spread_x(ax: Axes, values: Sequence[float]) -> None:
    """A log axis when the values span a factor of 8 or more, ticks at the values themselves."""
    positive = sorted({v for v in values if v > 0})
    if len(positive) > 1 and positive[-1] / positive[0] >= 8:
        ax.set_xscale("log")
    if positive and len(positive) <= 12:
        ax.set_xticks(positive, [f"{v:g}" for v in positive])
        ax.minorticks_off()


def depth_figures(summary: Summary) -> list[Figure]:
    """Test accuracy at the best setting against depth, one figure per activation and width:
    a line per method, the 95% CI as error bars."""
    groups: dict[tuple[str, int | None], list[CellSummary]] = defaultdict(list)
    for cell in summary.cells:
        if cell.depth is not None:
            groups[(cell.activation, cell.width)].append(cell)
    out = []
    for (activation, width), cells in groups.items():
        figure, (ax,) = _canvas()
        drawn = False
        for method in _ordered([c.method for c in cells]):
            points = sorted(
                (c.depth, c.test_acc_mean, c.test_acc_ci95)
                for c in cells
                if c.method == method and c.test_acc_mean is not None and c.depth is not None
            )
            if not points:
                continue
            xs = [float(d) for d, _, _ in points]
            ys = [float(m) for _, m, _ in points]
            low = [m - ci[0] if ci else 0.0 for _, m, ci in points]
            high = [ci[1] - m if ci else 0.0 for _, m, ci in points]
            ax.errorbar(
                xs, ys, yerr=[low, high], marker="o", capsize=3, color=_color(method), label=method
            )
            drawn = True
        if not drawn:
            continue
        _spread_x(ax, [float(c.depth) for c in cells if c.depth is not None])
        ax.set_xlabel("depth (hidden layers)")
        ax.set_ylabel("test accuracy at the best setting")
        title = f"Accuracy vs depth: {activation}, width {width}"
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8)
        out.append(
            Figure(
                name=slug("depth", activation, None if width is None else f"w{width}"),
                title=title,
                caption="Mean test accuracy over seeds at each method's best setting (chosen "
                "on validation accuracy), against depth; bars: 95% t interval of the mean.",
                png=_png(figure),
            )
        )
    return out


def lr_figure(summary: Summary, data: dict[str, Any]) -> Figure | None:
    """Validation accuracy against the learning rate in one cell, a line per method (and init
    scale); a star marks each method's chosen setting. A cell with one learning rate and
    several init scales is drawn against the init scale instead (the other tuned setting)."""
    c = data["cell"]
    cells = [
        s
        for s in summary.cells
        if (s.depth, s.width, s.activation) == (c["depth"], c["width"], c["activation"])
    ]
    settings = [lr for cell in cells for lr in cell.lrs]
    by_scale = len({lr.lr for lr in settings}) < 2 and len({lr.init_scale for lr in settings}) > 1

    def x_of(lr: LRSummary) -> float | None:
        return lr.init_scale if by_scale else lr.lr

    def group_of(lr: LRSummary) -> float | None:
        return lr.lr if by_scale else lr.init_scale

    figure, (ax,) = _canvas()
    xs: list[float] = []
    for cell in sorted(cells, key=lambda s: _RANK.get(s.method, len(_RANK))):
        groups = sorted({group_of(lr) for lr in cell.lrs}, key=lambda v: (v is None, v or 0.0))
        for i, group in enumerate(groups):
            points = sorted(
                (x, lr.val_acc_mean)
                for lr in cell.lrs
                if group_of(lr) == group
                and lr.val_acc_mean is not None
                and (x := x_of(lr)) is not None
            )
            if not points:
                continue
            label = cell.method
            if len(groups) > 1 and group is not None:
                label += f" lr {group:g}" if by_scale else f" x{group:g}"
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                _DASHES[i % len(_DASHES)],
                marker="o",
                color=_color(cell.method),
                label=label,
            )
            xs += [p[0] for p in points]
        best = next(
            (
                lr
                for lr in cell.lrs
                if (lr.lr, lr.init_scale) == (cell.best_lr, cell.best_init_scale)
            ),
            None,
        )
        if best is not None and best.val_acc_mean is not None and (x := x_of(best)) is not None:
            ax.plot(
                [x],
                [best.val_acc_mean],
                "*",
                markersize=14,
                color=_color(cell.method),
                markeredgecolor="black",
            )
    if not xs:
        return None
    _spread_x(ax, xs)
    ax.set_xlabel("init scale (x the method's default std)" if by_scale else "learning rate")
    ax.set_ylabel("validation accuracy (mean over seeds)")
    kind = "Init-scale" if by_scale else "Learning-rate"
    title = f"{kind} sensitivity: {data['label']}"
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    return Figure(
        name=slug("lr", cell_slug(c["depth"], c["width"], c["activation"])),
        title=title,
        caption=(
            "Mean validation accuracy over seeds at every init scale tried (the study has one "
            "learning rate)"
            if by_scale
            else "Mean validation accuracy over seeds at every learning rate tried (a line per "
            "init scale when several were)"
        )
        + "; the star is the setting the summary chose.",
        png=_png(figure),
    )


def curves_figure(data: dict[str, Any]) -> Figure | None:
    """Training loss and test accuracy per epoch in one cell, each method at its best setting
    (means over seeds; epoch 0 is the evaluation at init)."""
    curves: dict[str, dict[str, Any]] = data["curves"]
    if not curves:
        return None
    figure, (loss, acc) = _canvas(panels=2, width=9.6)
    for method, curve in curves.items():
        epochs = [float(e) for e in curve["epoch"]]
        label = f"{method} (lr {curve['lr']:g})"
        loss.plot(
            epochs,
            [_num(v) for v in curve["train_loss"]],
            marker=".",
            color=_color(method),
            label=label,
        )
        acc.plot(
            epochs,
            [_num(v) for v in curve["test_acc"]],
            marker=".",
            color=_color(method),
            label=label,
        )
    loss.set_ylabel("training loss")
    acc.set_ylabel("test accuracy")
    for ax in (loss, acc):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc.legend(fontsize=8)
    c = data["cell"]
    title = f"Learning curves at the best learning rates: {data['label']}"
    figure.suptitle(title, fontsize=11)
    return Figure(
        name=slug("curves", cell_slug(c["depth"], c["width"], c["activation"])),
        title=title,
        caption="Training loss and test accuracy per epoch (means over seeds), each method at "
        "its best setting; epoch 0 is the network at init.",
        png=_png(figure),
    )


def diagnostics_figure(data: dict[str, Any]) -> Figure | None:
    """Activation shift and gradient norm per layer at init (dashed) and at the last epoch
    (solid), each method at its best setting; None when the cell has no diagnostics."""
    diagnostics: dict[str, dict[str, Any]] = data["diagnostics"]
    if not any("init" in d or "last" in d for d in diagnostics.values()):
        return None
    figure, (shift, grad) = _canvas(panels=2, width=9.6)
    for method, entry in diagnostics.items():
        for phase, style in (("init", "--"), ("last", "-")):
            if phase not in entry:
                continue
            layers = [float(v) for v in entry[phase]["layer"]]
            label = f"{method} init" if phase == "init" else f"{method} epoch {entry['last_epoch']}"
            for ax, metric in ((shift, "shift"), (grad, "grad_norm")):
                ax.plot(
                    layers,
                    [_num(v) for v in entry[phase][metric]],
                    style,
                    marker="o",
                    markersize=4,
                    color=_color(method),
                    label=label,
                )
    for ax in (shift, grad):
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("layer (1 = first hidden layer)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shift.set_ylabel("activation shift")
    grad.set_ylabel("gradient norm")
    grad.legend(fontsize=8)
    c = data["cell"]
    title = f"Activation shift and gradient norm per layer: {data['label']}"
    figure.suptitle(title, fontsize=11)
    return Figure(
        name=slug("layers", cell_slug(c["depth"], c["width"], c["activation"])),
        title=title,
        caption="Per hidden layer on a probe batch: the std across neurons of each neuron's "
        "mean preactivation over the mean within-neuron std (activation shift), and the norm of "
        "the weight gradient the optimizer applies; dashed: at init, solid: at the last epoch "
        "(means over seeds, each method at its best setting).",
        png=_png(figure),
    )


__all__ = [
    "Figure",
    "cell_label",
    "cell_slug",
    "curves_figure",
    "depth_figures",
    "diagnostics_figure",
    "lr_figure",
    "slug",
]
