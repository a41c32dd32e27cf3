"""Creating and upgrading the schema with Alembic, and checking that it is current."""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowkeeper.errors import ConcurrencyError, MigrationRequired, SchemaNewerThanCode

VERSION_TABLE = "fk_alembic_version"
"""Flowkeeper's own Alembic version table, so it never meets the application's."""

HEAD_REVISION = "0006"
"""The newest migration; a test keeps it equal to the head of the migration scripts."""

KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")
"""Every revision this code knows, oldest first."""

LOCK_TIMEOUT_S = 600
"""How long a migration waits for another one to finish (MySQL; PostgreSQL waits for ever)."""

_LOCK_ID = 0x666B6D67  # "fkmg": the advisory lock that serialises concurrent migrations


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    location = resources.files("flowkeeper.storage") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


def script_head() -> str | None:
    """The head revision of the migration scripts on disk."""
    location = resources.files("flowkeeper.storage") / "migrations"
    config = Config()
    config.set_main_option("script_location", str(location))
    return ScriptDirectory.from_config(config).get_current_head()


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision. Returns (revision before, revision after).

    Safe to run twice and from two processes at once: on PostgreSQL and MySQL an advisory
    lock serialises concurrent runs, on SQLite the write lock does.
    """
    with engine.connect() as connection:
        _lock(connection)
        try:
            before = current_revision(connection)
            if before is not None and before not in KNOWN_REVISIONS:
                raise _newer_than_code(before)
            if before != HEAD_REVISION:
                command.upgrade(alembic_config(connection), "head")
                connection.commit()
            return before, HEAD_REVISION
        finally:
            _unlock(connection)


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    revision = context.get_current_revision()
    if connection.in_transaction() and connection.dialect.name != "sqlite":
        connection.rollback()
    return revision


def check_current(connection: sa.Connection) -> None:
    """Raise unless the schema is exactly at :data:`HEAD_REVISION`."""
    revision = read_revision(connection)
    if revision == HEAD_REVISION:
        return
    if revision is None:
        raise MigrationRequired(
            "the database has no Flowkeeper tables yet; create them with engine.migrate() "
            "or `flowkeeper migrate --database URL`"
        )
    if revision in KNOWN_REVISIONS:
        raise MigrationRequired(
            f"the database schema is at revision {revision}, this Flowkeeper needs "
            f"{HEAD_REVISION}; upgrade it with engine.migrate() or `flowkeeper migrate`"
        )
    raise _newer_than_code(revision)


def read_revision(connection: sa.Connection) -> str | None:
    """The stored revision, read with one plain query (no Alembic machinery)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    row = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def _newer_than_code(revision: str) -> SchemaNewerThanCode:
    return SchemaNewerThanCode(
        f"the database schema is at revision {revision!r}, which this Flowkeeper does not "
        f"know (its newest is {HEAD_REVISION}); upgrade the flowkeeper package"
    )


def _lock(connection: sa.Connection) -> None:
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
    elif name in ("mysql", "mariadb"):
        got = connection.execute(
            sa.text("SELECT GET_LOCK('flowkeeper_migrate', :seconds)"),
            {"seconds": LOCK_TIMEOUT_S},
        ).scalar()
        if got != 1:
            connection.rollback()
            raise ConcurrencyError(
                f"another migration has held the lock 'flowkeeper_migrate' for "
                f"{LOCK_TIMEOUT_S} s; let it finish (or end the session holding it), then run "
                "engine.migrate() again"
            )
    if connection.in_transaction() and name != "sqlite":
        connection.commit()


def _unlock(connection: sa.Connection) -> None:
    name = connection.dialect.name
    if connection.in_transaction():
        connection.rollback()
    if name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
    elif name in ("mysql", "mariadb"):
        connection.execute(sa.text("SELECT RELEASE_LOCK('flowkeeper_migrate')"))
    if connection.in_transaction():
        connection.commit()
