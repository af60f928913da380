"""outbox: drop the index on every row's ordering key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

The one query by ordering key, the claim's "is an earlier row of this
thread still owed?", uses the partial index of open rows (0003). The full
index was only written: one more page on every commit that plans a
delivery (10.3 WAL pages per visitor line on SQLite with it, 9.1 without).
"""

from __future__ import annotations

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ordering')


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_ordering', ['ordering_key', 'id'], unique=False)
