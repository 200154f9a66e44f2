"""Connecting this process to Ray: a cluster's address, $RAY_ADDRESS, or a local Ray.

``connect_ray`` is what ``lcw-sweep worker`` and ``lcw-sweep serve`` call before they start a
``Dispatcher``. A process whose SIGTERM belongs to someone else (the API server: uvicorn's
handler) imports Ray without abseil's failure-signal handler. A local Ray that it starts is
stopped at exit by :func:`stop_local_ray`, every process of it included.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

_NO_FAILURE_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def _import_ray_for_a_process_that_owns_sigterm() -> None:
    """Import Ray so that this driver does not install abseil's failure-signal handler.

    Ray's driver installs it for SIGTERM too, over the handler uvicorn set in the main thread;
    after a SIGTERM went through it, the API process aborted at exit (status 134) instead of
    running atexit (the embedded dispatcher giving its trials back, Ray's shutdown). Ray reads
    the switch when it is imported; it is set for the import only, so the Ray processes that
    ``ray.init`` starts keep their crash handlers.
    """
    if "ray" in sys.modules:  # imported before us: nothing to choose any more
        return
    saved = os.environ.get(_NO_FAILURE_HANDLER)
    os.environ[_NO_FAILURE_HANDLER] = "1"
    try:
        import ray  # noqa: F401
    finally:
        if saved is None:
            del os.environ[_NO_FAILURE_HANDLER]
        else:
            os.environ[_NO_FAILURE_HANDLER] = saved


def connect_ray(
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    failure_signal_handler: bool = True,
) -> dict[str, Any]:
    """Join the Ray cluster at `address` (or $RAY_ADDRESS), else start a local one.

    `failure_signal_handler` False: for a process whose SIGTERM belongs to someone else (the
    API server). Returns what we connected to: address, nodes, CPUs, GPUs, and whether Ray was
    already connected in this process (then nothing is started and `num_cpus` is ignored).
    """
    if not failure_signal_handler:
        _import_ray_for_a_process_that_owns_sigterm()
    import ray

    already = ray.is_initialized()
    if not already:
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # Ray starts its worker processes at nice 15 by default, below this process, its
            # own agents and the database: on a machine this busy the trials are the work, so
            # a local Ray runs them at normal priority (an operator's setting wins).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
            # Registered after ray.init's own shutdown hook, so it runs first (atexit is LIFO),
            # and after it anything registered later (the dispatcher giving its trials back).
            atexit.register(stop_local_ray)
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": ray.get_runtime_context().gcs_address,
        "local": not address and not already,
        "already_connected": already,
        "nodes": len(nodes),
        "cpus": float(resources.get("CPU", 0.0)),
        "gpus": float(resources.get("GPU", 0.0)),
    }


def stop_local_ray(*, grace_s: float = 3.0) -> set[int]:
    """Shut Ray down in this process and end every process it started; returns the pids that
    were still running after ``ray.shutdown()`` and had to be signalled.

    ``ray.shutdown()`` is meant to end them, but a shutdown at interpreter exit does not
    always get that far: a SIGTERM'd ``serve`` left Ray's log monitor and autoscaler monitor
    running, and the raylet's dashboard and runtime-env agents (about 95 MB each) have been
    seen to outlive it by a minute and a half. Every process this one started descends from
    it, so they are listed before the shutdown, and whatever of them is left after it gets
    SIGTERM, then SIGKILL after `grace_s`.
    """
    import ray

    # psutil ships with Ray (ray/thirdparty_files), importable once ray is imported.
    psutil = importlib.import_module("psutil")

    try:
        started = psutil.Process().children(recursive=True)
    except psutil.Error:
        started = []
    ray.shutdown()
    _, alive = psutil.wait_procs(started, timeout=0.5)
    left = {p.pid for p in alive}
    for sig_name in ("terminate", "kill"):
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                getattr(proc, sig_name)()
        _, alive = psutil.wait_procs(alive, timeout=grace_s)
        if not alive:
            break
    if left:
        log.info("stopped %d Ray processes that outlived ray.shutdown()", len(left))
    return left


__all__ = ["connect_ray", "stop_local_ray"]
