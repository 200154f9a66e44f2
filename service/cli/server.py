"""`lcw-sweep serve` (API + embedded dispatcher) and `lcw-sweep db upgrade`."""

from __future__ import annotations

import ipaddress
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from service.config import Settings


db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _start_dispatcher(settings: Settings) -> str:
    """Run ``workers.entry.run_embedded(settings)`` in a daemon thread; return once its
    actors are warm (started with the server, so the first study is not slower than later
    ones) or it could not start, with the count for the start-up line."""
    from workers.entry import WARM_TIMEOUT_S, WarmUp, run_embedded  # Ray: only with a worker

    warm = WarmUp()
    thread = threading.Thread(
        target=run_embedded, args=(settings, warm), name="lcw-dispatcher", daemon=True
    )
    thread.start()
    warm.done.wait(WARM_TIMEOUT_S + 10.0)
    return f"{warm.warm} of {warm.actors} actors warm"


def _connect_ray(settings: Settings) -> str:
    """Connect to Ray in the main thread (Ray sets its signal handling up only there; the
    dispatcher thread then finds it connected); returns where, for the start-up line.

    A local Ray started here is stopped at exit with every process of it
    (``workers.ray_connect.stop_local_ray``), after the dispatcher has given its trials back.
    """
    from workers.ray_connect import connect_ray

    info = connect_ray(
        address=settings.ray_address,
        num_cpus=settings.ray_num_cpus,
        failure_signal_handler=False,
    )
    where = "local Ray" if info["local"] else "Ray cluster"
    return f"{where} at {info['address']} ({info['cpus']:g} CPU, {info['gpus']:g} GPU)"


def _exit_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM and SIGINT mean "stop": exit 0 through SystemExit, so atexit runs (the
    dispatcher gives its trials back, the local Ray stops)."""
    raise SystemExit(0)


def _page_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; public ones need tokens.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run the dispatcher apart.")
    ] = False,
) -> None:
    """Serve the REST API (and, unless --no-worker, the embedded trial dispatcher).

    SIGTERM or SIGINT (Ctrl-C) stops it with exit code 0: the API finishes its requests, the
    dispatcher gives its trials back to the queue, and a local Ray it started stops.
    """
    import uvicorn

    from service.cli.common import database_shown
    from service.config import get_settings
    from service.db import make_engine, upgrade_database

    # Before anything slow: a stop signal during start-up exits 0 too. uvicorn installs its
    # own handlers while it serves and, once shut down, raises the signal again to these.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    settings = get_settings()
    if not _is_loopback(host) and not settings.api_tokens:
        typer.secho(
            f"warning: listening on {host} without LCW_API_TOKENS: anyone who can reach this "
            "port can submit, cancel and delete studies",
            fg=typer.colors.YELLOW,
            err=True,
        )
    # Upgrade before the dispatcher starts, so it never sees a missing table.
    engine = make_engine(
        settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    upgrade_database(engine)
    engine.dispose()
    ray_line = "none (--no-worker: run `lcw-sweep worker` for the trials)"
    if not no_worker:
        try:
            ray_line = _connect_ray(settings)
        except Exception as exc:  # the API still serves; trials wait for a worker
            ray_line = f"none (Ray did not start: {exc}); serving the API only"
        else:
            ray_line += f", {_start_dispatcher(settings)}"
        # ray.init set Ray's own SIGTERM handler (exit status 15): ours again.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        signal.signal(signal.SIGINT, _exit_cleanly)
    database = database_shown(settings.effective_database_url)
    typer.echo(
        f"lcw-sweep serve: pages at {_page_url(host, port)}, database {database}, Ray: {ray_line}",
        err=True,
    )
    # keep-alive 30 s (uvicorn: 5 s): when a busy event loop handles an idle connection's
    # timer before the request that just arrived on it, the client sees "Server disconnected
    # without sending a response"; pollers (CLI, web page) reuse connections every 1-2 s.
    uvicorn.run(
        "service.main:create_app", factory=True, host=host, port=port, timeout_keep_alive=30
    )


def upgrade(
    revision: Annotated[str, typer.Argument(help="Alembic revision.")] = "head",
) -> None:
    """Upgrade the database (LCW_DATABASE_URL) to the newest schema."""
    from service.config import get_settings
    from service.db import make_engine, upgrade_database

    settings = get_settings()
    engine = make_engine(
        settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        upgrade_database(engine, revision)
    finally:
        engine.dispose()
    typer.echo(f"database at revision {revision}")


db_app.command("upgrade")(upgrade)


def register(app: typer.Typer) -> None:
    """Add `serve` and the `db` command group to `app`."""
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
