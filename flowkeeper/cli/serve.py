"""``flowkeeper serve``: the HTTP API with uvicorn, and workers in the same process.

With ``--processes N``, N API processes serve the same port (each Python process uses at most
one core, and a request is mostly CPU; see :mod:`flowkeeper.cli.api_processes`); the step
workers then run in the process that started them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import FrameType
from typing import Annotated, Any

import typer

from flowkeeper.api import DEFAULT_THREADS
from flowkeeper.cli.common import DatabaseOption, errors, fail, reports_errors
from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE

logger = logging.getLogger("flowkeeper.serve")

DEFAULT_MAX_OVERFLOW = 10


class HttpProtocol(StrEnum):
    AUTO = "auto"
    H11 = "h11"
    HTTPTOOLS = "httptools"


class EventLoop(StrEnum):
    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


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


SETTINGS_VARIABLE = "FLOWKEEPER_SERVE_SETTINGS"
"""How ``serve --processes N`` hands its settings to the API processes it starts."""


@dataclass(frozen=True)
class ServeSettings:
    """What every API process of ``flowkeeper serve`` builds its engine and app from."""

    database: str | None = None
    app_spec: str | None = None
    threads: int = DEFAULT_THREADS
    pool_size: int | None = None
    max_overflow: int | None = None
    pre_ping: bool = False
    callback_allowed_hosts: tuple[str, ...] = ()
    callback_blocked_networks: tuple[str, ...] = ()

    def engine(self) -> Engine:
        """The engine to serve: the ``--app`` one, or a plain engine on ``--database``."""
        if self.app_spec is not None:
            from flowkeeper.cli import load_engine

            if self.database is not None:
                os.environ[URL_ENVIRONMENT_VARIABLE] = self.database  # before the import
            return load_engine(self.app_spec)
        # One connection per route thread, kept: a pool smaller than the thread pool would
        # open and close connections all the time under load. No ping before each checkout
        # (a round trip that doubles the cost of a read): a connection found dead fails its
        # request with 503 and makes the pool replace every connection older than it.
        pool_size = self.threads if self.pool_size is None else self.pool_size
        max_overflow = DEFAULT_MAX_OVERFLOW if self.max_overflow is None else self.max_overflow
        return Engine(
            self.database,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=self.pre_ping,
            callback_allowed_hosts=self.callback_allowed_hosts,
            callback_blocked_networks=self.callback_blocked_networks,
        )

    def app(self, engine: Engine) -> Any:
        """The ASGI app of one API process: ``create_app(engine)`` with its thread pool."""
        from flowkeeper.api import create_app

        return with_thread_pool(create_app(engine, threads=self.threads), self.threads)


def app_from_environment() -> Any:
    """The app of one of several API processes (uvicorn's factory for ``--processes N``)."""
    fields = json.loads(os.environ[SETTINGS_VARIABLE])
    for name in ("callback_allowed_hosts", "callback_blocked_networks"):
        fields[name] = tuple(fields[name])
    settings = ServeSettings(**fields)
    return settings.app(settings.engine())


def with_thread_pool(app: Any, threads: int) -> Any:
    """``app``, setting anyio's thread pool to ``threads`` when it starts (its default limiter
    exists only inside the event loop): the routes other than the process routes are plain
    ``def``, which FastAPI runs there, and ``threads`` is what the engine's pool is sized for."""

    async def sized(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        await app(scope, receive, send)

    sized.state = app.state  # type: ignore[attr-defined]
    return sized


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
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            help="API processes sharing the port (one Python process uses one core at most); "
            "the workers then run in the process that starts them.",
            min=1,
        ),
    ] = 1,
    threads: Annotated[
        int,
        typer.Option("--threads", help="Threads per API process running engine calls.", min=1),
    ] = DEFAULT_THREADS,
    pool_size: Annotated[
        int | None,
        typer.Option(
            "--pool-size",
            help="Database connections each process keeps (default: --threads).",
            min=1,
        ),
    ] = None,
    max_overflow: Annotated[
        int | None,
        typer.Option(
            "--max-overflow",
            help=f"Extra connections each process may open when busy "
            f"(default {DEFAULT_MAX_OVERFLOW}).",
            min=0,
        ),
    ] = None,
    pre_ping: Annotated[
        bool,
        typer.Option(
            "--pre-ping/--no-pre-ping",
            help="Test each database connection before use: no request fails on a connection "
            "that died while idle (after a database restart), at a round trip per request.",
        ),
    ] = False,
    callback_allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--callback-allowed-host",
            help="A host name, address or network tenants' callbacks may reach though it is "
            "loopback, link-local, … (repeatable; see docs/callbacks.md).",
        ),
    ] = None,
    callback_blocked_networks: Annotated[
        list[str] | None,
        typer.Option(
            "--callback-blocked-network",
            help="A network tenants' callbacks may not reach either, e.g. 10.0.0.0/8 (repeatable).",
        ),
    ] = None,
    http: Annotated[
        HttpProtocol, typer.Option(help="HTTP parser (auto: httptools if installed).")
    ] = HttpProtocol.AUTO,
    loop: Annotated[
        EventLoop, typer.Option(help="Event loop (auto: uvloop if installed).")
    ] = EventLoop.AUTO,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP API (docs at /docs) and, unless --no-workers, run workers alongside."""
    from flowkeeper.api import require_server_extra

    require_server_extra("fastapi", "uvicorn")
    import uvicorn

    engine_options = (pool_size, max_overflow, pre_ping or None, callback_allowed_hosts,
                      callback_blocked_networks)  # fmt: skip
    if app_spec is not None and any(option is not None for option in engine_options):
        fail("--pool-size, --max-overflow, --pre-ping and the --callback-… options apply to "
             "--database; with --app, give them to your Engine(…) (pool_size=…, "
             "max_overflow=…, pool_pre_ping=…, callback_allowed_hosts=…, "
             "callback_blocked_networks=…)")  # fmt: skip
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ServeSettings(
        database,
        app_spec,
        threads,
        pool_size,
        max_overflow,
        pre_ping,
        tuple(callback_allowed_hosts or ()),
        tuple(callback_blocked_networks or ()),
    )
    engine = settings.engine()
    try:
        engine.check_schema()
    except FlowkeeperError as error:
        errors.print(f"warning: {error}", highlight=False, soft_wrap=True)
    thread = None if no_workers else WorkerThread(engine, workers)
    errors.print(
        f"flowkeeper serve: {engine} on http://{host}:{port} (docs at /docs), "
        + (f"{processes} API processes, " if processes > 1 else "")
        + ("no workers" if thread is None else f"{workers} workers"),
        highlight=False,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "http": http.value,
        "loop": loop.value,
    }
    if thread is not None:
        thread.start()
    try:
        if processes > 1:
            from flowkeeper.cli.api_processes import run_api_processes

            os.environ[SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
            run_api_processes(processes, options)
        else:
            _serve_here(uvicorn.Server(uvicorn.Config(settings.app(engine), **options)))
    finally:
        if thread is not None:
            thread.shutdown()
        engine.close()


def _serve_here(server: Any) -> None:
    """Run one uvicorn server in this process until SIGINT or SIGTERM."""

    def stop_serving(signum: int, frame: FrameType | None) -> None:
        # Outside uvicorn's own handlers: before it starts, and when it re-raises the signal
        # that stopped it (with the default handler, that would kill us before the workers
        # stop gracefully).
        server.should_exit = True

    previous = _handle_signals(stop_serving)
    try:
        server.run()
    finally:
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
