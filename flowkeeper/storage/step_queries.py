"""The SQL that moves steps between queues, built once per engine, one variant per database.

Everything here takes and returns plain column dictionaries: the steps layer owns the meaning.
PostgreSQL and SQLite claim and fence with ``UPDATE/DELETE … RETURNING`` (PostgreSQL adds
``FOR UPDATE SKIP LOCKED``); MySQL has no ``RETURNING``, so it locks with ``SELECT … FOR
UPDATE [SKIP LOCKED]`` and then writes, inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, exc, func, insert, select, update

from flowkeeper.storage.database import Kind
from flowkeeper.storage.tables import QUEUES, STEP_COLUMNS, locks, steps_ready

Row = dict[str, Any]

_ready = steps_ready
_c = steps_ready.c

LIKE_ESCAPE = "/"
EXTEND_CHUNK = 500
"""Leases extended per statement (SQLite builds before 3.32 take 999 parameters)."""


class StepQueries:
    """Named statements over the step queues for one kind of database."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._returning = kind != "mysql"
        ids: sa.BindParameter[Any] = bindparam("ids", expanding=True)
        due = (
            select(_c.id)
            .where(_c.available_at <= bindparam("now"))
            .order_by(_c.available_at)
            .limit(bindparam("limit"))
        )
        if kind != "sqlite":
            due = due.with_for_update(skip_locked=True)
        self._due_rows = (
            select(*_ready.c)
            .where(_c.available_at <= bindparam("now"))
            .order_by(_c.available_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
        self._claim_values = {
            "locked_by": bindparam("worker"),
            "locked_until": bindparam("until"),
            "available_at": bindparam("until"),
            "execution_count": _c.execution_count + 1,
        }
        self._claim = (
            update(_ready)
            .where(_c.id.in_(due.scalar_subquery()))
            .values(self._claim_values)
            .returning(*_ready.c)
        )
        self._claim_by_ids = update(_ready).where(_c.id.in_(ids)).values(self._claim_values)
        self._extend = (
            update(_ready)
            .where(_c.id.in_(ids), _c.locked_by == bindparam("worker"))
            .values(locked_until=bindparam("until"), available_at=bindparam("until"))
        )
        self._release = (
            update(_ready)
            .where(_c.id.in_(ids), _c.locked_by == bindparam("worker"))
            .values(
                locked_by=None,
                locked_until=None,
                available_at=_c.run_at,
                execution_count=_c.execution_count - 1,
            )
        )
        self._held = select(_c.id).where(_c.id.in_(ids), _c.locked_by == bindparam("worker"))
        self._delete_held = delete(_ready).where(
            _c.id.in_(ids), _c.locked_by == bindparam("worker")
        )
        self._delete_held_returning = self._delete_held.returning(_c.id)
        self._reschedule = (
            update(_ready)
            .where(_c.id == bindparam("step_id"), _c.locked_by == bindparam("worker"))
            .values(
                state=bindparam("state"),
                run_at=bindparam("run_at"),
                available_at=bindparam("run_at"),
                description=bindparam("description"),
                execution_count=bindparam("execution_count"),
                execution_started_at=bindparam("execution_started_at"),
                execution_duration_ms=bindparam("execution_duration_ms"),
                executed_by=bindparam("executed_by"),
                locked_by=None,
                locked_until=None,
            )
        )
        self._insert_ready = insert(_ready)
        self._insert_ready_returning = insert(_ready).returning(_c.id, sort_by_parameter_order=True)
        self._insert_finished = {q: insert(t) for q, t in QUEUES.items() if q != "ready"}

    # -- adding -----------------------------------------------------------------------------

    def insert_ready(self, connection: sa.Connection, rows: Sequence[Row]) -> list[int]:
        """Insert new ready steps; return their ids in the order given."""
        if not rows:
            return []
        if len(rows) == 1 or not self._returning:
            ids = []
            for row in rows:
                result = connection.execute(self._insert_ready, row)
                key = result.inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
            return ids
        result = connection.execute(self._insert_ready_returning, list(rows))
        return [int(i) for i in result.scalars().all()]

    # -- the worker's hot path ----------------------------------------------------------------

    def claim(
        self,
        connection: sa.Connection,
        worker: str,
        now: datetime,
        until: datetime,
        limit: int,
    ) -> list[Row]:
        """Lease up to ``limit`` due steps to ``worker``; return them as they now are."""
        params = {"worker": worker, "now": now, "until": until, "limit": limit}
        if self._returning:
            result = connection.execute(self._claim, params)
            rows = [dict(r) for r in result.mappings()]
            rows.sort(key=lambda r: r["id"])
            return rows
        rows = [dict(r) for r in connection.execute(self._due_rows, params).mappings()]
        if not rows:
            return []
        connection.execute(self._claim_by_ids, {**params, "ids": [r["id"] for r in rows]})
        for row in rows:
            row.update(
                locked_by=worker,
                locked_until=until,
                available_at=until,
                execution_count=row["execution_count"] + 1,
            )
        rows.sort(key=lambda r: r["id"])
        return rows

    def extend_leases(
        self, connection: sa.Connection, worker: str, ids: Sequence[int], until: datetime
    ) -> int:
        """Heartbeat: push back the end of the leases ``worker`` still holds among ``ids``."""
        extended = 0
        for start in range(0, len(ids), EXTEND_CHUNK):
            chunk = list(ids[start : start + EXTEND_CHUNK])
            params = {"ids": chunk, "worker": worker, "until": until}
            extended += connection.execute(self._extend, params).rowcount
        return extended

    def release(self, connection: sa.Connection, worker: str, ids: Sequence[int]) -> int:
        """Give back leased steps that were never started: due again, the claim undone."""
        if not ids:
            return 0
        return connection.execute(self._release, {"worker": worker, "ids": list(ids)}).rowcount

    def take_held(self, connection: sa.Connection, worker: str, ids: Sequence[int]) -> set[int]:
        """Delete the given steps from ready where ``worker`` still holds their lease.

        This is the completion fence: only the ids returned may be written to done/failed.
        """
        if not ids:
            return set()
        params = {"worker": worker, "ids": list(ids)}
        if self._returning:
            return set(connection.execute(self._delete_held_returning, params).scalars())
        held = set(connection.execute(self._held.with_for_update(), params).scalars())
        if held:
            connection.execute(self._delete_held, {"worker": worker, "ids": list(held)})
        return held

    def insert_finished(self, connection: sa.Connection, queue: str, rows: Sequence[Row]) -> None:
        """Insert steps (ids kept) into ``done`` or ``failed``."""
        if rows:
            connection.execute(self._insert_finished[queue], [finished_row(r) for r in rows])

    def reschedule(self, connection: sa.Connection, worker: str, values: Mapping[str, Any]) -> bool:
        """Put a held step back in line (rerun, retry, postpone); False if the lease was lost."""
        return connection.execute(self._reschedule, {"worker": worker, **values}).rowcount == 1

    # -- operations ---------------------------------------------------------------------------

    def select(
        self,
        connection: sa.Connection,
        queue: str,
        where: Iterable[sa.ColumnElement[bool]],
        limit: int | None,
        for_update: bool = False,
    ) -> list[Row]:
        table = QUEUES[queue]
        query = select(*table.c).where(*where).order_by(table.c.id)
        if limit is not None:
            query = query.limit(limit)
        if for_update and self.kind != "sqlite":
            query = query.with_for_update()
        return [dict(r) for r in connection.execute(query).mappings()]

    def delete(self, connection: sa.Connection, queue: str, ids: Sequence[int]) -> int:
        table = QUEUES[queue]
        if not ids:
            return 0
        return connection.execute(delete(table).where(table.c.id.in_(list(ids)))).rowcount

    def ids_created_before(
        self, connection: sa.Connection, queue: str, cutoff: datetime, limit: int
    ) -> list[int]:
        """Up to ``limit`` ids of steps created before ``cutoff`` (the created_at index)."""
        table = QUEUES[queue]
        query = select(table.c.id).where(table.c.created_at < cutoff).limit(limit)
        return [int(i) for i in connection.execute(query).scalars()]

    def count(
        self, connection: sa.Connection, queue: str, where: Iterable[sa.ColumnElement[bool]] = ()
    ) -> int:
        table = QUEUES[queue]
        value = connection.execute(select(func.count()).select_from(table).where(*where)).scalar()
        return int(value or 0)

    def activate(
        self, connection: sa.Connection, step_id: int, now: datetime, args: str | None
    ) -> bool:
        result = connection.execute(
            update(_ready)
            .where(_c.id == step_id, _c.locked_by.is_(None))
            .values(run_at=now, available_at=now, activation_args=args)
        )
        return result.rowcount == 1

    def exists_in(self, connection: sa.Connection, queue: str, step_id: int) -> bool:
        table = QUEUES[queue]
        found = connection.execute(select(table.c.id).where(table.c.id == step_id)).first()
        return found is not None

    def ready_singletons(self, connection: sa.Connection, names: Sequence[str]) -> list[str]:
        if not names:
            return []
        query = select(_c.singleton_key).where(_c.singleton_key.in_(list(names)))
        return sorted(str(n) for n in connection.execute(query).scalars())

    def matches(self, column: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
        """``column`` equals ``pattern``, where ``%`` in it stands for any text.

        Case-sensitive on every database and with no other special characters: SQLite's LIKE
        ignores ASCII case, so it gets GLOB (whose ``*?[`` are escaped); elsewhere LIKE with
        ``_`` and the escape character escaped (MySQL compares in a binary collation).
        """
        if "%" not in pattern:
            return column == pattern
        if self.kind == "sqlite":
            glob = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in pattern)
            return column.op("GLOB")(glob.replace("%", "*"))
        like = pattern.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("_", LIKE_ESCAPE + "_")
        return column.like(like, escape=LIKE_ESCAPE)

    def lock(self, connection: sa.Connection, name: str) -> None:
        """Hold the lock called ``name`` until the transaction ends.

        A row of ``fk_locks`` locked ``FOR UPDATE`` (created on first use). SQLite needs none:
        every transaction already holds the database's one write lock.
        """
        if self.kind == "sqlite":
            return
        query = select(locks.c.name).where(locks.c.name == name).with_for_update()
        if connection.execute(query).first() is not None:
            return
        try:
            with connection.begin_nested():
                connection.execute(insert(locks).values(name=name))
            return  # a row this transaction inserted stays locked until it ends
        except exc.IntegrityError:
            pass  # another transaction created it first: wait for it like everyone else
        connection.execute(query).first()


def finished_row(row: Mapping[str, Any]) -> Row:
    """The columns of a done or failed step, from a ready row."""
    return {name: row[name] for name in STEP_COLUMNS}
