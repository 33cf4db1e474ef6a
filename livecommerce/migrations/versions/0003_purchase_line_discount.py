"""purchase lines: each line's share of the purchase's discount

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Lines written before have no discount: 0, which the server default fills in.
    with op.batch_alter_table('purchase_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('discount', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_purchase_lines_discount_within_line'),
                                         'discount >= 0 AND discount <= line_total')


def downgrade() -> None:
    with op.batch_alter_table('purchase_lines', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_purchase_lines_discount_within_line'), type_='check')
        batch_op.drop_column('discount')
