"""The tables, in SQLAlchemy Core. Alembic migrations create them; this module describes them.

The three step queues share their columns: a step keeps its id as it moves from ready to done
or failed. The ready queue adds the lease (``locked_by``, ``locked_until``), the claim key
``available_at`` (the step's ``run_at``, or its lease's end while a worker holds it: one
indexed column the claim can range-scan) and ``singleton_key`` (the name of a singleton step,
NULL otherwise) whose unique index makes the database enforce "one ready singleton per name".
``locked_by`` has no index: a lease is only ever looked up with its step's id (migration 0006).

Text compares exactly on every database: on MySQL/MariaDB migration 0002 gives the tables a
binary, no-pad collation (their default ignores case, accents and trailing spaces), which this
module does not repeat because it depends on the server. ``fk_locks`` holds named locks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from flowkeeper.storage.types import BigId, JsonText, StorableText, UTCDateTime

NAME_LENGTH = 255
"""Longest step name, flow id, correlation id, search key or worker id, in characters."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TABLE_KWARGS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def _step_columns(autoincrement: bool) -> list[Column[Any]]:
    return [
        Column("id", BigId, primary_key=True, autoincrement=autoincrement),
        Column("name", String(NAME_LENGTH), nullable=False),
        Column("singleton", Boolean, nullable=False, default=False),
        Column("flow_id", String(NAME_LENGTH)),
        Column("correlation_id", String(NAME_LENGTH)),
        Column("search_key", String(NAME_LENGTH)),
        Column("state", JsonText),
        Column("activation_args", JsonText),
        Column("execution_count", Integer, nullable=False, default=0),
        Column("run_at", UTCDateTime, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("created_by_step_id", BigId),
        Column("execution_started_at", UTCDateTime),
        Column("execution_duration_ms", Integer),
        Column("executed_by", String(NAME_LENGTH)),
        Column("description", StorableText()),
        Column("tenant_id", String(NAME_LENGTH)),
    ]


def _mostly_null_index(column: str, unique: bool = False) -> Index:
    """An index of a column most steps leave NULL, holding only the rows that have a value.

    Where the database allows it (PostgreSQL, SQLite; migration 0005): fewer index entries to
    write per claim and per finished step, and a search for a value still uses the index.
    """
    where = text(f"{column} IS NOT NULL")
    return Index(None, column, unique=unique, postgresql_where=where, sqlite_where=where)


STEP_COLUMNS = tuple(c.name for c in _step_columns(False))
"""The columns every queue has, in table order."""

steps_ready = Table(
    "fk_steps_ready",
    metadata,
    *_step_columns(True),
    Column("singleton_key", String(NAME_LENGTH)),
    Column("locked_by", String(NAME_LENGTH)),
    Column("locked_until", UTCDateTime),
    Column("available_at", UTCDateTime, nullable=False),
    Index(None, "available_at"),
    _mostly_null_index("singleton_key", unique=True),
    Index(None, "name"),
    Index(None, "flow_id"),
    _mostly_null_index("correlation_id"),
    _mostly_null_index("search_key"),
    Index(None, "created_at"),
    sqlite_autoincrement=True,  # never reuse an id: it may live on in done or failed
    **TABLE_KWARGS,
)


def _finished_queue(table_name: str) -> Table:
    return Table(
        table_name,
        metadata,
        *_step_columns(False),
        Index(None, "name"),
        Index(None, "flow_id"),
        _mostly_null_index("correlation_id"),
        _mostly_null_index("search_key"),
        Index(None, "created_at"),
        **TABLE_KWARGS,
    )


steps_done = _finished_queue("fk_steps_done")
steps_failed = _finished_queue("fk_steps_failed")

QUEUES = {"ready": steps_ready, "done": steps_done, "failed": steps_failed}
"""Queue name → table."""

locks = Table(
    "fk_locks",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    **TABLE_KWARGS,
)
"""Named locks: a transaction that locks a row ``FOR UPDATE`` holds the lock until it ends."""

# -- business processes ----------------------------------------------------------------------
#
# ``tenant_id`` is never NULL ("" is the default tenant) so that it can be part of a key.

schemes = Table(
    "fk_schemes",
    metadata,
    Column("tenant_id", String(NAME_LENGTH), primary_key=True),
    Column("code", String(NAME_LENGTH), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("definition", JsonText, nullable=False),
    Column("obsolete", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    **TABLE_KWARGS,
)
"""Every saved version of every scheme; ``definition`` is the scheme's dict shape as JSON."""

processes = Table(
    "fk_processes",
    metadata,
    Column("id", String(NAME_LENGTH), primary_key=True),
    Column("tenant_id", String(NAME_LENGTH), nullable=False),
    Column("scheme_code", String(NAME_LENGTH), nullable=False),
    Column("scheme_version", Integer, nullable=False),
    Column("activity", String(NAME_LENGTH), nullable=False),
    Column("state", String(NAME_LENGTH)),
    Column("status", String(16), nullable=False),
    Column("parameters", JsonText, nullable=False),
    Column("parent_id", String(NAME_LENGTH)),
    Column("root_id", String(NAME_LENGTH)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("row_version", Integer, nullable=False),
    Column("history_length", Integer, nullable=False),
    Index(None, "tenant_id", "scheme_code"),
    Index(None, "status"),
    Index(None, "activity"),
    Index(None, "updated_at"),
    **TABLE_KWARGS,
)
"""Process instances; ``row_version`` grows by one with every committed change and
``history_length`` is the number of the newest history row."""

process_history = Table(
    "fk_process_history",
    metadata,
    Column("process_id", String(NAME_LENGTH), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("transition", String(NAME_LENGTH)),
    Column("from_activity", String(NAME_LENGTH), nullable=False),
    Column("to_activity", String(NAME_LENGTH), nullable=False),
    Column("from_state", String(NAME_LENGTH)),
    Column("to_state", String(NAME_LENGTH)),
    Column("command", String(NAME_LENGTH)),
    Column("trigger", String(16), nullable=False),
    Column("classifier", String(16), nullable=False),
    Column("identity", String(NAME_LENGTH)),
    Column("at", UTCDateTime, nullable=False),
    **TABLE_KWARGS,
)
"""Transitions of each process, numbered 1, 2, … per process (the key keeps numbers unique)."""

# -- the HTTP API ----------------------------------------------------------------------------

API_KEY_ID_LENGTH = 32
"""Length limit of an API key's id (the keys themselves are only stored as hashes)."""

api_keys = Table(
    "fk_api_keys",
    metadata,
    Column("id", String(API_KEY_ID_LENGTH), primary_key=True),
    Column("tenant_id", String(NAME_LENGTH), nullable=False),
    Column("role", String(16), nullable=False),
    Column("identity", String(NAME_LENGTH)),
    Column("key_hash", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("description", JsonText),
    Index(None, "key_hash", unique=True),
    Index(None, "tenant_id"),
    **TABLE_KWARGS,
)
"""Keys of the HTTP API: ``key_hash`` is the SHA-256 (hex) of the secret, which is never
stored; ``prefix`` is its first characters, to tell keys apart in listings."""

callbacks = Table(
    "fk_callbacks",
    metadata,
    Column("tenant_id", String(NAME_LENGTH), primary_key=True),
    Column("id", String(NAME_LENGTH), primary_key=True),
    Column("url", JsonText, nullable=False),
    Column("token", String(NAME_LENGTH)),
    Column("actions", JsonText, nullable=False),
    Column("conditions", JsonText, nullable=False),
    Column("rules", JsonText, nullable=False),
    Column("timeout_ms", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    **TABLE_KWARGS,
)
"""Reserved for HTTP callbacks (actions, conditions and rules served by another service);
``actions``, ``conditions`` and ``rules`` are JSON lists of names."""
