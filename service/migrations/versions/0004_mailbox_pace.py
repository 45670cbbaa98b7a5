"""One Gmail quota per mailbox, shared by every worker and instance through this database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add mailbox_pace: when each mailbox's next call may start."""
    op.create_table(
        "mailbox_pace",
        sa.Column("mailbox", sa.String(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name="pk_mailbox_pace"),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("mailbox_pace")
