"""The SQL of the process layer: scheme versions, process rows, history rows, timer steps.

Statements are built once per store. Every function works inside a transaction the caller
holds (the runtime opens it, or the application passes its own ``connection``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from flowkeeper.processes.records import HistoryRecord, Process, ProcessStatus
from flowkeeper.storage.driver import DriverStatement, driver_cursor, loaded_time, stored_time
from flowkeeper.storage.tables import process_history, processes, schemes, steps_ready

_PROCESS_COLUMNS = [c.name for c in processes.columns]
_HISTORY_COLUMNS = [c.name for c in process_history.columns]


class _StoredProcess:
    """A process row read on the driver's cursor (attribute access, aware datetimes)."""

    def __init__(self, values: Sequence[Any]) -> None:
        row = dict(zip(_PROCESS_COLUMNS, values, strict=True))
        row["created_at"] = loaded_time(row["created_at"])
        row["updated_at"] = loaded_time(row["updated_at"])
        self.__dict__.update(row)


TIMER_STEP = "flowkeeper/process-timer"
"""The step name of process timers (the step's search key is the process id)."""

DEFAULT_TENANT = ""
"""How "no tenant" is stored: tenant ids are part of keys, so they are never NULL."""


def tenant_key(tenant_id: str | None) -> str:
    """The stored form of a tenant id."""
    return DEFAULT_TENANT if tenant_id is None else tenant_id


def encode_parameters(parameters: dict[str, Any]) -> str:
    """Parameters as stored (compact JSON; values were checked when they were set)."""
    return json.dumps(parameters, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ProcessRows:
    """Reading and writing ``fk_processes`` and ``fk_process_history``."""

    def __init__(self, kind: str) -> None:
        self._for_update = kind != "sqlite"  # SQLite's BEGIN IMMEDIATE already serialises
        self._sqlite = kind == "sqlite"
        self._driver: dict[str, DriverStatement] | None = None
        p = processes.c
        self._select = sa.select(processes).where(p.id == sa.bindparam("pid"))
        self._select_locked = self._select.with_for_update() if self._for_update else self._select
        self._exists = sa.select(p.id).where(p.id == sa.bindparam("pid"))
        self._update = (
            processes.update()
            .where(p.id == sa.bindparam("pid"), p.row_version == sa.bindparam("expected"))
            .values(
                {
                    "scheme_version": sa.bindparam("scheme_version"),
                    "activity": sa.bindparam("activity"),
                    "state": sa.bindparam("state"),
                    "status": sa.bindparam("status"),
                    "parameters": sa.bindparam("parameters"),
                    "updated_at": sa.bindparam("updated_at"),
                    "row_version": sa.bindparam("row_version"),
                    "history_length": sa.bindparam("history_length"),
                }
            )
        )
        self._insert_history = process_history.insert()
        h = process_history.c
        self._history = (
            sa.select(process_history).where(h.process_id == sa.bindparam("pid")).order_by(h.seq)
        )
        self._cancel = steps_ready.delete().where(
            steps_ready.c.name == TIMER_STEP,
            steps_ready.c.search_key == sa.bindparam("pid"),
        )

    def _statements(self, conn: sa.Connection) -> dict[str, DriverStatement]:
        if self._driver is None:
            d = conn.dialect
            self._driver = {
                "select": DriverStatement(self._select, d),
                "select_locked": DriverStatement(self._select_locked, d),
                "update": DriverStatement(self._update, d),
                "history": DriverStatement(self._insert_history, d, column_keys=_HISTORY_COLUMNS),
            }
        return self._driver

    def load(self, conn: sa.Connection, pid: str, *, lock: bool) -> Any:
        """The process row (locked until the transaction ends when ``lock``)."""
        select = self._statements(conn)["select_locked" if lock else "select"]
        with driver_cursor(conn) as cursor:
            cursor.execute(select.sql, select.args({"pid": pid}))
            values = cursor.fetchone()
        return None if values is None else _StoredProcess(values)

    def exists(self, conn: sa.Connection, pid: str) -> bool:
        """Whether a process with this id exists."""
        return conn.execute(self._exists, {"pid": pid}).first() is not None

    def insert(self, conn: sa.Connection, values: dict[str, Any]) -> bool:
        """Insert a new process row; False if the id is taken (the transaction stays usable)."""
        try:
            with conn.begin_nested():
                conn.execute(processes.insert(), values)
        except exc.IntegrityError:
            return False
        return True

    def update(self, conn: sa.Connection, values: dict[str, Any]) -> bool:
        """Write a moved process; False if its row version is not ``values["expected"]``."""
        update = self._statements(conn)["update"]
        values = {**values, "updated_at": stored_time(values["updated_at"], self._sqlite)}
        with driver_cursor(conn) as cursor:
            cursor.execute(update.sql, update.args(values))
            return bool(cursor.rowcount == 1)

    def delete(self, conn: sa.Connection, pid: str) -> bool:
        """Delete a process and its history; False if there was none."""
        conn.execute(process_history.delete().where(process_history.c.process_id == pid))
        return conn.execute(processes.delete().where(processes.c.id == pid)).rowcount == 1

    def append_history(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert history rows (already numbered)."""
        if not rows:
            return
        insert = self._statements(conn)["history"]
        args = [insert.args({**row, "at": stored_time(row["at"], self._sqlite)}) for row in rows]
        with driver_cursor(conn) as cursor:
            if len(args) == 1:
                cursor.execute(insert.sql, args[0])
            else:
                cursor.executemany(insert.sql, args)

    def history(self, conn: sa.Connection, pid: str) -> list[HistoryRecord]:
        """Every history row of a process, oldest first."""
        return [
            HistoryRecord(
                seq=r.seq,
                transition=r.transition,
                from_activity=r.from_activity,
                to_activity=r.to_activity,
                from_state=r.from_state,
                to_state=r.to_state,
                command=r.command,
                trigger=r.trigger,
                classifier=r.classifier,
                identity=r.identity,
                at=r.at,
            )
            for r in conn.execute(self._history, {"pid": pid})
        ]

    def cancel_timers(
        self,
        conn: sa.Connection,
        pid: str,
        names: Iterable[str] | None = None,
        keep_step: int | None = None,
    ) -> int:
        """Delete the ready timer steps of a process (only ``names`` if given), except the
        step ``keep_step`` (a timer that is running now and completes on its own)."""
        statement = self._cancel
        if names is not None:
            listed = sorted(names)
            if not listed:
                return 0
            statement = statement.where(steps_ready.c.correlation_id.in_(listed))
        if keep_step is not None:
            statement = statement.where(steps_ready.c.id != keep_step)
        return conn.execute(statement, {"pid": pid}).rowcount

    def search(
        self,
        conn: sa.Connection,
        *,
        tenant_id: str | None,
        scheme_code: str | None,
        status: str | None,
        activity: str | None,
        after: str | None,
        limit: int,
    ) -> list[Process]:
        """Processes matching the filters, ordered by id, after the id ``after``."""
        p = processes.c
        statement = sa.select(processes).where(p.tenant_id == tenant_key(tenant_id))
        if scheme_code is not None:
            statement = statement.where(p.scheme_code == scheme_code)
        if status is not None:
            statement = statement.where(p.status == status)
        if activity is not None:
            statement = statement.where(p.activity == activity)
        if after is not None:
            statement = statement.where(p.id > after)
        statement = statement.order_by(p.id).limit(limit)
        return [process_from_row(row) for row in conn.execute(statement)]


def process_from_row(row: Any) -> Process:
    """A :class:`Process` snapshot of a stored row."""
    return Process(
        id=row.id,
        scheme_code=row.scheme_code,
        scheme_version=row.scheme_version,
        activity=row.activity,
        state=row.state,
        status=ProcessStatus(row.status),
        parameters=json.loads(row.parameters),
        tenant_id=row.tenant_id or None,
        parent_id=row.parent_id,
        root_id=row.root_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        row_version=row.row_version,
    )


class SchemeRows:
    """Reading and writing ``fk_schemes``."""

    def __init__(self) -> None:
        s = schemes.c
        key = (s.tenant_id == sa.bindparam("tenant"), s.code == sa.bindparam("code"))
        self._newest = sa.select(sa.func.max(s.version)).where(*key)
        self._definition = sa.select(s.definition).where(*key, s.version == sa.bindparam("version"))

    def newest_version(self, conn: sa.Connection, tenant: str, code: str) -> int | None:
        """The newest version number of a scheme, or None if it was never saved."""
        value = conn.execute(self._newest, {"tenant": tenant, "code": code}).scalar()
        return None if value is None else int(value)

    def definition(
        self, conn: sa.Connection, tenant: str, code: str, version: int
    ) -> dict[str, Any] | None:
        """A saved version's dict shape, or None."""
        text = conn.execute(
            self._definition, {"tenant": tenant, "code": code, "version": version}
        ).scalar()
        return None if text is None else dict(json.loads(text))

    def insert(
        self,
        conn: sa.Connection,
        tenant: str,
        code: str,
        version: int,
        definition: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Store a new version and mark the older ones obsolete; False if the number is taken."""
        s = schemes.c
        try:
            with conn.begin_nested():
                conn.execute(
                    schemes.insert(),
                    {
                        "tenant_id": tenant,
                        "code": code,
                        "version": version,
                        "definition": json.dumps(definition, ensure_ascii=False),
                        "obsolete": False,
                        "created_at": now,
                    },
                )
        except exc.IntegrityError:
            return False
        conn.execute(
            schemes.update()
            .where(s.tenant_id == tenant, s.code == code, s.version < version, ~s.obsolete)
            .values(obsolete=True)
        )
        return True

    def listing(
        self, conn: sa.Connection, tenant: str, code: str | None = None
    ) -> list[sa.Row[Any]]:
        """Saved versions (all of one scheme, or the newest of each), ordered by code."""
        s = schemes.c
        columns = (s.code, s.version, s.obsolete, s.created_at, s.tenant_id)
        statement = sa.select(*columns).where(s.tenant_id == tenant)
        if code is not None:
            statement = statement.where(s.code == code)
        else:
            statement = statement.where(~s.obsolete)
        return list(conn.execute(statement.order_by(s.code, s.version)))
