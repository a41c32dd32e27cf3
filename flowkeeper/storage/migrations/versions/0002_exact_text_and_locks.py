"""Exact text comparison on MySQL/MariaDB, and named locks.

MySQL and MariaDB compare text in the table's collation, by default case- and
accent-insensitive and blind to trailing spaces: "Tick" would clash with a ready singleton
"tick" and ``Search(name="a")`` would find "A ". The step tables get a binary collation, so
every database compares text exactly. ``fk_locks`` holds rows that transactions lock
``FOR UPDATE`` to serialise a check-then-insert such as ``add_step_if_absent``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from flowkeeper.storage.types import binary_collation

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STEP_TABLES = ("fk_steps_ready", "fk_steps_done", "fk_steps_failed")


def _is_mysql(bind: sa.Connection) -> bool:
    return bind.dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    bind = op.get_bind()
    options: dict[str, Any] = {}
    if _is_mysql(bind):
        collation = binary_collation(bind.dialect)
        options = {"mysql_charset": "utf8mb4", "mysql_collate": collation, "mysql_engine": "InnoDB"}
        for table in _STEP_TABLES:
            op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
    op.create_table(
        "fk_locks",
        sa.Column("name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_fk_locks"),
        **options,
    )


def downgrade() -> None:
    op.drop_table("fk_locks")
    if _is_mysql(op.get_bind()):
        for table in _STEP_TABLES:
            op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4")
