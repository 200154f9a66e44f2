"""A study's dataset, checked once on the worker nodes before its trials run.

Whether a dataset's files are on the GPU nodes is otherwise learnt trial by trial. When the
dispatcher first claims trials of a study whose dataset needs files, it runs ``node_status``
(a Ray task, no CPU reserved, pinned to each alive node that can hold one of its trials) and
waits for the answers, before any of those trials is sent to an actor. Each node checks the
files as loading would (``lcw.dataset_files``, level ``load``: structure, and the published
digest of a file of the published size, computed once per file version on that node). A node
that lacks them, or holds a damaged copy, fails the study at once through the path a trial's
``DatasetNotFoundError`` takes (``workers.writeback``: the claimed trials fail without retries,
the pending ones with ``fail_pending``), with a message that names the node and the fix.

A study that passed is remembered and never checked again by this dispatcher; one that failed
is checked again when its trials are claimed again (``lcw-sweep retry`` after the files were
fetched). When no node can take the check (none alive with the trial's resources: an
autoscaler that has not started the GPU nodes yet) or it does not answer within
``timeout_s``, the trials run unchecked, as before: each fails alone if the files are missing.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from functools import cache
from typing import Any

from lcw import catalog
from workers.messages import Permanent
from workers.state import EPS, Shape, Trial
from workers.writeback import WriteBack

log = logging.getLogger("lcw.workers")

CHECK_TIMEOUT_S = 120.0  # the first check of a large set computes its checksums on the node


def node_status(name: str, data_dir: str | None) -> dict[str, Any]:
    """`name`'s state on this node, where a trial with `data_dir` would look (a Ray task)."""
    import ray

    from lcw.dataset_files import inspect

    status = inspect(name, data_dir, level="load")
    error = status.error()
    return {
        **status.to_dict(),
        "host": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }


@cache
def _remote() -> Any:
    import ray

    return ray.remote(num_cpus=0, max_retries=1)(node_status)


def _fits(resources: dict[str, float], shape: Shape) -> bool:
    """A node with these total resources could run a trial of `shape`."""
    cpu_ok = resources.get("CPU", 0.0) + EPS >= shape.cpu
    return cpu_ok and resources.get("GPU", 0.0) + EPS >= shape.gpu


def check_nodes(
    name: str, data_dir: str | None, shape: Shape, *, timeout_s: float
) -> list[dict[str, Any]] | None:
    """`node_status` of every alive node that fits `shape`; None when none can answer."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [
        n["NodeID"] for n in ray.nodes() if n.get("Alive") and _fits(n.get("Resources", {}), shape)
    ]
    if not nodes:
        return None
    task = _remote()
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            name, data_dir
        )
        for node in nodes
    ]
    try:
        answers: list[dict[str, Any]] = ray.get(refs, timeout=timeout_s)
    except Exception as exc:  # a node lost meanwhile, a timeout: the trials run unchecked
        log.warning(
            "dataset '%s': the check on %d nodes did not answer (%s)", name, len(nodes), exc
        )
        for ref in refs:
            ray.cancel(ref, force=True)
        return None
    return answers


def failure(name: str, answers: list[dict[str, Any]]) -> str | None:
    """The error a study on `name` fails with (None: every node holds usable files)."""
    bad = [a for a in answers if a["error"] is not None]
    if not bad:
        return None
    first = bad[0]
    where = f"on node {first['host']}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
    return f"{first['error']} ({where}; checked by the dispatcher before the study's trials ran)"


class DatasetCheck:
    """Checks each study's dataset once, on the nodes, before its trials run (module doc)."""

    def __init__(self, writes: WriteBack, *, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.writes = writes
        self.timeout_s = timeout_s
        self.passed: set[int] = set()  # studies whose dataset every node holds
        self.checks = 0  # node checks run (one per study claimed, unless it passed before)

    def check(self, waiting: Iterable[Trial]) -> None:
        """Check the studies of `waiting` (claimed, not yet sent) not checked before; fail the
        study of a dataset that a node lacks."""
        seen: set[int] = set()
        for t in list(waiting):
            study = t.claim.study_id
            if study in self.passed or study in seen:
                continue
            seen.add(study)
            name = t.claim.config.get("dataset", "")
            info = catalog.DATASETS.get(name)
            if info is None or info.shipped:
                self.passed.add(study)
                continue
            try:
                error = self._check(name, t)
            except Exception:  # never let the check stop the loop: the trials run unchecked
                log.exception("dataset '%s': the check of study %d failed", name, study)
                continue
            if error is None:
                self.passed.add(study)
                continue
            log.warning("study %d fails before its trials ran: %s", study, error)
            self.writes.fail(t, error, permanent=Permanent.STUDY)  # and its waiting, pending

    def _check(self, name: str, t: Trial) -> str | None:
        self.checks += 1
        answers = check_nodes(
            name, t.claim.config.get("data_dir"), t.shape, timeout_s=self.timeout_s
        )
        if answers is None:
            return None
        return failure(name, answers)


__all__ = ["CHECK_TIMEOUT_S", "DatasetCheck", "check_nodes", "failure", "node_status"]
