"""Step operations an application calls: add, search, activate, re-execute, fail, count.

Each accepts ``connection=``, a SQLAlchemy connection of the caller's: the operation then runs
inside the caller's transaction and commits or rolls back with it (the outbox pattern).
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc

from flowkeeper.clock import utcnow
from flowkeeper.errors import InvalidArgument, SingletonExists, StepNotFound
from flowkeeper.steps.model import (
    QUEUE_NAMES,
    Queue,
    Search,
    Step,
    StepRecord,
    check_id,
    check_text,
    encode_json,
)
from flowkeeper.storage.hot_path import HotPath
from flowkeeper.storage.step_queries import Row, StepQueries
from flowkeeper.storage.tables import QUEUES


class Transaction(Protocol):
    """Opens the transaction an operation runs in: the caller's (``connection``) or our own."""

    def __call__(
        self, connection: sa.Connection | None, read_only: bool = False
    ) -> contextlib.AbstractContextManager[sa.Connection]: ...


SINGLETON_ATTEMPTS = 3
"""Inserts tried when a singleton clash vanishes before it can be named (the step finished)."""

LOCK_BUCKETS = 256
"""add_step_if_absent locks one of this many named locks, chosen by the match: equal matches
always meet, and the lock table stays small."""


def check_step(step: object) -> Step:
    if not isinstance(step, Step):
        hint = (
            " (pass steps as separate arguments: add_steps(*steps))"
            if isinstance(step, list | tuple)
            else ""
        )
        raise InvalidArgument(f"expected fk.Step values, not {type(step).__name__}{hint}")
    return step


def new_flow_id() -> str:
    """A new flow id: 32 hex digits laid out as a UUIDv7 (RFC 9562), milliseconds first.

    Ids made close in time sort close together, so a batch of new steps adds its ``flow_id``
    index entries to a few neighbouring index pages. Random ids (UUIDv4) dirtied one page per
    step in every queue's ``flow_id`` index, and writing those pages back was the largest single
    cost of draining steps on SQLite.
    """
    milliseconds = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10))
    value = (milliseconds & (2**48 - 1)) << 80 | 0x7 << 76 | (random_bits >> 68) << 64
    value |= 0b10 << 62 | random_bits & (2**62 - 1)
    return f"{value:032x}"


def ready_row(
    step: Step,
    now: datetime,
    *,
    parent: Row | None = None,
) -> Row:
    """The ready-queue row for a new step; a child inherits its parent's flow and correlation,
    and its tenant unless the step names one."""
    run_at = step.run_at or now
    flow_id = step.flow_id
    correlation_id = step.correlation_id
    tenant_id = step.tenant_id
    if parent is not None:
        flow_id = flow_id if flow_id is not None else parent["flow_id"]
        if correlation_id is None:
            correlation_id = parent["correlation_id"]
        if tenant_id is None:
            tenant_id = parent["tenant_id"]
    return {
        "name": step.name,
        "singleton": step.singleton,
        "singleton_key": step.name if step.singleton else None,
        "flow_id": flow_id if flow_id is not None else new_flow_id(),
        "correlation_id": correlation_id,
        "search_key": step.search_key,
        "state": step.state_json,
        "activation_args": None,
        "execution_count": 0,
        "run_at": run_at,
        "available_at": run_at,
        "created_at": now,
        "created_by_step_id": None if parent is None else parent["id"],
        "execution_started_at": None,
        "execution_duration_ms": None,
        "executed_by": None,
        "description": step.description,
        "tenant_id": tenant_id,
        "locked_by": None,
        "locked_until": None,
    }


def check_queues(queues: Iterable[str], allowed: Sequence[str] = QUEUE_NAMES) -> tuple[Queue, ...]:
    """The queues named, each once, in the order given; InvalidArgument for an unknown one."""
    if isinstance(queues, str):
        queues = (queues,)
    try:
        result = tuple(dict.fromkeys(queues))
    except TypeError:
        raise InvalidArgument(
            f"queues must be queue names such as ('ready', 'done'), not {queues!r}"
        ) from None
    for queue in result:
        if queue not in allowed:
            raise InvalidArgument(
                f"unknown queue {queue!r}; choose from {', '.join(map(repr, allowed))}"
            )
    if not result:
        raise InvalidArgument(f"give at least one queue of {', '.join(map(repr, allowed))}")
    return result  # type: ignore[return-value]


def check_search(search: object) -> Search:
    if not isinstance(search, Search):
        raise InvalidArgument(
            f"expected an fk.Search, not {type(search).__name__} (e.g. fk.Search(name='v1/x'))"
        )
    return search


def search_where(
    table: sa.Table, search: Search, queries: StepQueries
) -> list[sa.ColumnElement[bool]]:
    """SQL conditions for ``search`` on one queue table.

    Text matches exactly (case, accents and trailing spaces count) on every database;
    ``search_key`` and ``description`` treat ``%`` as "any text" and nothing else as special.
    """
    check_search(search)
    c = table.c
    where: list[sa.ColumnElement[bool]] = []
    if search.id is not None:
        where.append(c.id == search.id)
    for name in ("name", "flow_id", "correlation_id"):
        value = getattr(search, name)
        if value is not None:
            where.append(c[name] == value)
    for name in ("search_key", "description"):
        value = getattr(search, name)
        if value is not None:
            where.append(queries.matches(c[name], value))
    if search.created_from is not None:
        where.append(c.created_at >= search.created_from)
    if search.created_to is not None:
        where.append(c.created_at < search.created_to)
    if search.tenant_id == "":
        where.append(sa.or_(c.tenant_id.is_(None), c.tenant_id == ""))
    elif search.tenant_id is not None:
        where.append(c.tenant_id == search.tenant_id)
    if search.after_id is not None:
        where.append(c.id > search.after_id)
    return where


class StepOperations:
    """The step operations of one engine."""

    def __init__(
        self,
        queries: StepQueries,
        hot: HotPath,
        transaction: Transaction,
        notify_added: Callable[[sa.Connection], None],
    ) -> None:
        self._q = queries
        self._hot = hot
        self._transaction = transaction
        self._notify_added = notify_added

    # -- adding -----------------------------------------------------------------------------

    def add_steps(
        self, steps: Sequence[Step], connection: sa.Connection | None = None
    ) -> list[int]:
        for step in steps:
            check_step(step)
        if not steps:
            return []
        now = utcnow()
        rows = [ready_row(step, now) for step in steps]
        with self._transaction(connection) as conn:
            ids = self.insert(conn, rows)
            self._notify_added(conn)
        return ids

    def insert(self, conn: sa.Connection, rows: Sequence[Row]) -> list[int]:
        """Insert ready rows, turning a singleton clash into :class:`SingletonExists`.

        When singletons are among them the insert runs in a savepoint, so the clash leaves the
        surrounding (possibly the caller's) transaction usable and nothing of the batch written.
        """
        singletons = [r["singleton_key"] for r in rows if r["singleton_key"] is not None]
        if not singletons:
            return self._hot.insert(conn, rows)
        repeated = sorted({n for n in singletons if singletons.count(n) > 1})
        if repeated:
            raise SingletonExists(repeated)
        for attempt in range(SINGLETON_ATTEMPTS):
            try:
                with conn.begin_nested():
                    return self._hot.insert(conn, rows)
            except exc.IntegrityError:
                clashing = self._q.ready_singletons(conn, singletons)
                if clashing:
                    raise SingletonExists(clashing) from None
                # The clashing step left the ready queue between our insert and our look.
                if attempt + 1 == SINGLETON_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def add_step_if_absent(
        self, step: Step, match: Search, connection: sa.Connection | None = None
    ) -> int | None:
        """Add ``step`` unless a ready step matches ``match``; return its id, or None.

        Two calls with the same ``match`` at the same time add one step: the check and the
        insert run under a lock on the match (held until the transaction ends).
        """
        check_step(step)
        where = search_where(QUEUES["ready"], match, self._q)
        if not where:
            raise InvalidArgument(
                "add_step_if_absent needs a Search with at least one field set "
                "(e.g. fk.Search(name=step.name, search_key=...))"
            )
        with self._transaction(connection) as conn:
            bucket = zlib.crc32(repr(match).encode()) % LOCK_BUCKETS
            self._q.lock(conn, f"add_step_if_absent/{bucket}")
            if self._q.select(conn, "ready", where, limit=1):
                return None
            ids = self.insert(conn, [ready_row(step, utcnow())])
            self._notify_added(conn)
            return ids[0]

    # -- reading ------------------------------------------------------------------------------

    def search(
        self,
        search: Search,
        queues: Iterable[str],
        limit: int | None,
        connection: sa.Connection | None = None,
    ) -> dict[str, list[StepRecord]]:
        chosen = check_queues(queues)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidArgument(f"limit must be a positive int or None, not {limit!r}")
        check_search(search)
        with self._transaction(connection, read_only=True) as conn:
            return {
                queue: [
                    StepRecord.from_row(queue, row)
                    for row in self._q.select(
                        conn, queue, search_where(QUEUES[queue], search, self._q), limit
                    )
                ]
                for queue in chosen
            }

    def get(self, step_id: int, connection: sa.Connection | None = None) -> StepRecord:
        found = self.search(Search(id=step_id), QUEUE_NAMES, 1, connection)
        for records in found.values():
            if records:
                return records[0]
        raise StepNotFound(f"no step with id {step_id} in the ready, done or failed queue")

    def count(
        self, search: Search | None = None, connection: sa.Connection | None = None
    ) -> dict[str, int]:
        search = Search() if search is None else check_search(search)
        with self._transaction(connection, read_only=True) as conn:
            return {
                queue: self._q.count(conn, queue, search_where(table, search, self._q))
                for queue, table in QUEUES.items()
            }

    # -- changing -----------------------------------------------------------------------------

    def prune(
        self, older_than: timedelta, queues: Iterable[str] = ("done",), batch: int = 5000
    ) -> dict[str, int]:
        """Delete done/failed steps created more than ``older_than`` ago; return counts.

        Deletes ``batch`` rows per transaction, so a large backlog never holds long locks.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidArgument(f"older_than must be a timedelta >= 0, not {older_than!r}")
        chosen = check_queues(queues, ("done", "failed"))
        cutoff = utcnow() - older_than
        deleted: dict[str, int] = dict.fromkeys(chosen, 0)
        for queue in chosen:
            while True:
                with self._transaction(None) as conn:
                    ids = self._q.ids_created_before(conn, queue, cutoff, batch)
                    deleted[queue] += self._q.delete(conn, queue, ids)
                if len(ids) < batch:
                    break
        return deleted

    def activate(
        self, step_id: int, args: Any = None, connection: sa.Connection | None = None
    ) -> bool:
        """Make a ready step due now, with ``args`` as its activation arguments.

        False if the step is running or has already left the ready queue.
        """
        check_id(step_id)
        args_json = None if args is None else encode_json(args, "activation args")
        with self._transaction(connection) as conn:
            if self._q.activate(conn, step_id, utcnow(), args_json):
                self._notify_added(conn)
                return True
            if any(self._q.exists_in(conn, queue, step_id) for queue in QUEUE_NAMES):
                return False
        raise StepNotFound(f"no step with id {step_id} in the ready, done or failed queue")

    def reexecute(
        self, search: Search, queues: Iterable[str], connection: sa.Connection | None = None
    ) -> list[int]:
        """Copy matching done/failed steps back to ready as new steps; return the new ids."""
        chosen = check_queues(queues, ("done", "failed"))
        check_search(search)
        now = utcnow()
        with self._transaction(connection) as conn:
            rows: list[Row] = []
            for queue in chosen:
                where = search_where(QUEUES[queue], search, self._q)
                for old in self._q.select(conn, queue, where, None):
                    rows.append(_copy_for_reexecution(old, now))
            ids = self.insert(conn, rows)
            if ids:
                self._notify_added(conn)
            return ids

    def fail_steps(
        self,
        search: Search,
        description: str | None = None,
        connection: sa.Connection | None = None,
    ) -> list[int]:
        """Move matching ready steps to failed; a worker running one cannot complete it."""
        where = search_where(QUEUES["ready"], search, self._q)
        if not where:
            raise InvalidArgument(
                "fail_steps needs a Search with at least one field set (it would fail every "
                "ready step)"
            )
        check_text(description, "description", limit=None, error=InvalidArgument)
        now = utcnow()
        with self._transaction(connection) as conn:
            rows = self._q.select(conn, "ready", where, None, for_update=True)
            for row in rows:
                row["description"] = description or f"failed by an operator at {now.isoformat()}"
            ids = [row["id"] for row in rows]
            self._q.delete(conn, "ready", ids)
            self._q.insert_finished(conn, "failed", rows)
            return ids


def _copy_for_reexecution(old: Row, now: datetime) -> Row:
    return {
        "name": old["name"],
        "singleton": old["singleton"],
        "singleton_key": old["name"] if old["singleton"] else None,
        "flow_id": old["flow_id"],
        "correlation_id": old["correlation_id"],
        "search_key": old["search_key"],
        "state": old["state"],
        "activation_args": None,
        "execution_count": 0,
        "run_at": now,
        "available_at": now,
        "created_at": now,
        "created_by_step_id": old["created_by_step_id"],
        "execution_started_at": None,
        "execution_duration_ms": None,
        "executed_by": None,
        "description": f"re-execution of step {old['id']}",
        "tenant_id": old["tenant_id"],
        "locked_by": None,
        "locked_until": None,
    }
