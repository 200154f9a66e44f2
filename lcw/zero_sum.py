"""The zero-sum subspace {w : w . 1 = 0} of a weight row, and the machinery that keeps rows in it.

Source: T. Kutsuna, "Linearly Constrained Weights: Reducing Activation Shift for Faster Training
of Neural Networks", ECML PKDD 2019, LNCS 11906 (Springer, 2020), doi
10.1007/978-3-030-46147-8_16. Rows are along dim 0 (a convolution's row is its flattened
in_channels x kh x kw filter). Here: the projection, the paper's closed-form orthonormal basis,
the ``centering`` / ``basis`` / centered-weight-norm parametrizations, and the two global
optimizer hooks behind the ``projection`` implementation (see ``lcw.layers`` for which
optimizers give the implementations the same trajectory). The hooks are installed by
``install_projection_hooks``, which the first projection-LCW layer built calls; importing this
module registers nothing.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.hooks import RemovableHandle


def _rows(t: Tensor) -> Tensor:
    """A weight as (out, fan_in) rows, each row in its standard (in, kh, kw) order: a view when
    the weight is contiguous, else a copy (for functions of the rows, not in-place edits)."""
    return t.reshape(t.shape[0], -1)


def _memory_order(t: Tensor) -> tuple[int, ...]:
    """A permutation of `t`'s dims, dim 0 first, in which `t` is contiguous: its own order, or
    (out, kh, kw, in) for a channels_last convolution weight."""
    if t.is_contiguous():
        return tuple(range(t.dim()))
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    raise ValueError(
        f"weight: a zero-sum row must be one block of memory; this {tuple(t.shape)} tensor has "
        f"strides {t.stride()} (allowed: contiguous, or channels_last for a convolution)"
    )


def _row_view(t: Tensor) -> Tensor:
    """`t` as (out, fan_in) rows that are a view of its memory, so in-place edits reach `t`,
    whatever its layout (a channels_last filter's row lists its elements in (kh, kw, in) order,
    which a row's mean and the projection do not depend on)."""
    return t.permute(_memory_order(t)).view(t.shape[0], -1)


def zero_sum_dof(w: Tensor) -> int:
    """Degrees of freedom of one zero-sum row: fan_in - 1.

    A projected N(0, std^2) row has E|w|^2 = (fan_in - 1) std^2, so constrained layers draw with
    std = gain / sqrt(fan_in - 1) to get E|w|^2 = gain^2, exactly what an unconstrained layer
    gets from std = gain / sqrt(fan_in). The difference compounds with depth (50 layers of width
    100 lose 40% of the signal variance without it).
    """
    return _rows(w).shape[1] - 1


def project_rows_(w: Tensor) -> Tensor:
    """Project every row of `w` (any shape, rows along dim 0) onto sum = 0, in place."""
    r = _row_view(w)
    r.sub_(r.mean(dim=1, keepdim=True))
    return w


def zero_sum_basis(m: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The closed-form m x (m-1) orthonormal basis B of {w in R^m : w . 1 = 0} (materialized).

    For tests and inspection only; the layers apply B without building it.
    """
    if m < 2:
        raise ValueError(f"m: a zero-sum basis needs m >= 2, got {m}")
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    top = torch.eye(m - 1, dtype=dtype) - c
    bottom = torch.full((1, m - 1), -1.0 / math.sqrt(m), dtype=dtype)
    return torch.cat([top, bottom], dim=0)


def basis_apply(v: Tensor) -> Tensor:
    """B v for each row of v (out, m-1) -> (out, m), O(m) per row."""
    m = v.shape[1] + 1
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    s = v.sum(dim=1, keepdim=True)
    return torch.cat([v - c * s, -s / math.sqrt(m)], dim=1)


def basis_apply_t(w: Tensor) -> Tensor:
    """B^T w for each row of w (out, m) -> (out, m-1)."""
    m = w.shape[1]
    c = (1.0 - 1.0 / math.sqrt(m)) / (m - 1)
    head, last = w[:, :-1], w[:, -1:]
    return head - c * head.sum(dim=1, keepdim=True) - last / math.sqrt(m)


class _Centering(nn.Module):
    """Parametrization w = v - mean(v) per row."""

    def forward(self, v: Tensor) -> Tensor:
        r = _rows(v)
        return (r - r.mean(dim=1, keepdim=True)).view_as(v)

    def right_inverse(self, w: Tensor) -> Tensor:
        return w


class _Basis(nn.Module):
    """Parametrization w = B v with v of shape (out, fan_in - 1)."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, v: Tensor) -> Tensor:
        return basis_apply(v).view(self.shape)

    def right_inverse(self, w: Tensor) -> Tensor:
        return basis_apply_t(_rows(w))


class _CenteredWeightNorm(nn.Module):
    """Parametrization w = g (v - mean v) / |v - mean v| per row (Huang et al., 2017)."""

    def forward(self, g: Tensor, v: Tensor) -> Tensor:
        r = _rows(v)
        c = r - r.mean(dim=1, keepdim=True)
        norm: Tensor = c.norm(dim=1, keepdim=True)
        return (g * c / norm.clamp_min(1e-12)).view_as(v)

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        r = _rows(w)
        return r.norm(dim=1, keepdim=True), w


# Projected parameters are kept in the subspace by two global optimizer hooks, whatever the
# optimizer: gradient rows are projected before the step and the weight after it. They are
# registered by ``install_projection_hooks``, which projection-LCW layers call when built.
#
# For SGD (momentum, nesterov, weight decay) the first is skipped: its update is linear in the
# gradient and the weight is already zero-sum, so P(w - lr d) = w - lr P d, and projecting after
# the step gives exactly the projected-gradient trajectory (= centering = basis under SGD). For
# Adam-like optimizers, which are not linear in the gradient, the gradient must be projected
# first to match centering; that matches it for Adam without weight decay and for AdamW, but
# not for Adam with coupled weight decay (see the ``lcw.layers`` docstring). Optimizers may
# declare ``linear_in_gradient = True`` to opt in to skipping the first hook.
# (Global hooks instead of per-parameter autograd hooks: one Python call a step, not one per
# layer, which is what keeps the constraint nearly free.)
_PROJECTED_ATTR = "_lcw_zero_sum"


def _projected_params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [
        p for group in optimizer.param_groups for p in group["params"]
        if getattr(p, _PROJECTED_ATTR, False)
    ]  # fmt: skip


def _linear_in_gradient(optimizer: torch.optim.Optimizer) -> bool:
    return isinstance(optimizer, torch.optim.SGD) or getattr(optimizer, "linear_in_gradient", False)


def _project_grads_before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    if _linear_in_gradient(optimizer):
        return
    with torch.no_grad():
        project_all_([p.grad for p in _projected_params(optimizer) if p.grad is not None])


def project_all_(tensors: list[Tensor]) -> None:
    """Project the rows of many tensors in place; same-shaped ones in one batched pass."""
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    for t in tensors:
        r = _row_view(t.data)
        groups.setdefault((r.shape, r.dtype, r.device), []).append(r)
    for rows in groups.values():
        if len(rows) == 1:
            project_rows_(rows[0])
            continue
        means = torch.stack(rows).mean(dim=2, keepdim=True)  # (L, out, 1)
        torch._foreach_sub_(rows, list(means.unbind(0)))


class _ProjectionPlan:
    """An optimizer's projected weights, consolidated by shape into contiguous buffers.

    Same-shaped weights are moved (once) into one (L, out, fan_in) buffer and the parameters
    become views of it, so the projection after each step is two tensor ops per shape group
    instead of two per layer. The plan is rebuilt whenever the optimizer's parameter lists or
    any weight's storage change (``model.to(device)``, ``load_state_dict`` into new storage).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.signature = self._signature(optimizer)
        self.params = _projected_params(optimizer)
        self.buffers: list[Tensor] = []
        groups: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in self.params:
            groups.setdefault((_row_view(p.data).shape, p.dtype, p.device), []).append(p)
        for members in groups.values():
            if len(members) == 1:
                self.buffers.append(_row_view(members[0].data))
                continue
            buf = torch.stack([_row_view(p.data) for p in members])  # (L, out, fan_in)
            for i, p in enumerate(members):
                # The same layout as before (channels_last stays channels_last), in the buffer.
                order = _memory_order(p.data)
                inverse = tuple(order.index(d) for d in range(len(order)))
                p.data = buf[i].view([p.shape[d] for d in order]).permute(inverse)
            self.buffers.append(buf)
        self.ptrs = [p.data_ptr() for p in self.params]

    @staticmethod
    def _signature(optimizer: torch.optim.Optimizer) -> tuple[tuple[int, int], ...]:
        return tuple((id(g["params"]), len(g["params"])) for g in optimizer.param_groups)

    def valid_for(self, optimizer: torch.optim.Optimizer) -> bool:
        return self.signature == self._signature(optimizer) and all(
            p.data_ptr() == ptr for p, ptr in zip(self.params, self.ptrs, strict=True)
        )

    def project(self) -> None:
        for buf in self.buffers:
            buf.sub_(buf.mean(dim=-1, keepdim=True))


_PLANS: weakref.WeakKeyDictionary[torch.optim.Optimizer, _ProjectionPlan] = (
    weakref.WeakKeyDictionary()
)


def _reproject_after_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    plan = _PLANS.get(optimizer)
    if plan is None or not plan.valid_for(optimizer):
        plan = _PLANS[optimizer] = _ProjectionPlan(optimizer)
    with torch.no_grad():
        plan.project()


_HOOK_HANDLES: tuple[RemovableHandle, RemovableHandle] | None = None


def install_projection_hooks() -> None:
    """Register the two global optimizer hooks, once per process (later calls do nothing).

    Called by every projection-LCW layer when it is built (or unpickled), so importing lcw
    changes no optimizer's behaviour: the hooks exist only once a projected weight does.
    """
    global _HOOK_HANDLES
    if _HOOK_HANDLES is None:
        _HOOK_HANDLES = (
            register_optimizer_step_pre_hook(_project_grads_before_step),
            register_optimizer_step_post_hook(_reproject_after_step),
        )


def reproject_(module: nn.Module) -> None:
    """Project every projection-LCW weight in `module` again (after manual edits of weights)."""
    with torch.no_grad():
        project_all_([p for p in module.parameters() if getattr(p, _PROJECTED_ATTR, False)])
