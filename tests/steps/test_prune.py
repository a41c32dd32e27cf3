"""Keeping the done and failed queues small: prune, the retention setting, `steps prune`."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.cli import app
from flowkeeper.storage.tables import QUEUES


def age_steps(engine: fk.Engine, queue: str, ids: list[int], days: int) -> None:
    table = QUEUES[queue]
    with engine.database.begin() as connection:
        old = connection.execute(sa.select(sa.func.min(table.c.created_at))).scalar()
        assert old is not None
        connection.execute(
            table.update().where(table.c.id.in_(ids)).values(created_at=old - timedelta(days=days))
        )


def finished(engine: fk.Engine, count: int, name: str = "job") -> list[int]:
    ids = engine.add_steps(*(fk.Step(name, i) for i in range(count)))
    engine.run(workers=2, until_idle=True, handle_signals=False)
    return ids


def test_prune_deletes_only_done_steps_older_than_the_age(engine: fk.Engine) -> None:
    engine.register_step(["job"], lambda step: None)
    old = finished(engine, 7)
    new = finished(engine, 3)
    age_steps(engine, "done", old, days=10)

    deleted = engine.prune(timedelta(days=5))

    assert deleted == {"done": 7}
    remaining = engine.search(queues=["done"], limit=None)["done"]
    assert sorted(r.id for r in remaining) == sorted(new)
    assert engine.prune(timedelta(days=5)) == {"done": 0}


def test_prune_works_in_batches_and_can_take_failed(engine: fk.Engine) -> None:
    ids = engine.add_steps(*(fk.Step("gone", i) for i in range(12)))
    engine.fail_steps(fk.Search(name="gone"))
    age_steps(engine, "failed", ids, days=3)

    deleted = engine._steps.prune(timedelta(days=1), ("failed",), batch=5)

    assert deleted == {"failed": 12}
    assert engine.count() == {"ready": 0, "done": 0, "failed": 0}


def test_prune_refuses_a_bad_age_or_queue(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match="timedelta"):
        engine.prune(-1)  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match="unknown queue 'ready'"):
        engine.prune(timedelta(days=1), ("ready",))


def test_workers_prune_by_the_engines_retention(db_url: str) -> None:
    with pytest.raises(fk.InvalidArgument, match="retention"):
        fk.Engine(db_url, retention=timedelta(0))
    with fk.Engine(db_url, retention=timedelta(days=1)) as engine:
        engine.register_step(["job"], lambda step: None)
        old = finished(engine, 4)
        age_steps(engine, "done", old, days=2)
        stop_soon = engine.add_step(fk.Step("job"))
        started = time.monotonic()
        engine.run(workers=1, until_idle=True, handle_signals=False)
        deadline = started + 10
        while engine.count()["done"] != 1 and time.monotonic() < deadline:
            engine.run(workers=1, until_idle=True, handle_signals=False)
        done = engine.search(queues=["done"])["done"]
        assert [r.id for r in done] == [stop_soon]


def test_steps_prune_command(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        engine.register_step(["job"], lambda step: None)
        old = finished(engine, 2)
        age_steps(engine, "done", old, days=40)
    runner = CliRunner()
    result = runner.invoke(
        app, ["steps", "prune", "--older-than", "30d", "--database", db_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"done": 2}
    bad = runner.invoke(app, ["steps", "prune", "--older-than", "soon", "--database", db_url])
    assert bad.exit_code == 1
    assert "is not an age" in bad.output
