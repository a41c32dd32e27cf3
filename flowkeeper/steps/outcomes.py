"""Recording what a worker's steps did: outcomes, the steps they add, fenced by the lease.

A worker buffers the completions of a batch and writes them in one transaction per flush.
Only steps whose lease the worker still holds are written (the fence): a worker that lost a
step to another writes nothing for it. New steps are added in the same transaction, up to
one per completed step handed straight back to the worker that made it (a chain's next link);
a singleton clash makes each completion be written on its own. The flush that ends a batch
may also claim the worker's next batch in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy import exc

from flowkeeper.clock import utcnow
from flowkeeper.errors import SingletonExists
from flowkeeper.steps.execution import Completion, StepRunner
from flowkeeper.steps.operations import ready_row
from flowkeeper.steps.registry import StepRegistry
from flowkeeper.storage import notify as notify_mod
from flowkeeper.storage.database import Transactor
from flowkeeper.storage.hot_path import HotPath
from flowkeeper.storage.notify import Waker
from flowkeeper.storage.step_queries import Row


class Counts(Protocol):
    """Where written outcomes are counted (the pool's :class:`RunStats`)."""

    def add(self, queue: str, count: int = 1) -> None: ...


class OutcomeWriter:
    """Writes the outcomes of the steps one worker pool ran."""

    def __init__(
        self,
        hot: HotPath,
        registry: StepRegistry,
        insert: Callable[[sa.Connection, Sequence[Row]], list[int]],
        waker: Waker,
        stats: Counts,
        lease: timedelta,
    ) -> None:
        self._hot = hot
        self._registry = registry
        self._insert = insert
        self._waker = waker
        self._stats = stats
        self._lease = lease

    def flush(
        self,
        transaction: Transactor,
        worker_id: str,
        runner: StepRunner,
        completions: list[Completion],
        room: int = 0,
        claim: int = 0,
    ) -> tuple[list[Row], list[Row]]:
        """Write buffered outcomes in one ``transaction``; return the new steps handed to this
        worker and, if none were and ``claim`` > 0, up to ``claim`` due steps it claimed in the
        same transaction."""
        if not completions:
            return [], []
        claimed: list[Row] = []

        def write(c: sa.Connection) -> Written:
            nonlocal claimed
            written = self._write(c, worker_id, completions, room)
            if claim > 0 and not written.handed:
                now = utcnow()
                lease_end = now + self._lease
                claimed = self._hot.claim(c, worker_id, now, lease_end, claim, alone=False)
            return written

        try:
            written = transaction(write)
        except SingletonExists:
            # One step's new steps clash with a ready singleton: write each on its own, so the
            # others are not held back, and retry the clashing ones as if they had raised.
            claimed = []
            written = Written()
            for completion in completions:
                written.merge(self._write_alone(transaction, worker_id, runner, completion))
        self._written(written)
        return written.handed, claimed

    def _write_alone(
        self,
        transaction: Transactor,
        worker_id: str,
        runner: StepRunner,
        completion: Completion,
    ) -> Written:
        try:
            return transaction(lambda c: self._write(c, worker_id, [completion]))
        except SingletonExists as clash:
            retry = runner.as_error(completion, clash)
            return transaction(lambda c: self._write(c, worker_id, [retry]))

    def complete_in_step_transaction(
        self,
        connection: sa.Connection,
        transaction: Transactor,
        worker_id: str,
        runner: StepRunner,
        completion: Completion,
    ) -> None:
        """Write the outcome in the transaction the step wrote through, and commit both.

        If the lease was lost meanwhile, the step's writes roll back: the worker that holds the
        step now makes them again, and only its outcome counts. If the outcome cannot be
        written there, it is written as a retry in a ``transaction`` of its own.
        """
        try:
            written = self._write(connection, worker_id, [completion])
            if written.outcomes.get("lost"):
                connection.rollback()
                written.due = False
            else:
                connection.commit()
        except (SingletonExists, exc.DBAPIError) as error:
            # The step's own writes are gone with the transaction: run it again later.
            connection.rollback()
            completion.connection = None
            written = self._write_alone(
                transaction, worker_id, runner, runner.as_error(completion, error)
            )
        except BaseException:
            connection.rollback()
            raise
        self._written(written)

    def _written(self, written: Written) -> None:
        for queue, count in written.outcomes.items():
            self._stats.add(queue, count)
        if written.due:
            self._waker.wake()

    def _write(
        self,
        connection: sa.Connection,
        worker_id: str,
        completions: list[Completion],
        room: int = 0,
    ) -> Written:
        """Record outcomes of the steps this worker still holds, with the steps they add.

        Up to ``room`` new steps that are due now and implemented here, one per completed
        step, are added already leased to this worker, which runs them next without claiming
        them: a chain costs one transaction per link, not two.
        """
        held: set[int] = set()
        for queue in ("done", "failed"):
            rows = [c.row for c in completions if c.queue == queue]
            if rows:
                held |= self._hot.finish(connection, worker_id, queue, rows)
        changes = [c.reschedule for c in completions if c.reschedule is not None]
        if changes:
            held |= self._hot.reschedule(connection, worker_id, changes)
        now = utcnow()
        new_rows = [
            ready_row(step, now, parent=c.row)
            for c in completions
            if c.id in held
            for step in c.new_steps
        ]
        written = Written()
        if new_rows:
            until = now + self._lease
            plain = [r for r in new_rows if r["singleton_key"] is None]
            parents_handing: set[int] = set()
            for row in plain:
                if room <= 0:
                    break
                parent = row["created_by_step_id"]
                # One child per parent: a chain's next link stays here, while a fan-out's
                # other children go to the queue, for every idle worker to share.
                if (
                    parent not in parents_handing
                    and row["run_at"] <= now
                    and row["name"] in self._registry
                ):
                    parents_handing.add(parent)
                    row.update(
                        locked_by=worker_id,
                        locked_until=until,
                        available_at=until,
                        execution_count=1,
                    )
                    room -= 1
            written.handed = self._hot.add(connection, plain)
            singletons = [r for r in new_rows if r["singleton_key"] is not None]
            if singletons:
                self._insert(connection, singletons)
            written.due = any(r["run_at"] <= now and r["locked_by"] is None for r in new_rows)
        if written.due:
            notify_mod.notify(connection)
        outcomes = written.outcomes
        for completion in completions:
            queue = completion.queue if completion.id in held else "lost"
            outcomes[queue] = outcomes.get(queue, 0) + 1
        return written


@dataclass(slots=True)
class Written:
    """What one write recorded: outcomes by queue, and whether it added steps due now."""

    due: bool = False
    outcomes: dict[str, int] = field(default_factory=dict)
    handed: list[Row] = field(default_factory=list)
    """New steps added leased to the writing worker, for it to run next."""

    def merge(self, other: Written) -> None:
        self.due |= other.due
        self.handed.extend(other.handed)
        for queue, count in other.outcomes.items():
            self.outcomes[queue] = self.outcomes.get(queue, 0) + count
