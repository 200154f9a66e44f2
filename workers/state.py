"""What the dispatcher keeps track of: actor shapes, its actors, its trials and who holds which.

Plain records, no Ray and no database: ``Shape`` (what one trial reserves on a node),
``Worker`` (one actor and the runs it was sent), ``Trial`` (a claimed trial from the backlog
to its stored outcome) and ``Held`` (every trial this dispatcher holds a lease on: by id,
the backlog waiting for an actor, and the runs on actors by token). The dispatcher's parts
(``workers.leases``, ``workers.pool``, ``workers.placement``, ``workers.outcomes``,
``workers.writeback``, ``workers.resolve``) share one ``Held`` and change these records; none
of them keeps a copy.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from service.store import ClaimedTrial

EPS = 1e-9  # resource comparisons: fractional GPUs add up with rounding errors


@dataclass(frozen=True)
class Shape:
    """What one trial reserves on a Ray node; actors are made per shape."""

    cpu: float = 1.0
    gpu: float = 0.0

    @classmethod
    def of(cls, resources: dict[str, Any] | None) -> Shape:
        resources = resources or {}
        return cls(cpu=float(resources.get("cpu", 1.0)), gpu=float(resources.get("gpu", 0.0)))

    @property
    def device(self) -> str:
        # A GPU share means Ray set CUDA_VISIBLE_DEVICES for the actor: its GPU is cuda:0.
        return "cuda" if self.gpu > 0 else "cpu"

    @property
    def threads(self) -> int:
        # One torch thread per reserved CPU: more would oversubscribe the node.
        return max(1, int(self.cpu))


@dataclass(eq=False)
class Worker:
    """One TrialRunner actor and what it runs."""

    handle: Any
    shape: Shape
    name: str
    trials: tuple[Trial, ...] = ()  # what it runs now: one trial, or the members of a pack
    # What it runs next, already sent, in order: the actor starts each the moment the run
    # before it ends (no round trip through the dispatcher between two runs). One run, or a few
    # when trials are shorter than a tick (``workers.placement``).
    queued: list[tuple[Trial, ...]] = field(default_factory=list)
    drain_ref: Any = None
    ready: bool = False  # its process is up (answered ``info``): only then does it get trials
    node: str | None = None  # Ray node id, from ``info``
    free_bytes: float | None = None  # its device's free memory when it started (``info``)
    born: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Trial:
    """A claimed trial, from the backlog to its outcome queued for the database."""

    claim: ClaimedTrial
    shape: Shape
    config: dict[str, Any] | None = None  # resolved: LR assigned, device and threads set
    key: str | None = None  # packing.group_key of the resolved config; None: never packed
    rungs: list[int] = field(default_factory=list)  # ASHA rung epochs, [] without ASHA
    phase: str = "backlog"  # backlog -> running -> finishing (its outcome waits to be stored)
    token: str = ""
    worker: Worker | None = None
    ref: Any = None
    started: float | None = None  # monotonic time the actor began training it
    written: set[int] = field(default_factory=set)  # epochs handed to write_metrics
    stopping: str | None = None  # why we stopped it: lost | timeout | shutdown
    kill_at: float | None = None
    asha_stopped: bool = False

    @property
    def id(self) -> int:
        return self.claim.id


class Held:
    """The trials this dispatcher holds a lease on (waiting, running or finishing)."""

    def __init__(self) -> None:
        self.trials: dict[int, Trial] = {}
        self.backlog: deque[Trial] = deque()  # claimed, not yet sent to an actor
        self.tokens: dict[str, Trial] = {}  # runs sent to actors, by the run's token

    def add(self, claim: ClaimedTrial) -> Trial:
        """A newly claimed trial, at the end of the backlog."""
        t = Trial(claim=claim, shape=Shape.of(claim.resources))
        self.trials[claim.id] = t
        self.backlog.append(t)
        return t

    def forget(self, t: Trial) -> None:
        """Drop `t` without writing anything (it is no longer ours)."""
        self.trials.pop(t.id, None)
        if t in self.backlog:
            self.backlog.remove(t)
        self.tokens.pop(t.token, None)


def first_line(value: object) -> str:
    """The first line of an error, for logs and short reasons (at most 300 characters)."""
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else type(value).__name__


__all__ = ["EPS", "Held", "Shape", "Trial", "Worker", "first_line"]
