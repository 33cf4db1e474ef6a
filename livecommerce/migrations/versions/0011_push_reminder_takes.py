"""push_reminders.takes: how many times a reminder was taken, so that one its sender never sent is taken
again a bounded number of times

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('push_reminders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('takes', sa.Integer(), nullable=False, server_default='0'))
    # a reminder already taken was taken once
    op.execute('UPDATE push_reminders SET takes = 1 WHERE sent_at IS NOT NULL')


def downgrade() -> None:
    with op.batch_alter_table('push_reminders', schema=None) as batch_op:
        batch_op.drop_column('takes')
