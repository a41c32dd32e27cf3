"""The worker pool: threads that claim due steps in batches, run them and record outcomes.

Each worker thread claims a batch under a lease (one short transaction), runs the steps, and
writes their outcomes, new steps and state changes in one more transaction, fenced: only steps
whose lease it still holds are written (:mod:`flowkeeper.steps.outcomes`). While there is
work, that transaction also claims the next batch, so a busy worker commits once per batch.
On PostgreSQL and MySQL each worker holds a connection of its own, so the server runs their
transactions side by side; SQLite writes one transaction at a time anyway, so there the
workers' claims and outcomes go through the pool's one
:class:`~flowkeeper.storage.shared_writer.SharedWriter`, which commits whatever the workers
have waiting together, and a checkpointer thread copies the log into the database file
(a worker still opens a connection of its own for a step that uses ``step.connection``).

A heartbeat thread extends the leases of running batches; a dead worker's steps become
claimable again when its lease runs out. On PostgreSQL a LISTEN connection wakes idle workers
the moment a step is added; elsewhere idle workers poll, backing off to ``max_poll_interval``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import exc

from flowkeeper.clock import utcnow
from flowkeeper.errors import InvalidArgument
from flowkeeper.steps.execution import Completion, StepRunner
from flowkeeper.steps.leases import HeldSteps
from flowkeeper.steps.outcomes import OutcomeWriter
from flowkeeper.steps.registry import StepRegistry
from flowkeeper.storage import notify as notify_mod
from flowkeeper.storage.database import discard, first_line, transact
from flowkeeper.storage.hot_path import HotPath
from flowkeeper.storage.notify import Waker
from flowkeeper.storage.shared_writer import SharedWriter, shared_writer_for
from flowkeeper.storage.step_queries import Row, StepQueries

log = logging.getLogger("flowkeeper.worker")
T = TypeVar("T")

MIN_POLL_INTERVAL = 0.01
HOUSEKEEPING_INTERVAL = 300.0
"""Seconds between two prunings of old steps by a pool whose engine has a retention."""
TARGET_BATCH_SECONDS = 0.25
"""Claim about this much work at a time, so slow steps are not hoarded by one worker."""
OVERRUN_FACTOR = 1
"""A batch running this many times longer than planned gives its unstarted steps back."""


StepObserver = Callable[[str, str, float], None]
"""Told of each step a worker ran: its name, the queue its outcome sends it to (``done``,
``failed``, or ``ready`` when it is retried or rerun) and how long it ran, in seconds."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker pool runs. Every duration is in seconds or a ``timedelta``."""

    workers: int = 8
    batch_size: int = 100
    lease: timedelta = timedelta(seconds=60)
    heartbeat: timedelta | None = None
    max_poll_interval: float = 1.0
    unknown_step_delay: timedelta = timedelta(hours=1)
    flush_interval: float = 0.05

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be an int >= 1, not {value!r}")
        for name in ("lease", "unknown_step_delay", "heartbeat"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, timedelta(seconds=value))
            value = getattr(self, name)
            if value is not None and (not isinstance(value, timedelta) or value <= timedelta(0)):
                raise InvalidArgument(f"{name} must be a positive duration, not {value!r}")
        if self.max_poll_interval <= 0 or self.flush_interval < 0:
            raise InvalidArgument("max_poll_interval must be > 0 and flush_interval >= 0")

    @property
    def heartbeat_interval(self) -> float:
        return (self.heartbeat or self.lease / 3).total_seconds()


@dataclass(slots=True)
class RunStats:
    """What a run did: steps executed, and how each ended."""

    executed: int = 0
    done: int = 0
    failed: int = 0
    rescheduled: int = 0
    lost: int = 0
    """Executions whose outcome was not written: the lease had been lost (another worker has
    the step), or the database failed before it was. Such a step runs again."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, queue: str, count: int = 1) -> None:
        with self._lock:
            if queue == "done":
                self.done += count
            elif queue == "failed":
                self.failed += count
            elif queue == "ready":
                self.rescheduled += count
            else:
                self.lost += count


class WorkerPool:
    """Runs step implementations from a registry until stopped (or idle)."""

    def __init__(
        self,
        database: sa.Engine,
        queries: StepQueries,
        hot: HotPath,
        registry: StepRegistry,
        insert: Callable[[sa.Connection, Sequence[Row]], list[int]],
        waker: Waker,
        settings: WorkerSettings,
        housekeeping: Callable[[], object] | None = None,
        observers: Sequence[StepObserver] = (),
    ) -> None:
        self._housekeeping = housekeeping
        self._observers = observers
        """Told of every step run; the engine's own list, so observers added later count."""
        self._database = database
        self._q = queries
        self._hot = hot
        self._registry = registry
        self._waker = waker
        self.settings = settings
        self.pool_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._worker_ids: dict[int, str] = {}
        self._held = HeldSteps()
        self._idle: set[int] = set()
        self._idle_lock = threading.Lock()
        self._until_idle = False
        self.stats = RunStats()
        self._outcomes = OutcomeWriter(hot, registry, insert, waker, self.stats, settings.lease)
        self._errors: list[BaseException] = []
        self._writer: SharedWriter | None = None
        """SQLite: the one connection every worker claims and records through, while running."""
        self.listener: notify_mod.Listener | None = None
        """PostgreSQL: the LISTEN connection's thread body, while :meth:`run` runs."""

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every worker to finish its current step, record it and release the rest."""
        self._stopping.set()
        self._waker.wake()
        if self.listener is not None:
            self.listener.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, until_idle: bool = False, handle_signals: bool = True) -> RunStats:
        """Run the pool in this thread until :meth:`stop`, a signal, or (``until_idle``) idle."""
        self._until_idle = until_idle
        threads = [
            threading.Thread(target=self._work, args=(i,), name=f"flowkeeper-worker-{i}")
            for i in range(self.settings.workers)
        ]
        # The heartbeat outlives the stop request: steps still running keep their leases
        # until their workers have recorded them.
        workers_done = threading.Event()
        helpers = [
            threading.Thread(
                target=self._heartbeat, args=(workers_done,), name="flowkeeper-heartbeat"
            )
        ]
        if self._housekeeping is not None:
            helpers.append(
                threading.Thread(target=self._keep_house, name="flowkeeper-housekeeping")
            )
        if self._database.dialect.name == "postgresql":
            self.listener = notify_mod.Listener(self._database, self._waker.wake_one)
            helpers.append(threading.Thread(target=self.listener.run, name="flowkeeper-listen"))
        try:
            with shared_writer_for(self._database) as self._writer:
                self._run_threads(threads, helpers, workers_done, handle_signals)
        finally:
            self._writer = None
        if self._errors:
            raise self._errors[0]
        return self.stats

    def _run_threads(
        self,
        threads: list[threading.Thread],
        helpers: list[threading.Thread],
        workers_done: threading.Event,
        handle_signals: bool,
    ) -> None:
        with self._signals_stop_pool(handle_signals):
            for thread in threads + helpers:
                thread.daemon = True
                thread.start()
            if self._stopping.is_set():  # stopped before the listener existed
                self.stop()
            try:
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(timeout=0.2)
            finally:
                self.stop()
                for thread in threads:
                    thread.join()
                workers_done.set()
                for thread in helpers:
                    thread.join()

    @contextmanager
    def _signals_stop_pool(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: finishing running steps", signal.Signals(signum).name)
            self.stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # -- one worker thread ----------------------------------------------------------------------

    def _new_worker_id(self, index: int) -> str:
        previous = self._worker_ids.get(index)
        if previous is not None:
            # Whatever the old identity holds is no longer extended: it runs when its lease
            # ends (the worker may not know all it holds after a database error).
            self._held.forget(previous)
        worker_id = f"{self.pool_id}/{index}.{uuid.uuid4().hex[:4]}"
        self._worker_ids[index] = worker_id
        return worker_id

    def _new_identity(self, index: int) -> tuple[str, StepRunner]:
        worker_id = self._new_worker_id(index)
        return worker_id, StepRunner(self._registry, worker_id, self.settings.unknown_step_delay)

    def _work(self, index: int) -> None:
        worker_id, runner = self._new_identity(index)
        link = _Link(self._database, self._writer)
        limit = 1
        backoff = MIN_POLL_INTERVAL
        try:
            while not self._stopping.is_set():
                seen = self._waker.generation
                # Busy while claiming: an empty claim proves nothing while another worker may
                # be holding the very row (SKIP LOCKED) that it is about to run.
                self._note_idle(index, False)
                try:
                    rows = self._claim(link, worker_id, limit)
                except exc.DBAPIError as error:
                    log.warning(
                        "worker %s: claim failed (%s); retrying", worker_id, first_line(error)
                    )
                    link.discard()
                    # The claim may have committed all the same (a connection cut during
                    # COMMIT): under a fresh id, whatever it leased is not kept alive by the
                    # heartbeat for ever, but runs when the lease ends.
                    runner.close()
                    worker_id, runner = self._new_identity(index)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, self.settings.max_poll_interval)
                    continue
                self._held.add(worker_id, (row["id"] for row in rows))
                if not rows:
                    # What the last steps took says little about the next: start small again,
                    # so that one woken worker does not claim a whole burst of slow steps.
                    limit = 1
                    if self._note_idle(index, True):
                        break
                    self._waker.wait(seen, backoff)
                    backoff = (
                        MIN_POLL_INTERVAL
                        if self._waker.generation != seen
                        else min(backoff * 2, self.settings.max_poll_interval)
                    )
                    continue
                backoff = MIN_POLL_INTERVAL
                if len(rows) == limit:
                    self._waker.wake_one()  # there may be more: let the next idle worker look
                try:
                    limit = self._run_batch(link, runner, worker_id, rows)
                except exc.DBAPIError as error:
                    # The outcomes could not be written: the steps stay leased to this id and
                    # run again elsewhere when the lease ends. A fresh id stops the heartbeat
                    # from keeping them.
                    log.warning("worker %s: lost its batch (%s)", worker_id, first_line(error))
                    link.discard()
                    runner.close()
                    worker_id, runner = self._new_identity(index)
                    limit = 1
        except BaseException as error:
            log.exception("worker %s stopped by an unexpected error", worker_id)
            self._errors.append(error)
            self.stop()
        finally:
            self._held.forget(worker_id)
            runner.close()
            link.close()
            self._note_idle(index, True)

    def _note_idle(self, index: int, idle: bool) -> bool:
        """Record a worker's state; True when ``until_idle`` is met (every worker found none)."""
        with self._idle_lock:
            if idle:
                self._idle.add(index)
            else:
                self._idle.discard(index)
            if self._until_idle and len(self._idle) == self.settings.workers:
                self._stopping.set()
                self._waker.wake()
                return True
        return False

    def _claim(self, link: _Link, worker_id: str, limit: int) -> list[Row]:
        def claim(conn: sa.Connection) -> list[Row]:
            now = utcnow()
            return self._hot.claim(conn, worker_id, now, now + self.settings.lease, limit)

        return link.transaction(claim)

    def _run_batch(self, link: _Link, runner: StepRunner, worker_id: str, rows: list[Row]) -> int:
        """Run a claimed batch, the steps handed back to this worker as it writes outcomes,
        and the batches it claims as it writes the last outcomes of each; return the next
        claim size."""
        pending = deque(rows)
        buffer: list[Completion] = []
        buffered_since = time.perf_counter()
        started = buffered_since
        give_back_after = started + OVERRUN_FACTOR * TARGET_BATCH_SECONDS
        executed = 0
        # What the steps take, measured since the last claim: the size of the next claim.
        measured_from, measured_steps = started, 0

        def next_claim_size() -> int:
            per_step = (time.perf_counter() - measured_from) / max(measured_steps, 1)
            if per_step <= 0:
                return self.settings.batch_size
            return max(1, min(self.settings.batch_size, int(TARGET_BATCH_SECONDS / per_step)))

        def flush() -> None:
            nonlocal give_back_after, measured_from, measured_steps
            room = self.settings.batch_size - len(pending)
            # The last outcomes of the batch: claim the next one in their transaction, which
            # saves a transaction (and a commit) per batch.
            ahead = 0 if pending or self._stopping.is_set() else next_claim_size()
            handed, claimed = self._outcomes.flush(
                link.transaction, worker_id, runner, buffer, room, ahead
            )
            self._held.remove(worker_id, (c.id for c in buffer))
            self._held.add(worker_id, (row["id"] for row in handed or claimed))
            buffer.clear()
            if claimed:
                measured_from, measured_steps = time.perf_counter(), 0
                if len(claimed) == ahead:
                    self._waker.wake_one()  # there may be more: let the next idle worker look
            if handed or claimed:
                pending.extend(handed or claimed)
                give_back_after = time.perf_counter() + OVERRUN_FACTOR * TARGET_BATCH_SECONDS

        def begin_for_step() -> sa.Connection:
            flush()
            connection = link.own()
            connection.begin()
            return connection

        # Run for every step: the loop reads the clock once per step and looks nothing up.
        clock = time.perf_counter
        stopping = self._stopping.is_set
        run = runner.run
        take = pending.popleft
        observers = self._observers  # the engine's list: one added meanwhile counts at once
        flush_interval = self.settings.flush_interval
        now = started
        writing_in_step = False
        try:
            while pending:
                if stopping() or (now > give_back_after and executed > 0):
                    # Stopping, or the steps are slower than the claim's size assumed: give
                    # the rest back now rather than make them wait, leased, for this worker.
                    flush()
                    self._release(link, worker_id, [r["id"] for r in pending])
                    pending.clear()
                    break
                completion = run(take(), begin_for_step)
                executed += 1
                measured_steps += 1
                if observers:
                    self._observe(completion)
                now = clock()
                if completion.connection is not None:
                    writing_in_step = True
                    self._outcomes.complete_in_step_transaction(
                        completion.connection, link.transaction, worker_id, runner, completion
                    )
                    self._held.remove(worker_id, (completion.id,))
                    writing_in_step = False
                    now = clock()
                else:
                    if not buffer:
                        buffered_since = now
                    buffer.append(completion)
                    if not pending or now - buffered_since >= flush_interval:
                        flush()
                        now = clock()
        except exc.DBAPIError:
            # What is not written now never will be: those steps run again after the lease.
            self.stats.add("lost", len(buffer) + writing_in_step)
            raise
        finally:
            with self.stats._lock:
                self.stats.executed += executed
        return next_claim_size()

    def _observe(self, completion: Completion) -> None:
        """Tell the observers of a step run (not of one postponed for want of an
        implementation); one that raises is logged, and the others are still told."""
        row = completion.row
        if row["name"] not in self._registry:
            return
        seconds = (row["execution_duration_ms"] or 0) / 1000
        for observer in self._observers:
            try:
                observer(row["name"], completion.queue, seconds)
            except Exception:
                log.warning("a step observer failed", exc_info=True)

    def _release(self, link: _Link, worker_id: str, ids: list[int]) -> None:
        """Give back claimed steps that were not started; tell idle workers they are due."""

        def release(conn: sa.Connection) -> int:
            released = self._q.release(conn, worker_id, ids)
            if released:
                notify_mod.notify(conn)
            return released

        released = link.transaction(release)
        self._held.remove(worker_id, ids)
        if released:
            self._waker.wake()

    # -- housekeeping ------------------------------------------------------------------------------

    def _keep_house(self) -> None:
        """Run the housekeeping callback (pruning old steps) at start and every interval."""
        assert self._housekeeping is not None
        while not self._stopping.is_set():
            try:
                self._housekeeping()
            except Exception as error:
                log.warning("housekeeping failed (%s); trying again later", first_line(error))
            self._stopping.wait(HOUSEKEEPING_INTERVAL)

    # -- heartbeat ---------------------------------------------------------------------------------

    def _extend_leases(self, link: _Link) -> None:
        held = self._held.by_worker()
        if not held:
            return

        def extend(conn: sa.Connection) -> int:
            until = utcnow() + self.settings.lease
            return sum(self._q.extend_leases(conn, w, ids, until) for w, ids in held.items())

        link.transaction(extend)

    def _heartbeat(self, workers_done: threading.Event) -> None:
        interval = self.settings.heartbeat_interval
        link = _Link(self._database, self._writer)
        try:
            while not workers_done.wait(interval):
                try:
                    self._extend_leases(link)
                except exc.DBAPIError as error:
                    log.warning("heartbeat failed (%s); leases may expire", first_line(error))
                    link.discard()
        finally:
            link.close()


class _Link:
    """One worker's way to the database: the transactions its claims and outcomes run in, and
    a connection of its own for the steps that write through ``step.connection``.

    On SQLite the claims and outcomes of every worker go through the pool's
    :class:`SharedWriter`; elsewhere through the worker's own connection, so that the server
    runs them side by side.
    """

    def __init__(self, database: sa.Engine, writer: SharedWriter | None) -> None:
        self._database = database
        self._writer = writer
        self._connection: sa.Connection | None = None

    def own(self) -> sa.Connection:
        """The worker's own connection, opened on first use."""
        if self._connection is None:
            self._connection = self._database.connect()
        return self._connection

    def transaction(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a transaction (retried after a deadlock or a busy database)."""
        if self._writer is not None:
            return self._writer.run(work)
        return transact(self.own(), work)

    def discard(self) -> None:
        """Drop the own connection after a database error (the next use opens another)."""
        discard(self._connection)
        self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
