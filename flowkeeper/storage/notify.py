"""Waking idle workers when steps are added: PostgreSQL LISTEN/NOTIFY, and in-process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

CHANNEL = "flowkeeper_steps"

log = logging.getLogger("flowkeeper.notify")


def notify(connection: sa.Connection) -> None:
    """Tell every listening worker that steps are due; PostgreSQL delivers it on commit."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")


class Waker:
    """A generation counter idle workers wait on; :meth:`wake` wakes them all.

    A worker reads :attr:`generation` before it looks for work and waits only if nothing
    happened since, so a wake-up between the look and the wait is never lost.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def wake(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._condition:
            if self.generation == seen:
                self._condition.wait(timeout)


def listen(database: sa.Engine, on_notify: Callable[[], None], stopping: threading.Event) -> None:
    """Block, calling ``on_notify`` for every NOTIFY on :data:`CHANNEL`, until ``stopping``.

    Runs on its own driver connection (psycopg 3) in autocommit; reconnects after a failure.
    """
    cargs, cparams = database.dialect.create_connect_args(database.url)
    while not stopping.is_set():
        try:
            driver = database.dialect.connect(*cargs, **cparams)
        except Exception as error:
            log.warning("cannot open the LISTEN connection (%s); retrying", error)
            stopping.wait(1.0)
            continue
        try:
            driver.autocommit = True
            driver.execute(f"LISTEN {CHANNEL}")
            while not stopping.is_set():
                for _ in driver.notifies(timeout=0.5, stop_after=1):
                    on_notify()
        except Exception as error:
            log.warning("LISTEN connection failed (%s); reconnecting", error)
            stopping.wait(0.5)
        finally:
            driver.close()
