"""The three step queues.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from flowkeeper.storage.types import BigId, JsonText, LongText, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_KW: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def _columns(autoincrement: bool) -> list[sa.Column[Any]]:
    return [
        sa.Column("id", BigId, primary_key=True, autoincrement=autoincrement),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("singleton", sa.Boolean, nullable=False),
        sa.Column("flow_id", sa.String(255)),
        sa.Column("correlation_id", sa.String(255)),
        sa.Column("search_key", sa.String(255)),
        sa.Column("state", JsonText),
        sa.Column("activation_args", JsonText),
        sa.Column("execution_count", sa.Integer, nullable=False),
        sa.Column("run_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by_step_id", BigId),
        sa.Column("execution_started_at", UTCDateTime),
        sa.Column("execution_duration_ms", sa.Integer),
        sa.Column("executed_by", sa.String(255)),
        sa.Column("description", LongText),
        sa.Column("tenant_id", sa.String(255)),
    ]


_SEARCH_COLUMNS = ("name", "flow_id", "correlation_id", "search_key", "created_at")


def upgrade() -> None:
    op.create_table(
        "fk_steps_ready",
        *_columns(True),
        sa.Column("singleton_key", sa.String(255)),
        sa.Column("locked_by", sa.String(255)),
        sa.Column("locked_until", UTCDateTime),
        sa.Column("available_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fk_steps_ready"),
        sqlite_autoincrement=True,
        **_KW,
    )
    op.create_index("ix_fk_steps_ready_available_at", "fk_steps_ready", ["available_at"])
    op.create_index(
        "ix_fk_steps_ready_singleton_key", "fk_steps_ready", ["singleton_key"], unique=True
    )
    op.create_index("ix_fk_steps_ready_locked_by", "fk_steps_ready", ["locked_by"])
    for table in ("fk_steps_done", "fk_steps_failed"):
        op.create_table(
            table, *_columns(False), sa.PrimaryKeyConstraint("id", name=f"pk_{table}"), **_KW
        )
    for table in ("fk_steps_ready", "fk_steps_done", "fk_steps_failed"):
        for column in _SEARCH_COLUMNS:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table in ("fk_steps_failed", "fk_steps_done", "fk_steps_ready"):
        op.drop_table(table)
