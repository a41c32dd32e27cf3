"""``flowkeeper serve --processes N``: N uvicorn servers on one port, each with its own socket.

uvicorn's own ``workers=N`` shares one listening socket among its processes, and whichever
process wakes first accepts every connection waiting: a client (or a proxy) that opens its
keep-alive connections together may find them all on one process, which then runs at one core
while the others idle (seen in the HTTP benchmark: all 16 connections on one of two processes
in two runs of three). On Linux each process here listens on a socket of its own with
``SO_REUSEPORT``, and the kernel spreads new connections across them by a hash of their
addresses. Elsewhere, uvicorn's own workers are used.

The processes are started with ``spawn`` and build their engine and app from the settings in
:data:`flowkeeper.cli.serve.SETTINGS_VARIABLE`. One that dies is started again; SIGINT or
SIGTERM stops them all gracefully (each finishes the requests it has begun).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

logger = logging.getLogger("flowkeeper.serve")

FACTORY = "flowkeeper.cli.serve:app_from_environment"
STOP_TIMEOUT_S = 60.0
"""How long a stopping process may take to finish its requests before it is killed."""
QUICK_EXIT_S = 5.0
"""A process that exits with an error this soon after it started failed to start (say, the
app cannot be imported): serving stops rather than start it again and again. One killed by a
signal is started again."""


def reuse_port_supported() -> bool:
    """Whether the kernel spreads connections across ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def run_api_processes(count: int, options: dict[str, Any]) -> None:
    """Serve the app of :data:`FACTORY` from ``count`` processes until SIGINT or SIGTERM.

    ``options`` are ``uvicorn.Config``'s (``host``, ``port``, ``log_level``, ``http``, ``loop``).
    """
    import uvicorn

    if not reuse_port_supported():
        uvicorn.run(FACTORY, factory=True, workers=count, **options)
        return
    # Bound and never listening, this socket holds the port (a free one if port is 0) for the
    # processes' sockets; only listening sockets are given connections.
    holder = _reuse_port_socket(options["host"], options["port"])
    address = holder.getsockname()
    child_options = {**options, "port": address[1]}
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> tuple[Any, float]:
        process = context.Process(
            target=serve_one, args=(holder.family, address, child_options), daemon=False
        )
        process.start()
        return process, time.monotonic()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    running = [start() for _ in range(count)]
    try:
        while not stopping.wait(0.2):
            for index, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                failed = process.exitcode is not None and process.exitcode > 0
                if failed and time.monotonic() - started < QUICK_EXIT_S:
                    logger.error(
                        "API process %s ended at start (exit code %s); stopping",
                        process.pid,
                        process.exitcode,
                    )
                    stopping.set()
                    break
                logger.error(
                    "API process %s ended (exit code %s); starting another",
                    process.pid,
                    process.exitcode,
                )
                running[index] = start()
    finally:
        for process, _ in running:
            process.terminate()  # SIGTERM: uvicorn finishes the requests it has begun
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        holder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_one(family: int, address: Any, options: dict[str, Any]) -> None:
    """One API process: uvicorn on a ``SO_REUSEPORT`` socket of its own."""
    import uvicorn

    # Out of the terminal's process group: Ctrl-C reaches the parent only, which stops us
    # with one SIGTERM (a second signal would make uvicorn drop the requests it has begun).
    os.setpgrp()
    _stop_when_orphaned(os.getppid())
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    uvicorn.Server(uvicorn.Config(FACTORY, factory=True, **options)).run(sockets=[sock])


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM ourselves if the parent goes away without stopping us (say, killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="flowkeeper-orphan-watch", daemon=True).start()


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
