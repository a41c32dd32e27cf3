"""An application for tests that run real ``flowkeeper worker`` processes and kill them.

``flowkeeper worker --app tests.apps.crash_app:engine`` with ``FLOWKEEPER_DATABASE_URL`` set.
``FLOWKEEPER_TEST_LEASE`` (seconds) sets the engine's lease, so a killed worker's steps are
claimed again soon.

Each ``crash/work`` step records that it started in :data:`starts`, in a short transaction of
its own that commits at once whatever happens next (so ``starts`` counts executions: at least
once), sleeps ``state["sleep"]`` seconds, then records its effect in :data:`effects` through
``step.connection`` (so the effect commits with the step's completion: exactly once).
Neither table has a unique key on ``step_id``: a duplicate would show, not be refused.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

import flowkeeper as fk

metadata = sa.MetaData()

starts = sa.Table(
    "crash_starts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("step_id", sa.BigInteger, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)

effects = sa.Table(
    "crash_effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("step_id", sa.BigInteger, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)

STEP_NAME = "crash/work"

engine = fk.Engine(lease=float(os.environ.get("FLOWKEEPER_TEST_LEASE", "60")))


@engine.step(STEP_NAME)
def work(step: fk.StepContext) -> None:
    pid = os.getpid()
    with engine.database.begin() as own:
        own.execute(starts.insert().values(step_id=step.id, pid=pid))
    time.sleep(float(step.state.get("sleep", 0)))
    step.connection.execute(effects.insert().values(step_id=step.id, pid=pid))
