"""SQLite: one connection that a worker pool's threads write through, and its checkpoints.

SQLite lets one connection write at a time, and a connection whose file another connection
has changed begins its next transaction with an empty page cache. So on SQLite the workers of
a pool do not each claim and record through a connection of their own: they hand the work to a
:class:`SharedWriter`, which runs whatever work is waiting, from every worker, in one
transaction on one connection. Each worker's work still commits atomically, but one commit
serves them all, and the pages stay cached from one transaction to the next.

A piece of work that raises (a singleton clash, say) has its error go to the thread that
submitted it, and the transaction is rolled back and run again without it: the others commit.
A database error ends the whole transaction: a busy database reruns it (as :func:`transact`
does), any other error reaches every thread whose work was in it, and a broken connection is
replaced.

A :class:`Checkpointer` copies the write-ahead log back into the database file from a thread
of its own. Otherwise SQLite does it in the thread whose commit made the log reach 1,000
pages, and that worker (with every other one, waiting for the write lock) would wait for the
copy and its ``fsync``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc

from flowkeeper.storage.database import TRANSIENT_ATTEMPTS, discard, first_line, is_transient
from flowkeeper.storage.driver import driver_cursor

log = logging.getLogger("flowkeeper.storage")

T = TypeVar("T")

DEFAULT_AUTOCHECKPOINT = 1000
"""SQLite's own ``wal_autocheckpoint``, given back to a connection the writer returns."""


class _Job(Generic[T]):
    """One thread's work, and what came of it."""

    __slots__ = ("error", "finished", "result", "work")

    def __init__(self, work: Callable[[sa.Connection], T]) -> None:
        self.work = work
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class SharedWriter:
    """Runs the work of several threads in shared transactions on one SQLite connection.

    :meth:`run` blocks until the work has committed (or failed) and returns its result, like
    :func:`flowkeeper.storage.database.transact`; the work may run on another thread, so it
    must not rely on thread-local state. The work of a transaction that is retried after a busy
    database runs again, so it must be safe to repeat (write, then return what it wrote).
    """

    def __init__(self, database: sa.Engine) -> None:
        self._database = database
        self._lock = threading.Lock()
        """Held while a transaction is built and committed: at most one in flight."""
        self._queue: list[_Job[object]] = []
        self._queue_lock = threading.Lock()
        self._connection: sa.Connection | None = None
        self._closed = False
        self._restart_requested = False
        self.transactions = 0
        """Transactions ended so far; :attr:`ended` is notified after each (the checkpointer
        waits on it)."""
        self.ended = threading.Condition()

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a transaction shared with the work other threads submit meanwhile."""
        job: _Job[T] = _Job(work)
        with self._queue_lock:
            self._queue.append(job)  # type: ignore[arg-type]
        with self._lock:
            if not job.finished:
                self._run_queued()
        return job.outcome()

    @property
    def waiting(self) -> int:
        """Pieces of work submitted and not yet taken into a transaction."""
        return len(self._queue)

    def restart_log(self) -> None:
        """Before its next transaction, copy what is left of the log into the database file,
        so that the transaction starts the log over (the checkpointer asks for it)."""
        self._restart_requested = True

    def close(self) -> None:
        """Return the connection to the pool, with SQLite's own checkpoints back on."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                _set_autocheckpoint(connection, DEFAULT_AUTOCHECKPOINT)
                connection.close()
            except exc.DBAPIError:
                discard(connection)

    def _connect(self) -> sa.Connection:
        if self._connection is None:
            if self._closed:
                raise RuntimeError("the shared writer is closed")
            connection = self._database.connect()
            try:
                # The checkpointer copies the log instead of whichever commit crosses 1,000
                # pages (with this writer, every worker would wait for that copy).
                _set_autocheckpoint(connection, 0)
            except BaseException:
                discard(connection)
                raise
            self._connection = connection
        return self._connection

    def _run_queued(self) -> None:
        """Run every queued job in one transaction (the caller holds the lock)."""
        with self._queue_lock:
            jobs, self._queue = self._queue, []
        try:
            if self._restart_requested:
                self._restart_requested = False
                self._checkpoint()
            self._commit(jobs)
        except BaseException as error:  # the whole transaction failed
            if isinstance(error, exc.DBAPIError) and not is_transient(error):
                log.warning("shared writer: %s; reconnecting", first_line(error))
                discard(self._connection)
                self._connection = None
            for job in jobs:
                if job.error is None:
                    job.error = error
        for job in jobs:
            job.finished = True
        with self.ended:
            self.transactions += 1
            self.ended.notify_all()

    def _checkpoint(self) -> None:
        # No transaction of this writer is in flight: this copies the frames appended since
        # the checkpointer's last copy, and unless another process writes meanwhile, the
        # next transaction starts the log from its beginning.
        try:
            with driver_cursor(self._connect()) as cursor:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except exc.DBAPIError as error:  # the log is copied later; the work need not wait
            log.debug("checkpoint before a transaction failed: %s", first_line(error))

    def _commit(self, jobs: list[_Job[object]]) -> None:
        """Run the jobs in one transaction and commit it. A job that raises (anything but a
        database error) keeps its error and is left out: the others run again without it."""
        pending = list(jobs)
        attempt = 0
        while pending:
            connection = self._connect()
            failed: _Job[object] | None = None
            try:
                with connection.begin():
                    for job in pending:
                        failed = job
                        job.result = job.work(connection)
                    failed = None
                return
            except exc.DBAPIError as error:
                attempt += 1
                if attempt == TRANSIENT_ATTEMPTS or not is_transient(error):
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
            except Exception as error:
                if failed is None:  # not a job's own error
                    raise
                failed.error = error
                pending.remove(failed)


def _set_autocheckpoint(connection: sa.Connection, pages: int) -> None:
    with driver_cursor(connection) as cursor:
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


class Checkpointer:
    """Copies a SQLite write-ahead log into the database file from its own thread.

    After the writer's transactions (at most every ``interval`` seconds) it runs a
    ``PASSIVE`` checkpoint, which copies what it can without waiting for anyone. A log that
    writers keep appending to is never copied to its end, and SQLite only starts the log file
    over when it has been: so once the log holds ``restart_pages`` pages, the checkpointer asks
    the writer to copy the rest before its next transaction, which then starts the log over.
    """

    def __init__(
        self,
        database: sa.Engine,
        writer: SharedWriter,
        interval: float = 0.02,
        restart_pages: int = DEFAULT_AUTOCHECKPOINT,
    ) -> None:
        self._database = database
        self._writer = writer
        self._interval = interval
        self._restart_pages = restart_pages
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowkeeper-checkpoint")
        self._thread.daemon = True
        self.checkpoints = 0
        """Checkpoints run so far; ``restarts``: how often the log was found long and the
        writer asked to finish the copy."""
        self.restarts = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._writer.ended:
            self._writer.ended.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        connection: sa.Connection | None = None
        seen = self._writer.transactions
        while not self._stopping.is_set():
            with self._writer.ended:
                if self._writer.transactions == seen and not self._stopping.is_set():
                    self._writer.ended.wait(1.0)
            if self._writer.transactions == seen or self._stopping.wait(self._interval):
                continue
            seen = self._writer.transactions
            try:
                if connection is None:
                    connection = self._database.connect()
                self._checkpoint(connection)
            except exc.DBAPIError as error:
                log.warning("checkpoint failed (%s); tried again later", first_line(error))
                discard(connection)
                connection = None
        if connection is not None:
            connection.close()

    def _checkpoint(self, connection: sa.Connection) -> None:
        with driver_cursor(connection) as cursor:
            _busy, pages, _copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if pages >= self._restart_pages:
                self._writer.restart_log()
                self.restarts += 1


@contextmanager
def shared_writer_for(database: sa.Engine) -> Iterator[SharedWriter | None]:
    """On SQLite, a :class:`SharedWriter` with its :class:`Checkpointer` running, both
    stopped when the block ends; None on other databases."""
    if database.dialect.name != "sqlite":
        yield None
        return
    writer = SharedWriter(database)
    checkpointer = Checkpointer(database, writer)
    checkpointer.start()
    try:
        yield writer
    finally:
        checkpointer.stop()
        writer.close()
