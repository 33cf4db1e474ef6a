"""users: indexes for checking a guest's name as people join (accounts by role, names as they read)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_users_role', 'users', ['role'])
    op.create_index('ix_users_display_name_lower', 'users', [sa.text('lower(display_name)')])


def downgrade() -> None:
    op.drop_index('ix_users_display_name_lower', table_name='users')
    op.drop_index('ix_users_role', table_name='users')
