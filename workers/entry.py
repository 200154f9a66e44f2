"""The dispatcher's entry points: one built from the settings (``lcw-sweep worker``), and the
one embedded in ``lcw-sweep serve`` (a daemon thread whose actors are warm before the server
listens: ``WarmUp``)."""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.store import Store
from workers.dispatcher import Dispatcher
from workers.metrics import embed
from workers.ray_connect import connect_ray

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger("lcw.workers")

WARM_TIMEOUT_S = 120.0  # serve waits this long at most for its actors before it listens


def dispatcher_from_settings(settings: Settings, *, slots: int | None = None) -> Dispatcher:
    """A Dispatcher on the settings' database (Ray connects separately: ``connect_ray``)."""
    from service.db import make_engine, upgrade_database

    engine = make_engine(
        settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    if settings.migrate_on_start:  # as the API does: a worker may be the first one up
        upgrade_database(engine)
    return Dispatcher(
        Store(engine),
        lease_seconds=settings.lease_seconds,
        slots=slots or settings.worker_slots,
        pack_size=settings.pack_size,
        checkpoint_dir=settings.effective_checkpoint_dir,
    )


@dataclass
class WarmUp:
    """How the embedded dispatcher's start went: ``done`` is set once its actors are up and
    warm (``Dispatcher.wait_warm``, at most ``WARM_TIMEOUT_S``) or it could not start;
    ``serve`` waits for it before it listens and names the counts in its start-up line."""

    done: threading.Event = field(default_factory=threading.Event)
    actors: int = 0
    warm: int = 0


def run_embedded(settings: Settings, warm: WarmUp | None = None) -> None:
    """The dispatcher inside ``lcw-sweep serve`` (a daemon thread): runs until process exit.

    `warm`: told when its actors are warm (``WarmUp``).

    At exit (atexit runs before Ray's own shutdown, which registered earlier) it stops
    claiming, gives its trials back to the queue and kills its actors, so a later process
    starts them at once instead of waiting for the leases to lapse.
    """
    stop = threading.Event()
    done = threading.Event()
    try:
        info = connect_ray(
            address=settings.ray_address,
            num_cpus=settings.ray_num_cpus,
            failure_signal_handler=False,
        )
        dispatcher = dispatcher_from_settings(settings)
        embed(dispatcher.metrics)  # on the API's /metrics
        answered = dispatcher.wait_warm(WARM_TIMEOUT_S)
        if warm is not None:
            warm.actors, warm.warm = dispatcher.workers, answered
    except Exception:
        log.exception("the embedded dispatcher could not start; serving the API only")
        return
    finally:
        if warm is not None:
            warm.done.set()

    def _at_exit() -> None:
        stop.set()
        dispatcher.wake()
        done.wait(15.0)

    atexit.register(_at_exit)
    log.info(
        "embedded dispatcher on Ray %s (%g CPUs, %g GPUs)",
        info["address"],
        info["cpus"],
        info["gpus"],
    )
    try:
        dispatcher.run(stop, grace_s=0.0)
    except Exception:
        log.exception("the embedded dispatcher stopped with an error")
    finally:
        done.set()


__all__ = ["WARM_TIMEOUT_S", "WarmUp", "dispatcher_from_settings", "run_embedded"]
