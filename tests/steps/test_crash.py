"""Kill a worker process mid-run: no step is lost, every effect happens exactly once.

Two real ``flowkeeper worker`` processes share the queue; one is SIGKILLed in the middle. Its
leased steps run again elsewhere once the (short) lease expires. Executions are counted in a
table written outside the step's transaction (at least once: a killed execution counts), the
effect in a table written through ``step.connection`` (exactly once: it commits with the
step's completion or not at all).
"""

from __future__ import annotations

import collections
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from tests.apps import crash_app
from tests.apps.processes import start_worker

STEPS = 400
SLEEP = 0.02
LEASE = 3.0
WORKERS_PER_PROCESS = 4

pytestmark = pytest.mark.slow


@pytest.fixture
def app_tables(db_url: str) -> Iterator[fk.Engine]:
    engine = fk.Engine(db_url)
    crash_app.metadata.drop_all(engine.database)
    crash_app.metadata.create_all(engine.database)
    yield engine
    engine.database.dispose()
    crash_app.metadata.drop_all(engine.database)
    engine.close()


def scalar(engine: fk.Engine, query: sa.Select[Any]) -> Any:
    with engine.database.connect() as connection:
        return connection.execute(query).scalar_one()


def count(engine: fk.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(scalar(engine, sa.select(sa.func.count()).select_from(table).where(*where)))


def held_by(engine: fk.Engine, pid: int) -> int:
    """Ready steps leased to a worker thread of process ``pid`` (ids are host:pid:…)."""
    ready = engine.search(queues=["ready"], limit=None)["ready"]
    return sum(1 for r in ready if r.locked_by is not None and f":{pid}:" in r.locked_by)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_a_killed_worker_loses_no_step_and_duplicates_no_effect(
    app_tables: fk.Engine, db_url: str, db: str, tmp_path: Path
) -> None:
    engine = app_tables
    ids = set(
        engine.add_steps(*(fk.Step(crash_app.STEP_NAME, {"sleep": SLEEP}) for _ in range(STEPS)))
    )
    processes: list[subprocess.Popen[str]] = []
    logs = [(tmp_path / f"worker-{i}.log").open("w") for i in range(2)]
    try:
        for log in logs:
            processes.append(start_worker(db_url, log, workers=WORKERS_PER_PROCESS, lease=LEASE))
        victim, survivor = processes

        # In the middle: a third done, both at work, and the victim holding leases right now.
        def middle() -> bool:
            return (
                count(engine, crash_app.effects) >= STEPS // 3
                and count(engine, crash_app.effects, crash_app.effects.c.pid == victim.pid) > 0
                and count(engine, crash_app.effects, crash_app.effects.c.pid == survivor.pid) > 0
                and held_by(engine, victim.pid) > 0
            )

        wait_until(middle, 30, "both workers to be busy")
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
        orphaned = held_by(engine, victim.pid)
        done_at_kill = engine.count()["done"]

        wait_until(lambda: engine.count()["ready"] == 0, 30, "the ready queue to empty")
        drained = time.monotonic() - killed_at

        survivor.send_signal(signal.SIGTERM)
        survivor.wait(20)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    survivor_log = (tmp_path / "worker-1.log").read_text()
    assert victim.returncode == -signal.SIGKILL
    assert survivor.returncode == 0, survivor_log

    done = engine.search(queues=["done"], limit=None)["done"]
    done_ids = [r.id for r in done]
    executions = count(engine, crash_app.starts)
    with engine.database.connect() as connection:
        effects = collections.Counter(
            connection.execute(sa.select(crash_app.effects.c.step_id)).scalars()
        )
        pids = set(connection.execute(sa.select(crash_app.starts.c.pid)).scalars())
    lost = len(ids - set(done_ids))
    print(
        f"\ncrash test [{db}]: {STEPS} steps, {len(set(done_ids))} done, lost {lost}, "
        f"duplicate executions {executions - STEPS} (executions {executions}), "
        f"duplicate effects {sum(effects.values()) - len(effects)}; killed with "
        f"{done_at_kill} done and {orphaned} steps leased to the victim; "
        f"queue drained {drained:.2f} s after the kill (lease {LEASE:g} s)"
    )

    assert engine.count() == {"ready": 0, "done": STEPS, "failed": 0}
    assert sorted(done_ids) == sorted(ids)  # each step done, none twice
    assert set(effects) == ids
    assert set(effects.values()) == {1}  # exactly-once effect
    assert executions >= STEPS  # at least once
    assert pids == {victim.pid, survivor.pid}
    if orphaned:
        assert drained >= LEASE * 0.9  # the orphans waited for the lease to run out
