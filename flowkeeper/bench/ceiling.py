"""The ceiling: a bare loop that moves rows through the step tables the way the engine must.

Each thread holds one connection and repeats two transactions: claim a batch (lease it), then
move it from ready to done (and, for chains, add each row's successor, leased to itself). It
runs the very statements the engine's workers run, so the engine's figure divided by this one
is what the engine's own machinery costs, measured in the same run on the same database.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from flowkeeper.storage.database import Transactor, kind_of, transact
from flowkeeper.storage.driver import stored_time
from flowkeeper.storage.hot_path import NEW_COLUMNS, hot_path_for
from flowkeeper.storage.shared_writer import SharedWriter, shared_writer_for
from flowkeeper.storage.step_queries import StepQueries
from flowkeeper.storage.tables import STEP_COLUMNS, steps_ready

T = TypeVar("T")
_INSERT_COLUMNS = [c for c in STEP_COLUMNS if c != "id"] + ["available_at"]


def _driver_connection(database: sa.Engine) -> Any:
    cargs, cparams = database.dialect.create_connect_args(database.url)
    connection = database.dialect.connect(*cargs, **cparams)
    if database.dialect.name == "sqlite":
        connection.isolation_level = None
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
    elif database.dialect.name in ("mysql", "mariadb"):
        cursor = connection.cursor()
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.close()
    return connection


class _Dialect:
    """The insert the ``add`` ceiling runs, written out for one database's driver."""

    def __init__(self, dialect_name: str) -> None:
        self.kind = "mysql" if dialect_name == "mariadb" else dialect_name
        marks = ", ".join(["?" if self.kind == "sqlite" else "%s"] * len(_INSERT_COLUMNS))
        self.insert_ready = (
            f"INSERT INTO {steps_ready.name} ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks})"
        )

    def time(self, value: datetime) -> Any:
        return stored_time(value, sqlite=self.kind == "sqlite")

    def begin(self, cursor: Any) -> None:
        if self.kind == "sqlite":  # the others open a transaction with the first statement
            cursor.execute("BEGIN IMMEDIATE")

    def commit(self, connection: Any, cursor: Any) -> None:
        if self.kind == "sqlite":
            cursor.execute("COMMIT")
        else:
            connection.commit()


def bare_loop(
    database: sa.Engine,
    workers: int,
    batch_size: int,
    expected: int,
    spawn: Callable[[dict[str, Any]], str | None] | None = None,
    timeout: float = 600.0,
    first_claim: int | None = None,
) -> float:
    """Move ``expected`` rows from ready to done with ``workers`` threads; return seconds taken.

    It runs the engine's own hot-path statements (claim, finish, add) on held connections (on
    SQLite, through one shared writer with its checkpointer, as a worker pool does),
    with the same batch size, the same hand-off of new steps to the thread that made them and
    the same claim of the next batch in the transaction that finishes one,
    but none of the engine's per-step machinery: no step context, no implementation, no
    outcome bookkeeping. ``spawn(row)`` gives the state (JSON text) of a moved row's
    successor, or None (chains). ``first_claim`` caps each thread's first claim: for chains,
    an even share of the flows, so that every thread carries some (with whole batches, two
    threads would take them all and the loop would be no ceiling for workers that share them).
    """
    hot = hot_path_for(StepQueries(kind_of(database.url)))
    moved = 0
    lock = threading.Lock()
    finished = threading.Event()
    deadline = time.perf_counter() + timeout
    failures: list[BaseException] = []

    def work(index: int, writer: SharedWriter | None) -> None:
        try:
            move(index, writer)
        except BaseException as error:
            failures.append(error)
            finished.set()

    def move(index: int, writer: SharedWriter | None) -> None:
        nonlocal moved
        worker = f"ceiling/{index}"
        handed: list[dict[str, Any]] = []
        claim_size = first_claim or batch_size
        with contextlib.ExitStack() as stack:
            if writer is not None:
                transaction: Transactor = writer.run
            else:
                connection = stack.enter_context(database.connect())

                def transaction(work: Callable[[sa.Connection], T]) -> T:
                    return transact(connection, work)

            while not finished.is_set() and time.perf_counter() < deadline:
                now = datetime.now(UTC)
                lease_end = now + timedelta(seconds=60)
                if handed:
                    rows, handed = handed, []
                else:
                    rows = transaction(
                        lambda c: hot.claim(c, worker, now, lease_end, claim_size),  # noqa: B023
                    )
                    claim_size = batch_size
                if not rows:
                    with lock:
                        if moved >= expected:
                            finished.set()
                    time.sleep(0.001)
                    continue
                for row in rows:
                    row.update(
                        execution_started_at=now, execution_duration_ms=0, executed_by=worker
                    )

                def finish(
                    c: sa.Connection,
                    rows: list[dict[str, Any]] = rows,
                    now: datetime = now,
                    lease_end: datetime = lease_end,
                ) -> list[Any]:
                    hot.finish(c, worker, "done", rows)
                    children = (
                        [_child(r, spawn, worker, now, lease_end) for r in rows] if spawn else []
                    )
                    successors = [child for child in children if child is not None]
                    if successors:
                        return hot.add(c, successors)
                    # As a worker does: the next batch is claimed with the last outcomes.
                    claimed_at = datetime.now(UTC)
                    until = claimed_at + timedelta(seconds=60)
                    return hot.claim(c, worker, claimed_at, until, batch_size, alone=False)

                handed = transaction(finish)
                with lock:
                    moved += len(rows)
                    if moved >= expected:
                        finished.set()

    with shared_writer_for(database) as writer:
        threads = [threading.Thread(target=work, args=(i, writer)) for i in range(workers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    if moved < expected:
        raise RuntimeError(f"the ceiling loop moved {moved} of {expected} rows in {timeout} s")
    return seconds


def _child(
    row: dict[str, Any],
    spawn: Callable[[dict[str, Any]], str | None],
    worker: str,
    now: datetime,
    lease_end: datetime,
) -> dict[str, Any] | None:
    """The successor of ``row`` as a new ready row leased to ``worker``, or None."""
    state = spawn(row)
    if state is None:
        return None
    return {
        **dict.fromkeys(NEW_COLUMNS),
        "name": row["name"],
        "singleton": False,
        "flow_id": row["flow_id"],
        "state": state,
        "execution_count": 1,
        "run_at": now,
        "created_at": now,
        "created_by_step_id": row["id"],
        "locked_by": worker,
        "locked_until": lease_end,
        "available_at": lease_end,
    }


def bare_insert(database: sa.Engine, n: int, batch_size: int) -> float:
    """Insert ``n`` ready rows in transactions of ``batch_size`` on one driver connection."""
    dialect = _Dialect(database.dialect.name)
    connection = _driver_connection(database)
    cursor = connection.cursor()
    now = dialect.time(datetime.now(UTC))
    values = {
        "name": "bench/noop",
        "singleton": False,
        "flow_id": "ceiling",
        "state": "null",
        "execution_count": 0,
        "run_at": now,
        "created_at": now,
        "available_at": now,
    }
    row = [values.get(column) for column in _INSERT_COLUMNS]
    started = time.perf_counter()
    try:
        for start in range(0, n, batch_size):
            dialect.begin(cursor)
            cursor.executemany(dialect.insert_ready, [row] * min(batch_size, n - start))
            dialect.commit(connection, cursor)
    finally:
        cursor.close()
        connection.close()
    return time.perf_counter() - started
