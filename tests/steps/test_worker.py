"""The worker pool's guarantees: leases, fencing, heartbeats, stopping, wake-ups, exactly-once.

A "dead" worker is simulated by claiming rows under a made-up worker id; a worker that lost
its lease by another pool taking the step over once the lease has run out.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.storage.step_queries import StepQueries
from flowkeeper.storage.tables import locks, steps_ready
from tests.apps import crash_app
from tests.apps.processes import start_worker

T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "it") -> T:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Background:
    """``engine.run`` in a thread of its own, as another process's pool would run."""

    def __init__(self, engine: fk.Engine, **options: Any) -> None:
        self.engine = engine
        self.stats: fk.RunStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(options,), daemon=True)
        self.thread.start()

    def _run(self, options: dict[str, Any]) -> None:
        try:
            self.stats = self.engine.run(handle_signals=False, **options)
        except BaseException as error:
            self.error = error

    def stop(self, timeout: float = 30.0) -> fk.RunStats:
        deadline = time.monotonic() + timeout
        while self.thread.is_alive():  # engine.stop() does nothing until run() has begun
            assert time.monotonic() < deadline, "the pool did not stop"
            self.engine.stop()
            self.thread.join(0.05)
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def ready(engine: fk.Engine) -> list[fk.StepRecord]:
    return engine.search(queues=["ready"], limit=None)["ready"]


def locked(engine: fk.Engine) -> list[fk.StepRecord]:
    return [r for r in ready(engine) if r.locked_by is not None or r.locked_until is not None]


@pytest.fixture
def effects(engine: fk.Engine) -> Iterator[sa.Table]:
    """An application table of the test's own, written through ``step.connection``."""
    metadata = sa.MetaData()
    table = sa.Table(
        "app_effects",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("step_id", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(100)),
    )
    metadata.drop_all(engine.database)
    metadata.create_all(engine.database)
    yield table
    engine.database.dispose()
    metadata.drop_all(engine.database)


def rows_of(engine: fk.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.database.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.select(table.c.step_id, table.c.note))]


def set_ready_columns(engine: fk.Engine, step_id: int, **values: Any) -> None:
    """Change a ready step behind the engine's back, as another worker would."""
    with engine.database.begin() as connection:
        connection.execute(steps_ready.update().where(steps_ready.c.id == step_id).values(values))


def claim_as_dead_worker(engine: fk.Engine, worker: str, lease: float) -> list[int]:
    """Lease every due step to ``worker``, which never comes back for them."""
    queries = StepQueries(engine.kind)
    now = datetime.now(UTC)
    with engine.database.begin() as connection:
        rows = queries.claim(connection, worker, now, now + timedelta(seconds=lease), 1000)
    return [row["id"] for row in rows]


# -- until idle ------------------------------------------------------------------------------


def test_run_until_idle_returns_with_future_steps_still_ready(engine: fk.Engine) -> None:
    engine.register_step(["now"], lambda step: step.done(fk.Step("soon", run_at=in_an_hour())))
    due = engine.add_steps(*(fk.Step("now", i) for i in range(5)))
    future = engine.add_step(fk.Step("now", run_at=in_an_hour()))

    started = time.monotonic()
    stats = engine.run(workers=3, until_idle=True, handle_signals=False)

    assert time.monotonic() - started < 5
    assert (stats.executed, stats.done) == (5, 5)
    assert engine.count() == {"ready": 6, "done": 5, "failed": 0}
    waiting = ready(engine)
    assert {r.name for r in waiting} == {"now", "soon"}
    assert all(r.execution_count == 0 and r.locked_by is None for r in waiting)
    assert future in {r.id for r in waiting}
    assert {r.created_by_step_id for r in waiting if r.name == "soon"} == set(due)


# -- step.connection -------------------------------------------------------------------------


def test_writes_through_step_connection_commit_with_the_completion(
    engine: fk.Engine, effects: sa.Table
) -> None:
    @engine.step("book")
    def book(step: fk.StepContext) -> fk.Outcome:
        step.connection.execute(effects.insert().values(step_id=step.id, note="booked"))
        return step.done(fk.Step("receipt", run_at=in_an_hour()))

    ids = engine.add_steps(*(fk.Step("book") for _ in range(3)))
    engine.run(workers=2, until_idle=True, handle_signals=False)

    assert sorted(rows_of(engine, effects)) == [(i, "booked") for i in ids]
    assert engine.count() == {"ready": 3, "done": 3, "failed": 0}
    assert {r.created_by_step_id for r in ready(engine)} == set(ids)


def test_writes_through_step_connection_roll_back_when_the_step_raises(
    engine: fk.Engine, effects: sa.Table
) -> None:
    @engine.step("flaky-book", retry=fk.Retry(delay=0))
    def flaky_book(step: fk.StepContext) -> fk.Outcome:
        step.connection.execute(
            effects.insert().values(step_id=step.id, note=f"try {step.execution_count}")
        )
        if step.execution_count < 3:
            raise RuntimeError("the payment provider timed out")
        return step.done(fk.Step("receipt", run_at=in_an_hour()))

    @engine.step("always-breaks")
    def always_breaks(step: fk.StepContext) -> None:
        step.connection.execute(effects.insert().values(step_id=step.id, note="never"))
        raise ValueError("after writing")

    flaky = engine.add_step(fk.Step("flaky-book"))
    broken = engine.add_step(fk.Step("always-breaks"))
    engine.run(workers=2, until_idle=True, handle_signals=False)

    assert rows_of(engine, effects) == [(flaky, "try 3")]
    assert engine.get_step(flaky).queue == "done"
    record = engine.get_step(broken)
    assert (record.queue, record.execution_count, record.locked_by) == ("ready", 1, None)
    assert record.description is not None
    assert "ValueError: after writing" in record.description
    assert [r.name for r in ready(engine)] == ["always-breaks", "receipt"]


# -- singletons among new steps ----------------------------------------------------------------


def test_a_singleton_clash_in_new_steps_retries_that_step_alone(
    engine: fk.Engine, effects: sa.Table
) -> None:
    singleton = engine.add_step(fk.Step("nightly", singleton=True, run_at=in_an_hour()))

    @engine.step("spawn")
    def spawn(step: fk.StepContext) -> fk.Outcome:
        if step.state == "clash":
            return step.done(fk.Step("nightly", singleton=True))
        if step.state == "clash-with-writes":
            step.connection.execute(effects.insert().values(step_id=step.id, note="clash"))
            return step.done(fk.Step("nightly", singleton=True))
        return step.done(fk.Step("child", step.state))

    engine.register_step(["child"], lambda step: None)
    # A fast first step, so that the worker claims the others in one batch after it.
    engine.add_step(fk.Step("spawn", "warm-up", run_at=datetime.now(UTC) - timedelta(seconds=1)))
    ids = engine.add_steps(
        fk.Step("spawn", "a"),
        fk.Step("spawn", "clash"),
        fk.Step("spawn", "b"),
        fk.Step("spawn", "clash-with-writes"),
        fk.Step("spawn", "c"),
    )
    engine.run(workers=1, until_idle=True, handle_signals=False)

    done = engine.search(fk.Search(name="child"), queues=["done"])["done"]
    assert sorted(r.state for r in done) == ["a", "b", "c", "warm-up"]
    for clashing in (ids[1], ids[3]):
        record = engine.get_step(clashing)
        assert (record.queue, record.execution_count, record.locked_by) == ("ready", 1, None)
        assert record.description is not None
        assert "SingletonExists" in record.description
        assert record.execution_started_at is not None
        assert record.run_at > record.execution_started_at
    assert rows_of(engine, effects) == []
    nightly = engine.search(fk.Search(name="nightly"), queues=["ready"])["ready"]
    assert [r.id for r in nightly] == [singleton]
    assert engine.count() == {"ready": 3, "done": 8, "failed": 0}


# -- leases and fencing ------------------------------------------------------------------------


def test_a_dead_workers_steps_run_again_once_its_lease_expires(db_url: str) -> None:
    executions: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    with fk.Engine(db_url, lease=1) as engine:

        @engine.step("job")
        def job(step: fk.StepContext) -> None:
            with lock:
                executions[step.id] += 1

        ids = engine.add_steps(*(fk.Step("job", i) for i in range(5)))
        claimed_at = time.monotonic()
        assert sorted(claim_as_dead_worker(engine, "dead-host:1:0/0", lease=2.0)) == ids
        assert {r.locked_by for r in ready(engine)} == {"dead-host:1:0/0"}

        # While the lease lasts nobody else may run them; a pool that looks finds nothing.
        stats = engine.run(workers=2, until_idle=True, handle_signals=False)
        assert stats.executed == 0
        assert time.monotonic() - claimed_at < 2.0, "too slow to prove anything"

        pool = Background(engine, workers=2, max_poll_interval=0.1)
        wait_for(lambda: engine.count()["done"] == 5, what="the steps to run again")
        elapsed = time.monotonic() - claimed_at
        pool.stop()

    assert elapsed >= 1.9  # not before the lease ran out
    assert executions == dict.fromkeys(ids, 1)
    with fk.Engine(db_url) as reader:
        done = reader.search(queues=["done"])["done"]
        assert [r.execution_count for r in done] == [2] * 5  # the dead claim counted
        assert all(r.executed_by != "dead-host:1:0/0" for r in done)
        # The dead worker comes back: its completion is fenced off.
        queries = StepQueries(reader.kind)
        with reader.database.begin() as connection:
            assert queries.take_held(connection, "dead-host:1:0/0", ids) == set()
            assert not queries.reschedule(
                connection,
                "dead-host:1:0/0",
                {
                    "step_id": ids[0],
                    "state": "null",
                    "run_at": datetime.now(UTC),
                    "description": "from the grave",
                    "execution_count": 1,
                    "execution_started_at": None,
                    "execution_duration_ms": None,
                    "executed_by": "dead-host:1:0/0",
                },
            )
        assert reader.count() == {"ready": 0, "done": 5, "failed": 0}


def test_a_worker_that_lost_its_lease_cannot_complete(
    db_url: str, engine: fk.Engine, effects: sa.Table
) -> None:
    """Pool A's step hangs past its lease (as if its heartbeat had stopped); pool B takes the
    step over and completes it; then A's step returns, and nothing of A's outcome is written.
    """
    entered = threading.Event()
    release = threading.Event()
    executions: list[str] = []

    def slow_a(step: fk.StepContext) -> fk.Outcome:
        executions.append("A")
        entered.set()
        assert release.wait(30)
        # (On SQLite, writing holds the database's one write lock: write late, not early.)
        step.connection.execute(effects.insert().values(step_id=step.id, note="A"))
        return step.done(fk.Step("from-A"))

    step_id = engine.add_step(fk.Step("slow"))
    # Pool A: a long lease, so its heartbeat (every lease/3) does not run during the test.
    slow_engine = fk.Engine(db_url, lease=600)
    slow_engine.register_step(["slow"], slow_a, retry=fk.Retry(max_attempts=1))
    pool_a = Background(slow_engine, workers=1)
    try:
        assert entered.wait(15)
        holder = engine.get_step(step_id).locked_by
        assert holder is not None
        # A's lease runs out: the heartbeat never came.
        past = datetime.now(UTC) - timedelta(seconds=1)
        set_ready_columns(engine, step_id, locked_until=past, available_at=past)

        # Pool B takes the step over and finishes it.
        with fk.Engine(db_url, lease=5) as b_engine:

            @b_engine.step("slow")
            def slow_b(step: fk.StepContext) -> fk.Outcome:
                executions.append("B")
                step.connection.execute(effects.insert().values(step_id=step.id, note="B"))
                return step.done(fk.Step("from-B", run_at=in_an_hour()))

            b_stats = b_engine.run(workers=1, until_idle=True, handle_signals=False)
        assert b_stats.done == 1
        done = engine.get_step(step_id)
        assert done.queue == "done"
        assert done.executed_by != holder
        assert done.execution_count == 2

    finally:
        release.set()
        a_stats = pool_a.stop()
        slow_engine.close()

    assert executions == ["A", "B"]
    assert (a_stats.executed, a_stats.lost, a_stats.done) == (1, 1, 0)
    assert engine.get_step(step_id).executed_by == done.executed_by  # B's record stands
    assert rows_of(engine, effects) == [(step_id, "B")]  # A's write rolled back
    assert [r.name for r in ready(engine)] == ["from-B"]
    assert engine.count() == {"ready": 1, "done": 1, "failed": 0}


@pytest.mark.parametrize("ending", ["done", "fail", "rerun", "raise"])
def test_no_outcome_is_written_for_a_step_another_worker_holds(
    engine: fk.Engine, effects: sa.Table, ending: str
) -> None:
    """Inside the step, another worker takes it over (as after the lease ran out): whatever
    way the step ends, its outcome, new steps and writes through step.connection are dropped.
    """

    @engine.step("taken", retry=fk.Retry(max_attempts=1))
    def taken(step: fk.StepContext) -> fk.Outcome:
        set_ready_columns(engine, step.id, locked_by="thief")
        step.connection.execute(effects.insert().values(step_id=step.id, note=ending))
        new = fk.Step("spawned")
        if ending == "done":
            return step.done(new)
        if ending == "fail":
            return step.fail("no", new)
        if ending == "rerun":
            return step.rerun(state="changed", new_steps=[new])
        raise RuntimeError("broken")

    step_id = engine.add_step(fk.Step("taken", "original"))
    stats = engine.run(workers=1, until_idle=True, handle_signals=False)

    assert (stats.executed, stats.lost, stats.done, stats.failed, stats.rescheduled) == (
        1,
        1,
        0,
        0,
        0,
    )
    record = engine.get_step(step_id)
    assert (record.queue, record.locked_by, record.state) == ("ready", "thief", "original")
    assert record.description is None
    assert rows_of(engine, effects) == []
    assert engine.count() == {"ready": 1, "done": 0, "failed": 0}


def test_the_heartbeat_keeps_a_long_step_leased(db_url: str) -> None:
    runs: list[int] = []
    with fk.Engine(db_url, lease=1.5) as engine, fk.Engine(db_url, lease=1.5) as rival:

        @engine.step("long")
        def long(step: fk.StepContext) -> None:
            runs.append(step.id)
            time.sleep(3.0)  # twice the lease

        rival.register_step(["long"], long)
        step_id = engine.add_step(fk.Step("long"))
        rival_pool = Background(rival, workers=2, max_poll_interval=0.05)
        stats = engine.run(workers=2, until_idle=True, handle_signals=False)
        wait_for(lambda: engine.count()["done"] == 1, what="the step to be done")
        rival_stats = rival_pool.stop()

        assert runs == [step_id]
        assert stats.executed + rival_stats.executed == 1
        assert stats.lost + rival_stats.lost == 0
        record = engine.get_step(step_id)
        assert (record.queue, record.execution_count) == ("done", 1)
        assert record.execution_duration_ms is not None
        assert record.execution_duration_ms >= 3000


def test_the_heartbeat_keeps_a_step_writing_through_its_connection_leased(db_url: str) -> None:
    """A step in its own transaction for longer than the lease: its lease is extended by id
    like any other, and its writes commit with its outcome, once."""
    runs: list[int] = []
    with fk.Engine(db_url, lease=1.5) as engine, fk.Engine(db_url, lease=1.5) as rival:

        def long(step: fk.StepContext) -> None:
            runs.append(step.id)
            step.connection.execute(locks.insert().values(name=f"wrote-{step.id}"))
            time.sleep(3.0)  # twice the lease

        engine.register_step(["long"], long)
        rival.register_step(["long"], long)
        step_id = engine.add_step(fk.Step("long"))
        rival_pool = Background(rival, workers=2, max_poll_interval=0.05)
        stats = engine.run(workers=2, until_idle=True, handle_signals=False)
        rival_stats = rival_pool.stop()

        assert runs == [step_id]  # whichever pool claimed it first ran it, once
        assert stats.executed + rival_stats.executed == 1
        assert stats.done + rival_stats.done == 1
        assert stats.lost + rival_stats.lost == 0
        with engine.database.connect() as connection:
            written = connection.execute(sa.select(locks.c.name)).scalars().all()
        assert written == [f"wrote-{step_id}"]


@pytest.mark.databases("postgresql", "mariadb")
def test_workers_survive_their_database_connections_being_killed(db_url: str) -> None:
    executions: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    with fk.Engine(db_url, lease=1) as engine, fk.Engine(db_url) as admin:

        @engine.step("job")
        def job(step: fk.StepContext) -> None:
            with lock:
                executions[step.id] += 1
            time.sleep(0.1)

        ids = engine.add_steps(*(fk.Step("job", i) for i in range(30)))
        pool = Background(engine, workers=3, max_poll_interval=0.1)
        wait_for(lambda: len(executions) >= 4, what="steps to run")
        assert kill_other_connections(admin) >= 3
        wait_for(lambda: engine.count()["done"] == len(ids), 30, "every step to be done")
        stats = pool.stop()

    assert set(executions) == set(ids)
    assert stats.executed == sum(executions.values())
    assert stats.executed == stats.done + stats.lost  # every execution accounted for
    # Each execution again follows one whose outcome was lost. (A commit cut off on its way
    # back may count as lost and yet have been written: "at least", not "exactly".)
    assert stats.lost >= stats.executed - len(ids)


def test_a_claim_that_committed_but_reported_an_error_strands_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops while COMMIT is on its way back: the claim is in the database but
    the worker saw an error. Those steps must still run (once the lease ends), not stay leased
    for ever to a worker whose heartbeat is alive but that does not know it holds them."""
    with fk.Engine(db_url, lease=1) as engine:
        engine.register_step(["job"], lambda step: None)
        ids = engine.add_steps(*(fk.Step("job", i) for i in range(3)))
        hot_path = engine._hot  # fault injection: no public way to cut a COMMIT's reply
        real_claim = hot_path.claim
        cut: list[list[int]] = []

        def claim_then_lose_the_reply(
            connection: sa.Connection, *args: Any, **options: Any
        ) -> list[Any]:
            rows = real_claim(connection, *args, **options)
            if cut or not rows:
                return rows
            connection.commit()
            cut.append([row["id"] for row in rows])
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))

        monkeypatch.setattr(hot_path, "claim", claim_then_lose_the_reply)
        pool = Background(engine, workers=1, max_poll_interval=0.05)
        wait_for(lambda: engine.count()["done"] == len(ids), 10, "every step to be done")
        pool.stop()

        (stranded,) = cut
        assert stranded
        for step_id in stranded:
            assert engine.get_step(step_id).execution_count == 2  # the lost claim counted


def kill_other_connections(engine: fk.Engine) -> int:
    """Kill every connection to this database but the caller's, as a failover would."""
    with engine.database.connect() as connection:
        if engine.kind == "postgresql":
            query = (
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = list(connection.execute(sa.text(query)).scalars())
            for pid in pids:
                connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            query = (
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            pids = list(connection.execute(sa.text(query)).scalars())
            for pid in pids:
                connection.exec_driver_sql(f"KILL {int(pid)}")
        connection.commit()
    return len(pids)


# -- stopping --------------------------------------------------------------------------------


def claimed_in_one_batch(engine: fk.Engine, name: str, count: int) -> list[int]:
    """``count`` steps of ``name`` that a single worker claims together: a quick step due
    earlier goes first, and once it has run the worker claims bigger batches.
    """
    engine.register_step(["warm-up"], lambda step: None)
    engine.add_step(fk.Step("warm-up", run_at=datetime.now(UTC) - timedelta(seconds=1)))
    return engine.add_steps(*(fk.Step(name, i) for i in range(count)))


def test_stop_from_another_thread_finishes_the_running_step_and_releases_the_rest(
    engine: fk.Engine,
) -> None:
    running = threading.Event()
    finish = threading.Event()
    seen: list[int] = []

    @engine.step("blocking")
    def blocking(step: fk.StepContext) -> None:
        seen.append(step.id)
        running.set()
        assert finish.wait(30)
        time.sleep(0.05)

    ids = claimed_in_one_batch(engine, "blocking", 5)
    pool = Background(engine, workers=1)
    assert running.wait(15)
    in_flight = seen[0]
    assert {r.locked_by for r in ready(engine)} != {None}  # the batch is claimed

    stopper = threading.Thread(target=engine.stop)
    stopper.start()
    stopper.join()
    finish.set()
    stats = pool.stop()

    assert seen == [in_flight] == [ids[0]]
    assert stats.executed == 2  # the warm-up and the one in flight
    record = engine.get_step(in_flight)
    assert (record.queue, record.execution_count) == ("done", 1)
    released = ready(engine)
    assert [r.id for r in released] == ids[1:]
    assert all(r.locked_by is None and r.locked_until is None for r in released)
    assert all(r.execution_count == 0 for r in released)

    # Released steps are due at once: the next run takes them.
    assert engine.run(workers=2, until_idle=True, handle_signals=False).done == 4
    assert engine.count() == {"ready": 0, "done": 6, "failed": 0}


def test_stop_from_inside_a_step(engine: fk.Engine) -> None:
    seen: list[int] = []

    @engine.step("stops")
    def stops(step: fk.StepContext) -> fk.Outcome:
        seen.append(step.id)
        engine.stop()
        return step.done(fk.Step("after", run_at=in_an_hour()))

    ids = claimed_in_one_batch(engine, "stops", 4)
    stats = engine.run(workers=1, handle_signals=False)  # no until_idle: only stop() ends it

    assert seen == [ids[0]]
    assert stats.executed == 2
    assert engine.get_step(ids[0]).queue == "done"
    assert [r.name for r in ready(engine)] == ["stops"] * 3 + ["after"]
    assert locked(engine) == []
    assert all(r.execution_count == 0 for r in ready(engine))


def test_a_step_running_when_stop_is_asked_keeps_its_lease_until_recorded(db_url: str) -> None:
    """Stopping does not stop the heartbeat while steps still run: a long step finishing after
    the stop request is not taken over by another pool."""
    runs: list[str] = []
    running = threading.Event()
    with fk.Engine(db_url, lease=1.5) as engine, fk.Engine(db_url, lease=1.5) as rival:

        @engine.step("long")
        def long(step: fk.StepContext) -> None:
            runs.append("engine")
            running.set()
            time.sleep(3.0)  # twice the lease

        @rival.step("long")
        def long_rival(step: fk.StepContext) -> None:
            runs.append("rival")

        step_id = engine.add_step(fk.Step("long"))
        pool = Background(engine, workers=1)
        assert running.wait(15)
        rival_pool = Background(rival, workers=1, max_poll_interval=0.05)
        engine.stop()
        stats = pool.stop()
        rival_stats = rival_pool.stop()

        assert runs == ["engine"]
        assert (stats.done, stats.lost, rival_stats.executed) == (1, 0, 0)
        assert engine.get_step(step_id).queue == "done"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_worker_process_gracefully(
    db_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    with fk.Engine(db_url) as engine:
        crash_app.metadata.drop_all(engine.database)
        crash_app.metadata.create_all(engine.database)
        ids = engine.add_steps(*(fk.Step(crash_app.STEP_NAME, {"sleep": 0.3}) for _ in range(30)))
        log_path = tmp_path / "worker.log"
        with log_path.open("w") as log:
            process = start_worker(db_url, log, workers=3)
            try:
                # Some steps are running: their start is recorded, their effect not yet.
                wait_for(lambda: count_rows(engine, crash_app.starts) >= 2, 30, "steps to start")
                process.send_signal(signum)
                process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        output = log_path.read_text()
        assert process.returncode == 0, output
        assert "stopped after" in output

        started = set(column(engine, crash_app.starts.c.step_id))
        effects = column(engine, crash_app.effects.c.step_id)
        done = {r.id for r in engine.search(queues=["done"], limit=None)["done"]}
        assert started  # it did stop in the middle
        assert started == done  # every step that started finished and was recorded
        assert sorted(effects) == sorted(done)
        assert len(done) < len(ids)
        assert locked(engine) == []
        assert all(r.execution_count == 0 for r in ready(engine))
        assert engine.count()["ready"] + len(done) == len(ids)
        crash_app.metadata.drop_all(engine.database)


def count_rows(engine: fk.Engine, table: sa.Table) -> int:
    with engine.database.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def column(engine: fk.Engine, column: sa.Column[Any]) -> list[Any]:
    with engine.database.connect() as connection:
        return list(connection.execute(sa.select(column)).scalars())


# -- wake-ups --------------------------------------------------------------------------------


@pytest.mark.databases("postgresql")
def test_listen_notify_wakes_an_idle_pool_at_once(engine: fk.Engine, db_url: str) -> None:
    engine.register_step(["ping"], lambda step: None)
    pool = Background(engine, workers=2, max_poll_interval=5.0)
    try:
        with fk.Engine(db_url) as other:  # another process's engine: no in-process wake-up
            wait_for(lambda: listeners(other) >= 1, what="the pool to LISTEN")
            time.sleep(1.0)  # idle workers back off: polling alone would now be slow
            latencies = []
            for _ in range(6):
                step_id = other.add_step(fk.Step("ping"))
                record = wait_for(
                    lambda added=step_id: done_or_none(other, added), 10, "the step to run"
                )
                assert record.execution_started_at is not None
                latencies.append((record.execution_started_at - record.created_at).total_seconds())
                time.sleep(0.3)
    finally:
        pool.stop()
    print(f"add -> start latencies (s): {', '.join(f'{x:.3f}' for x in latencies)}")
    # Tolerate one hiccup of a busy machine; polling finds most of these only after 0.3 s.
    assert sum(1 for x in latencies if x < 0.1) >= 5, latencies
    assert max(latencies) < 0.5, latencies


@pytest.mark.databases("postgresql")
def test_the_listen_connection_comes_back_after_it_is_killed(
    engine: fk.Engine, db_url: str
) -> None:
    engine.register_step(["ping"], lambda step: None)
    pool = Background(engine, workers=1, max_poll_interval=5.0)
    try:
        with fk.Engine(db_url) as other:
            (first,) = wait_for(lambda: listener_pids(other), what="the pool to LISTEN")
            with other.database.connect() as connection:
                connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            (second,) = wait_for(
                lambda: [p for p in listener_pids(other) if p != first], what="a new LISTEN"
            )
            time.sleep(1.0)  # let the worker back off
            step_id = other.add_step(fk.Step("ping"))
            record = wait_for(lambda: done_or_none(other, step_id), 10, "the step to run")
            assert record.execution_started_at is not None
            latency = (record.execution_started_at - record.created_at).total_seconds()
    finally:
        pool.stop()
    assert latency < 0.5
    assert second != first


def listener_pids(engine: fk.Engine) -> list[int]:
    with engine.database.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = 'LISTEN flowkeeper_steps'"
                )
            ).scalars()
        )


def listeners(engine: fk.Engine) -> int:
    return len(listener_pids(engine))


def done_or_none(engine: fk.Engine, step_id: int) -> fk.StepRecord | None:
    record = engine.get_step(step_id)
    return record if record.queue == "done" else None


# -- many steps, many workers ------------------------------------------------------------------


def test_many_steps_on_eight_workers_each_run_exactly_once(engine: fk.Engine) -> None:
    total = 2000
    executions: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    @engine.step("noop")
    def noop(step: fk.StepContext) -> None:
        with lock:
            executions[step.id] += 1

    ids: list[int] = []
    for start in range(0, total, 500):
        ids += engine.add_steps(*(fk.Step("noop", i) for i in range(start, start + 500)))
    started = time.monotonic()
    stats = engine.run(workers=8, until_idle=True, handle_signals=False)
    elapsed = time.monotonic() - started
    print(f"{total} no-op steps on 8 workers: {elapsed:.2f} s ({total / elapsed:.0f}/s)")

    assert len(executions) == total
    assert set(executions.values()) == {1}
    assert set(executions) == set(ids)
    assert (stats.executed, stats.done, stats.lost) == (total, total, 0)
    assert engine.count() == {"ready": 0, "done": total, "failed": 0}
    done = engine.search(queues=["done"], limit=None)["done"]
    assert sorted(r.id for r in done) == sorted(ids)
    assert {r.execution_count for r in done} == {1}


@pytest.mark.databases("sqlite")
def test_sqlite_connections_checkpoint_again_once_the_pool_stops(engine: fk.Engine) -> None:
    """While a pool runs, its shared writer leaves checkpoints to the checkpointer thread;
    the connection it returns to the engine's pool must checkpoint on its own again, or an
    application that stops running workers would see the log grow without end."""
    engine.register_step(["noop"], lambda step: None)
    engine.add_steps(*(fk.Step("noop", i) for i in range(500)))
    stats = engine.run(workers=4, until_idle=True, handle_signals=False)
    assert stats.done == 500

    pooled = engine.database.pool.checkedin()
    assert pooled > 0
    connections = [engine.database.connect() for _ in range(pooled)]
    try:
        for connection in connections:
            driver = connection.connection.driver_connection  # no transaction: a read of a pragma
            assert driver is not None
            assert driver.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    finally:
        for connection in connections:
            connection.close()


def test_slow_steps_after_fast_ones_are_shared_not_hoarded(engine: fk.Engine) -> None:
    """Workers that just drained fast steps claim big batches; a burst of slow steps arriving
    next must still spread over the idle workers rather than queue behind one of them."""
    ran_by: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    engine.register_step(["fast"], lambda step: None)

    @engine.step("slow")
    def slow(step: fk.StepContext) -> None:
        with lock:
            ran_by[threading.current_thread().name] += 1
        time.sleep(0.2)

    pool = Background(engine, workers=8, max_poll_interval=0.05)
    try:
        engine.add_steps(*(fk.Step("fast") for _ in range(1000)))
        wait_for(lambda: engine.count()["done"] == 1000, 30, "the fast steps")
        started = time.monotonic()
        engine.add_steps(*(fk.Step("slow") for _ in range(16)))
        wait_for(lambda: engine.count()["done"] == 1016, 30, "the slow steps")
        elapsed = time.monotonic() - started
    finally:
        pool.stop()
    print(f"16 x 0.2 s steps on 8 workers: {elapsed:.2f} s, per worker {sorted(ran_by.values())}")
    assert elapsed < 1.5  # 0.4 s when shared; one worker alone would take 3.2 s
    assert max(ran_by.values()) <= 4


def test_a_batch_that_turns_out_slow_gives_back_what_it_has_not_started(
    engine: fk.Engine,
) -> None:
    held_at_start: list[int] = []

    @engine.step("slow")
    def slow(step: fk.StepContext) -> None:
        held = [r for r in ready(engine) if r.name == "slow" and r.locked_by is not None]
        held_at_start.append(len(held))
        time.sleep(0.3)

    # After the quick warm-up the worker claims all five slow steps in one batch; planned
    # for 0.25 s, the batch gives back what it has not started once it runs past that.
    ids = claimed_in_one_batch(engine, "slow", 5)
    engine.run(workers=1, until_idle=True, handle_signals=False)

    assert held_at_start[0] == 5
    assert held_at_start[3:] == [1, 1]  # without giving back: 2, then 1
    done = engine.search(fk.Search(name="slow"), queues=["done"])["done"]
    assert sorted(r.id for r in done) == ids
    assert {r.execution_count for r in done} == {1}  # a give-back undoes the claim's count


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def test_a_chain_is_handed_from_link_to_link_within_one_worker(engine: fk.Engine) -> None:
    """A due child the worker can run is added leased to it: no claim between the links."""

    @engine.step("link")
    def link(step: fk.StepContext) -> fk.Outcome:
        left = step.state["left"]
        return step.done(fk.Step("link", {"left": left - 1})) if left > 1 else step.done()

    engine.add_step(fk.Step("link", {"left": 20}))
    engine.run(workers=4, until_idle=True, handle_signals=False)

    done = engine.search(fk.Search(name="link"), queues=["done"], limit=None)["done"]
    assert [r.state["left"] for r in done] == list(range(20, 0, -1))
    assert all(r.execution_count == 1 for r in done)
    assert len({r.executed_by for r in done}) == 1
    assert engine.count() == {"ready": 0, "done": 20, "failed": 0}


def test_the_next_batch_is_claimed_with_the_outcomes_of_the_last(
    engine: fk.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While there is work, a worker claims its next batch in the transaction that records
    the last outcomes of a batch: one transaction per batch, each step still run once."""
    engine.register_step(["job"], lambda step: None)
    ids = engine.add_steps(*(fk.Step("job", i) for i in range(300)))
    hot_path = engine._hot  # to see the claims: no public way
    real_claim = hot_path.claim
    claims: list[tuple[bool, int]] = []

    def recording(connection: sa.Connection, *args: Any, alone: bool = True) -> list[Any]:
        rows = real_claim(connection, *args, alone=alone)
        claims.append((alone, len(rows)))
        return rows

    monkeypatch.setattr(hot_path, "claim", recording)
    stats = engine.run(workers=1, until_idle=True, batch_size=50, handle_signals=False)

    assert stats.done == 300
    assert all(engine.get_step(i).execution_count == 1 for i in ids)
    with_outcomes = [count for alone, count in claims if not alone]
    assert sum(with_outcomes) == 299  # the first claim is alone (one step at first)
    assert len([c for c in claims if c[0]]) <= 3  # the first, and the ones that found none


def test_steps_handed_to_a_stopping_worker_are_released(engine: fk.Engine) -> None:
    @engine.step("fan")
    def fan(step: fk.StepContext) -> fk.Outcome:
        engine.stop()  # the children are handed to this worker, which is stopping
        return step.done(*(fk.Step("child", i) for i in range(5)))

    @engine.step("child")
    def child(step: fk.StepContext) -> None:
        return None

    engine.add_step(fk.Step("fan"))
    engine.run(workers=1, handle_signals=False, max_poll_interval=0.05)

    children = ready(engine)
    assert len(children) == 5
    assert all(r.locked_by is None and r.execution_count == 0 for r in children)
    engine.run(workers=2, until_idle=True, handle_signals=False)
    assert engine.count() == {"ready": 0, "done": 6, "failed": 0}


NASTY_TEXT = ['a "quoted" word', "back\\slash", "{braces, commas}", "NULL", "", "ünï €𝄞", " x "]


def test_children_added_by_a_worker_keep_every_character(engine: fk.Engine) -> None:
    later = datetime.now(UTC) + timedelta(days=1)

    @engine.step("parent")
    def parent(step: fk.StepContext) -> fk.Outcome:
        return step.done(
            *(
                fk.Step(
                    "kept",
                    {"text": text, "list": [text]},
                    search_key=text,
                    description=text,
                    run_at=later,
                )
                for text in NASTY_TEXT
            ),
            fk.Step("kept", None, correlation_id='c"1\\', run_at=later),
        )

    engine.add_step(fk.Step("parent"))
    engine.run(workers=1, until_idle=True, handle_signals=False)

    children = ready(engine)
    assert [c.state for c in children[:-1]] == [{"text": t, "list": [t]} for t in NASTY_TEXT]
    assert [c.search_key for c in children[:-1]] == NASTY_TEXT
    assert [c.description for c in children[:-1]] == NASTY_TEXT
    assert children[-1].state is None
    assert children[-1].correlation_id == 'c"1\\'


def test_a_fan_out_is_shared_among_workers_not_handed_to_one(engine: fk.Engine) -> None:
    ran_by: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    @engine.step("fan")
    def fan(step: fk.StepContext) -> fk.Outcome:
        return step.done(*(fk.Step("branch", i) for i in range(8)))

    @engine.step("branch")
    def branch(step: fk.StepContext) -> None:
        with lock:
            ran_by[threading.current_thread().name] += 1
        time.sleep(0.2)

    engine.add_step(fk.Step("fan"))
    started = time.monotonic()
    engine.run(workers=8, until_idle=True, handle_signals=False, max_poll_interval=0.05)
    elapsed = time.monotonic() - started

    assert engine.count() == {"ready": 0, "done": 9, "failed": 0}
    assert len(ran_by) >= 4, ran_by
    assert elapsed < 1.2  # eight 0.2 s steps one after the other would take 1.6 s
