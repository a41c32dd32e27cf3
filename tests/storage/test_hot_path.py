"""The hot path's driver-level statements behave like the SQLAlchemy ones around them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.storage.database import transact
from flowkeeper.storage.driver import driver_cursor
from flowkeeper.storage.hot_path import CLAIMED_COLUMNS, NEW_COLUMNS, hot_path_for
from flowkeeper.storage.step_queries import StepQueries
from flowkeeper.storage.tables import steps_ready


def test_driver_errors_surface_as_sqlalchemy_errors(engine: fk.Engine) -> None:
    """So transact() reruns a deadlock and the worker replaces a broken connection."""
    with engine.database.connect() as connection, connection.begin():
        with (
            pytest.raises(sa.exc.DBAPIError) as raised,
            driver_cursor(connection) as cursor,
        ):
            cursor.execute("SELECT * FROM no_such_table")
        assert raised.value.orig is not None


def test_a_transient_error_from_the_driver_is_run_again(engine: fk.Engine) -> None:
    attempts: list[int] = []

    def work(connection: sa.Connection) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            with driver_cursor(connection):
                raise connection.dialect.loaded_dbapi.OperationalError("database is locked")
        return "done"

    with engine.database.connect() as connection:
        assert transact(connection, work) == "done"
    assert len(attempts) == 3


def test_finishing_a_large_batch_moves_only_the_rows_still_held(engine: fk.Engine) -> None:
    """More rows than one statement takes on SQLite; two of them were taken by another worker."""
    engine.add_steps(*[fk.Step("bulk", i) for i in range(450)])
    hot = hot_path_for(StepQueries(engine.kind))
    now = datetime.now(UTC)
    until = now + timedelta(minutes=1)
    with engine.database.connect() as connection:
        rows = transact(connection, lambda c: hot.claim(c, "w1", now, until, 500))
        assert len(rows) == 450
        stolen = [rows[10]["id"], rows[300]["id"]]
        with connection.begin():
            connection.execute(
                steps_ready.update().where(steps_ready.c.id.in_(stolen)).values(locked_by="w2")
            )
        started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        for i, row in enumerate(rows):
            row.update(
                execution_started_at=started,
                execution_duration_ms=i,
                description=f"step {i}",
                executed_by="w1",
            )
        held = transact(connection, lambda c: hot.finish(c, "w1", "failed", rows))
    assert held == {r["id"] for r in rows} - set(stolen)
    assert engine.count(fk.Search(name="bulk")) == {"ready": 2, "done": 0, "failed": 448}
    failed = {r.id: r for r in engine.search(fk.Search(name="bulk"), limit=1000)["failed"]}
    assert set(failed) == held
    for i, row in enumerate(rows):
        if row["id"] in held:
            record = failed[row["id"]]
            assert (record.execution_duration_ms, record.description) == (i, f"step {i}")
            assert record.execution_started_at == started
            assert record.executed_by == "w1"
            assert record.state == int(row["state"])  # the row holds it as JSON text


def test_adding_many_leased_rows_returns_each_as_claimed(engine: fk.Engine) -> None:
    """More leased rows than one INSERT takes on SQLite, among rows left for any worker."""
    hot = hot_path_for(StepQueries(engine.kind))
    now = datetime.now(UTC)
    rows = [
        {
            **dict.fromkeys(NEW_COLUMNS),
            "name": "handed",
            "singleton": False,
            "flow_id": f"flow-{i}",
            "state": str(i),
            "execution_count": 1,
            "run_at": now,
            "available_at": now,
            "created_at": now,
            **({"locked_by": "w1", "locked_until": now + timedelta(minutes=1)} if i % 5 else {}),
        }
        for i in range(150)
    ]
    with engine.database.connect() as connection:
        leased = transact(connection, lambda c: hot.add(c, rows))
    assert [r["state"] for r in leased] == [str(i) for i in range(150) if i % 5]
    assert [r["flow_id"] for r in leased] == [f"flow-{i}" for i in range(150) if i % 5]
    ready = {r.id: r for r in engine.search(fk.Search(name="handed"), limit=None)["ready"]}
    assert len(ready) == 150
    assert {r["id"] for r in leased} == {i for i, r in ready.items() if r.locked_by == "w1"}
    assert sum(r.locked_by is None for r in ready.values()) == 30
    for row in leased:  # each as a claim would have read it back
        stored = ready[row["id"]]
        assert set(CLAIMED_COLUMNS) <= set(row)
        assert row["flow_id"] == stored.flow_id
        assert json.loads(row["state"]) == stored.state
        assert (row["name"], row["execution_count"], row["run_at"]) == (
            stored.name,
            stored.execution_count,
            stored.run_at,
        )
        assert row["run_at"].tzinfo is UTC


@pytest.mark.databases("postgresql")
@pytest.mark.parametrize("alone", [True, False])
def test_a_claim_commits_without_waiting_for_the_disk_only_alone(
    engine: fk.Engine, alone: bool
) -> None:
    """A claim alone may be lost in a crash (its steps run again); a claim made in the
    transaction that records outcomes must not make their commit asynchronous."""
    engine.add_steps(*[fk.Step("bulk", i) for i in range(3)])
    hot = hot_path_for(StepQueries(engine.kind))
    now = datetime.now(UTC)
    with engine.database.connect() as connection, connection.begin():
        rows = hot.claim(connection, "w1", now, now + timedelta(minutes=1), 10, alone=alone)
        setting = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
    assert len(rows) == 3
    assert setting == ("off" if alone else "on")


def test_the_heartbeat_extends_only_the_leases_the_worker_still_holds(engine: fk.Engine) -> None:
    """By id, in several statements for many ids; a step another worker took keeps its lease."""
    engine.add_steps(*[fk.Step("held", i) for i in range(1_200)])
    hot = hot_path_for(StepQueries(engine.kind))
    queries = StepQueries(engine.kind)
    now = datetime.now(UTC)
    with engine.database.connect() as connection:
        rows = transact(
            connection, lambda c: hot.claim(c, "w1", now, now + timedelta(minutes=1), 1_200)
        )
        ids = [row["id"] for row in rows]
        taken = ids[::100]
        with connection.begin():
            connection.execute(
                steps_ready.update().where(steps_ready.c.id.in_(taken)).values(locked_by="w2")
            )
        later = now + timedelta(minutes=10)
        extended = transact(connection, lambda c: queries.extend_leases(c, "w1", ids, later))
    assert extended == 1_200 - len(taken)
    records = {r.id: r for r in engine.search(fk.Search(name="held"), limit=None)["ready"]}
    assert {i for i, r in records.items() if r.locked_until == later} == set(ids) - set(taken)
