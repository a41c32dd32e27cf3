"""The HTTP API: API keys, and the table reserved for HTTP callbacks.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from flowkeeper.storage.types import JsonText, UTCDateTime, binary_collation

revision = "0004"
down_revision = "0003"
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
        "fk_api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", name, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("identity", name),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("description", JsonText),
        sa.PrimaryKeyConstraint("id", name="pk_fk_api_keys"),
        **options,
    )
    op.create_index("ix_fk_api_keys_key_hash", "fk_api_keys", ["key_hash"], unique=True)
    op.create_index("ix_fk_api_keys_tenant_id", "fk_api_keys", ["tenant_id"])
    op.create_table(
        "fk_callbacks",
        sa.Column("tenant_id", name, nullable=False),
        sa.Column("id", name, nullable=False),
        sa.Column("url", JsonText, nullable=False),
        sa.Column("token", name),
        sa.Column("actions", JsonText, nullable=False),
        sa.Column("conditions", JsonText, nullable=False),
        sa.Column("rules", JsonText, nullable=False),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_fk_callbacks"),
        **options,
    )


def downgrade() -> None:
    for table in ("fk_callbacks", "fk_api_keys"):
        op.drop_table(table)
