"""Alembic environment: always run on a connection that Flowkeeper hands in."""

from __future__ import annotations

from alembic import context

from flowkeeper.storage.migrate import VERSION_TABLE
from flowkeeper.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
