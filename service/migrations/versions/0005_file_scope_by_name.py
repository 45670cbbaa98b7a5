"""A local file's ledger scope is its name: `file:/srv/books/invoices.csv` → `file:invoices.csv`.

CsvFileSource keys a file by its name since this revision, so that moving the file (or mounting
it elsewhere) does not make every invoice new again. The old scope's last part is that name, so
the rows written before are carried over here; a row whose new key is already taken (two files
of one name under one ledger) keeps its old scope.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table with a scope, and the columns that complete its key beside the scope.
_KEYS = {
    "draft_ledger": ("invoice_id", "stage"),
    "payment_links": ("invoice_id", "currency", "amount_minor"),
    "runs": ("id",),
}


def _name(scope: str) -> str:
    # The last part of a POSIX or Windows path.
    return "file:" + re.split(r"[\\/]", scope.removeprefix("file:"))[-1]


def upgrade() -> None:
    """Rename every `file:<absolute path>` scope to `file:<name>`, unless the key is taken."""
    conn = op.get_bind()
    for table, key in _KEYS.items():
        distinct = sa.text(f"SELECT DISTINCT scope FROM {table}")  # noqa: S608 (our table names)
        scopes: list[str] = list(conn.execute(distinct).scalars())
        old_scopes = [s for s in scopes if s.startswith("file:") and _name(s) != s]
        taken = " AND ".join(f"t.{c} = {table}.{c}" for c in key)
        for old in old_scopes:
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET scope = :new WHERE scope = :old AND NOT EXISTS "  # noqa: S608
                    f"(SELECT 1 FROM {table} t WHERE t.scope = :new AND {taken})"
                ),
                {"old": old, "new": _name(old)},
            )


def downgrade() -> None:
    """Nothing to undo: the old code keyed by path, which the name no longer tells."""
