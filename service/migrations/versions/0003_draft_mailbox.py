"""The mailbox whose Drafts hold each draft, so a teammate is told whose it is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add draft_ledger.mailbox."""
    with op.batch_alter_table("draft_ledger") as batch:
        batch.add_column(sa.Column("mailbox", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("draft_ledger") as batch:
        batch.drop_column("mailbox")
