"""Business processes: scheme versions, process instances and their history.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from flowkeeper.storage.types import JsonText, UTCDateTime, binary_collation

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    options: dict[str, Any] = {}
    if bind.dialect.name in ("mysql", "mariadb"):
        options = {
            "mysql_charset": "utf8mb4",
            "mysql_collate": binary_collation(bind.dialect),
            "mysql_engine": "InnoDB",
        }
    name = sa.String(255)
    op.create_table(
        "fk_schemes",
        sa.Column("tenant_id", name, nullable=False),
        sa.Column("code", name, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("definition", JsonText, nullable=False),
        sa.Column("obsolete", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "code", "version", name="pk_fk_schemes"),
        **options,
    )
    op.create_table(
        "fk_processes",
        sa.Column("id", name, nullable=False),
        sa.Column("tenant_id", name, nullable=False),
        sa.Column("scheme_code", name, nullable=False),
        sa.Column("scheme_version", sa.Integer, nullable=False),
        sa.Column("activity", name, nullable=False),
        sa.Column("state", name),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parameters", JsonText, nullable=False),
        sa.Column("parent_id", name),
        sa.Column("root_id", name),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("row_version", sa.Integer, nullable=False),
        sa.Column("history_length", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fk_processes"),
        **options,
    )
    op.create_index(
        "ix_fk_processes_tenant_id_scheme_code", "fk_processes", ["tenant_id", "scheme_code"]
    )
    for column in ("status", "activity", "updated_at"):
        op.create_index(f"ix_fk_processes_{column}", "fk_processes", [column])
    op.create_table(
        "fk_process_history",
        sa.Column("process_id", name, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("transition", name),
        sa.Column("from_activity", name, nullable=False),
        sa.Column("to_activity", name, nullable=False),
        sa.Column("from_state", name),
        sa.Column("to_state", name),
        sa.Column("command", name),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("classifier", sa.String(16), nullable=False),
        sa.Column("identity", name),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("process_id", "seq", name="pk_fk_process_history"),
        **options,
    )


def downgrade() -> None:
    for table in ("fk_process_history", "fk_processes", "fk_schemes"):
        op.drop_table(table)
