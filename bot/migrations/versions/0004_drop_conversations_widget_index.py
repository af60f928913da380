"""conversations: drop the index on widget_id alone

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

The index on (widget_id, visitor_id) serves every lookup by widget too, the
foreign key's cascade included. With both, a plan made before the table had
statistics (a new deployment's first minute under load) could pick the one
on widget_id to find a visitor's open chat, walking every chat of the widget.
"""

from __future__ import annotations

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_widget_id')


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_widget_id', ['widget_id'], unique=False)
