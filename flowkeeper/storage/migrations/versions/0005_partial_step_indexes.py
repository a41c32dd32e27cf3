"""Step indexes on columns most steps leave empty skip the empty rows (PostgreSQL, SQLite).

``correlation_id``, ``search_key``, ``singleton_key`` and ``locked_by`` are NULL for most
ready steps, yet every claim wrote an index entry for each of them: on PostgreSQL a claim
changes indexed columns, so it adds an entry to every index of the ready queue. As partial
indexes (``WHERE column IS NOT NULL``) they hold only the rows a search can find; a search
for a value still uses them. MySQL/MariaDB have no partial indexes and keep the full ones.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, unique)
PARTIAL_INDEXES = (
    ("fk_steps_ready", "correlation_id", False),
    ("fk_steps_ready", "search_key", False),
    ("fk_steps_ready", "singleton_key", True),
    ("fk_steps_ready", "locked_by", False),
    ("fk_steps_done", "correlation_id", False),
    ("fk_steps_done", "search_key", False),
    ("fk_steps_failed", "correlation_id", False),
    ("fk_steps_failed", "search_key", False),
)


def _recreate(partial: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return
    for table, column, unique in PARTIAL_INDEXES:
        name = f"ix_{table}_{column}"
        where: dict[str, Any] = (
            {f"{dialect}_where": sa.text(f"{column} IS NOT NULL")} if partial else {}
        )
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], unique=unique, **where)


def upgrade() -> None:
    _recreate(partial=True)


def downgrade() -> None:
    _recreate(partial=False)
