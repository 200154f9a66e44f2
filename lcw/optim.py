"""Optimizers: torch's for a single trial, per-member ones for packs, and the weight-decay rule.

Weight decay (``OptimizerConfig.decay_norm_and_bias`` False, the default) applies to the weight
matrices and filters of linear maps only, the classifier's included: for a parametrized weight
to the tensor the optimizer updates (centering's and basis's v, weight norm's direction v), not
to weight norm's scale g (``original0``), and never to normalization scales and shifts or to
biases. Decaying those would pull BN/LN scales and WN/CWN scales towards 0, a regularizer on
the normalization rather than on the weights. True: every parameter decays (torch's default).

A single trial gets two torch parameter groups (weight_decay, and 0); a pack passes the same
two groups to ``PackedSGD`` / ``PackedAdam``, which honour each group's weight_decay as
torch's do, so a packed member still updates exactly as its trial alone.

``PackedSGD`` / ``PackedAdam`` follow ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` exactly, with a
per-member learning rate and a per-member active mask (a diverged or stopped member is frozen
without disturbing the others); every parameter's dim 0 is member-major (``lcw.packed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lcw.config import TrialConfig
from lcw.packed_layers import member_view

ParamGroups = list[dict[str, Any]]


def _is_linear_map(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.Conv2d) or getattr(module, "is_linear_map", False)


def decayed_parameters(model: nn.Module) -> list[Tensor]:
    """The parameters weight decay applies to by default (see the module docstring)."""
    out: list[Tensor] = []
    for m in model.modules():
        if not _is_linear_map(m):
            continue
        if parametrize.is_parametrized(m, "weight"):
            plist: Any = getattr(m, "parametrizations")  # noqa: B009 (set by parametrize)
            originals = plist["weight"]
            # One original: the weight's own parameter (centering v, basis v); two: weight
            # norm's (g, v) from right_inverse, where only the direction v is a weight.
            out.append(
                originals.original if hasattr(originals, "original") else originals.original1
            )
        else:
            weight = m.weight
            assert isinstance(weight, Tensor)
            out.append(weight)
    return out


def param_groups(
    model: nn.Module, weight_decay: float, *, decay_norm_and_bias: bool = False
) -> ParamGroups:
    """Parameter groups carrying the weight-decay rule, in ``model.parameters()`` order."""
    params = list(model.parameters())
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decayed = {id(p) for p in decayed_parameters(model)}
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The torch optimizer of a single trial, with the weight-decay rule's groups."""
    o = cfg.optimizer
    groups = param_groups(model, o.weight_decay, decay_norm_and_bias=o.decay_norm_and_bias)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=o.momentum, nesterov=o.nesterov)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg.lr, betas=o.betas)


# ---------------------------------------------------------------- per-member optimizers


class _PackedOptimizer(torch.optim.Optimizer):
    """Base: per-member `lr` (K,) and `active` (K,) tensors; every param's dim 0 is K-major."""

    def __init__(self, params: Iterable[Tensor], *, lr: Tensor, defaults: dict[str, Any]):
        super().__init__(params, {"lr": float(lr.max()), **defaults})
        self.packs = len(lr)
        self.member_lr = lr.clone()  # (K,) the current learning rates (schedules scale them)
        self.base_lr = lr.clone()
        self.active = torch.ones(self.packs, dtype=torch.bool, device=lr.device)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the per-member learning rates and active mask (a
        checkpoint's: ``load_state_dict`` restores them exactly)."""
        out = super().state_dict()
        out["member_lr"], out["active"] = self.member_lr.clone(), self.active.clone()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        member_lr, active = state.pop("member_lr"), state.pop("active")
        super().load_state_dict(state)
        self.member_lr = member_lr.to(self.member_lr.device)
        self.active.copy_(active)  # in place: the trainer holds this tensor

    def set_scale(self, scale: float) -> None:
        """Scale every member's base LR (LR schedules)."""
        self.member_lr = self.base_lr * scale
        for g in self.param_groups:
            g["lr"] = float(self.member_lr.max())

    def _member_grads(self, params: list[Tensor]) -> list[Tensor]:
        """Each parameter's gradient per member (``member_view``), a frozen member's zeroed
        (in place).

        A frozen member's gradient is zero but may be non-finite (0 * inf in a diverged
        member's backward); zeroing it keeps its update exactly zero, so its weights stay as
        they are.
        """
        grads = [member_view(p.grad, self.packs) for p in params if p.grad is not None]
        if not bool(self.active.all()):
            for g in grads:
                g.masked_fill_(self._column(~self.active, g), 0.0)
        return grads

    def _column(self, v: Tensor, like: Tensor) -> Tensor:
        """A per-member (K,) tensor shaped to broadcast against `like` (K, ...)."""
        return v.view(self.packs, *([1] * (like.dim() - 1)))


class PackedSGD(_PackedOptimizer):
    """``torch.optim.SGD`` (momentum, dampening 0, nesterov, weight decay) per member."""

    linear_in_gradient = True  # lets projected LCW skip the gradient projection (lcw.layers)

    def __init__(
        self, params: Iterable[Tensor], *, lr: Tensor, momentum: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        defaults = {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
        super().__init__(params, lr=lr, defaults=defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        # In place (no fresh (K, n) temporaries: a pack's parameters are K times a trial's, so
        # each temporary would be a cold allocation of several hundred kilobytes), and one
        # parameter at a time through every op, so its momentum buffer is still in cache for the
        # update (the same ops as torch.optim.SGD's per-tensor loop, bitwise).
        for group in self.param_groups:
            mu, wd, nesterov = group["momentum"], group["weight_decay"], group["nesterov"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            neg_lr = -torch.where(self.active, self.member_lr, torch.zeros_like(self.member_lr))
            for p, g in zip(params, self._member_grads(params), strict=True):
                pm, d = member_view(p, self.packs), g
                if wd != 0:
                    d = d.add(pm, alpha=wd)
                if mu != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(mu).add_(d)
                    if not nesterov:
                        d = buf
                    elif wd != 0:
                        d.add_(buf, alpha=mu)  # `d` is this step's temporary
                    else:
                        d = d.add(buf, alpha=mu)
                pm.addcmul_(d, self._column(neg_lr.to(pm.dtype), pm))


class PackedAdam(_PackedOptimizer):
    """``torch.optim.Adam`` / ``AdamW`` (decoupled=True) per member."""

    def __init__(
        self, params: Iterable[Tensor], *, lr: Tensor, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False,
    ) -> None:  # fmt: skip
        defaults = {
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
        }
        super().__init__(params, lr=lr, defaults=defaults)
        # Per-parameter scratch for the update's denominator and numerator (not state: never
        # saved or loaded).
        self._scratch_bufs: dict[Tensor, list[Tensor]] = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        # torch.optim.Adam's single-tensor update (the one it runs on CPU), op for op and in the
        # same rounding: the per-member scalars (decay factor, step size) are computed in
        # double as torch computes its Python floats, then rounded to the parameter's dtype as
        # its kernels round a scalar; ``p.addcdiv_(m, d, value=s)`` is p + (s * m) / d there.
        # Batched over the parameters (torch._foreach_*) and in place, with two scratch buffers
        # per parameter for the update.
        for group in self.param_groups:
            (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            pm = [member_view(p, self.packs) for p in params]
            g = self._member_grads(params)
            lr = torch.where(self.active, self.member_lr, torch.zeros_like(self.member_lr))
            if wd != 0:
                if group["decoupled"]:
                    factor = (1 - lr * wd).to(pm[0].dtype)
                    torch._foreach_mul_(pm, [self._column(factor, x) for x in pm])
                else:
                    g = list(torch._foreach_add(g, pm, alpha=wd))
            states = [self.state[p] for p in params]
            for st, x in zip(states, pm, strict=True):
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(x)
                    st["exp_avg_sq"] = torch.zeros_like(x)
                st["step"] += 1
            m = [st["exp_avg"] for st in states]
            v = [st["exp_avg_sq"] for st in states]
            torch._foreach_lerp_(m, g, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, g, g, value=1 - b2)
            steps = [st["step"] for st in states]  # equal unless some steps lacked gradients
            denom = [self._scratch(p, x, 0) for p, x in zip(params, pm, strict=True)]
            for vi, di in zip(v, denom, strict=True):
                torch.sqrt(vi, out=di)
            torch._foreach_div_(denom, [(1 - b2**t) ** 0.5 for t in steps])
            torch._foreach_add_(denom, eps)
            neg_step = {t: (-(lr / (1 - b1**t))).to(pm[0].dtype) for t in set(steps)}
            update = [self._scratch(p, x, 1) for p, x in zip(params, pm, strict=True)]
            for mi, ui, t in zip(m, update, steps, strict=True):
                torch.mul(mi, self._column(neg_step[t], mi), out=ui)
            torch._foreach_div_(update, denom)
            torch._foreach_add_(pm, update)

    def _scratch(self, p: Tensor, like: Tensor, slot: int) -> Tensor:
        bufs = self._scratch_bufs.setdefault(p, [])
        while len(bufs) <= slot:
            bufs.append(torch.empty(0))
        if bufs[slot].shape != like.shape or bufs[slot].dtype != like.dtype:
            bufs[slot] = torch.empty_like(like)
        return bufs[slot]


def build_packed_optimizer(
    configs: list[TrialConfig], model: nn.Module | Iterable[Tensor], device: torch.device
) -> _PackedOptimizer:
    """The pack's optimizer with the members' learning rates and the weight-decay rule.

    `model`: the packed model (its parameters are grouped as ``param_groups`` says). A bare
    iterable of parameters is accepted only where the rule cannot matter (no weight decay, or
    ``decay_norm_and_bias``), since it cannot tell a weight from a bias.
    """
    o = configs[0].optimizer
    lr = torch.tensor([c.lr for c in configs], dtype=torch.float64, device=device)
    wd = o.weight_decay
    params: Any
    if isinstance(model, nn.Module):
        params = param_groups(model, wd, decay_norm_and_bias=o.decay_norm_and_bias)
    elif wd == 0 or o.decay_norm_and_bias:
        params = [{"params": list(model), "weight_decay": wd}]
    else:
        raise ValueError(
            "model: pass the packed model, not its parameters, when optimizer.weight_decay > 0 "
            "and optimizer.decay_norm_and_bias is false (the rule needs the module structure)"
        )
    if o.name == "sgd":
        return PackedSGD(params, lr=lr, momentum=o.momentum, nesterov=o.nesterov)
    return PackedAdam(params, lr=lr, betas=o.betas, decoupled=o.name == "adamw")


# ---------------------------------------------------------------- the trainer's interface


class SingleOptimizer:
    """The torch optimizer of a single trial behind the pack optimizer's small interface."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        self.optimizer, self.base_lr = optimizer, lr
        self.active = torch.ones(1, dtype=torch.bool)

    def set_scale(self, scale: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.base_lr * scale

    def lr(self, i: int) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (its groups carry the scheduled LR) and the active flag."""
        return {"optimizer": self.optimizer.state_dict(), "active": self.active.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.active.copy_(state["active"])


class PackOptimizer:
    """A pack's ``PackedSGD`` / ``PackedAdam`` behind the same interface."""

    def __init__(self, optimizer: _PackedOptimizer) -> None:
        self.optimizer = optimizer
        self.active = optimizer.active

    def set_scale(self, scale: float) -> None:
        self.optimizer.set_scale(scale)

    def lr(self, i: int) -> float:
        return float(self.optimizer.member_lr[i])

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
