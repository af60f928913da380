"""outbox: the claim's index split into two partial indexes, due rows and leases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

The claim read ``ix_outbox_due`` (status, next_attempt_at) for two statuses
at once, which PostgreSQL does as a bitmap: every entry a row's earlier
versions left since the last VACUUM is visited again by every claim. The
claim now reads each partial index in order (bench/RESULTS.md), and a
delivered row, the table's commonest, has no entry in either.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(
            'ix_outbox_pending_due', ['next_attempt_at', 'id'], unique=False,
            postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            'ix_outbox_lease', ['locked_until', 'id'], unique=False,
            postgresql_where=sa.text("status = 'delivering'"), sqlite_where=sa.text("status = 'delivering'"),
        )
        batch_op.drop_index('ix_outbox_due')


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.drop_index('ix_outbox_lease')
        batch_op.drop_index('ix_outbox_pending_due')
