"""push_subscriptions, push_reminders: "remind me" as a Web Push notification when a show opens

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from livecommerce.db import UTCDateTime

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'push_subscriptions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint', sa.String(length=2048), nullable=False),
        sa.Column('p256dh', sa.String(length=128), nullable=False),
        sa.Column('auth', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('locale', sa.String(length=5), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_push_subscriptions_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
        sa.UniqueConstraint('endpoint', name=op.f('uq_push_subscriptions_endpoint')),
    )
    op.create_index(op.f('ix_push_subscriptions_user_id'), 'push_subscriptions', ['user_id'], unique=False)
    op.create_table(
        'push_reminders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('broadcast_id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('sent_at', UTCDateTime(), nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_push_reminders_broadcast_id_broadcasts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['subscription_id'], ['push_subscriptions.id'],
                                name=op.f('fk_push_reminders_subscription_id_push_subscriptions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_push_reminders')),
        sa.UniqueConstraint('broadcast_id', 'subscription_id', name=op.f('uq_push_reminders_broadcast_id')),
    )
    op.create_index(op.f('ix_push_reminders_broadcast_id'), 'push_reminders', ['broadcast_id'], unique=False)
    op.create_index(op.f('ix_push_reminders_subscription_id'), 'push_reminders', ['subscription_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_push_reminders_subscription_id'), table_name='push_reminders')
    op.drop_index(op.f('ix_push_reminders_broadcast_id'), table_name='push_reminders')
    op.drop_table('push_reminders')
    op.drop_index(op.f('ix_push_subscriptions_user_id'), table_name='push_subscriptions')
    op.drop_table('push_subscriptions')
