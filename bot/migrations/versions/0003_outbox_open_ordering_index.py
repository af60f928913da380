"""outbox: partial index of open rows by ordering key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

The claim checks, for every due row, whether an earlier row of the same
ordering key is still pending or delivering. With delivered rows in the
index that probe walked each thread's whole history; this index holds only
the rows still owed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OPEN = "status IN ('pending', 'delivering')"


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(
            'ix_outbox_open_ordering',
            ['ordering_key', 'id'],
            unique=False,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_open_ordering')
