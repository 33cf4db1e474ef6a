"""addresses: the address book the buy sheet's postcode search reads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # The trigram operators behind the search's index (a trusted extension: the database's owner may
        # enable it, no superuser needed, PostgreSQL 13 and later).
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    op.create_table(
        'addresses',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('postal_code', sa.String(length=5), nullable=False),
        sa.Column('road_address', sa.String(length=200), nullable=False),
        sa.Column('jibun_address', sa.String(length=200), nullable=True),
        sa.Column('building_name', sa.String(length=100), nullable=True),
        sa.Column('search_text', sa.Text(), nullable=False),
        sa.CheckConstraint('length(postal_code) = 5', name=op.f('ck_addresses_postal_code_five_digits')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_addresses')),
        sa.UniqueConstraint('postal_code', 'road_address', name=op.f('uq_addresses_postal_code')),
    )
    op.create_index('ix_addresses_search_text', 'addresses', ['search_text'], unique=False,
                    postgresql_using='gin', postgresql_ops={'search_text': 'gin_trgm_ops'})


def downgrade() -> None:
    op.drop_index('ix_addresses_search_text', table_name='addresses')
    op.drop_table('addresses')
    # pg_trgm stays: other objects of the database may have come to use it.
