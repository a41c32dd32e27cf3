"""Waking idle workers when steps are added: PostgreSQL LISTEN/NOTIFY, and in-process."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

CHANNEL = "flowkeeper_steps"

log = logging.getLogger("flowkeeper.notify")


def notify(connection: sa.Connection) -> None:
    """Tell every listening worker that steps are due; PostgreSQL delivers it on commit."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")


class Waker:
    """A generation counter idle workers wait on.

    A worker reads :attr:`generation` before it looks for work and waits only if nothing
    happened since, so a wake-up between the look and the wait is never lost. :meth:`wake`
    wakes every idle worker, or with ``everyone=False`` one of them: PostgreSQL's NOTIFY for a
    new step wakes one (and a worker whose claim comes back full wakes the next), so one added
    step does not send every idle worker to the database at once.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def wake(self, everyone: bool = True) -> None:
        with self._condition:
            self.generation += 1
            if everyone:
                self._condition.notify_all()
            else:
                self._condition.notify()

    def wake_one(self) -> None:
        self.wake(everyone=False)

    def wait(self, seen: int, timeout: float) -> None:
        with self._condition:
            if self.generation == seen:
                self._condition.wait(timeout)


class Listener:
    """Calls ``on_notify`` for every batch of NOTIFYs on :data:`CHANNEL` (PostgreSQL only).

    :meth:`run` blocks on its own driver connection (psycopg 3, autocommit), reconnecting after
    a failure, until :meth:`stop` is called from any thread, which ends it at once. While idle
    it checks the connection every :attr:`health_interval` seconds, so a connection that died
    silently is replaced rather than waited on for ever.
    """

    health_interval = 30.0

    def __init__(self, database: sa.Engine, on_notify: Callable[[], None]) -> None:
        self._database = database
        self._on_notify = on_notify
        self._stopping = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):  # the buffer is full: a wake-up is pending anyway
            self._wake_writer.send(b"x")

    def run(self) -> None:
        cargs, cparams = self._database.dialect.create_connect_args(self._database.url)
        try:
            while not self._stopping.is_set():
                try:
                    driver = self._database.dialect.connect(*cargs, **cparams)
                except Exception as error:
                    log.warning("cannot open the LISTEN connection (%s); retrying", error)
                    self._pause(1.0)
                    continue
                try:
                    driver.autocommit = True
                    driver.execute(f"LISTEN {CHANNEL}")
                    # Steps added while there was no LISTEN were not announced: look anyway.
                    self._on_notify()
                    self._listen(driver)
                except Exception as error:
                    log.warning("LISTEN connection failed (%s); reconnecting", error)
                    self._pause(0.5)
                finally:
                    with contextlib.suppress(Exception):
                        driver.close()
        finally:
            self._wake_reader.close()
            self._wake_writer.close()

    def _listen(self, driver: Any) -> None:
        with selectors.DefaultSelector() as selector:  # not select(): no limit on fd numbers
            selector.register(driver.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopping.is_set():
                # Drain what has arrived (or came in with an earlier reply) without waiting;
                # one wake-up serves them all.
                if list(driver.notifies(timeout=0)):
                    self._on_notify()
                if not selector.select(self.health_interval):
                    driver.execute("SELECT 1")

    def _pause(self, seconds: float) -> None:
        if not self._stopping.is_set():
            with selectors.DefaultSelector() as selector:
                selector.register(self._wake_reader, selectors.EVENT_READ)
                selector.select(seconds)
