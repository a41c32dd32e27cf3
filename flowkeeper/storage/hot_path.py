"""The worker's hot path: claim, finish, reschedule and add steps, on the driver's connection.

These few statements run for every step. Through SQLAlchemy each execution compiles its
expanding ``IN`` list, type-processes every column of every row and, for ``executemany``,
dumps every parameter one by one; ``flowkeeper bench`` showed that costing more than the
database's own work. So on PostgreSQL and SQLite they are written out once as SQL text and run
on the driver's connection, inside the transaction SQLAlchemy opened:

- PostgreSQL moves a whole batch with one statement per queue: the outcomes travel as arrays
  (``unnest``), the row is deleted from ready and inserted into done or failed in one
  ``WITH … DELETE … RETURNING`` that only matches rows still leased to this worker (the fence).
- SQLite, in process and single-writer, moves a batch with one ``INSERT … SELECT`` joined
  to the outcomes as a ``VALUES`` list (fenced the same way) and one ``DELETE``, and inserts
  handed-off steps many rows per ``INSERT … RETURNING``.
- MySQL/MariaDB use the SQLAlchemy statements of :class:`StepQueries`.

Every method takes and returns the same column dictionaries as :class:`StepQueries`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from flowkeeper.storage.driver import driver_cursor, loaded_time, stored_time
from flowkeeper.storage.step_queries import Row, StepQueries
from flowkeeper.storage.tables import STEP_COLUMNS, steps_ready
from flowkeeper.storage.types import storable_text

CLAIMED_COLUMNS = (
    "id",
    "name",
    "state",
    "activation_args",
    "flow_id",
    "correlation_id",
    "search_key",
    "execution_count",
    "created_by_step_id",
    "run_at",
    "description",
    "tenant_id",
)
"""What a worker needs of a step it runs (the rest stays in the database and moves there)."""

NEW_COLUMNS = (
    "name",
    "singleton",
    "singleton_key",
    "flow_id",
    "correlation_id",
    "search_key",
    "state",
    "activation_args",
    "execution_count",
    "run_at",
    "available_at",
    "created_at",
    "created_by_step_id",
    "description",
    "tenant_id",
    "locked_by",
    "locked_until",
)
"""The columns written for a new ready step."""

_TIMES = frozenset({"run_at", "available_at", "created_at", "locked_until"})
_READY = steps_ready.name
_CLAIMED = ", ".join(CLAIMED_COLUMNS)


class HotPath:
    """The hot path through SQLAlchemy Core: correct everywhere, used for MySQL/MariaDB."""

    def __init__(self, queries: StepQueries) -> None:
        self._q = queries

    def claim(
        self,
        connection: sa.Connection,
        worker: str,
        now: datetime,
        until: datetime,
        limit: int,
        *,
        alone: bool = True,
    ) -> list[Row]:
        """Lease up to ``limit`` due steps to ``worker``; return them, oldest due first.

        ``alone=False``: the transaction also writes outcomes (a worker claiming its next
        batch as it records the last one), so it must commit as durably as they do.
        """
        return self._q.claim(connection, worker, now, until, limit)

    def finish(
        self, connection: sa.Connection, worker: str, queue: str, rows: Sequence[Row]
    ) -> set[int]:
        """Move the rows ``worker`` still holds from ready to ``queue``; return their ids."""
        held = self._q.take_held(connection, worker, [r["id"] for r in rows])
        self._q.insert_finished(connection, queue, [r for r in rows if r["id"] in held])
        return held

    def reschedule(
        self, connection: sa.Connection, worker: str, changes: Sequence[dict[str, Any]]
    ) -> set[int]:
        """Put held steps back in line with new values; return the ids still held."""
        return {c["step_id"] for c in changes if self._q.reschedule(connection, worker, c)}

    def insert(self, connection: sa.Connection, rows: Sequence[Row]) -> list[int]:
        """Insert new ready steps (``engine.add_steps``); return their ids in the order given."""
        return self._q.insert_ready(connection, rows)

    def add(self, connection: sa.Connection, rows: Sequence[Row]) -> list[Row]:
        """Insert new (non-singleton) ready steps; return the leased ones as claimed rows."""
        ids = self._q.insert_ready(connection, rows)
        # Whole rows: this path writes finished steps from what the worker holds in memory.
        return [
            {**row, "id": step_id}
            for step_id, row in zip(ids, rows, strict=True)
            if row["locked_by"] is not None
        ]


class PostgresHotPath(HotPath):
    """Whole batches per statement: outcomes as arrays, fenced with the lease in SQL."""

    def __init__(self, queries: StepQueries) -> None:
        super().__init__(queries)
        # The due rows are picked once, in a materialised CTE: a subquery under IN may be
        # run again by some plans and lock more rows than the limit.
        self._claim_sql = (
            f"WITH due AS MATERIALIZED (SELECT id FROM {_READY} WHERE available_at <= %(now)s "
            "ORDER BY available_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {_READY} r SET locked_by = %(worker)s, locked_until = %(until)s, "
            "available_at = %(until)s, execution_count = r.execution_count + 1 "
            "FROM due WHERE r.id = due.id "
            f"RETURNING {', '.join('r.' + c for c in CLAIMED_COLUMNS)}"
        )
        kept = [c for c in STEP_COLUMNS if c not in _OUTCOME_COLUMNS]
        moved = ", ".join(f"r.{c}" for c in kept)
        # Ids, start times (epoch seconds) and durations travel as array literals, which the
        # driver sends as one string; the failed queue also takes each step's new description.
        self._finish_sql = {
            queue: (
                f"WITH moved AS (DELETE FROM {_READY} r USING unnest(%(ids)s::bigint[], "
                "%(started)s::float8[], %(ms)s::integer[]"
                + (
                    ", %(description)s::text[]) AS o(id, started, ms, description) "
                    if queue == "failed"
                    else ") AS o(id, started, ms) "
                )
                + f"WHERE r.id = o.id AND r.locked_by = %(worker)s RETURNING {moved}, "
                "o.started, o.ms, "
                + ("o.description" if queue == "failed" else "r.description")
                + f") INSERT INTO fk_steps_{queue} ({', '.join(kept)}, execution_started_at, "
                "execution_duration_ms, description, executed_by) "
                f"SELECT {', '.join(kept)}, to_timestamp(started) AT TIME ZONE 'UTC', ms, "
                "description, %(worker)s FROM moved RETURNING id"
            )
            for queue in ("done", "failed")
        }
        self._reschedule_sql = (
            f"UPDATE {_READY} r SET state = o.state, run_at = o.run_at, available_at = o.run_at, "
            "description = o.description, execution_count = o.execution_count, "
            "execution_started_at = o.started, execution_duration_ms = o.ms, "
            "executed_by = %(worker)s, locked_by = NULL, locked_until = NULL "
            "FROM unnest(%(ids)s::bigint[], %(state)s::text[], %(run_at)s::timestamp[], "
            "%(description)s::text[], %(count)s::integer[], %(started)s::timestamp[], "
            "%(ms)s::integer[]) AS o(id, state, run_at, description, execution_count, "
            "started, ms) WHERE r.id = o.id AND r.locked_by = %(worker)s RETURNING r.id"
        )
        types = {
            "singleton": "boolean",
            "execution_count": "integer",
            "created_by_step_id": "bigint",
        }
        arrays = ", ".join(
            f"%({c})s::{'float8' if c in _TIMES else types.get(c, 'text')}[]" for c in NEW_COLUMNS
        )
        values = ", ".join(
            f"to_timestamp({c}) AT TIME ZONE 'UTC'" if c in _TIMES else c for c in NEW_COLUMNS
        )
        self._add_sql = (
            f"INSERT INTO {_READY} ({', '.join(NEW_COLUMNS)}) SELECT {values} "
            f"FROM unnest({arrays}) AS u({', '.join(NEW_COLUMNS)}) "
            f"RETURNING {_CLAIMED}, locked_by"
        )
        # Rows are inserted in the order given, so the ids they draw from the sequence rise
        # in that order: sorted, the returned ids line up with the rows.
        self._insert_sql = (
            f"INSERT INTO {_READY} ({', '.join(NEW_COLUMNS)}) SELECT {values} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS u({', '.join(NEW_COLUMNS)}, n) "
            "ORDER BY n RETURNING id"
        )

    def claim(
        self,
        connection: sa.Connection,
        worker: str,
        now: datetime,
        until: datetime,
        limit: int,
        *,
        alone: bool = True,
    ) -> list[Row]:
        params = {
            "worker": worker,
            "until": stored_time(until, sqlite=False),
            "now": stored_time(now, sqlite=False),
            "limit": limit,
        }
        with driver_cursor(connection) as cursor:
            if alone:
                # A claim lost in a crash only means its steps run again, which at-least-once
                # allows; so its commit need not wait for the disk. Outcomes still do, and
                # their commit flushes the claim's record too.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(self._claim_sql, params)
            return _claimed_rows(cursor.fetchall())

    def finish(
        self, connection: sa.Connection, worker: str, queue: str, rows: Sequence[Row]
    ) -> set[int]:
        if not rows:
            return set()
        params: dict[str, Any] = {
            "ids": _array(r["id"] for r in rows),
            "started": _array(repr(r["execution_started_at"].timestamp()) for r in rows),
            "ms": _array(r["execution_duration_ms"] for r in rows),
            "worker": worker,
        }
        if queue == "failed":
            params["description"] = [storable_text(r["description"]) for r in rows]
        with driver_cursor(connection) as cursor:
            cursor.execute(self._finish_sql[queue], params)
            return {values[0] for values in cursor.fetchall()}

    def reschedule(
        self, connection: sa.Connection, worker: str, changes: Sequence[dict[str, Any]]
    ) -> set[int]:
        if not changes:
            return set()
        params = {
            "ids": [c["step_id"] for c in changes],
            "state": [c["state"] for c in changes],
            "run_at": [stored_time(c["run_at"], sqlite=False) for c in changes],
            "description": [storable_text(c["description"]) for c in changes],
            "count": [c["execution_count"] for c in changes],
            "started": [stored_time(c["execution_started_at"], sqlite=False) for c in changes],
            "ms": [c["execution_duration_ms"] for c in changes],
            "worker": worker,
        }
        with driver_cursor(connection) as cursor:
            cursor.execute(self._reschedule_sql, params)
            return {values[0] for values in cursor.fetchall()}

    def insert(self, connection: sa.Connection, rows: Sequence[Row]) -> list[int]:
        if not rows:
            return []
        with driver_cursor(connection) as cursor:
            cursor.execute(self._insert_sql, _literals(rows))
            return sorted(values[0] for values in cursor.fetchall())

    def add(self, connection: sa.Connection, rows: Sequence[Row]) -> list[Row]:
        if not rows:
            return []
        with driver_cursor(connection) as cursor:
            cursor.execute(self._add_sql, _literals(rows))
            returned = cursor.fetchall()
        return _claimed_rows(values[:-1] for values in returned if values[-1] is not None)


class SqliteHotPath(HotPath):
    """Whole batches per statement on the in-process sqlite3 connection."""

    def __init__(self, queries: StepQueries) -> None:
        super().__init__(queries)
        self._claim_sql = (
            f"UPDATE {_READY} SET locked_by = ?, locked_until = ?, available_at = ?, "
            "execution_count = execution_count + 1 "
            f"WHERE id IN (SELECT id FROM {_READY} WHERE available_at <= ? "
            f"ORDER BY available_at LIMIT ?) RETURNING {_CLAIMED}"
        )
        kept = [c for c in STEP_COLUMNS if c not in _OUTCOME_COLUMNS]
        # A whole batch per statement: the outcomes travel as a VALUES list joined to the
        # rows, fenced by the lease, so only rows this worker still holds move.
        self._finish_sql = {
            queue: (
                "WITH o(id, started, ms, description) AS (VALUES {values}) "
                f"INSERT INTO fk_steps_{queue} ({', '.join(kept)}, execution_started_at, "
                "execution_duration_ms, description, executed_by) "
                f"SELECT {', '.join('r.' + c for c in kept)}, o.started, o.ms, o.description, ? "
                f"FROM o, {_READY} r WHERE r.id = o.id AND r.locked_by = ?"
            )
            for queue in ("done", "failed")
        }
        self._reschedule_sql = (
            f"UPDATE {_READY} SET state = ?, run_at = ?, available_at = ?, description = ?, "
            "execution_count = ?, execution_started_at = ?, execution_duration_ms = ?, "
            "executed_by = ?, locked_by = NULL, locked_until = NULL WHERE id = ?"
        )
        self._row_marks = "(" + ", ".join("?" * len(NEW_COLUMNS)) + ")"
        self._add_sql = f"INSERT INTO {_READY} ({', '.join(NEW_COLUMNS)}) VALUES "

    def claim(
        self,
        connection: sa.Connection,
        worker: str,
        now: datetime,
        until: datetime,
        limit: int,
        *,
        alone: bool = True,
    ) -> list[Row]:
        lease_end = stored_time(until, sqlite=True)
        with driver_cursor(connection) as cursor:
            cursor.execute(
                self._claim_sql,
                (worker, lease_end, lease_end, stored_time(now, sqlite=True), limit),
            )
            return _claimed_rows(cursor.fetchall())

    def _held(self, cursor: Any, worker: str, ids: list[int]) -> set[int]:
        marks = ", ".join("?" * len(ids))
        cursor.execute(
            f"SELECT id FROM {_READY} WHERE id IN ({marks}) AND locked_by = ?", (*ids, worker)
        )
        return {values[0] for values in cursor.fetchall()}

    def finish(
        self, connection: sa.Connection, worker: str, queue: str, rows: Sequence[Row]
    ) -> set[int]:
        if not rows:
            return set()
        held: set[int] = set()
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver_cursor(connection) as cursor:
            for start in range(0, len(rows), _SQLITE_ROWS_PER_STATEMENT):
                chunk = rows[start : start + _SQLITE_ROWS_PER_STATEMENT]
                outcomes: list[Any] = []
                for r in chunk:
                    outcomes += (
                        r["id"],
                        stored_time(r["execution_started_at"], sqlite=True),
                        r["execution_duration_ms"],
                        storable_text(r["description"]),
                    )
                values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                # Counted, not returned: fetching the moved ids one row at a time cost more
                # than the rest of the statement.
                changes_before = driver.total_changes
                cursor.execute(
                    self._finish_sql[queue].format(values=values), (*outcomes, worker, worker)
                )
                ids = [r["id"] for r in chunk]
                if driver.total_changes - changes_before != len(chunk):
                    # Another worker holds some of them now: the rows still leased to this
                    # one are the ones just copied (nothing else writes meanwhile).
                    ids = sorted(self._held(cursor, worker, ids))
                if ids:
                    cursor.execute(
                        f"DELETE FROM {_READY} WHERE id IN ({', '.join('?' * len(ids))})", ids
                    )
                    held.update(ids)
        return held

    def reschedule(
        self, connection: sa.Connection, worker: str, changes: Sequence[dict[str, Any]]
    ) -> set[int]:
        if not changes:
            return set()
        with driver_cursor(connection) as cursor:
            held = self._held(cursor, worker, [c["step_id"] for c in changes])
            cursor.executemany(
                self._reschedule_sql,
                [
                    (
                        c["state"],
                        stored_time(c["run_at"], sqlite=True),
                        stored_time(c["run_at"], sqlite=True),
                        storable_text(c["description"]),
                        c["execution_count"],
                        stored_time(c["execution_started_at"], sqlite=True),
                        c["execution_duration_ms"],
                        worker,
                        c["step_id"],
                    )
                    for c in changes
                    if c["step_id"] in held
                ],
            )
        return held

    def insert(self, connection: sa.Connection, rows: Sequence[Row]) -> list[int]:
        with driver_cursor(connection) as cursor:
            return self._insert_many(cursor, _sqlite_values(rows), returning_ids=True)

    def _insert_many(
        self, cursor: Any, values: list[list[Any]], returning_ids: bool = False
    ) -> list[int]:
        """Insert rows of :data:`NEW_COLUMNS` values, many per statement; their ids (if
        asked for) in the order of the rows."""
        ids: list[int] = []
        returning = " RETURNING id" if returning_ids else ""
        for start in range(0, len(values), _SQLITE_NEW_ROWS_PER_STATEMENT):
            chunk = values[start : start + _SQLITE_NEW_ROWS_PER_STATEMENT]
            cursor.execute(
                f"{self._add_sql}{', '.join([self._row_marks] * len(chunk))}{returning}",
                [value for row in chunk for value in row],
            )
            if returning_ids:
                # AUTOINCREMENT ids rise in the order the rows are inserted.
                ids.extend(sorted(found[0] for found in cursor.fetchall()))
        return ids

    def add(self, connection: sa.Connection, rows: Sequence[Row]) -> list[Row]:
        values = _sqlite_values(rows)
        leased = [r for r in rows if r["locked_by"] is not None]
        with driver_cursor(connection) as cursor:
            self._insert_many(
                cursor, [v for v, r in zip(values, rows, strict=True) if r["locked_by"] is None]
            )
            ids = self._insert_many(
                cursor,
                [v for v, r in zip(values, rows, strict=True) if r["locked_by"] is not None],
                returning_ids=True,
            )
        # Leased rows come back as claimed ones, from what was written (only the ids are read
        # back: returning every column cost 3 µs per row).
        return [_claimed_from(row, step_id) for row, step_id in zip(leased, ids, strict=True)]


def hot_path_for(queries: StepQueries) -> HotPath:
    """The fastest hot path for the database ``queries`` were built for."""
    if queries.kind == "postgresql":
        return PostgresHotPath(queries)
    if queries.kind == "sqlite":
        return SqliteHotPath(queries)
    return HotPath(queries)


_OUTCOME_COLUMNS = frozenset(
    {"execution_started_at", "execution_duration_ms", "description", "executed_by"}
)


_SQLITE_ROWS_PER_STATEMENT = 200
"""Rows per finishing statement on SQLite: 4 parameters each stays under the 999 that SQLite
builds before 3.32 allow in one statement."""

_SQLITE_NEW_ROWS_PER_STATEMENT = 999 // len(NEW_COLUMNS)
"""New rows per INSERT on SQLite, under the 999 parameters older builds allow."""

_NUMBERS = frozenset({"execution_count", "created_by_step_id"})


_NEW_VALUES = operator.itemgetter(*NEW_COLUMNS)
_NEW_TIMES = tuple(i for i, c in enumerate(NEW_COLUMNS) if c in _TIMES)
_NEW_DESCRIPTION = NEW_COLUMNS.index("description")


def _sqlite_values(rows: Sequence[Row]) -> list[list[Any]]:
    """New ready rows as SQLite parameters, in :data:`NEW_COLUMNS` order."""
    # The rows of one batch share their times (now, the lease's end): each is formatted once.
    texts: dict[datetime, str] = {}
    values = []
    for row in rows:
        row_values = list(_NEW_VALUES(row))
        for index in _NEW_TIMES:
            time = row_values[index]
            if time is not None:
                text = texts.get(time)
                if text is None:
                    text = texts[time] = stored_time(time, sqlite=True)
                row_values[index] = text
        row_values[_NEW_DESCRIPTION] = storable_text(row_values[_NEW_DESCRIPTION])
        values.append(row_values)
    return values


def _literals(rows: Sequence[Row]) -> dict[str, str]:
    """New ready rows as one PostgreSQL array literal per column of :data:`NEW_COLUMNS`."""
    return {c: _literal(c, [r[c] for r in rows]) for c in NEW_COLUMNS}


def _literal(column: str, values: list[Any]) -> str:
    """A PostgreSQL array literal of one column's values (times as epoch seconds)."""
    if all(v is None for v in values):  # most optional columns of most batches
        return "{" + ",".join(["NULL"] * len(values)) + "}"
    if column in _TIMES:
        # The rows of one batch share their times (now, the lease's end): each once.
        seconds: dict[datetime, str] = {}
        for v in values:
            if v is not None and v not in seconds:
                seconds[v] = repr(v.timestamp())
        return _array("NULL" if v is None else seconds[v] for v in values)
    if column in _NUMBERS:
        return _array("NULL" if v is None else v for v in values)
    if column == "singleton":
        return _array("t" if v else "f" for v in values)
    return _array(_quoted(v) for v in values)


def _quoted(value: str | None) -> str:
    """One text element of an array literal: NULL, or double-quoted with \\ and \" escaped."""
    if value is None:
        return "NULL"
    text = storable_text(value)
    assert text is not None
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of numbers: one string for the driver to send."""
    return "{" + ",".join(map(str, values)) + "}"


def _claimed_from(row: Row, step_id: int) -> Row:
    """What a claim would return of a new ``row`` just inserted as ``step_id``."""
    claimed = {column: row[column] for column in _CLAIMED_COPIED}
    claimed["id"] = step_id
    claimed["description"] = storable_text(row["description"])
    if claimed["run_at"].tzinfo is not UTC:  # as loaded_time gives it back
        claimed["run_at"] = claimed["run_at"].astimezone(UTC)
    return claimed


_CLAIMED_COPIED = tuple(c for c in CLAIMED_COLUMNS if c != "id")


_RUN_AT = CLAIMED_COLUMNS.index("run_at")
_BY_ID = operator.itemgetter("id")


def _claimed_rows(returned: Iterable[Sequence[Any]]) -> list[Row]:
    """Claimed rows as the driver returned them (:data:`CLAIMED_COLUMNS`), by id."""
    # Steps added together share their run_at, and parsing a time costs more than the rest
    # of the row: each distinct value is parsed once per batch.
    times: dict[Any, datetime | None] = {}
    rows = []
    for values in returned:
        row = dict(zip(CLAIMED_COLUMNS, values, strict=True))
        stored = values[_RUN_AT]
        run_at = times.get(stored)
        if run_at is None:
            run_at = times[stored] = loaded_time(stored)
        row["run_at"] = run_at
        rows.append(row)
    rows.sort(key=_BY_ID)
    return rows
