"""``flowkeeper serve``: the HTTP API with uvicorn, and workers in the same process."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer

from flowkeeper.cli.common import DatabaseOption, errors, reports_errors
from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE

logger = logging.getLogger("flowkeeper.serve")

RETRY_WORKERS_AFTER_S = 5.0
"""How long the worker thread waits before starting again after the engine failed (the
database unreachable, the schema not migrated yet)."""


class WorkerThread(threading.Thread):
    """Runs ``engine.run(workers=…)`` in a thread until :meth:`shutdown`; restarts it after a
    Flowkeeper error (say, the database is not reachable yet)."""

    def __init__(self, engine: Engine, workers: int) -> None:
        super().__init__(name="flowkeeper-workers", daemon=True)
        self.engine = engine
        self.workers = workers
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.engine.run(workers=self.workers, handle_signals=False)
            except FlowkeeperError as error:
                logger.error(
                    "workers stopped: %s; starting again in %.0f s", error, RETRY_WORKERS_AFTER_S
                )
                self._stopping.wait(RETRY_WORKERS_AFTER_S)
            except Exception:
                logger.exception("workers failed; starting again in %.0f s", RETRY_WORKERS_AFTER_S)
                self._stopping.wait(RETRY_WORKERS_AFTER_S)

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop the workers gracefully (running steps finish) and wait for the thread."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            self.engine.stop()  # again and again: a run may have been starting just now
            self.join(0.2)


@reports_errors
def serve(
    database: DatabaseOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker threads running steps.", min=1)
    ] = 4,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Serve the API only; run no steps here.")
    ] = False,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="The engine to serve, as module:attribute (its actions, rules and step "
            "implementations); a plain engine on --database otherwise.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP API (docs at /docs) and, unless --no-workers, run workers alongside."""
    from flowkeeper.api import create_app, require_server_extra

    require_server_extra("fastapi", "uvicorn")
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if app_spec is not None:
        from flowkeeper.cli import load_engine

        if database is not None:
            os.environ[URL_ENVIRONMENT_VARIABLE] = database  # before the import, as for worker
        engine = load_engine(app_spec)
    else:
        engine = Engine(database)
    try:
        engine.check_schema()
    except FlowkeeperError as error:
        errors.print(f"warning: {error}", highlight=False, soft_wrap=True)
    app = create_app(engine)
    thread = None if no_workers else WorkerThread(engine, workers)
    errors.print(
        f"flowkeeper serve: {engine} on http://{host}:{port} (docs at /docs), "
        + ("no workers" if thread is None else f"{workers} workers"),
        highlight=False,
    )
    if thread is not None:
        thread.start()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))

    def stop_serving(signum: int, frame: FrameType | None) -> None:
        # Outside uvicorn's own handlers: before it starts, and when it re-raises the signal
        # that stopped it (with the default handler, that would kill us before the workers
        # stop gracefully).
        server.should_exit = True

    previous = _handle_signals(stop_serving)
    try:
        server.run()
    finally:
        if thread is not None:
            thread.shutdown()
        engine.close()
        _handle_signals(previous)


Handler = Callable[[int, FrameType | None], Any] | int | None


def _handle_signals(handler: Handler | dict[int, Handler]) -> dict[int, Handler]:
    """Set the SIGINT and SIGTERM handlers (from the main thread only); the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        chosen = handler.get(sig) if isinstance(handler, dict) else handler
        if chosen is not None:
            previous[sig] = signal.signal(sig, chosen)
    return previous
