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


def _start_dispatcher(settings: Settings) -> threading.Thread:
    """Run ``workers.dispatcher.run_embedded(settings)`` in a daemon thread."""
    from workers.dispatcher import run_embedded  # Ray: loaded only when serving with a worker

    thread = threading.Thread(
        target=run_embedded, args=(settings,), name="lcw-dispatcher", daemon=True
    )
    thread.start()
    return thread


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; public ones need tokens.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run the dispatcher apart.")
    ] = False,
) -> None:
    """Serve the REST API (and, unless --no-worker, the embedded trial dispatcher)."""
    import uvicorn

    from service.config import get_settings
    from service.db import make_engine, upgrade_database

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
    if not no_worker:
        _start_dispatcher(settings)
        # uvicorn re-raises SIGTERM once it has shut down; with the default handler that
        # kills the process before atexit runs. Exit through SystemExit instead, so the
        # embedded dispatcher gives its trials back and Ray shuts down.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
