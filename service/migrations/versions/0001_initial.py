"""The ledger, headless runs and payment links.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the schema, not an import of the live tables: a migration must keep
# creating what it created on the day it was written.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create draft_ledger, runs and payment_links."""
    op.create_table(
        "draft_ledger",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("invoice_id", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reserved_at", _utc(), nullable=False),
        sa.Column("lease_until", _utc(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("draft_id", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("thread_id", sa.String(), nullable=True),
        sa.Column("rfc_message_id", sa.String(), nullable=True),
        sa.Column("draft_url", sa.Text(), nullable=True),
        sa.Column("drafted_on", sa.Date(), nullable=True),
        sa.Column("request_key", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "state IN ('reserved', 'created', 'failed')", name="ck_draft_ledger_state"
        ),
        sa.PrimaryKeyConstraint("scope", "invoice_id", "stage", name="pk_draft_ledger"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("summary", _JSON, nullable=True),
        sa.Column("results", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name="ck_runs_state"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "payment_links",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("invoice_id", sa.String(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "invoice_id", "currency", "amount_minor", name="pk_payment_links"
        ),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("payment_links")
    op.drop_table("runs")
    op.drop_table("draft_ledger")
