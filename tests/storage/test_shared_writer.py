"""SQLite's shared writer: the work of many threads in shared transactions, and its checkpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.errors import SingletonExists
from flowkeeper.storage.database import create_database
from flowkeeper.storage.driver import driver_cursor
from flowkeeper.storage.shared_writer import Checkpointer, SharedWriter
from flowkeeper.storage.tables import locks
from tests.concurrency import run_together

pytestmark = pytest.mark.databases("sqlite")


@pytest.fixture
def writer(engine: fk.Engine) -> Iterator[SharedWriter]:
    writer = SharedWriter(engine.database)
    yield writer
    writer.close()


def names(engine: fk.Engine) -> set[str]:
    with engine.database.connect() as connection:
        return set(connection.execute(sa.select(locks.c.name)).scalars())


def adding(name: str) -> Callable[[sa.Connection], str]:
    def work(connection: sa.Connection) -> str:
        connection.execute(locks.insert().values(name=name))
        return name

    return work


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def submitted_together(
    writer: SharedWriter, works: list[Callable[[sa.Connection], object]]
) -> list[object]:
    """Run ``works`` from threads of their own, all queued while the writer is busy with
    another transaction (so that the next one takes them all); each result or error, in
    order."""
    results: list[object] = [None] * len(works)
    busy, release = threading.Event(), threading.Event()

    def blocking(connection: sa.Connection) -> None:
        busy.set()
        release.wait(10)

    def submit(index: int) -> None:
        try:
            results[index] = writer.run(works[index])
        except Exception as error:
            results[index] = error

    blocker = threading.Thread(target=writer.run, args=(blocking,))
    blocker.start()
    busy.wait(10)
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    wait_for(lambda: writer.waiting == len(works), "every thread to queue its work")
    release.set()
    for thread in [blocker, *threads]:
        thread.join()
    return results


def test_work_from_many_threads_commits_in_one_transaction(
    engine: fk.Engine, writer: SharedWriter
) -> None:
    results = submitted_together(writer, [adding(f"n{i}") for i in range(8)])

    assert results == [f"n{i}" for i in range(8)]  # each thread gets its own result
    assert names(engine) == {f"n{i}" for i in range(8)}
    assert writer.transactions == 2  # the one they waited for, and theirs


def test_work_that_raises_is_left_out_and_the_rest_commits(
    engine: fk.Engine, writer: SharedWriter
) -> None:
    def clashing(connection: sa.Connection) -> None:
        connection.execute(locks.insert().values(name="half-written"))
        raise SingletonExists(["s"])

    results = submitted_together(writer, [adding("a"), clashing, adding("b")])

    assert results[0] == "a"
    assert isinstance(results[1], SingletonExists)
    assert results[2] == "b"
    assert names(engine) == {"a", "b"}  # nothing of the failed work


def test_a_busy_database_runs_the_transaction_again(
    engine: fk.Engine, writer: SharedWriter
) -> None:
    attempts: list[int] = []

    def busy_at_first(connection: sa.Connection) -> str:
        attempts.append(1)
        connection.execute(locks.insert().values(name=f"try{len(attempts)}"))
        if len(attempts) < 3:
            with driver_cursor(connection):
                raise connection.dialect.loaded_dbapi.OperationalError("database is locked")
        return "done"

    assert writer.run(busy_at_first) == "done"
    assert len(attempts) == 3
    assert names(engine) == {"try3"}  # the failed attempts rolled back


def test_a_database_error_reaches_every_thread_and_the_writer_reconnects(
    engine: fk.Engine, writer: SharedWriter
) -> None:
    def broken(connection: sa.Connection) -> None:
        with driver_cursor(connection) as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    results = submitted_together(writer, [adding("a"), broken])

    assert all(isinstance(result, sa.exc.OperationalError) for result in results)
    assert names(engine) == set()
    assert writer.run(adding("after")) == "after"  # a fresh connection
    assert names(engine) == {"after"}


def test_an_error_outside_the_work_reaches_every_thread(
    engine: fk.Engine, writer: SharedWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure to connect (the database file gone, say) is not one job's: all get it."""

    def no_connection() -> sa.Connection:
        raise sa.exc.OperationalError("connect", {}, Exception("unable to open database file"))

    monkeypatch.setattr(engine.database, "connect", no_connection)
    results = run_together(lambda: writer.run(adding("a")), 4)
    assert len(results) == 4
    assert all(isinstance(result, sa.exc.OperationalError) for result in results)


def test_concurrent_work_is_each_written_once(engine: fk.Engine, writer: SharedWriter) -> None:
    counter = iter(range(10_000))
    lock = threading.Lock()

    def add_ten() -> list[str]:
        written = []
        for _ in range(10):
            with lock:
                name = f"n{next(counter)}"
            written.append(writer.run(adding(name)))
        return written

    results = run_together(add_ten, 8)

    written = [name for result in results for name in result]  # type: ignore[attr-defined]
    assert len(written) == 80
    assert names(engine) == set(written)
    assert writer.transactions <= 80


def test_the_connection_goes_back_with_sqlites_own_checkpoints_on(tmp_path: Path) -> None:
    database = sa.create_engine(f"sqlite:///{tmp_path / 'one.db'}", poolclass=sa.pool.StaticPool)
    writer = SharedWriter(database)

    def autocheckpoint(connection: sa.Connection) -> int:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

    assert writer.run(autocheckpoint) == 0  # the checkpointer's job while the writer runs
    writer.close()
    with database.connect() as connection:
        assert autocheckpoint(connection) == 1000
    with pytest.raises(RuntimeError, match="closed"):
        writer.run(autocheckpoint)


def largest_log(path: Path, checkpoints: bool) -> tuple[int, Checkpointer]:
    """Write about 10,000 pages through a shared writer (with or without a checkpointer)
    while a table stays small; return the size the log file reached."""
    database = create_database(sa.make_url(f"sqlite:///{path}"))
    with database.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    writer = SharedWriter(database)
    checkpointer = Checkpointer(database, writer, interval=0.001, restart_pages=200)
    body = "x" * 3000  # about a page a row

    def work(batch: int) -> Callable[[sa.Connection], None]:
        def write(connection: sa.Connection) -> None:
            with driver_cursor(connection) as cursor:
                cursor.executemany(
                    "INSERT INTO t VALUES (?, ?)", [(batch * 10 + i, body) for i in range(10)]
                )
                cursor.execute("DELETE FROM t WHERE id < ?", ((batch - 5) * 10,))

        return write

    if checkpoints:
        checkpointer.start()
    try:
        for batch in range(1_000):
            writer.run(work(batch))
        # The file keeps the size it reached (the last connection to close removes it).
        size = Path(f"{path}-wal").stat().st_size
    finally:
        checkpointer.stop()
        writer.close()
        database.dispose()
    return size, checkpointer


def test_the_checkpointer_keeps_the_log_from_growing(tmp_path: Path) -> None:
    """The writer's connection never checkpoints; without the checkpointer the log holds
    every page written. With it, the log starts over while the writer keeps writing."""
    unchecked, _ = largest_log(tmp_path / "unchecked.db", checkpoints=False)
    checked, checkpointer = largest_log(tmp_path / "checked.db", checkpoints=True)

    assert unchecked > 10_000 * 4096
    assert checkpointer.checkpoints > 0
    assert checkpointer.restarts > 0
    assert checked < unchecked / 4
