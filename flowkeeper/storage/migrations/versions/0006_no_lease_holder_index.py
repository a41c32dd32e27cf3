"""The ready queue's index on ``locked_by`` is gone: the heartbeat extends leases by step id.

Every claim wrote an entry to it and every finished step removed one, and the only statement
that searched it was the heartbeat's "extend every lease these workers hold", which now names
the steps (a pool knows what its workers hold). On SQLite this was about a tenth of the work
of moving a step from ready to done.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "ix_fk_steps_ready_locked_by"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="fk_steps_ready")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    where: dict[str, Any] = {}
    if dialect in ("postgresql", "sqlite"):  # as revision 0005 left it
        where = {f"{dialect}_where": sa.text("locked_by IS NOT NULL")}
    op.create_index(INDEX, "fk_steps_ready", ["locked_by"], **where)
