"""The ceiling: a bare-SQL loop that moves rows through the step tables the way the engine must.

Each worker thread holds one driver connection and repeats two transactions: claim a batch
(lease it), then delete it from ready and insert it into done (plus, for chains, insert each
row's successor). No Python objects per step, no SQLAlchemy: what the database itself allows
on this machine today, measured in the same run as the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flowkeeper.storage.tables import STEP_COLUMNS, steps_done, steps_ready

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
    """The handful of statements, written out for one database's driver."""

    def __init__(self, dialect_name: str) -> None:
        kind = "mysql" if dialect_name == "mariadb" else dialect_name
        self.kind = kind
        p = "?" if kind == "sqlite" else "%s"
        self.param = p
        ready, done = steps_ready.name, steps_done.name
        self.begin_sql = "BEGIN IMMEDIATE"
        if kind == "postgresql":
            self.claim = (
                f"UPDATE {ready} SET locked_by = {p}, locked_until = {p}, available_at = {p}, "
                f"execution_count = execution_count + 1 WHERE id IN (SELECT id FROM {ready} "
                f"WHERE available_at <= {p} ORDER BY available_at LIMIT {p} "
                f"FOR UPDATE SKIP LOCKED) RETURNING *"
            )
        elif kind == "sqlite":
            self.claim = (
                f"UPDATE {ready} SET locked_by = {p}, locked_until = {p}, available_at = {p}, "
                f"execution_count = execution_count + 1 WHERE id IN (SELECT id FROM {ready} "
                f"WHERE available_at <= {p} ORDER BY available_at LIMIT {p}) RETURNING *"
            )
        else:
            self.claim = (
                f"SELECT * FROM {ready} WHERE available_at <= {p} ORDER BY available_at "
                f"LIMIT {p} FOR UPDATE SKIP LOCKED"
            )
        self.delete = f"DELETE FROM {ready} WHERE id IN ({{ids}}) AND locked_by = {p}"
        columns = ", ".join(STEP_COLUMNS)
        self.insert_done = (
            f"INSERT INTO {done} ({columns}) VALUES ({', '.join([p] * len(STEP_COLUMNS))})"
        )
        self.insert_ready = (
            f"INSERT INTO {ready} ({', '.join(_INSERT_COLUMNS)}) "
            f"VALUES ({', '.join([p] * len(_INSERT_COLUMNS))})"
        )

    def time(self, value: datetime) -> Any:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if self.kind == "sqlite" else naive

    def begin(self, cursor: Any) -> None:
        if self.kind == "sqlite":  # the others open a transaction with the first statement
            cursor.execute(self.begin_sql)

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
) -> float:
    """Move ``expected`` rows from ready to done with ``workers`` threads; return seconds taken.

    ``spawn(row)`` gives the state (JSON text) of a moved row's successor, or None (chains).
    """
    dialect = _Dialect(database.dialect.name)
    moved = 0
    lock = threading.Lock()
    finished = threading.Event()
    deadline = time.perf_counter() + timeout

    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            move(index)
        except BaseException as error:
            failures.append(error)
            finished.set()

    def move(index: int) -> None:
        nonlocal moved
        worker = f"ceiling/{index}"
        connection = _driver_connection(database)
        cursor = connection.cursor()
        p = dialect.param
        try:
            while not finished.is_set() and time.perf_counter() < deadline:
                now = datetime.now(UTC)
                until = dialect.time(now + timedelta(seconds=60))
                dialect.begin(cursor)
                if dialect.kind == "mysql":
                    cursor.execute(dialect.claim, (dialect.time(now), batch_size))
                    rows = cursor.fetchall()
                    if rows:
                        ids = ", ".join(str(r[0]) for r in rows)
                        cursor.execute(
                            f"UPDATE {steps_ready.name} SET locked_by = {p}, locked_until = {p}, "
                            f"available_at = {p}, execution_count = execution_count + 1 "
                            f"WHERE id IN ({ids})",
                            (worker, until, until),
                        )
                else:
                    cursor.execute(
                        dialect.claim, (worker, until, until, dialect.time(now), batch_size)
                    )
                    rows = cursor.fetchall()
                names = [d[0] for d in cursor.description or ()]
                dialect.commit(connection, cursor)
                if not rows:
                    with lock:
                        if moved >= expected:
                            finished.set()
                    time.sleep(0.001)
                    continue
                records = [dict(zip(names, r, strict=True)) for r in rows]
                dialect.begin(cursor)
                ids = ", ".join(str(r["id"]) for r in records)
                cursor.execute(dialect.delete.format(ids=ids), (worker,))
                cursor.executemany(
                    dialect.insert_done, [[r[c] for c in STEP_COLUMNS] for r in records]
                )
                if spawn is not None:
                    children = []
                    for r in records:
                        state = spawn(r)
                        if state is not None:
                            child = {**r, "state": state, "execution_count": 0}
                            child["created_by_step_id"] = r["id"]
                            child["available_at"] = r["run_at"]
                            children.append([child[c] for c in _INSERT_COLUMNS])
                    if children:
                        cursor.executemany(dialect.insert_ready, children)
                dialect.commit(connection, cursor)
                with lock:
                    moved += len(records)
                    if moved >= expected:
                        finished.set()
        finally:
            cursor.close()
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    if moved < expected:
        raise RuntimeError(f"the ceiling loop moved {moved} of {expected} rows in {timeout} s")
    return time.perf_counter() - started


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
