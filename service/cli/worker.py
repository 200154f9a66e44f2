"""`lcw-sweep worker`: the trial dispatcher alone (the API runs elsewhere, `serve --no-worker`).

It connects to Ray (a local instance by default; ``--ray-address`` / ``RAY_ADDRESS`` /
``LCW_RAY_ADDRESS`` for a cluster), prints what it connected to, and runs queued trials until
SIGTERM or SIGINT: then it stops claiming, lets running trials finish for ``--grace`` seconds,
and gives back whatever it still holds so that another dispatcher picks it up at once.
``--metrics-port`` serves its Prometheus metrics (``workers.metrics``).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Any

import typer


def worker_command(
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join (host:port or auto); default: $RAY_ADDRESS, else local.",
        ),
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option("--num-cpus", min=1, help="CPUs of the local Ray (ignored on a cluster)."),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option("--slots", min=1, help="Trials at once; default: the cluster's CPUs."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds running trials get to finish on SIGTERM/SIGINT."),
    ] = 10.0,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            envvar="LCW_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve the dispatcher's Prometheus metrics at http://0.0.0.0:PORT/metrics; "
            "0: off.",
        ),
    ] = 0,
) -> None:
    """Run queued trials on Ray until SIGTERM or SIGINT."""
    from service.cli.common import database_shown
    from service.config import get_settings
    from workers.dispatcher import connect_ray
    from workers.entry import dispatcher_from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    info = connect_ray(
        address=ray_address or settings.ray_address,
        num_cpus=num_cpus or settings.ray_num_cpus,
    )
    dispatcher = dispatcher_from_settings(settings, slots=slots)
    if metrics_port:
        from workers.metrics import serve_metrics

        serve_metrics(metrics_port, dispatcher.metrics.registry)
    dispatcher.start()
    database = database_shown(settings.effective_database_url)
    where = "local Ray" if info["local"] else "Ray cluster"
    typer.echo(
        f"lcw-sweep worker {dispatcher.owner}: {where} at {info['address']} "
        f"({info['nodes']} node(s), {info['cpus']:g} CPU, {info['gpus']:g} GPU), "
        f"{dispatcher.slots} slot(s), database {database}"
        + (f", metrics on :{metrics_port}/metrics" if metrics_port else "")
    )

    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        # Set after ray.init: Ray's driver installs its own SIGTERM handler there.
        stop.set()
        dispatcher.wake()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        dispatcher.run(stop, grace_s=grace)
    finally:
        dispatcher.store.engine.dispose()
    typer.echo(f"lcw-sweep worker {dispatcher.owner}: stopped")


def register(app: typer.Typer) -> None:
    """Add `worker` to the CLI."""
    app.command("worker")(worker_command)
